"""A remediation's chain of work messages, and the saves they follow.

A work message carries the remediation id and the generation it was sent for. A message whose generation is not the
record's is a duplicate or a leftover: dropped by the runner. Every message sent here follows a save that raised the
generation (or, for the first, the record's creation), so chains never fork.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from remediation import telemetry
from remediation.errors import InvalidInputError
from remediation.messages import traced, valid_traceparent
from remediation.model import Status
from remediation.ports import RemediationStore, WorkQueue
from remediation.record import Remediation

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1024
MAX_DELAY_SECONDS = 15 * 60  # the longest a message is held back (a step waits longer in several hops)


@dataclass(frozen=True)
class WorkItem:
    """A work-queue message: the remediation id and the generation it was sent for; never anything secret."""

    remediation_id: str
    generation: int = 0
    traceparent: str | None = None  # the sender's trace context, so one incident is one trace across hops

    def to_message(self) -> dict[str, object]:
        return traced({"remediationId": self.remediation_id, "generation": self.generation}, self.traceparent)

    @classmethod
    def from_message(cls, body: str | bytes) -> WorkItem:
        """Parse a queue message; InvalidInputError for anything but `{"remediationId", "generation"}`."""
        if len(body) > MAX_MESSAGE_BYTES:
            raise InvalidInputError(f"a work message is at most {MAX_MESSAGE_BYTES} bytes", code="InvalidWorkMessage")
        try:
            data = json.loads(body)
            remediation_id, generation = data["remediationId"], data.get("generation", 0)
        except (ValueError, TypeError, KeyError, RecursionError, AttributeError) as err:
            raise InvalidInputError('a work message must be JSON {"remediationId": "<32 hex>", "generation": <int>}',
                                    code="InvalidWorkMessage") from err
        if not isinstance(remediation_id, str) or not is_remediation_id(remediation_id):
            raise InvalidInputError("remediationId must be 32 lower-case hex characters", code="InvalidWorkMessage")
        if not isinstance(generation, int) or isinstance(generation, bool) or not 0 <= generation < 2**31:
            raise InvalidInputError("generation must be a non-negative integer", code="InvalidWorkMessage")
        return cls(remediation_id, generation, valid_traceparent(data.get("traceparent")))


def is_remediation_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


class WorkChain:
    def __init__(self, *, store: RemediationStore, queue: WorkQueue, clock: Callable[[], datetime]) -> None:
        self._store, self._queue, self._clock = store, queue, clock

    def save(self, remediation: Remediation) -> Remediation:
        """ETag-checked: ConcurrencyError when another worker changed it since it was read."""
        remediation.updated_at = self._clock().isoformat()
        return self._store.save(remediation)

    def send(self, remediation: Remediation, *, delay_seconds: float = 0) -> None:
        """A message for the remediation's current generation (after its creation, or a save that raised it)."""
        self._queue.send(WorkItem(remediation.id, remediation.generation, telemetry.traceparent()).to_message(),
                         delay_seconds=min(max(delay_seconds, 0), MAX_DELAY_SECONDS))

    def schedule(self, remediation: Remediation, seconds: float, code: str, detail: str) -> Remediation:
        """Hand the remediation to a later message: save the new generation first, then send for it."""
        remediation.generation += 1
        remediation.status = Status.WAITING
        remediation.reason = f"{code}: {detail}"
        remediation.lease_until = None
        remediation = self.save(remediation)
        self.send(remediation, delay_seconds=seconds)
        return remediation

    def resume(self, remediation: Remediation) -> Remediation:
        """Take over a stalled remediation: a new generation (so any old message is dropped) and a message."""
        log.warning("remediation %s made no progress since %s: resuming it", remediation.id, remediation.updated_at)
        return self.schedule(remediation, 0, "Resumed", "no progress for too long: the work chain was taken over")

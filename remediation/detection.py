"""Noticing broken clusters: failure events, and sweeps of the Activity Log, turned into hints.

Guarantees:
- An event only enqueues a lookup: the trigger answers Event Grid at once.
- Events and Activity Log entries are hints; `Reconciler.decide` decides each from the
  cluster's present state, and acts at most once per incident however often it arrives.
- A lookup whose Activity Log entry has not appeared yet is retried from the queue, and
  given up, with the reason recorded, after `lookup_timeout`; unless Graph shows that the
  cluster's application has no unexpired password, when it is decided at once (the fast path,
  under the same incident key the entry would carry).
- Times are bounded: an event from the far past or the future is refused at the edge, so a
  lookup always ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from remediation import messages, telemetry
from remediation.classify import apps_named, classify_status_message
from remediation.errors import InvalidInputError
from remediation.events import FailureEvent
from remediation.guardrails import Scope
from remediation.ids import ClusterId
from remediation.model import ActivityLogEntry
from remediation.ports import ActivityLog, IncidentStore, WorkQueue
from remediation.reconcile import Act, Decision, Hint, Reconciler, Source, Verdict

log = logging.getLogger(__name__)

# Entries reach the Activity Log minutes after the failure: look back this far from the event.
LOOKBACK = timedelta(hours=1)
# Sweeps overlap by this much, so an entry written late into the last window is not missed.
SWEEP_OVERLAP = timedelta(minutes=15)
FIRST_SWEEP_WINDOW = timedelta(hours=6)
# Event times outside this window around now are not real failures to look up.
OLDEST_EVENT = timedelta(days=7)
FUTURE_SKEW = timedelta(minutes=15)
MAX_LOOKUP_MESSAGE = 4096
MAX_ATTEMPTS = 10_000
ANYWHERE = Scope()


@dataclass(frozen=True)
class IncidentLookup:
    """An incident-queue message: find the Activity Log entry that explains a failure event."""

    cluster: ClusterId
    correlation_id: str
    first_seen: datetime
    attempt: int = 0
    traceparent: str | None = None  # the event's trace context: the lookup and the remediation join its trace

    def to_message(self) -> dict[str, object]:
        return messages.traced({"clusterResourceId": str(self.cluster), "correlationId": self.correlation_id,
                                "firstSeen": self.first_seen.isoformat(), "attempt": self.attempt}, self.traceparent)

    @classmethod
    def from_message(cls, body: str | bytes) -> IncidentLookup:
        lookup = messages.decode(body, most=MAX_LOOKUP_MESSAGE, code="InvalidIncidentMessage",
                                 needs="clusterResourceId, correlationId, firstSeen, attempt", build=lambda data: cls(
                                     ClusterId.parse(data["clusterResourceId"], allow_child=True),
                                     str(data["correlationId"]), datetime.fromisoformat(data["firstSeen"]),
                                     int(data["attempt"]), messages.valid_traceparent(data.get("traceparent"))))
        if lookup.first_seen.tzinfo is None:
            raise InvalidInputError("firstSeen must carry a time zone", code="InvalidIncidentMessage")
        if not 0 <= lookup.attempt <= MAX_ATTEMPTS or not 0 < len(lookup.correlation_id) <= 64:
            raise InvalidInputError("attempt or correlationId out of range", code="InvalidIncidentMessage")
        return lookup


@dataclass(frozen=True)
class SweepOutcome:
    subscription_id: str
    since: str
    until: str
    entries: int
    decisions: tuple[Decision, ...]


@dataclass(frozen=True)
class DetectionConfig:
    lookup_delay_seconds: float = 60.0
    lookup_timeout: timedelta = timedelta(minutes=30)


class IncidentDetector:
    def __init__(self, *, activity_log: ActivityLog, incidents: IncidentStore, lookups: WorkQueue,
                 reconciler: Reconciler, scope: Scope = ANYWHERE,
                 config: DetectionConfig = DetectionConfig(),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._activity_log = activity_log
        self._incidents = incidents
        self._lookups = lookups
        self._reconciler = reconciler
        self._scope = scope
        self._config = config
        self._clock = clock

    def accept_event(self, event: FailureEvent) -> IncidentLookup | None:
        """Enqueue the lookup of a failure event's Activity Log entry; nothing else.

        None (logged) for a cluster outside the remediator's scope (the same rule the reconcile applies). Raises
        InvalidInputError for an event time outside [now - 7 days, now + 15 minutes].
        """
        now = self._clock()
        seen = event.event_time or now
        if seen.tzinfo is None or not now - OLDEST_EVENT <= seen <= now + FUTURE_SKEW:
            raise InvalidInputError(f"event {event.event_id!r}: its time {seen.isoformat()} is not within the last"
                                    f" {OLDEST_EVENT.days} days", code="InvalidEventTime")
        if not self._in_scope(event.cluster):
            log.info("failure event %s on %s: out of scope (%s); acknowledged", event.event_id,
                     event.cluster.name, self._scope.refusal(event.cluster))
            return None
        lookup = IncidentLookup(event.cluster, event.correlation_id, min(seen, now),
                                traceparent=telemetry.traceparent())
        self._lookups.send(lookup.to_message())
        log.info("failure event %s on %s queued for lookup (correlationId %s)",
                 event.event_id, event.cluster.name, event.correlation_id)
        return lookup

    def look_up(self, lookup: IncidentLookup) -> Decision:
        now = self._clock()
        hint = Hint(lookup.cluster, Source.EVENT, correlation_id=lookup.correlation_id)
        if not self._in_scope(lookup.cluster):
            code, message = self._scope.refusal(lookup.cluster) or ("OutOfScope", "")
            return self._record(Decision(hint, Verdict(Act.NONE, code, message), at=now))
        entries = self._activity_log.list_cluster_failures(
            lookup.cluster.subscription_id, since=lookup.first_seen - LOOKBACK, until=now,
            correlation_id=lookup.correlation_id)
        entry = next((e for e in entries if (c := _cluster_of(e)) and c.key == lookup.cluster.key), None)
        if entry is not None:
            return self._reconciler.decide(hint_for(entry, Source.EVENT))
        if lookup.attempt == 0:
            # The commonest breakage needs no Activity Log entry: Graph shows every password of the application
            # ended. The entry, when it comes, is the same incident: a duplicate.
            fast = self._reconciler.decide_if_expired(replace(hint, failed_at=lookup.first_seen))
            if fast is not None:
                return fast
        if now - lookup.first_seen >= self._config.lookup_timeout:
            verdict = Verdict(Act.NONE, "GaveUp", f"no failed Activity Log entry appeared within"
                                                  f" {self._config.lookup_timeout}")
            log.warning("gave up on incident %s of %s: %s", lookup.correlation_id, lookup.cluster.name,
                        verdict.message)
            return self._record(Decision(hint, verdict, at=now))
        retry = IncidentLookup(lookup.cluster, lookup.correlation_id, lookup.first_seen, lookup.attempt + 1,
                               lookup.traceparent)
        self._lookups.send(retry.to_message(), delay_seconds=self._config.lookup_delay_seconds)
        return Decision(hint, Verdict(Act.NONE, "Waiting", f"Activity Log entry not there yet (attempt"
                                                           f" {retry.attempt})"), at=now)

    def sweep(self, subscription_id: str) -> SweepOutcome:
        """Decide every failed cluster operation since the last sweep, then move the checkpoint."""
        until = self._clock()
        checkpoint = self._incidents.get_checkpoint(subscription_id)
        since = checkpoint - SWEEP_OVERLAP if checkpoint else until - FIRST_SWEEP_WINDOW
        entries = self._activity_log.list_cluster_failures(subscription_id, since=since, until=until)
        decisions = []
        for entry in entries:
            cluster = _cluster_of(entry)
            if cluster is None:
                log.info("sweep: entry %s names no cluster: %s", entry.correlation_id, entry.resource_id[:200])
                continue
            decisions.append(self._reconciler.decide(hint_for(entry, Source.SWEEP)))
        self._incidents.set_checkpoint(subscription_id, until)
        log.info("swept %s: %s failed cluster operation(s) since %s", subscription_id, len(entries), since.isoformat())
        return SweepOutcome(subscription_id, since.isoformat(), until.isoformat(), len(entries), tuple(decisions))

    def _in_scope(self, cluster: ClusterId) -> bool:
        return self._scope.refusal(cluster) is None

    def _record(self, decision: Decision) -> Decision:
        self._incidents.record_decision(decision.view())
        return decision


def hint_for(entry: ActivityLogEntry, source: Source) -> Hint:
    """The hint an Activity Log entry gives: its cluster, time, correlation id and classified error text."""
    cluster = _cluster_of(entry)
    assert cluster is not None
    text = entry.status_message or ""
    return Hint(cluster, source, failed_at=entry.event_timestamp, correlation_id=entry.correlation_id,
                classification=classify_status_message(text), named_apps=apps_named(text))


def _cluster_of(entry: ActivityLogEntry) -> ClusterId | None:
    try:
        return ClusterId.parse(entry.resource_id, allow_child=True)
    except InvalidInputError:
        return None

"""What a decision is about and what it says: a hint names a cluster; a verdict says what to do and why; a
decision is the two, with the facts the decision read that admitting it needs (remediation/run/admission.py).

A hint is never itself a reason to act: an event, a sweep's Activity Log entry, an operator's request and the
health check's findings are all hints, decided from the cluster's present state (remediation/decide/reconcile.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from remediation.auth import Caller
from remediation.decide.classify import Classification, FailureKind
from remediation.ids import ClusterId
from remediation.model import Application, ClusterInfo, Credential
from remediation.record import Remediation


class Source(StrEnum):
    EVENT = "event"
    SWEEP = "sweep"
    MANUAL = "manual"
    SCAN = "scan"  # the fleet health check found every password of the cluster's application ended
    ROTATION = "rotation"  # the fleet health check found an opted-in cluster's secret ending soon
    FAN_OUT = "fanOut"  # a cluster a rotation reaches through its application (only its guardrails are checked)
    MIGRATION = "migration"  # the health check found a cluster opted in to the move to managed identity


INCIDENT_SOURCES = (Source.EVENT, Source.SWEEP)


class Act(StrEnum):
    START = "start"  # a new remediation (or a dry run)
    JOIN = "join"  # the cluster's running remediation already covers it
    RESUME = "resume"  # the running remediation lost its chain: take it over
    WAIT = "wait"  # not decidable yet (a failure whose Activity Log entry has not appeared): ask again later
    NONE = "none"  # nothing to do; the reason code says why


@dataclass(frozen=True)
class Lookup:
    """A failure event's pending lookup: since when its Activity Log entry is awaited, and for how long."""

    attempt: int
    opened_at: datetime
    timeout: timedelta

    def timed_out(self, now: datetime) -> bool:
        return now - self.opened_at >= self.timeout


@dataclass(frozen=True)
class Hint:
    """Something that names a cluster: never itself a reason to act."""

    cluster: ClusterId
    source: Source
    failed_at: datetime | None = None  # when the failure happened (the Activity Log entry's time)
    correlation_id: str | None = None
    classification: Classification | None = None  # of the failure's text; None for a request, or text not found yet
    named_apps: frozenset[str] = frozenset()  # appIds the failure's text names
    requested_by: Caller | None = None
    reason: str = ""  # an operator's words
    dry_run: bool = False
    force: bool = False  # an operator asks to rotate even a cluster whose credentials look fine
    credential: Credential | None = None  # an operator's choice; else read from the failure (named applications)
    lookup: Lookup | None = None  # an event whose Activity Log entry is awaited

    @property
    def joined_by(self) -> str:
        """How the cluster enters a rotation, for the record: its own failure, or a person's request."""
        if self.source in (Source.SCAN, Source.ROTATION):
            return "healthCheck"
        if self.source is Source.FAN_OUT:
            return "application"
        return "request" if self.source is Source.MANUAL else "hint"

    @property
    def incident_key(self) -> str | None:
        if self.correlation_id is None:
            return None
        text = f"{self.correlation_id.lower()}|{str(self.cluster).lower()}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Verdict:
    act: Act
    code: str
    message: str
    kind: FailureKind | None = None
    replace: bool = False  # the application is gone: a new one is to take its place
    next_chance: datetime | None = None  # when the same hint could be decided otherwise (a window opens)


@dataclass(frozen=True)
class Facts:
    """What the decision read that admitting it needs: read once, by the decision, never again by the admission."""

    cluster: ClusterInfo | None
    application: Application | None
    credential: Credential
    app_id: str
    every_password_ended: bool
    window_end: str | None  # a proactive rotation resets the cluster only until its maintenance window closes
    active: Remediation | None  # the cluster's application's running rotation, if any


@dataclass(frozen=True)
class Decision:
    """What was decided for one hint and why, with the remediation it led to. Never holds a secret."""

    hint: Hint
    verdict: Verdict
    remediation: Remediation | None = None
    created: bool = False
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    facts: Facts | None = field(default=None, compare=False, repr=False)

    @property
    def code(self) -> str:
        return self.verdict.code

    def view(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "clusterResourceId": str(self.hint.cluster),
                "source": self.hint.source.value, "correlationId": self.hint.correlation_id,
                "act": self.verdict.act.value, "code": self.verdict.code, "message": self.verdict.message,
                "kind": self.verdict.kind.value if self.verdict.kind else None,
                "remediationId": self.remediation.id if self.remediation else None, "created": self.created}

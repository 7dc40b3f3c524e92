"""Noticing broken clusters: failure events, and sweeps of the Activity Log, turned into hints.

Guarantees:
- An event only enqueues a lookup: the trigger answers Event Grid at once.
- A cluster has at most one pending lookup, across workers (a row per cluster in the app's table, written
  insert-if-absent and ETag-checked): an event for a cluster whose lookup is pending joins it, and the lookup looks
  up the newest failure that joined. A lookup chain ends at most `lookup_timeout` after it opened, so a flood of
  events for one cluster costs one Activity Log read a `lookup_delay`, not one per event.
- Each worker opens at most `MAX_NEW_LOOKUPS` lookups in any `NEW_LOOKUP_WINDOW` (a delivery reaches one
  instance, so this bounds what one delivery can queue); events over the bound are dropped, counted
  (`remediator.failure_events`) and left to the sweep, which reads every failed cluster operation anyway.
- Events and Activity Log entries are hints; `Reconciler.decide` decides each from the
  cluster's present state, and admission acts at most once per incident however often it arrives.
- A lookup whose Activity Log entry has not appeared yet is a hint the decision chain says to wait
  on (retried from the queue) or, after `lookup_timeout`, to give up on, with the reason recorded;
  unless Graph shows that the cluster's application has no unexpired password, when it is decided at
  once (the fast path, under the same incident key the entry would carry).
- Scope is the decision chain's to check, once per hint: before an event queues a lookup, and before
  a lookup reads the Activity Log.
- Times are bounded: an event from the far past or the future is refused at the edge, so a
  lookup always ends.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from remediation import messages, telemetry
from remediation.decide.classify import apps_named, classify_status_message
from remediation.decide.hints import Act, Decision, Hint, Lookup, Source, Verdict
from remediation.decide.reconcile import Reconciler
from remediation.errors import InvalidInputError
from remediation.ids import ClusterId, is_guid
from remediation.intake.events import FailureEvent
from remediation.model import ActivityLogEntry
from remediation.ports import ActivityLog, IncidentStore, WorkQueue
from remediation.run.admission import Admission

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
# New lookups one worker opens in any window; the events over it are left to the sweep (module docstring).
MAX_NEW_LOOKUPS = 100
NEW_LOOKUP_WINDOW = timedelta(minutes=1)
# A pending lookup older than its timeout by this much has no chain running any more (its messages were lost, or
# went to the poison queue): the next failure of its cluster opens it again. (A queue message a dead worker held
# comes back after the host's 10-minute visibility timeout.)
ORPHANED_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class IncidentLookup:
    """An incident-queue message: find the Activity Log entry that explains a cluster's newest failure.

    `lookup_id` names the cluster's pending lookup (its row): the failure to look up is read from the row, which
    holds the newest failure that joined, and a message whose lookup is no longer the pending one is dropped. The
    message's own correlation id and time are those of the failure that opened it. A message without a lookup id
    (queued before lookups were coalesced) looks up its own failure."""

    cluster: ClusterId
    correlation_id: str
    first_seen: datetime
    attempt: int = 0
    traceparent: str | None = None  # the event's trace context: the lookup and the remediation join its trace
    lookup_id: str | None = None

    def to_message(self) -> dict[str, object]:
        body: dict[str, object] = {"clusterResourceId": str(self.cluster), "correlationId": self.correlation_id,
                                   "firstSeen": self.first_seen.isoformat(), "attempt": self.attempt}
        if self.lookup_id:
            body["lookupId"] = self.lookup_id
        return messages.traced(body, self.traceparent)

    @classmethod
    def from_message(cls, body: str | bytes) -> IncidentLookup:
        lookup = messages.decode(body, most=MAX_LOOKUP_MESSAGE, code="InvalidIncidentMessage",
                                 needs="clusterResourceId, correlationId, firstSeen, attempt", build=lambda data: cls(
                                     ClusterId.parse(data["clusterResourceId"], allow_child=True),
                                     str(data["correlationId"]), datetime.fromisoformat(data["firstSeen"]),
                                     int(data["attempt"]), messages.valid_traceparent(data.get("traceparent")),
                                     data.get("lookupId")))
        if lookup.first_seen.tzinfo is None:
            raise InvalidInputError("firstSeen must carry a time zone", code="InvalidIncidentMessage")
        if not 0 <= lookup.attempt <= MAX_ATTEMPTS:
            raise InvalidInputError("attempt out of range", code="InvalidIncidentMessage")
        if not is_guid(lookup.correlation_id):  # it reaches the Activity Log's $filter
            raise InvalidInputError("correlationId must be a GUID", code="InvalidIncidentMessage")
        if lookup.lookup_id is not None and not _is_lookup_id(lookup.lookup_id):
            raise InvalidInputError("lookupId must be 32 lower-case hex characters", code="InvalidIncidentMessage")
        return lookup


@dataclass(frozen=True)
class PendingLookup:
    """A cluster's pending lookup, as its row holds it: the newest failure that joined, and when it opened."""

    lookup_id: str
    cluster: ClusterId
    correlation_id: str
    seen: datetime
    opened_at: datetime

    def to_fields(self) -> dict[str, Any]:
        return {"lookupId": self.lookup_id, "clusterResourceId": str(self.cluster),
                "correlationId": self.correlation_id, "seen": self.seen.isoformat(),
                "openedAt": self.opened_at.isoformat()}

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> PendingLookup:
        return cls(str(fields["lookupId"]), ClusterId.parse(fields["clusterResourceId"]), str(fields["correlationId"]),
                   datetime.fromisoformat(fields["seen"]), datetime.fromisoformat(fields["openedAt"]))


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
                 reconciler: Reconciler, admission: Admission,
                 config: DetectionConfig = DetectionConfig(),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._activity_log = activity_log
        self._incidents = incidents
        self._lookups = lookups
        self._reconciler = reconciler
        self._admission = admission
        self._config = config
        self._clock = clock
        self._opened: deque[datetime] = deque()  # when this worker opened its recent lookups (the bound)
        self._opened_lock = threading.Lock()

    def accept_event(self, event: FailureEvent) -> IncidentLookup | None:
        """Enqueue the lookup of a failure event's Activity Log entry, unless its cluster's lookup is pending (the
        event joins it) or this worker opened `MAX_NEW_LOOKUPS` in the last `NEW_LOOKUP_WINDOW` (dropped); nothing
        else. The new lookup, or None (logged, and counted by outcome).

        None too for a cluster outside the remediator's scope (the same rule the reconcile applies). Raises
        InvalidInputError for an event time outside [now - 7 days, now + 15 minutes].
        """
        now = self._clock()
        seen = event.event_time or now
        if seen.tzinfo is None or not now - OLDEST_EVENT <= seen <= now + FUTURE_SKEW:
            raise InvalidInputError(f"event {event.event_id!r}: its time {seen.isoformat()} is not within the last"
                                    f" {OLDEST_EVENT.days} days", code="InvalidEventTime")
        refusal = self._reconciler.refusal_before_reading(Hint(event.cluster, Source.EVENT))
        if refusal is not None:
            log.info("failure event %s on %s: %s (%s); acknowledged", event.event_id, event.cluster.name,
                     refusal.code, refusal.message)
            telemetry.record_failure_event("out_of_scope")
            return None
        failure = PendingLookup(uuid.uuid4().hex, event.cluster, event.correlation_id, min(seen, now), now)
        outcome = self._coalesce(failure, now)
        telemetry.record_failure_event(outcome)
        if outcome != "queued":
            log.info("failure event %s on %s %s (correlationId %s)", event.event_id, event.cluster.name,
                     "joined the lookup pending for its cluster" if outcome == "coalesced" else
                     f"dropped: this worker opened {MAX_NEW_LOOKUPS} lookups within {NEW_LOOKUP_WINDOW}; the sweep"
                     " reads it", event.correlation_id)
            return None
        lookup = IncidentLookup(event.cluster, event.correlation_id, failure.seen, traceparent=telemetry.traceparent(),
                                lookup_id=failure.lookup_id)
        self._lookups.send(lookup.to_message())
        log.info("failure event %s on %s queued for lookup (correlationId %s)",
                 event.event_id, event.cluster.name, event.correlation_id)
        return lookup

    def _coalesce(self, failure: PendingLookup, now: datetime) -> str:
        """Open the cluster's lookup with this failure (queued), or let the failure join the pending one, replacing
        its failure if this one is newer (coalesced), or neither, over the bound (dropped). Decided on the row as it
        is now; when another worker changes it between the read and the write, read again."""
        key = failure.cluster.key
        for _ in range(5):
            found = self._incidents.get_lookup(key)
            if found is None:
                if not self._admit(now):
                    return "dropped"
                if self._incidents.open_lookup(key, failure.to_fields()):
                    return "queued"
                continue  # another worker opened it meanwhile: join theirs
            fields, etag = found
            pending = PendingLookup.from_fields(fields)
            if now - pending.opened_at > self._config.lookup_timeout + ORPHANED_AFTER:
                if not self._admit(now):
                    return "dropped"
                if self._incidents.replace_lookup(key, failure.to_fields(), etag):
                    log.warning("the lookup pending for %s since %s had stopped; opened again", failure.cluster.name,
                                pending.opened_at.isoformat())
                    return "queued"
                continue
            if failure.seen <= pending.seen or failure.correlation_id == pending.correlation_id:
                return "coalesced"
            newest = replace(pending, correlation_id=failure.correlation_id, seen=failure.seen)
            if self._incidents.replace_lookup(key, newest.to_fields(), etag):
                return "coalesced"
        return "coalesced"  # the row kept changing: other events for the cluster are joining it

    def _admit(self, now: datetime) -> bool:
        """Take one of this worker's `MAX_NEW_LOOKUPS` in the window ending now; False when all are taken."""
        with self._opened_lock:
            while self._opened and self._opened[0] <= now - NEW_LOOKUP_WINDOW:
                self._opened.popleft()
            if len(self._opened) >= MAX_NEW_LOOKUPS:
                return False
            self._opened.append(now)
            return True

    def look_up(self, lookup: IncidentLookup) -> Decision:
        """Look up the newest failure of the lookup's cluster in the Activity Log and decide it; look again later
        (a new message) while no entry explains it, until `lookup_timeout` after the lookup opened. A message whose
        lookup is no longer the cluster's pending one changes nothing (`Superseded`, not recorded)."""
        now = self._clock()
        pending, etag = PendingLookup(lookup.lookup_id or "", lookup.cluster, lookup.correlation_id,
                                      lookup.first_seen, lookup.first_seen), None
        if lookup.lookup_id is not None:
            found = self._incidents.get_lookup(lookup.cluster.key)
            current = PendingLookup.from_fields(found[0]) if found else None
            if current is None or current.lookup_id != lookup.lookup_id:
                hint = Hint(lookup.cluster, Source.EVENT, correlation_id=lookup.correlation_id)
                return Decision(hint, Verdict(Act.NONE, "Superseded", "this lookup was decided, or another one of the"
                                                                      " cluster's failures took its place"), at=now)
            pending, etag = current, found[1] if found else None
        decision = self._decide_pending(lookup, pending, now)
        if decision.verdict.act is Act.WAIT:
            return decision
        if etag is not None and not self._incidents.close_lookup(lookup.cluster.key, etag):
            # A newer failure joined while this one was decided: look that one up next, in the same lookup.
            self._lookups.send(replace(lookup, attempt=lookup.attempt + 1).to_message(),
                               delay_seconds=self._config.lookup_delay_seconds)
        return decision

    def _decide_pending(self, lookup: IncidentLookup, pending: PendingLookup, now: datetime) -> Decision:
        """The pending failure as a hint, decided and admitted: explained by its Activity Log entry once the entry is
        there; until then a hint the decision chain waits on (a new message looks again) or gives up on."""
        hint = Hint(lookup.cluster, Source.EVENT, failed_at=pending.seen, correlation_id=pending.correlation_id,
                    lookup=Lookup(lookup.attempt, pending.opened_at, self._config.lookup_timeout))
        refusal = self._reconciler.refusal_before_reading(hint)
        if refusal is not None:  # not worth an Activity Log read
            return self._admission.admit(Decision(hint, refusal, at=now))
        entries = self._activity_log.list_cluster_failures(
            lookup.cluster.subscription_id, since=pending.seen - LOOKBACK, until=now,
            correlation_id=pending.correlation_id)
        entry = next((e for e in entries if (c := _cluster_of(e)) and c.key == lookup.cluster.key), None)
        if entry is not None:
            hint = hint_for(entry, Source.EVENT)
        decision = self._admission.admit(self._reconciler.decide(hint))
        if decision.verdict.act is Act.WAIT:
            self._lookups.send(replace(lookup, attempt=lookup.attempt + 1).to_message(),
                               delay_seconds=self._config.lookup_delay_seconds)
        elif decision.code == "GaveUp":
            log.warning("gave up on incident %s of %s: %s", pending.correlation_id, lookup.cluster.name,
                        decision.verdict.message)
        return decision

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
            decisions.append(self._admission.admit(self._reconciler.decide(hint_for(entry, Source.SWEEP))))
        self._incidents.set_checkpoint(subscription_id, until)
        log.info("swept %s: %s failed cluster operation(s) since %s", subscription_id, len(entries), since.isoformat())
        return SweepOutcome(subscription_id, since.isoformat(), until.isoformat(), len(entries), tuple(decisions))


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


def _is_lookup_id(value: object) -> bool:
    return isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)

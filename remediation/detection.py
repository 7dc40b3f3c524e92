"""Noticing broken clusters: from failure events, and from sweeps of the Activity Log.

Guarantees:
- An event only enqueues a lookup: the trigger answers Event Grid at once.
- An incident (correlationId + resource) is decided once, however often it arrives by
  event, by sweep or both; and the cluster claim in `Remediator.submit` makes every
  source that finds the same broken cluster join one remediation.
- Only a failure classified as a bad cluster secret starts a remediation. Graph confirms
  the classification where it can (an application that is gone, an end date that passed).
- A lookup whose Activity Log entry has not appeared yet is retried from the queue, and
  given up, with the reason recorded, after `lookup_timeout`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from remediation.classify import (
    Action,
    Classification,
    FailureKind,
    apps_named,
    classify_status_message,
    refine_with_credential_dates,
)
from remediation.errors import ConflictError, InvalidInputError, NotFoundError
from remediation.events import FailureEvent
from remediation.ids import ClusterId
from remediation.model import ActivityLogEntry
from remediation.ports import ActivityLog, Directory, IncidentStore, ManagedClusters, WorkQueue
from remediation.service import RemediationRequest, Remediator

log = logging.getLogger(__name__)

# Entries reach the Activity Log minutes after the failure: look back this far from the event.
LOOKBACK = timedelta(hours=1)
# Sweeps overlap by this much, so an entry written late into the last window is not missed.
SWEEP_OVERLAP = timedelta(minutes=15)
FIRST_SWEEP_WINDOW = timedelta(hours=6)


@dataclass(frozen=True)
class IncidentLookup:
    """An incident-queue message: find the Activity Log entry that explains a failure event."""

    cluster: ClusterId
    correlation_id: str
    first_seen: datetime
    attempt: int = 0

    def to_message(self) -> dict[str, object]:
        return {"clusterResourceId": str(self.cluster), "correlationId": self.correlation_id,
                "firstSeen": self.first_seen.isoformat(), "attempt": self.attempt}

    @classmethod
    def from_message(cls, body: str | bytes) -> IncidentLookup:
        try:
            data = json.loads(body)
            lookup = cls(ClusterId.parse(data["clusterResourceId"]), str(data["correlationId"]),
                         datetime.fromisoformat(data["firstSeen"]), int(data["attempt"]))
        except InvalidInputError:
            raise
        except (ValueError, TypeError, KeyError) as err:
            raise InvalidInputError("an incident message needs clusterResourceId, correlationId, firstSeen, attempt",
                                    code="InvalidIncidentMessage") from err
        if lookup.first_seen.tzinfo is None:
            raise InvalidInputError("firstSeen must carry a time zone", code="InvalidIncidentMessage")
        return lookup


@dataclass(frozen=True)
class IncidentOutcome:
    """What was decided about one incident, and why. Never holds a secret."""

    decision: str  # remediation_started | joined_remediation | ignored | duplicate | waiting | gave_up | needs_...
    cluster_id: str
    correlation_id: str
    reason: str
    kind: str | None = None
    code: str | None = None
    remediation_id: str | None = None


@dataclass(frozen=True)
class SweepOutcome:
    subscription_id: str
    since: str
    until: str
    entries: int
    outcomes: tuple[IncidentOutcome, ...]


@dataclass(frozen=True)
class DetectionConfig:
    lookup_delay_seconds: float = 60.0
    lookup_timeout: timedelta = timedelta(minutes=30)


class IncidentDetector:
    def __init__(self, *, activity_log: ActivityLog, incidents: IncidentStore, lookups: WorkQueue,
                 clusters: ManagedClusters, directory: Directory, remediator: Remediator,
                 config: DetectionConfig = DetectionConfig(),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._activity_log = activity_log
        self._incidents = incidents
        self._lookups = lookups
        self._clusters = clusters
        self._directory = directory
        self._remediator = remediator
        self._config = config
        self._clock = clock

    def accept_event(self, event: FailureEvent) -> IncidentLookup:
        """Enqueue the lookup of a failure event's Activity Log entry; nothing else."""
        lookup = IncidentLookup(event.cluster, event.correlation_id, event.event_time or self._clock())
        self._lookups.send(lookup.to_message())
        log.info("failure event %s on %s queued for lookup (correlationId %s)",
                 event.event_id, event.cluster.name, event.correlation_id)
        return lookup

    def look_up(self, lookup: IncidentLookup) -> IncidentOutcome:
        now = self._clock()
        entries = self._activity_log.list_cluster_failures(
            lookup.cluster.subscription_id, since=lookup.first_seen - LOOKBACK, until=now,
            correlation_id=lookup.correlation_id)
        entry = next((e for e in entries if _same_cluster(e, lookup.cluster)), None)
        if entry is not None:
            return self._decide(entry, source="event")
        if now - lookup.first_seen >= self._config.lookup_timeout:
            outcome = IncidentOutcome(
                "gave_up", str(lookup.cluster), lookup.correlation_id,
                f"no failed Activity Log entry appeared within {self._config.lookup_timeout}")
            self._incidents.record_incident(incident_key(lookup.correlation_id, str(lookup.cluster)), asdict(outcome))
            log.warning("gave up on incident %s of %s: %s", lookup.correlation_id, lookup.cluster.name, outcome.reason)
            return outcome
        retry = IncidentLookup(lookup.cluster, lookup.correlation_id, lookup.first_seen, lookup.attempt + 1)
        self._lookups.send(retry.to_message(), delay_seconds=self._config.lookup_delay_seconds)
        return IncidentOutcome("waiting", str(lookup.cluster), lookup.correlation_id,
                               f"Activity Log entry not there yet (attempt {retry.attempt})")

    def sweep(self, subscription_id: str) -> SweepOutcome:
        """Decide every failed cluster operation since the last sweep, then move the checkpoint."""
        until = self._clock()
        checkpoint = self._incidents.get_checkpoint(subscription_id)
        since = checkpoint - SWEEP_OVERLAP if checkpoint else until - FIRST_SWEEP_WINDOW
        entries = self._activity_log.list_cluster_failures(subscription_id, since=since, until=until)
        outcomes = tuple(self._decide(entry, source="sweep") for entry in entries)
        self._incidents.set_checkpoint(subscription_id, until)
        log.info("swept %s: %s failed cluster operation(s) since %s", subscription_id, len(entries), since.isoformat())
        return SweepOutcome(subscription_id, since.isoformat(), until.isoformat(), len(entries), outcomes)

    def _decide(self, entry: ActivityLogEntry, *, source: str) -> IncidentOutcome:
        try:
            cluster = ClusterId.parse(entry.resource_id, allow_child=True)
        except InvalidInputError as err:
            return IncidentOutcome("ignored", entry.resource_id, entry.correlation_id, f"not a cluster id: {err}")
        key = incident_key(entry.correlation_id, str(cluster))
        classification = self._confirm(classify_status_message(entry.status_message or ""), cluster,
                                       apps_named(entry.status_message or ""))
        outcome = IncidentOutcome("ignored", str(cluster), entry.correlation_id, classification.reason,
                                  classification.kind.value, classification.code)
        if classification.action is Action.ROTATE_SECRET:
            try:
                submission = self._remediator.submit(RemediationRequest(
                    cluster, source=source, reason=f"{classification.kind.value}: {classification.reason}"))
            except (NotFoundError, ConflictError) as err:
                return IncidentOutcome("ignored", str(cluster), entry.correlation_id, str(err),
                                       classification.kind.value, classification.code)
            outcome = IncidentOutcome(
                "remediation_started" if submission.created else "joined_remediation", str(cluster),
                entry.correlation_id, classification.reason, classification.kind.value, classification.code,
                submission.remediation.id)
        elif classification.action is Action.NEW_SERVICE_PRINCIPAL:
            outcome = IncidentOutcome(
                "needs_new_service_principal", str(cluster), entry.correlation_id,
                classification.reason + "; creating a replacement service principal is left to a person",
                classification.kind.value, classification.code)
        if not self._incidents.record_incident(key, asdict(outcome)):
            log.info("incident %s of %s was decided before", entry.correlation_id, cluster.name)
            return IncidentOutcome("duplicate", str(cluster), entry.correlation_id, "decided before",
                                   classification.kind.value, classification.code, outcome.remediation_id)
        log.info("incident %s of %s: %s (%s, %s)", entry.correlation_id, cluster.name, outcome.decision,
                 outcome.kind, outcome.code)
        return outcome

    def _confirm(self, classification: Classification, cluster: ClusterId,
                 named_apps: frozenset[str]) -> Classification:
        """Check the failing secret is the cluster's own; let Graph tell expired from invalid; notice a gone app."""
        if classification.kind not in (FailureKind.INVALID_SECRET, FailureKind.EXPIRED_SECRET):
            return classification
        try:
            client_id = self._clusters.get_cluster(cluster).client_id
        except NotFoundError:
            return classification
        if named_apps and client_id.lower() not in named_apps:
            return Classification(
                kind=FailureKind.SP_OTHER, action=Action.NONE, code=classification.code,
                reason=f"the failing secret belongs to app {', '.join(sorted(named_apps))}, not to the cluster's"
                       f" service principal {client_id}: resetting the cluster would not fix it",
                evidence=", ".join(sorted(named_apps)))
        try:
            app = self._directory.get_application_by_app_id(client_id)
        except NotFoundError:
            return Classification(
                kind=FailureKind.SP_NOT_FOUND, action=Action.NEW_SERVICE_PRINCIPAL, code="ApplicationNotFound",
                reason=f"Graph shows no application with appId {client_id}: deleted, or not owned by the remediator"
                       f" (classified {classification.kind.value} from {classification.code})", evidence=client_id)
        ends = [p.end for p in app.passwords if p.end is not None]
        return refine_with_credential_dates(classification, newest_password_end=max(ends, default=None),
                                            now=self._clock())


def incident_key(correlation_id: str, cluster_id: str) -> str:
    return hashlib.sha256(f"{correlation_id.lower()}|{cluster_id.lower()}".encode()).hexdigest()[:32]


def _same_cluster(entry: ActivityLogEntry, cluster: ClusterId) -> bool:
    try:
        return ClusterId.parse(entry.resource_id, allow_child=True).key == cluster.key
    except InvalidInputError:
        return False

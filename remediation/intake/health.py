"""Fleet credential health: every service-principal cluster's secret, judged before it breaks.

One Resource Graph query finds every cluster in scope across the subscriptions; one Graph `$batch`
call per 20 applications reads their passwords' end dates. Each cluster is then judged by an
ordered tuple of pure checks (`JUDGES`): managed identity, unknown (Graph kept throttling its
application's read), application missing, expired now, expiring within the warning period, healthy.
Every service-principal cluster also gets the permanent fix as a recommendation (moving it to a
managed identity), never applied, and a link to its migration plan on the HTTP API (`migrationPlan`); the plan is
computed when the link is followed, never during the scan.

`report()` only reads. `recent_report()` is what a reader gets (`GET /api/health`): the last report while it is
younger than `REPORT_MAX_AGE`, else a new one, and one scan for every reader that asks meanwhile; a scan spends the
same Resource Graph quota and Graph budget as the daily check and the repairs, so readers must not multiply it. The
cache is this worker's (each instance of a scaled-out app keeps its own).

`check()` (the daily timer) also acts, through the reconcile like any other hint, so every guardrail applies and the
decision follows from the cluster's present state:
- expired now: the cluster is broken whether or not a write failed yet: remediated at once;
- expiring, on a cluster opted in by tag: rotated if its maintenance window is open now; if the
  window opens within `SCHEDULE_HORIZON`, a credential check is queued for that moment, when the
  reconcile decides again from what is true then.

Which password a cluster holds is not visible in Azure: a cluster is judged by the soonest-ending
valid password of its application (the earliest it may break). The reconcile refines that with the
remediator's own records before it acts.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from remediation import messages, telemetry
from remediation.decide.guardrails import Guardrails
from remediation.decide.hints import Act, Decision, Hint, Source, Verdict
from remediation.decide.reconcile import Reconciler
from remediation.errors import InvalidInputError, RemediationError
from remediation.ids import ClusterId
from remediation.model import Application, ClusterInfo, Credential
from remediation.outcomes import OutcomeEvent, credential_expired, credential_expiring
from remediation.ports import ClusterInventory, Directory, OutcomePublisher, WorkQueue
from remediation.run.admission import Admission

log = logging.getLogger(__name__)

# Logged at WARNING by every health check that finds any ("3 clusters expired now"): infra/modules/alerts.bicep
# alerts on it.
EXPIRED_NOW_LOG = "clusters expired now"

# A window opening this soon after a check gets a queued credential check at its opening; a later one is the
# next daily check's to schedule. (A queue message may be delayed up to 7 days.)
SCHEDULE_HORIZON = timedelta(hours=25)
MAX_CHECK_MESSAGE = 2048
PUBLISH_BATCH = 100  # events per Event Grid request (a request carries at most 1 MB)
# A reader's report is this old at most (the daily check and the repairs share the scan's budget).
REPORT_MAX_AGE = timedelta(minutes=5)
MIGRATE_DOCS = "https://learn.microsoft.com/azure/aks/use-managed-identity#update-an-existing-cluster-to-use-managed-identity"
# The HTTP API's route of one cluster's migration plan (function_app.py), which each service-principal cluster links.
MIGRATION_PLAN_ROUTE = "clusters/migration-plan"


class Health(StrEnum):
    HEALTHY = "healthy"
    EXPIRING = "expiring"  # the secret may end within the warning period
    EXPIRED = "expired"  # every password of the application has ended: broken now
    APPLICATION_MISSING = "applicationMissing"  # Graph has no such application (deleted, or another tenant)
    MANAGED_IDENTITY = "managedIdentity"  # no secret at all: nothing to watch
    UNKNOWN = "unknown"  # Graph kept throttling the read of its application: judged on the next check


@dataclass(frozen=True)
class Judgement:
    health: Health
    code: str
    message: str


@dataclass(frozen=True)
class ClusterHealth:
    """One cluster's credential health, with the permanent fix and what the check did. Never a secret."""

    cluster: ClusterId
    health: Health
    code: str
    message: str
    app_id: str | None = None
    ends_at: datetime | None = None  # the soonest-ending valid password; for an expired one, the last to end
    days_left: float | None = None
    tags: dict[str, str] = field(default_factory=dict, compare=False)
    action: dict[str, Any] | None = None  # the reconcile's decision, when the check acted

    @property
    def recommendation(self) -> str | None:
        if self.health is Health.MANAGED_IDENTITY:
            return None
        return (f"move to a managed identity, which has no secret to expire: az aks update -g"
                f" {self.cluster.resource_group} -n {self.cluster.name} --subscription {self.cluster.subscription_id}"
                f" --enable-managed-identity ({MIGRATE_DOCS}; it re-images nodes and changes the identity the"
                " cluster's role assignments name)")

    @property
    def migration_plan(self) -> str | None:
        """The relative URL of the cluster's migration plan on the HTTP API; None for a managed-identity cluster."""
        if self.health is Health.MANAGED_IDENTITY:
            return None
        return f"/api/{MIGRATION_PLAN_ROUTE}?clusterResourceId={quote(str(self.cluster), safe='')}"

    def view(self) -> dict[str, Any]:
        return {"clusterResourceId": str(self.cluster), "name": self.cluster.name,
                "resourceGroup": self.cluster.resource_group, "subscriptionId": self.cluster.subscription_id,
                "health": self.health.value, "code": self.code, "message": self.message, "appId": self.app_id,
                "endsAt": self.ends_at.isoformat() if self.ends_at else None,
                "daysLeft": round(self.days_left, 1) if self.days_left is not None else None,
                "recommendation": self.recommendation, "migrationPlan": self.migration_plan, "action": self.action}


@dataclass(frozen=True)
class FleetReport:
    at: datetime
    within_days: int
    clusters: tuple[ClusterHealth, ...]
    applications: int

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(c.health.value for c in self.clusters)
        return {h.value: found.get(h.value, 0) for h in Health}

    @property
    def days_to_nearest_expiry(self) -> float | None:
        """Across clusters that still work: how long until the first one may break."""
        return min((c.days_left for c in self.clusters
                    if c.days_left is not None and c.health in (Health.HEALTHY, Health.EXPIRING)), default=None)

    def view(self) -> dict[str, Any]:
        nearest = self.days_to_nearest_expiry
        return {"at": self.at.isoformat(), "expiringWithinDays": self.within_days, "counts": self.counts,
                "applications": self.applications,
                "daysToNearestExpiry": round(nearest, 1) if nearest is not None else None,
                "value": [c.view() for c in self.clusters]}


@dataclass(frozen=True)
class RecentReport:
    """A report as a reader gets it: possibly made earlier for someone else, and how long ago."""

    report: FleetReport
    age: timedelta

    def view(self) -> dict[str, Any]:
        return {**self.report.view(), "generatedAt": self.report.at.isoformat(),
                "ageSeconds": int(self.age.total_seconds())}


class SharedScan:
    """The last report while it is younger than `max_age`, else a new one from `scan`; while a scan runs, every
    caller waits for that one (and gets its error, if it fails: a failure is not kept)."""

    def __init__(self, scan: Callable[[], FleetReport], *, max_age: timedelta,
                 clock: Callable[[], datetime]) -> None:
        self._scan, self._max_age, self._clock = scan, max_age, clock
        self._lock = threading.Lock()
        self._report: FleetReport | None = None
        self._running: Future[FleetReport] | None = None

    def get(self) -> RecentReport:
        with self._lock:
            now = self._clock()
            if self._report is not None and now - self._report.at < self._max_age:
                return RecentReport(self._report, now - self._report.at)
            running, leading = (self._running, False) if self._running else (Future(), True)
            self._running = running
        if leading:
            try:
                scanned = self._scan()
                self.keep(scanned)
                running.set_result(scanned)
            except BaseException as err:
                running.set_exception(err)
                raise
            finally:
                with self._lock:
                    self._running = None
        report = running.result()
        return RecentReport(report, max(self._clock() - report.at, timedelta(0)))

    def keep(self, report: FleetReport) -> None:
        """Keep a report made elsewhere (the daily check's) for the readers after it."""
        with self._lock:
            if self._report is None or report.at >= self._report.at:
                self._report = report


# ------------------------------------------------------------------------------------------ judging

Judge = Callable[[ClusterInfo, "Application | None", datetime, timedelta], "Judgement | None"]
UNREAD = Application(object_id="", app_id="", display_name="(unread)")  # what Graph did not answer for


def managed_identity(c: ClusterInfo, app: Application | None, now: datetime, within: timedelta) -> Judgement | None:
    if c.uses_managed_identity:
        return Judgement(Health.MANAGED_IDENTITY, "ManagedIdentity", "the cluster uses a managed identity: no secret")
    return None


def unread(c: ClusterInfo, app: Application | None, now: datetime, within: timedelta) -> Judgement | None:
    if app is UNREAD:
        return Judgement(Health.UNKNOWN, "Unread", f"Graph kept throttling the read of application {c.client_id}:"
                         " judged on the next check")
    return None


def application_missing(c: ClusterInfo, app: Application | None, now: datetime, within: timedelta
                        ) -> Judgement | None:
    if app is None:
        return Judgement(Health.APPLICATION_MISSING, "ApplicationNotFound", f"Graph has no application {c.client_id}"
                         " (deleted, or of another tenant): every cluster write fails; POST /api/remediations plans"
                         " or makes its replacement")
    return None


def expired(c: ClusterInfo, app: Application | None, now: datetime, within: timedelta) -> Judgement | None:
    assert app is not None
    if all(p.end is not None and p.end <= now for p in app.passwords):
        what = "has no password" if not app.passwords else "has only ended passwords"
        return Judgement(Health.EXPIRED, "ExpiredNow", f"application {app.app_id} {what}: the cluster is broken")
    return None


def expiring(c: ClusterInfo, app: Application | None, now: datetime, within: timedelta) -> Judgement | None:
    ends = soonest_valid_end(app, now)
    if ends is not None and ends <= now + within:
        return Judgement(Health.EXPIRING, "ExpiringSoon", f"a password of application {c.client_id} the cluster may"
                         f" hold ends {ends.isoformat()}, within {within.days} days")
    return None


def healthy(c: ClusterInfo, app: Application | None, now: datetime, within: timedelta) -> Judgement:
    ends = soonest_valid_end(app, now)
    return Judgement(Health.HEALTHY, "Healthy", f"every valid password ends after {within.days} days" if ends
                     else "its password never ends")


JUDGES: tuple[Judge, ...] = (managed_identity, unread, application_missing, expired, expiring)


def judge(cluster: ClusterInfo, app: Application | None, now: datetime, within: timedelta, *,
          cluster_id: ClusterId | None = None) -> ClusterHealth:
    found = next((j for judge_ in JUDGES if (j := judge_(cluster, app, now, within))), None)
    judgement = found or healthy(cluster, app, now, within)
    ends = None
    if app is not None and app is not UNREAD:
        ends = soonest_valid_end(app, now) if judgement.health is not Health.EXPIRED else max(
            (p.end for p in app.passwords if p.end), default=None)
    return ClusterHealth(
        cluster_id or ClusterId.parse(cluster.id), judgement.health, judgement.code, judgement.message,
        app_id=None if cluster.uses_managed_identity else cluster.client_id.lower(), ends_at=ends,
        days_left=(ends - now).total_seconds() / 86400 if ends else None, tags=dict(cluster.tags))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def soonest_valid_end(app: Application | None, now: datetime) -> datetime | None:
    return min((p.end for p in (app.passwords if app else ()) if p.end is not None and p.end > now), default=None)


# ------------------------------------------------------------------------------------------ the use case


CREDENTIAL, MIGRATION = "credential", "migration"  # what a queued check decides again


@dataclass(frozen=True)
class CredentialCheck:
    """A credential-checks queue message: decide a cluster's proactive rotation again when its window opens."""

    cluster: ClusterId
    due: datetime
    traceparent: str | None = None
    kind: str = CREDENTIAL  # or MIGRATION: the cluster's move to managed identity is decided again

    def to_message(self) -> dict[str, str]:
        body = {"clusterResourceId": str(self.cluster), "due": self.due.isoformat()}
        if self.kind != CREDENTIAL:
            body["kind"] = self.kind
        return messages.traced(body, self.traceparent)

    @classmethod
    def from_message(cls, body: str | bytes) -> CredentialCheck:
        check = messages.decode(body, most=MAX_CHECK_MESSAGE, code="InvalidCheckMessage",
                                needs="clusterResourceId and due", build=lambda data: cls(
                                    ClusterId.parse(data["clusterResourceId"]), datetime.fromisoformat(data["due"]),
                                    messages.valid_traceparent(data.get("traceparent")),
                                    data.get("kind", CREDENTIAL)))
        if check.kind not in (CREDENTIAL, MIGRATION):
            raise InvalidInputError("kind must be credential or migration", code="InvalidCheckMessage")
        if check.due.tzinfo is None:
            raise InvalidInputError("due must carry a time zone", code="InvalidCheckMessage")
        return check


class FleetHealth:
    def __init__(self, *, inventory: ClusterInventory, directory: Directory, reconciler: Reconciler,
                 admission: Admission, checks: WorkQueue, guardrails: Guardrails, subscriptions: Sequence[str],
                 outcomes: OutcomePublisher | None = None,
                 migrate: Callable[[ClusterId], Decision] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._inventory, self._directory, self._reconciler = inventory, directory, reconciler
        self._admission = admission
        self._checks, self._outcomes = checks, outcomes
        self._migrate = migrate  # the move to managed identity, when the deployment enables it
        self._guardrails = guardrails
        self._subscriptions = tuple(subscriptions)
        self._clock = clock
        self._recent = SharedScan(self.report, max_age=REPORT_MAX_AGE, clock=clock)

    def recent_report(self) -> RecentReport:
        """The report for a reader: kept for `REPORT_MAX_AGE`, one scan for all who ask meanwhile (module docstring)."""
        return self._recent.get()

    def report(self) -> FleetReport:
        """Every service-principal and managed-identity cluster in scope, judged; nothing is written."""
        now = self._clock()
        clusters: list[tuple[ClusterId, ClusterInfo]] = []
        app_ids: set[str] = set()

        def applications() -> Iterator[str]:
            # Lazy on both sides: the directory reads the first page's applications while Resource Graph serves (or
            # its quota holds back) the next page.
            for cid, c in _parsed(self._inventory.list_clusters(self._subscriptions)):
                if self._guardrails.scope.refusal(cid) is not None:
                    continue
                clusters.append((cid, c))
                if not c.uses_managed_identity and (app_id := c.client_id.lower()) not in app_ids:
                    app_ids.add(app_id)
                    yield app_id

        listing = applications()
        apps = self._directory.get_applications_by_app_ids(listing)
        for _ in listing:  # every cluster is judged, even if a directory stopped taking ids early
            pass
        within = self._guardrails.rotation.within
        judged = tuple(judge(c, apps.get(c.client_id.lower(), UNREAD), now, within, cluster_id=cid)
                       for cid, c in clusters)
        report = FleetReport(now, within.days, judged, len(app_ids))
        # Telemetry's health states are snake_case, as OpenTelemetry attribute values are.
        telemetry.record_fleet_health({_snake(k): n for k, n in report.counts.items()},
                                      report.days_to_nearest_expiry)
        return report

    def check(self) -> FleetReport:
        """The report, then act on it: remediate what is expired now, rotate opted-in clusters whose secret ends
        soon inside their window (or queue a check for when it opens). Each is a hint the reconcile decides."""
        report = self.report()
        self._recent.keep(report)
        acted = []
        for found in report.clusters:
            try:
                decision = self._act(found)
            except RemediationError as err:  # one cluster's trouble does not stop the fleet's check
                log.error("health check of %s: %s", found.cluster.name, err)
                acted.append(replace(found, action={"code": err.code, "message": str(err), "act": "none",
                                                    "remediationId": None}))
                continue
            acted.append(found if decision is None else _with_action(found, decision))
        checked = FleetReport(report.at, report.within_days, tuple(acted), report.applications)
        self._announce(checked)
        return checked

    def _announce(self, report: FleetReport) -> None:
        """An event per cluster expired now or expiring, for other teams (the same cluster, application and end date
        give the same event id every day, so a subscriber can drop repeats). A failed publish is logged."""
        if self._outcomes is None:
            return
        events = [_credential_event(c, report.at) for c in report.clusters
                  if c.health in (Health.EXPIRED, Health.EXPIRING) and c.app_id]
        try:
            for start in range(0, len(events), PUBLISH_BATCH):
                self._outcomes.publish(events[start:start + PUBLISH_BATCH])
        except RemediationError as err:
            log.warning("health check: %s credential event(s) not published: %s", len(events), err)

    def recheck(self, check: CredentialCheck) -> Decision:
        """A queued credential check: decided from the present, like the first time (and queued again if the
        window is still ahead, say when the message came early)."""
        if check.kind == MIGRATION:
            if self._migrate is None:  # queued before the deployment turned the move off: nothing to do
                return Decision(Hint(check.cluster, Source.MIGRATION), Verdict(
                    Act.NONE, "MigrationDisabled", "REMEDIATOR_MIGRATE is off: the move is planned, never made"))
            decision = self._migrate(check.cluster)
        else:
            decision = self._decide(Hint(check.cluster, Source.ROTATION))
        self._schedule(check.cluster, decision, kind=check.kind)
        return decision

    def _act(self, found: ClusterHealth) -> Decision | None:
        if found.health is Health.EXPIRED:
            return self._decide(Hint(found.cluster, Source.SCAN))
        if found.health is Health.EXPIRING and self._guardrails.rotation.opt_in.on(found.tags):
            decision = self._decide(Hint(found.cluster, Source.ROTATION))
            self._schedule(found.cluster, decision)
            return decision
        if self._migrate is not None and self._guardrails.migration.opt_in.on(found.tags) and found.health in (
                Health.HEALTHY, Health.EXPIRING):
            decision = self._migrate(found.cluster)
            self._schedule(found.cluster, decision, kind=MIGRATION)
            return decision
        return None

    def _decide(self, hint: Hint) -> Decision:
        return self._admission.admit(self._reconciler.decide(hint))

    def _schedule(self, cluster: ClusterId, decision: Decision, *, kind: str = CREDENTIAL) -> None:
        opens = decision.verdict.next_chance
        now = self._clock()
        if opens is None or not now < opens <= now + SCHEDULE_HORIZON:
            return
        self._checks.send(CredentialCheck(cluster, opens, telemetry.traceparent(), kind).to_message(),
                          delay_seconds=(opens - now).total_seconds())
        log.info("credential check of %s queued for %s, when its maintenance window opens", cluster.name,
                 opens.isoformat())


def _parsed(listed: Iterable[ClusterInfo]) -> Iterator[tuple[ClusterId, ClusterInfo]]:
    """The listed clusters with their ids, as they come; one whose id the remediator refuses (a name outside the
    ASCII subset of ARM's rules it takes) is logged and left out, not the whole report."""
    for info in listed:
        try:
            cluster_id = ClusterId.parse(info.id)
        except InvalidInputError as err:
            log.warning("health: cluster %s left out: %s", info.id[:300], err)
            continue
        yield cluster_id, info


def _credential_event(found: ClusterHealth, at: datetime) -> OutcomeEvent:
    if found.health is Health.EXPIRED:
        return credential_expired(str(found.cluster), application_id=found.app_id or "",
                                  credential=Credential.SERVICE_PRINCIPAL.value, ended_at=found.ends_at, detected_at=at,
                                  remediation_id=(found.action or {}).get("remediationId"))
    assert found.ends_at is not None
    return credential_expiring(str(found.cluster), application_id=found.app_id or "",
                               credential=Credential.SERVICE_PRINCIPAL.value, ends_at=found.ends_at, detected_at=at)


def _with_action(found: ClusterHealth, decision: Decision) -> ClusterHealth:
    return replace(found, action={"code": decision.code, "message": decision.verdict.message,
                                  "act": decision.verdict.act.value,
                                  "remediationId": decision.remediation.id if decision.remediation else None})

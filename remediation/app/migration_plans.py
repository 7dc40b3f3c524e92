"""The plan to move service-principal clusters to managed identity (remediation/decide/migration.py), as a use case:
one cluster's (`GET /api/clusters/migration-plan`), the fleet's from the health report (`GET /api/migration-plans`),
and the operator's own `python -m remediation migrate plan` (remediation/cli/migrate.py), which shares `plan_clusters`.

Guarantees:
- Reads only: the cluster (managedClusters/read), its service principal (Graph), the principal's role assignments in
  the cluster's subscription and in every subscription its network names (roleAssignments/read), the cluster's
  maintenance configurations. Nothing is written, to Azure or to the remediator's records.
- A cluster outside the deployment's scope is refused before anything is read (ForbiddenError with the scope's
  reason code: OutOfScope, DeniedSubscription, DeniedResourceGroup); a missing one is NotFoundError ClusterNotFound.
- What ARM refuses to show the reader (403) is named in the plan, never a failure (decide/migration.py's `gather`).
- The fleet's plans are the health report's service-principal clusters (the cached scan `GET /api/health` serves):
  no scan of its own. A cluster that fails permanently is listed in `errors` and the others are still planned; a
  transient failure (throttling, an outage) fails the whole answer, so the caller retries it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from remediation.auth import ForbiddenError
from remediation.decide.guardrails import Guardrails
from remediation.decide.migration import (
    BLOCKED,
    NOT_APPLICABLE,
    READY,
    ClusterDocuments,
    MaintenanceReads,
    MigrationPlan,
    gather,
    plan_migration,
)
from remediation.errors import PermanentError
from remediation.ids import ClusterId
from remediation.intake.health import FleetHealth, Health, RecentReport
from remediation.model import ServicePrincipal
from remediation.ports import RoleAssignments

log = logging.getLogger(__name__)

# Clusters planned at once: each plan is 3-5 reads, one after the other; ARM's read quota is per identity and
# subscription (thousands an hour), so a few at a time keep a fleet's answer short without spending it.
MAX_PARALLEL = 8
STATUSES = (READY, BLOCKED, NOT_APPLICABLE)


class ServicePrincipals(Protocol):
    def get_service_principal(self, app_id: str) -> ServicePrincipal | None: ...


@dataclass(frozen=True)
class PlanReads:
    """What a plan reads, and with whose sign-in: the remediator's identity (bootstrap) or the operator's (CLI)."""

    clusters: ClusterDocuments  # the cluster's ARM body (ArmClusterDocuments)
    maintenance: MaintenanceReads  # its planned maintenance (AksManagedClusters)
    roles: RoleAssignments  # the service principal's role assignments (ArmRoleAssignments)
    directory: ServicePrincipals  # the service principal's object id (GraphDirectory)


@dataclass(frozen=True)
class PlanFailure:
    """A cluster of the fleet that could not be planned (it was deleted since the report, its body is malformed)."""

    cluster: str
    code: str
    message: str

    def view(self) -> dict[str, str]:
        return {"cluster": self.cluster, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class MigrationPlans:
    """The outcome: the plans, when they were made and how long it took; what could not be planned; the health report
    they were taken from, if any. Never a secret; nothing was written."""

    plans: tuple[MigrationPlan, ...]
    at: datetime
    seconds: float
    failures: tuple[PlanFailure, ...] = ()
    report: RecentReport | None = None

    @property
    def counts(self) -> dict[str, int]:
        return {status: sum(1 for p in self.plans if p.status == status) for status in STATUSES}

    def view(self) -> dict[str, Any]:
        body: dict[str, Any] = {"value": [p.view() for p in self.plans], "counts": self.counts,
                                "generatedAt": self.at.isoformat(), "seconds": round(self.seconds, 3)}
        if self.report is not None:  # the fleet's: taken from this health report
            body["healthReport"] = {"generatedAt": self.report.report.at.isoformat(),
                                    "ageSeconds": int(self.report.age.total_seconds())}
        if self.report is not None or self.failures:
            body["errors"] = [f.view() for f in self.failures]
        return {**body, "writes": 0}


def plan_clusters(clusters: Sequence[ClusterId], reads: PlanReads, guardrails: Guardrails, *,
                  retire_after: timedelta, identity_group: str | None = None, now: datetime | None = None,
                  keep_going: bool = False) -> MigrationPlans:
    """Every cluster's plan, in the order given, `MAX_PARALLEL` at a time. An error is raised (the first in that
    order), unless `keep_going`: then a permanent one is recorded as a failure of that cluster and a transient one
    is still raised."""
    started = time.monotonic()
    moment = now or datetime.now(UTC)

    @functools.cache  # clusters sharing one service principal look it up once
    def principal_of(app_id: str) -> str | None:
        found = reads.directory.get_service_principal(app_id)
        return found.object_id if found else None

    def plan(cluster: ClusterId) -> MigrationPlan | PlanFailure:
        try:
            present = gather(cluster, clusters=reads.clusters, maintenance=reads.maintenance, roles=reads.roles,
                             principal_of=principal_of)
        except PermanentError as err:
            if not keep_going:
                raise
            log.warning("no migration plan for %s: %s %s", cluster, err.code, err)
            return PlanFailure(str(cluster), err.code, str(err))
        return plan_migration(present, guardrails, now=moment, identity_group=identity_group,
                              retire_after=retire_after)

    with ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL, len(clusters)))) as pool:
        outcomes = list(pool.map(plan, clusters))
    return MigrationPlans(tuple(o for o in outcomes if isinstance(o, MigrationPlan)), moment,
                          time.monotonic() - started, tuple(o for o in outcomes if isinstance(o, PlanFailure)))


class MigrationPlanner:
    """The plans as the deployment sees them: its identity's reads, its guardrails and retirement grace, its scope."""

    def __init__(self, *, reads: PlanReads, health: FleetHealth, guardrails: Guardrails, retire_after: timedelta,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._reads, self._health = reads, health
        self._guardrails, self._retire_after = guardrails, retire_after
        self._clock = clock

    def plan(self, cluster: ClusterId) -> MigrationPlan:
        """One cluster's plan, read now. Raises ForbiddenError (out of scope, before any read), NotFoundError
        (ClusterNotFound), TransientError."""
        refusal = self._guardrails.scope.refusal(cluster)
        if refusal is not None:
            raise ForbiddenError(refusal[1], code=refusal[0])
        return plan_clusters([cluster], self._reads, self._guardrails, retire_after=self._retire_after,
                             now=self._clock()).plans[0]

    def plan_fleet(self, health: Collection[str] = ()) -> MigrationPlans:
        """The plan of every service-principal cluster of the health report (only those in the `health` states,
        when given); managed-identity clusters are skipped. Raises TransientError when the report or a read is
        transiently unavailable."""
        recent = self._health.recent_report()
        wanted = [c.cluster for c in recent.report.clusters if c.health is not Health.MANAGED_IDENTITY
                  and (not health or c.health.value in health)]
        planned = plan_clusters(wanted, self._reads, self._guardrails, retire_after=self._retire_after,
                                now=self._clock(), keep_going=True)
        return MigrationPlans(planned.plans, planned.at, planned.seconds, planned.failures, recent)

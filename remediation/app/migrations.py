"""The move to managed identity, done by the remediator (REMEDIATOR_MIGRATE=execute): one decision per cluster the
health check finds opted in, or per queued check when its window opens, from the present.

`consider` reads the cheap facts first (the cluster, its group's tags, the application's remediations, the cluster's
failed migrations in the breaker's window), runs the gate's first checks (remediation/decide/migration_gate.py), and
only then reads the plan (role assignments, maintenance configurations); the gate decides, the admission starts the
migration under the application's claim (remediation/run/admission.py), and the decision log records why. The steps
are remediation/run/migration.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from remediation.app.migration_plans import PlanReads
from remediation.decide import migration_gate
from remediation.decide.guardrails import Guardrails
from remediation.decide.hints import Decision, Hint, Source
from remediation.decide.migration import MigrationPlan, gather, plan_migration
from remediation.errors import NotFoundError
from remediation.ids import ClusterId
from remediation.model import Status
from remediation.ports import ManagedClusters, RemediationStore, ResourceGroups
from remediation.run.admission import Admission

RECENT = 20  # remediations of an application / cluster looked at (the breaker's window is a day)


class Migrations:
    def __init__(self, *, clusters: ManagedClusters, resource_groups: ResourceGroups, store: RemediationStore,
                 admission: Admission, plans: PlanReads, guardrails: Guardrails, retire_after: timedelta,
                 clock: Callable[[], datetime]) -> None:
        self._clusters, self._groups, self._store, self._admission = clusters, resource_groups, store, admission
        self._plans, self._guardrails, self._retire_after, self._clock = plans, guardrails, retire_after, clock

    def consider(self, cluster: ClusterId) -> Decision:
        now = self._clock()
        facts = self._facts(cluster, now)
        verdict = migration_gate.first_refusal(facts, self._guardrails, now, migration_gate.BEFORE_PLAN)
        if verdict is None:
            facts = replace(facts, plan=self._plan(cluster, now))
            verdict = migration_gate.decide(facts, self._guardrails, now)
        decision = Decision(Hint(cluster, Source.MIGRATION), verdict, at=now)
        window_end = facts.plan.window.get("closes") if facts.plan is not None else None
        return self._admission.admit_migration(decision, cluster=facts.cluster, window_end=window_end)

    def _facts(self, cluster: ClusterId, now: datetime) -> migration_gate.MigrationFacts:
        try:
            info = self._clusters.get_cluster(cluster)
        except NotFoundError:
            return migration_gate.MigrationFacts(None, {}, None, 0, None)
        if not self._guardrails.migration.enabled or info.uses_managed_identity:
            return migration_gate.MigrationFacts(info, {}, None, 0, None)
        try:
            tags = self._groups.get_tags(cluster.subscription_id, cluster.resource_group)
        except NotFoundError:
            tags = {}
        rotations = self._store.list_for_application(info.client_id.lower(), limit=RECENT)
        active = next((r for r in rotations if r.takes_claim and not r.status.terminal), None)
        since = (now - self._guardrails.breaker_window).isoformat()
        failed = sum(1 for r in self._store.list_for_cluster(cluster.key, limit=RECENT)
                     if r.migrate and r.status is Status.FAILED and (r.finished_at or "") >= since)
        return migration_gate.MigrationFacts(info, tags, active, failed, None)

    def _plan(self, cluster: ClusterId, now: datetime) -> MigrationPlan:
        reads = self._plans
        present = gather(cluster, clusters=reads.clusters, maintenance=reads.maintenance, roles=reads.roles,
                         principal_of=lambda app_id: getattr(reads.directory.get_service_principal(app_id),
                                                             "object_id", None))
        return plan_migration(present, self._guardrails, now=now,
                              identity_group=self._guardrails.migration.identity_group or None,
                              retire_after=self._retire_after)


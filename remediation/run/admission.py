"""Admission: the one stage that acts on a decision (remediation/decide/reconcile.py decides, and only reads).

For a decision to start, it records the incident insert-if-absent (of all the hints of one incident, only the first
recorder goes on), builds the remediation record, claims the application and creates the record in one write, and
sends the first work message; for one to join or resume, it adds the cluster to the running rotation (or takes over
its lost chain); and for every decision but a wait, it writes the decision log. Nothing else starts, joins or resumes
a remediation.

- At most one rotation per application is active, so at most one per cluster: a table claim on the application,
  written in one transaction with the record it names (insert-if-absent, or replacing a finished holder's claim by
  its ETag), so no worker ever sees a claim whose record is still to come. A cluster of that application that breaks
  meanwhile joins it.
- A join is written ETag-checked from outside the chain: a worker mid-run then finds the record changed and stops,
  and the message sent here carries the chain on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from remediation.decide.guardrails import Guardrails, Mode, Replacement
from remediation.decide.hints import INCIDENT_SOURCES, Act, Decision, Facts, Hint, Source, Verdict
from remediation.errors import ConcurrencyError, ConflictError, NotFoundError, TransientError
from remediation.model import ClusterInfo, Status
from remediation.ports import IncidentStore, RemediationStore
from remediation.record import MigrationState, Remediation, Target, new_remediation_id, observe_plan_id
from remediation.run.chain import WorkChain
from remediation.run.procedures import step_order

log = logging.getLogger(__name__)

# What a remediation started without a confirmed failure is about, by the hint that started it.
_UNCONFIRMED_KIND = {Source.ROTATION: "expiring_secret", Source.MANUAL: "requested"}


class Admission:
    def __init__(self, *, incidents: IncidentStore, store: RemediationStore, chain: WorkChain,
                 guardrails: Guardrails, clock: Callable[[], datetime]) -> None:
        self._incidents, self._store, self._chain = incidents, store, chain
        self._guardrails = guardrails
        self._clock = clock

    def admit(self, decision: Decision) -> Decision:
        """Act on the decision (start, join, resume, or nothing) and record it; the decision as it ended, with the
        remediation it led to. A decision to wait changes nothing and is not recorded."""
        verdict, hint, facts = decision.verdict, decision.hint, decision.facts
        if verdict.act is Act.WAIT:
            return decision
        if verdict.act in (Act.JOIN, Act.RESUME, Act.START):
            assert facts is not None  # the decider reads them for every decision that acts
        if verdict.act is Act.JOIN:
            decision = replace(decision, remediation=self.join(facts.active, hint, not_after=facts.window_end))
        elif verdict.act is Act.RESUME:
            resumed = self._chain.resume(facts.active)
            decision = replace(decision, remediation=self.join(resumed, hint, not_after=facts.window_end))
        elif verdict.act is Act.START:
            decision = self._start(decision, facts)
        self._incidents.record_decision(decision.view())
        log.info("%s hint for %s: %s (%s)%s", hint.source.value, hint.cluster.name, decision.verdict.code,
                 decision.verdict.message, f", remediation {decision.remediation.id}" if decision.remediation else "")
        return decision

    def join(self, remediation: Remediation, hint: Hint, *, not_after: str | None, attempts: int = 3) -> Remediation:
        """Add the hint's cluster to the rotation of its application, and wake the rotation with a new generation."""
        cluster = hint.cluster
        for _ in range(attempts):
            if not remediation.rejoin(cluster, joined_by=hint.joined_by, not_after=not_after,
                                      order=step_order(remediation)):
                return remediation
            try:
                log.info("cluster %s joins rotation %s", cluster.name, remediation.id)
                return self._chain.schedule(remediation, 0, "ClusterJoined", f"{cluster.name} joined the rotation")
            except ConcurrencyError:
                remediation = self._store.get(remediation.id)
        raise TransientError(f"rotation {remediation.id} kept changing while {cluster.name} joined it; try again")

    def admit_migration(self, decision: Decision, *, cluster: ClusterInfo | None, window_end: str | None
                        ) -> Decision:
        """Start the move the gate decided (remediation/decide/migration_gate.py) under the application's claim, so
        it never runs beside a rotation of the same application; record the decision either way."""
        if decision.verdict.act is Act.START:
            assert cluster is not None  # the gate starts nothing for a cluster it could not read
            stamp = decision.at.isoformat()
            remediation = Remediation(
                id=new_remediation_id(), cluster_id=str(decision.hint.cluster), dry_run=False,
                source=Source.MIGRATION.value, status=Status.ACCEPTED, created_at=stamp, updated_at=stamp,
                reason="accepted", cause=f"{decision.verdict.code}: {decision.verdict.message}"[:1000],
                cause_kind="migration", mode=self._guardrails.mode.value, migrate=True,
                client_id=cluster.client_id.lower(), targets=[Target(str(decision.hint.cluster), joined_by="hint")],
                migration=MigrationState(window_end=window_end))
            started, created = self._create(remediation)
            decision = replace(decision, remediation=started, created=created) if created else replace(
                decision, remediation=started, verdict=Verdict(Act.NONE, "ApplicationBusy", f"remediation {started.id}"
                                                               " of the cluster's application started meanwhile"))
        self._incidents.record_decision(decision.view())
        log.info("migration hint for %s: %s (%s)", decision.hint.cluster.name, decision.verdict.code,
                 decision.verdict.message)
        return decision

    # ----- starting ---------------------------------------------------------------------------

    def _start(self, decision: Decision, facts: Facts) -> Decision:
        hint, verdict, now = decision.hint, decision.verdict, decision.at
        observing = self._guardrails.mode is Mode.OBSERVE and not hint.dry_run and not verdict.replace
        remediation_id = observe_plan_id(facts.app_id) if observing and facts.app_id else new_remediation_id()
        key = hint.incident_key if hint.source in INCIDENT_SOURCES else None
        # Recorded before anything acts: of all the hints of one incident, only the first recorder goes on.
        if key and not self._incidents.record_incident(key, {"remediation_id": remediation_id,
                                                             "correlation_id": hint.correlation_id,
                                                             "cluster_id": str(hint.cluster), "code": verdict.code}):
            earlier = (self._incidents.get_incident(key) or {}).get("remediation_id")
            try:
                return replace(decision, verdict=Verdict(Act.NONE, "DuplicateIncident", f"incident"
                                                         f" {hint.correlation_id} is being acted on (remediation"
                                                         f" {earlier})", verdict.kind),
                               remediation=self._store.get(earlier or ""))
            except NotFoundError:
                remediation_id = earlier or remediation_id  # its recorder died before starting it: finish the job
        remediation, created = self._create(self._record(remediation_id, decision, facts))
        if not created:
            joined = Verdict(Act.JOIN, "JoinedRunning", f"rotation {remediation.id} of the cluster's application"
                             " started meanwhile: the cluster joins it", verdict.kind)
            return replace(decision, verdict=joined, remediation=self.join(remediation, hint,
                                                                           not_after=facts.window_end))
        if remediation.observe:
            verdict = replace(verdict, message=f"{verdict.message} (observe mode: planned, nothing written)")
        return replace(decision, verdict=verdict, remediation=remediation, created=True, at=now)

    def _record(self, remediation_id: str, decision: Decision, facts: Facts) -> Remediation:
        hint, verdict = decision.hint, decision.verdict
        cluster, app = facts.cluster, facts.application
        assert cluster is not None and (app is not None or verdict.replace)
        stamp = decision.at.isoformat()
        observe = self._guardrails.mode is Mode.OBSERVE
        # A replacement is only planned unless the operators chose to replace: it is recorded as a dry run.
        plan_only = verdict.replace and self._guardrails.replacement is Replacement.PLAN
        return Remediation(
            id=remediation_id, cluster_id=str(hint.cluster), dry_run=hint.dry_run or plan_only,
            source=hint.source.value, status=Status.ACCEPTED, created_at=stamp, updated_at=stamp, reason="accepted",
            cause=f"{verdict.code}: {verdict.message}"[:1000],
            cause_kind=verdict.kind.value if verdict.kind else _UNCONFIRMED_KIND.get(hint.source, "requested"),
            # A deleted application breaks every cluster using it, as every password ending does: all are moved.
            application_expired=verdict.replace or facts.every_password_ended,
            mode=Mode.OBSERVE.value if observe else Mode.REMEDIATE.value, correlation_id=hint.correlation_id,
            failed_at=hint.failed_at.isoformat() if hint.failed_at else None,
            credential=facts.credential.value, replace=verdict.replace,
            requested_by=hint.requested_by.view() if hint.requested_by else None,
            client_id=facts.app_id, app_object_id=app.object_id if app else None,
            old_key_ids=[p.key_id for p in app.passwords] if app else [],
            targets=[Target(str(hint.cluster), joined_by=hint.joined_by, not_after=facts.window_end)])

    def _create(self, remediation: Remediation) -> tuple[Remediation, bool]:
        """Record the remediation with its application's claim and send its first message: (it, True); or (the
        rotation that holds the claim, False).

        The claim and the record are one write (RemediationStore.create_claimed): two workers admitting the same
        application at once cannot both win, and a worker that sees a claim can read the record it names. A claim
        whose holder has finished (or names no record: a claim left by an older version) is taken over by its ETag.
        A start that died after its write finds its own claim and record and sends the first message again.
        """
        if remediation.is_observe_plan:
            return self._plan_in_place(remediation), True
        if not remediation.takes_claim:
            try:
                return self._accepted(self._store.create(remediation)), True
            except ConflictError:
                return self._accepted(self._store.get(remediation.id)), True
        key = remediation.claim_key
        for _ in range(3):
            claim = self._store.get_claim(key)
            if claim is not None:
                holder, _etag = claim
                if holder == remediation.id:
                    return self._accepted(self._store.get(holder)), True
                running = self._running(holder)
                if running is not None:
                    log.info("application %s already has active remediation %s", remediation.client_id, holder)
                    return running, False
            if self._store.create_claimed(remediation, key, replacing=claim[1] if claim else None):
                return self._accepted(remediation), True
        raise TransientError("the application's claim kept changing; try again")

    def _plan_in_place(self, remediation: Remediation) -> Remediation:
        """Observe mode keeps one current plan per application: the first hint creates it; a hint while it is being
        planned joins it (its discovery reads every cluster of the application anyway); a hint after it finished
        plans it again in place, under a new generation, so the record shows what a rotation would touch now."""
        try:
            return self._accepted(self._store.create(remediation))
        except ConflictError:
            current = self._store.get(remediation.id)
        if not current.status.terminal:
            return current
        remediation.created_at, remediation.etag = current.created_at, current.etag
        remediation.generation = current.generation + 1
        try:
            return self._accepted(self._store.save(remediation))
        except ConcurrencyError:
            return self._store.get(remediation.id)  # another worker re-planned it meanwhile

    def _accepted(self, remediation: Remediation) -> Remediation:
        self._chain.send(remediation)
        log.info("remediation %s accepted for %s (dry run: %s, source: %s)", remediation.id, remediation.cluster,
                 remediation.dry_run, remediation.source)
        return remediation

    def _running(self, remediation_id: str) -> Remediation | None:
        """The remediation, if it has not finished; None if it has, or if there is no such record."""
        try:
            found = self._store.get(remediation_id)
        except NotFoundError:
            return None
        return None if found.status.terminal else found

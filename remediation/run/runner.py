"""The small runner that owns a running remediation: its lease, its saves, its steps, its end.

Steps (remediation/run/rotation.py, replacement.py, plan.py) decide what to do next; the runner alone writes the
record while it runs and hands it to later messages (remediation/run/chain.py), so the rules that keep a remediation
single-threaded live here, in one place. It enforces each step's declared limits (remediation/run/procedures.py).
(Starting, joining and resuming on a hint are admission's: remediation/run/admission.py.)

- One invocation at a time holds the lease (an ETag-checked save). A duplicate of the current message that finds
  the lease held looks again when it runs out, in case the holder died.
- Every failure releases the lease: a transient one schedules a retry (honouring Retry-After), a permanent one fails
  the remediation with its reason, anything else is re-raised for the host to retry after the lease is released
  (and, after host.json's maxDequeueCount, the poison-queue trigger fails the remediation).
- A remediation that made no progress for longer than the lease plus its longest wait has lost its chain (a
  message lost, a send that failed): the timer's `resume_stalled` takes it over, and releases claims their finished
  holders left behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from remediation import telemetry
from remediation.alerts import REMEDIATION_FAILED
from remediation.decide.reconcile import Reconciler
from remediation.errors import ConcurrencyError, NotFoundError, PermanentError, RemediationError, TransientError
from remediation.model import Status
from remediation.outcomes import remediation_finished
from remediation.ports import (
    ClusterInventory,
    Directory,
    IncidentStore,
    ManagedClusters,
    OutcomePublisher,
    RemediationStore,
    ResourceGroups,
    RoleAssignments,
    SecretStore,
    SignIn,
)
from remediation.record import Remediation, TargetStatus
from remediation.run.chain import WorkChain, WorkItem
from remediation.run.procedures import procedure_of, step_order
from remediation.run.step import Done, MigrationPorts, Retry, StepConfig, StepContext, Stop, Wait, backoff

log = logging.getLogger(__name__)

MAX_TRANSIENT_FAILURES = 10
DEFAULT_STEP_CONFIG = StepConfig()
LEASE = DEFAULT_STEP_CONFIG.lease
STALLED_AFTER = DEFAULT_STEP_CONFIG.stalled_after


class RemediationRunner:
    def __init__(self, *, clusters: ManagedClusters, directory: Directory, vault: SecretStore, sign_in: SignIn,
                 resource_groups: ResourceGroups, incidents: IncidentStore, store: RemediationStore, chain: WorkChain,
                 roles: RoleAssignments | None = None, config: StepConfig = DEFAULT_STEP_CONFIG,
                 outcomes: OutcomePublisher | None = None, reconciler: Reconciler | None = None,
                 inventory: ClusterInventory | None = None, migration: MigrationPorts | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clusters, self._directory, self._vault, self._roles = clusters, directory, vault, roles
        self._reconciler, self._inventory, self._migration = reconciler, inventory, migration
        self._sign_in, self._resource_groups, self._incidents = sign_in, resource_groups, incidents
        self._store, self._chain = store, chain
        self._config = config
        self._outcomes = outcomes
        self._clock = clock

    def resume_stalled(self, *, limit: int = 100) -> list[Remediation]:
        """Resume every stalled remediation and release claims their finished holders left behind (a worker
        that died between the two saves, and whose message was lost). The timer calls this: lost messages
        cannot strand work, and no claim stays with a finished remediation."""
        resumed = []
        now = self._clock()
        for remediation in self._store.list_active(limit=limit):
            if remediation.stalled(now, self._config.stalled_after):
                remediation.lease_until = None
                try:
                    resumed.append(self._chain.resume(remediation))
                except ConcurrencyError:
                    continue  # it moved meanwhile: not stalled after all
        for claim_key, holder in self._store.list_claims(limit=limit):
            if self._finished_or_gone(holder):
                self._store.delete_claim(claim_key, holder)
        return resumed

    def _finished_or_gone(self, remediation_id: str) -> bool:
        try:
            return self._store.get(remediation_id).status.terminal
        except NotFoundError:
            return True

    # ----- running -----------------------------------------------------------------------------

    def advance(self, item: WorkItem) -> Remediation:
        """Run the remediation's next steps until it finishes or must wait.

        Raises only for trouble outside the remediation (storage, or an unexpected error, after
        releasing the lease); the remediation's own failures are recorded on it.
        """
        remediation = self._store.get(item.remediation_id)
        if remediation.status.terminal:
            log.info("remediation %s is already %s: message dropped", remediation.id, remediation.status.value)
            # A worker that died between finishing and releasing left the claim, or between finishing and telling
            # the outcome topic: the host's retry of its message releases the claim and publishes again (the same
            # event id, so a subscriber that saw it once drops it).
            self._release_claim(remediation)
            self._publish(remediation)
            return remediation
        if item.generation != remediation.generation:
            log.info("remediation %s: message of generation %s dropped (current %s)", remediation.id,
                     item.generation, remediation.generation)
            return remediation
        now = self._clock()
        if remediation.lease_until and datetime.fromisoformat(remediation.lease_until) > now:
            remaining = (datetime.fromisoformat(remediation.lease_until) - now).total_seconds()
            log.info("remediation %s is being worked on elsewhere; looking again in %.0fs", remediation.id, remaining)
            self._chain.send(remediation, delay_seconds=remaining)
            return remediation
        remediation.lease_until = (now + self._config.lease).isoformat()
        remediation.status = Status.RUNNING
        try:
            remediation = self._save(remediation)
        except ConcurrencyError:
            log.info("remediation %s was taken by another worker: message dropped", remediation.id)
            return self._store.get(remediation.id)
        try:
            return self._run(remediation)
        except ConcurrencyError:
            log.info("remediation %s was changed by another worker meanwhile: stopping here", remediation.id)
            return self._store.get(remediation.id)
        except TransientError as err:
            return self._after_transient(remediation, err)
        except PermanentError as err:
            return self._fail(remediation, err.code, str(err))
        except BaseException:
            self._release_after_crash(remediation)
            raise

    def fail_poisoned(self, item: WorkItem, dequeue_count: int | None = None) -> Remediation:
        """A work message the host gave up on: the chain is dead, so the remediation fails with the reason."""
        remediation = self._store.get(item.remediation_id)
        if remediation.status.terminal or item.generation != remediation.generation:
            return remediation
        tries = f" {dequeue_count} times" if dequeue_count else ""
        return self._fail(remediation, "PoisonMessage", f"the work message failed{tries} and was moved to the poison"
                                                        " queue: an outage or a bug; see the logs of those runs")

    def _run(self, remediation: Remediation) -> Remediation:
        context = StepContext(self._clusters, self._directory, self._vault, self._sign_in, self._resource_groups,
                              self._incidents, self._config, self._clock, checkpoint=self._save, roles=self._roles,
                              reconciler=self._reconciler, inventory=self._inventory, migration=self._migration)
        for spec in procedure_of(remediation):
            if remediation.done(spec.name):
                continue
            now = self._clock()
            progress = remediation.progress(spec.name)
            progress.started_at = progress.started_at or now.isoformat()
            progress.attempts += 1  # counted before the body runs: a later run knows this one went through it
            context.progress, context.limits = progress, spec.limits(self._config)
            outcome = spec.run(context, remediation)
            if isinstance(outcome, Done):
                remediation.mark(spec.name, outcome.code, outcome.detail, self._clock())
                remediation.transient_failures = 0
                remediation = self._save(remediation)
                log.info("remediation %s: %s done: %s (%s)", remediation.id, spec.name, outcome.code, outcome.detail)
            elif isinstance(outcome, Retry):
                remediation.undo_from(outcome.step, step_order(remediation))
                return self._schedule(remediation, outcome.seconds, outcome.code, outcome.detail)
            elif isinstance(outcome, Stop):
                remediation.mark(spec.name, outcome.code, outcome.detail, self._clock())
                return self._finish(remediation, f"{outcome.code}: {outcome.detail}")
            else:
                assert isinstance(outcome, Wait)
                waited = now - datetime.fromisoformat(progress.started_at)
                if context.limits.timeout is not None and waited > context.limits.timeout:
                    raise PermanentError(f"{spec.name} did not finish within {context.limits.timeout} (waited"
                                         f" {waited}; last: {outcome.code}: {outcome.detail})",
                                         code=context.limits.timed_out)
                progress.code, progress.detail = outcome.code, outcome.detail
                return self._schedule(remediation, outcome.seconds, outcome.code, outcome.detail)
        return self._finish(remediation)

    # ----- the record's transitions --------------------------------------------------------------

    def _schedule(self, remediation: Remediation, seconds: float, code: str, detail: str) -> Remediation:
        return self._chain.schedule(remediation, seconds, code, detail)

    def _after_transient(self, remediation: Remediation, err: TransientError) -> Remediation:
        remediation.transient_failures += 1
        if remediation.transient_failures > MAX_TRANSIENT_FAILURES:
            return self._fail(remediation, "TooManyTransientFailures",
                              f"gave up after {MAX_TRANSIENT_FAILURES} transient failures; last: {err}")
        delay = err.retry_after if err.retry_after is not None else backoff(
            self._config.retry_delay_seconds, remediation.transient_failures)
        log.warning("remediation %s: transient failure (%s), retrying in %ss: %s", remediation.id, err.code, delay, err)
        try:
            return self._schedule(remediation, delay, err.code, f"transient failure, will retry: {err}")
        except ConcurrencyError:
            return self._store.get(remediation.id)

    def _finish(self, remediation: Remediation, reason: str | None = None) -> Remediation:
        remediation.status = Status.PLANNED if remediation.dry_run or remediation.observe else Status.SUCCEEDED
        remediation.reason = reason or _outcome(remediation)
        remediation.lease_until = None
        remediation.finished_at = self._clock().isoformat()
        remediation = self._save(remediation)
        self._release_claim(remediation)
        log.info("remediation %s %s", remediation.id, remediation.status.value.lower())
        self._announce(remediation)
        return remediation

    def _fail(self, remediation: Remediation, code: str, message: str) -> Remediation:
        step = next((n for n in step_order(remediation) if not remediation.done(n)), "")
        remediation.status = Status.FAILED
        remediation.reason = message
        remediation.error = {"code": code, "message": message, "step": step}
        remediation.lease_until = None
        remediation.finished_at = self._clock().isoformat()
        try:
            remediation = self._save(remediation)
        except ConcurrencyError:
            return self._store.get(remediation.id)
        self._release_claim(remediation)
        # One line per failed remediation, with a fixed marker: infra/'s alert rule searches for it.
        log.error("%s: remediation %s failed at %s: %s: %s", REMEDIATION_FAILED, remediation.id, step, code, message)
        self._announce(remediation)
        return remediation

    def _announce(self, remediation: Remediation) -> None:
        """Tell the world a remediation finished: its metrics, and an outcome event for other teams. After the record
        is saved, so both describe what is on record. A publish that fails is logged (the record and the remediator's
        own alerts stay the truth); a worker that dies before it publishes leaves that to the message's retry."""
        failed_at = datetime.fromisoformat(remediation.failed_at) if remediation.failed_at else None
        telemetry.record_remediation_finished(remediation, failed_at=failed_at)
        self._publish(remediation)

    def _publish(self, remediation: Remediation) -> None:
        if self._outcomes is None:
            return
        try:
            self._outcomes.publish([remediation_finished(remediation)])
        except RemediationError as err:
            log.warning("remediation %s: its outcome event was not published: %s", remediation.id, err)

    def _release_after_crash(self, remediation: Remediation) -> None:
        """An unexpected error: free the lease so the host's retry of this message can run at once."""
        try:
            remediation.lease_until = None
            self._save(remediation)
        except Exception:  # noqa: BLE001 - already failing; the lease then simply runs out
            log.exception("remediation %s: could not release the lease", remediation.id)

    def _save(self, remediation: Remediation) -> Remediation:
        return self._chain.save(remediation)

    # ----- the application claim -----------------------------------------------------------------

    def _release_claim(self, remediation: Remediation) -> None:
        if remediation.takes_claim:
            self._store.delete_claim(remediation.claim_key, remediation.id)


def _outcome(remediation: Remediation) -> str:
    if remediation.dry_run or remediation.observe:
        return "planned (observe mode)" if remediation.observe else "dry run planned"
    if remediation.migrate:
        return f"moved to managed identity and verified; {remediation.steps['retire_old_secret'].detail}" \
            if remediation.done("retire_old_secret") else "moved to managed identity and verified"
    counts = {s: sum(1 for t in remediation.targets if t.status is s) for s in TargetStatus}
    skipped = sorted({t.code for t in remediation.targets if t.status is TargetStatus.SKIPPED})
    return (f"{counts[TargetStatus.VERIFIED]} cluster(s) reset and verified" +
            (f", {counts[TargetStatus.SKIPPED]} skipped ({', '.join(skipped)})" if skipped else ""))

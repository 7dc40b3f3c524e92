"""The small runner that owns a remediation's lease, saving, queue messages and generation.

Steps (remediation/run/steps.py) decide; the runner alone writes the record and sends work
messages, so the rules that keep a remediation single-threaded live here, in one place:

- A work message carries the remediation id and the generation it was sent for. A message
  whose generation is not the record's is a duplicate or a leftover: dropped. Every message
  the runner sends follows a save that raised the generation, so chains never fork.
- One invocation at a time holds the lease (an ETag-checked save). A duplicate of the current
  message that finds the lease held looks again when it runs out, in case the holder died.
- Every failure releases the lease: a transient one schedules a retry (honouring Retry-After),
  a permanent one fails the remediation with its reason, anything else is re-raised for the
  host to retry after the lease is released (and, after host.json's maxDequeueCount, the
  poison-queue trigger fails the remediation).
- A remediation that made no progress for longer than the lease plus its longest wait has
  lost its chain (a message lost, a send that failed): `resume` takes it over.
- At most one rotation per application is active, so at most one per cluster: a table claim on the
  application, written in one transaction with the record it names (insert-if-absent, or replacing a
  finished holder's claim by its ETag), so no worker ever sees a claim whose record is still to come.
  A cluster of that application that breaks meanwhile joins it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from remediation import telemetry
from remediation.alerts import REMEDIATION_FAILED
from remediation.errors import (
    ConcurrencyError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermanentError,
    RemediationError,
    TransientError,
)
from remediation.ids import ClusterId
from remediation.messages import traced, valid_traceparent
from remediation.model import Status
from remediation.outcomes import remediation_finished
from remediation.ports import (
    Directory,
    IncidentStore,
    ManagedClusters,
    OutcomePublisher,
    RemediationStore,
    ResourceGroups,
    RoleAssignments,
    SecretStore,
    SignIn,
    WorkQueue,
)
from remediation.record import Remediation, Target, TargetStatus
from remediation.run.procedures import steps_of
from remediation.run.steps import (
    MAX_DELAY_SECONDS,
    Done,
    Retry,
    StepConfig,
    StepContext,
    Stop,
    Wait,
    backoff,
)

log = logging.getLogger(__name__)

MAX_TRANSIENT_FAILURES = 10
MAX_MESSAGE_BYTES = 1024
DEFAULT_STEP_CONFIG = StepConfig()
LEASE = DEFAULT_STEP_CONFIG.lease
STALLED_AFTER = DEFAULT_STEP_CONFIG.stalled_after


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


@dataclass(frozen=True)
class Submission:
    remediation: Remediation
    created: bool


class RemediationRunner:
    def __init__(self, *, clusters: ManagedClusters, directory: Directory, vault: SecretStore, sign_in: SignIn,
                 resource_groups: ResourceGroups, ledger: IncidentStore, store: RemediationStore, queue: WorkQueue,
                 roles: RoleAssignments | None = None, config: StepConfig = DEFAULT_STEP_CONFIG,
                 outcomes: OutcomePublisher | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clusters, self._directory, self._vault, self._roles = clusters, directory, vault, roles
        self._sign_in, self._resource_groups, self._ledger = sign_in, resource_groups, ledger
        self._store, self._queue = store, queue
        self._config = config
        self._outcomes = outcomes
        self._clock = clock

    # ----- starting and resuming --------------------------------------------------------------

    def start(self, remediation: Remediation) -> Submission:
        """Record the remediation with its application's claim and send its first message; or join the rotation
        that holds the claim.

        The claim and the record are one write (Store.create_claimed): two workers admitting the same application at
        once cannot both win, and a worker that sees a claim can read the record it names. A claim whose holder has
        finished (or names no record: a claim left by an older version) is taken over by its ETag. A start that
        died after its write finds its own claim and record and sends the first message again.
        """
        if not claims(remediation):
            try:
                return self._accepted(self._store.create(remediation))
            except ConflictError:
                return self._accepted(self._store.get(remediation.id))
        key = claim_key(remediation)
        for _ in range(3):
            claim = self._store.get_claim(key)
            if claim is not None:
                holder, etag = claim
                if holder == remediation.id:
                    return self._accepted(self._store.get(holder))
                running = self._running(holder)
                if running is not None:
                    log.info("cluster %s already has active remediation %s", remediation.cluster, holder)
                    return Submission(running, created=False)
            if self._store.create_claimed(remediation, key, replacing=claim[1] if claim else None):
                return self._accepted(remediation)
        raise TransientError("the application's claim kept changing; try again")

    def _accepted(self, remediation: Remediation) -> Submission:
        self._queue.send(WorkItem(remediation.id, remediation.generation, telemetry.traceparent()).to_message())
        log.info("remediation %s accepted for %s (dry run: %s, source: %s)", remediation.id, remediation.cluster,
                 remediation.dry_run, remediation.source)
        return Submission(remediation, created=True)

    def _running(self, remediation_id: str) -> Remediation | None:
        """The remediation, if it has not finished; None if it has, or if there is no such record."""
        try:
            found = self._store.get(remediation_id)
        except NotFoundError:
            return None
        return None if found.status.terminal else found

    def join(self, remediation: Remediation, cluster: ClusterId, *, joined_by: str = "hint",
             not_after: str | None = None, attempts: int = 3) -> Remediation:
        """Add a cluster of the rotation's application that broke meanwhile: its reset joins the fan-out (the
        apply and retire steps run again) and the rotation is woken with a new generation.

        Written ETag-checked from outside the chain: a worker mid-run then finds the record changed and stops,
        and the message sent here carries the chain on."""
        for _ in range(attempts):
            target = remediation.target(cluster)
            if remediation.status.terminal or (target and not target.status.terminal):
                return remediation
            if target:  # it was moved, skipped or failed earlier in this rotation, and has broken since: again
                target.status, target.code, target.detail = TargetStatus.PENDING, "Rejoined", "a new failure"
                target.reset_attempts, target.reset_started_at, target.reset_status_url = 0, None, None
                target.not_before, target.joined_by, target.not_after = None, joined_by, not_after
            else:
                remediation.targets.append(Target(str(cluster), joined_by=joined_by, not_after=not_after))
            order = tuple(name for name, _ in steps_of(remediation))
            if remediation.done("apply_to_clusters"):
                remediation.undo_from("apply_to_clusters", order)
            remediation.lease_until = None
            try:
                log.info("cluster %s joins rotation %s", cluster.name, remediation.id)
                return self._schedule(remediation, 0, "ClusterJoined", f"{cluster.name} joined the rotation")
            except ConcurrencyError:
                remediation = self._store.get(remediation.id)
        raise TransientError(f"rotation {remediation.id} kept changing while {cluster.name} joined it; try again")

    def stalled(self, remediation: Remediation) -> bool:
        """Not finished and not changed for longer than any live chain leaves it alone."""
        updated = datetime.fromisoformat(remediation.updated_at)
        return not remediation.status.terminal and self._clock() - updated > self._config.stalled_after

    def resume(self, remediation: Remediation) -> Remediation:
        """Take over a stalled remediation: a new generation (so any old message is dropped) and a message."""
        remediation.lease_until = None
        log.warning("remediation %s made no progress since %s: resuming it", remediation.id, remediation.updated_at)
        return self._schedule(remediation, 0, "Resumed", "no progress for too long: the work chain was taken over")

    def resume_stalled(self, *, limit: int = 100) -> list[Remediation]:
        """Resume every stalled remediation and release claims their finished holders left behind (a worker
        that died between the two saves, and whose message was lost). The timer calls this: lost messages
        cannot strand work, and no claim stays with a finished remediation."""
        resumed = []
        for remediation in self._store.list_active(limit=limit):
            if self.stalled(remediation):
                try:
                    resumed.append(self.resume(remediation))
                except ConcurrencyError:
                    continue  # it moved meanwhile: not stalled after all
        for cluster_key, holder in self._store.list_claims(limit=limit):
            if self._running(holder) is None:
                self._store.delete_claim(cluster_key, holder)
        return resumed

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
            self._queue.send(item.to_message(), delay_seconds=remaining)
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
                              self._ledger, self._config, self._clock, checkpoint=self._save, roles=self._roles)
        steps = steps_of(remediation)
        for name, step in steps:
            if remediation.done(name):
                continue
            outcome = step(context, remediation)
            if isinstance(outcome, Done):
                remediation.mark(name, outcome.code, outcome.detail, self._clock())
                remediation.transient_failures = 0
                remediation = self._save(remediation)
                log.info("remediation %s: %s done: %s (%s)", remediation.id, name, outcome.code, outcome.detail)
            elif isinstance(outcome, Retry):
                remediation.undo_from(outcome.step, tuple(n for n, _ in steps))
                return self._schedule(remediation, outcome.seconds, outcome.code, outcome.detail)
            elif isinstance(outcome, Stop):
                remediation.mark(name, outcome.code, outcome.detail, self._clock())
                return self._finish(remediation, f"{outcome.code}: {outcome.detail}")
            else:
                assert isinstance(outcome, Wait)
                return self._schedule(remediation, outcome.seconds, outcome.code, outcome.detail)
        return self._finish(remediation)

    # ----- the record's transitions --------------------------------------------------------------

    def _schedule(self, remediation: Remediation, seconds: float, code: str, detail: str) -> Remediation:
        """Hand the remediation to a later message: save the new generation first, then send for it."""
        remediation.generation += 1
        remediation.status = Status.WAITING
        remediation.reason = f"{code}: {detail}"
        remediation.lease_until = None
        remediation = self._save(remediation)
        self._queue.send(WorkItem(remediation.id, remediation.generation, telemetry.traceparent()).to_message(),
                         delay_seconds=min(max(seconds, 0), MAX_DELAY_SECONDS))
        return remediation

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
        step = next((n for n, _ in steps_of(remediation) if not remediation.done(n)), "")
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
        remediation.updated_at = self._clock().isoformat()
        return self._store.save(remediation)

    # ----- the application claim -----------------------------------------------------------------

    def _release_claim(self, remediation: Remediation) -> None:
        if claims(remediation):
            self._store.delete_claim(claim_key(remediation), remediation.id)


def _outcome(remediation: Remediation) -> str:
    if remediation.dry_run or remediation.observe:
        return "planned (observe mode)" if remediation.observe else "dry run planned"
    counts = {s: sum(1 for t in remediation.targets if t.status is s) for s in TargetStatus}
    skipped = sorted({t.code for t in remediation.targets if t.status is TargetStatus.SKIPPED})
    return (f"{counts[TargetStatus.VERIFIED]} cluster(s) reset and verified" +
            (f", {counts[TargetStatus.SKIPPED]} skipped ({', '.join(skipped)})" if skipped else ""))


def claims(remediation: Remediation) -> bool:
    """Dry runs and observe-mode plans write nothing to Azure: they take no claim and block nothing."""
    return not remediation.dry_run and not remediation.observe


def claim_key(remediation: Remediation) -> str:
    """One rotation per application at a time: the claim is the application's."""
    return f"app-{(remediation.client_id or '').lower()}"

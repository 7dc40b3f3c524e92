"""The steps of a remediation, in order, each a named function of (context, record) that returns
Done, Wait or Retry with a reason code.

Every step is idempotent and keyed by the remediation id: running it again after a crash, a
duplicate message or a retry repeats no write that already happened. A step that is about to
make a write Azure cannot take back (addPassword, the reset) records its intent first, through
`ctx.checkpoint`, so the next run can tell "never sent" from "sent, answer lost".

Guarantees:
- A new secret is stored in Key Vault before anything else happens; if it cannot be stored, the
  password is removed from the application again, so no secret is lost.
- A reset is never started twice for one attempt: its status URL is saved before anything waits
  on it, and a run that finds an attempt without a URL looks at the cluster before calling again.
  A 409 because that earlier reset is still running means "in progress", not a failed attempt.
- No step waits inside an invocation: a step that must wait returns Wait and the runner schedules
  the next message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from remediation.errors import OperationInProgressError, PermanentError, RemediationError, TransientError
from remediation.model import SecretText
from remediation.ports import Directory, ManagedClusters, SecretStore
from remediation.record import Remediation

log = logging.getLogger(__name__)

SECRET_CONTENT_TYPE = "application/x-aks-service-principal-secret"
MAX_RESET_ATTEMPTS = 5
MAX_DELAY_SECONDS = 15 * 60


@dataclass(frozen=True)
class Done:
    code: str
    detail: str


@dataclass(frozen=True)
class Wait:
    seconds: float
    code: str
    detail: str


@dataclass(frozen=True)
class Stop:
    """Nothing left to do: the remediation ends Succeeded without the remaining steps (say why)."""

    code: str
    detail: str


@dataclass(frozen=True)
class Retry:
    """Run `step` (and everything after it) again, after `seconds`."""

    step: str
    seconds: float
    code: str
    detail: str


Outcome = Done | Wait | Retry | Stop


@dataclass(frozen=True)
class StepConfig:
    secret_lifetime: timedelta = timedelta(days=180)
    poll_seconds: float = 30.0  # between looks at a running reset
    retry_delay_seconds: float = 30.0  # base of the backoff between failed resets
    reset_timeout: timedelta = timedelta(minutes=120)
    # Longer than any one invocation's work (no step waits inside an invocation), so a live worker keeps it.
    lease: timedelta = timedelta(minutes=5)

    @property
    def stalled_after(self) -> timedelta:
        """No progress for this long: the chain of work messages was lost (the lease, the longest wait, a margin)."""
        return self.lease + timedelta(seconds=MAX_DELAY_SECONDS) + timedelta(minutes=1)


@dataclass
class StepContext:
    clusters: ManagedClusters
    directory: Directory
    vault: SecretStore
    config: StepConfig
    clock: Callable[[], datetime]
    # Saves the record (ETag-checked) before a write Azure cannot take back; set by the runner.
    checkpoint: Callable[[Remediation], Remediation]
    # The new secret, kept only for the rest of this invocation so the reset need not read it back.
    secret: SecretText | None = field(default=None, repr=False)


Step = Callable[[StepContext, Remediation], Outcome]


def password_name(remediation: Remediation) -> str:
    return f"aks-sp-remediator {remediation.id}"


# ------------------------------------------------------------------------------------- the steps


def plan(ctx: StepContext, r: Remediation) -> Outcome:
    """A dry run: what a remediation would do, with the equivalent commands; writes nothing."""
    cluster = r.cluster
    r.plan = [
        f"add a password named '{password_name(r)}' to application {r.app_object_id} (appId {r.client_id}),"
        f" valid {ctx.config.secret_lifetime.days} days",
        f"store it in Key Vault as secret '{cluster.vault_secret_name}'",
        f"reset the service principal profile of {cluster.name} (re-images its nodes): az aks update-credentials"
        f" -g {cluster.resource_group} -n {cluster.name} --reset-service-principal --service-principal {r.client_id}"
        " --client-secret <the new secret>",
        "verify the cluster returns to provisioningState Succeeded",
    ]
    return Done("Planned", "dry run: nothing was written")


def mint_secret(ctx: StepContext, r: Remediation) -> Outcome:
    """Add a password to the application and store its text in Key Vault straight away."""
    secret_name = r.cluster.vault_secret_name
    if r.mint_started_at and _recover_minted_secret(ctx, r, secret_name):
        return Done("SecretRecovered", f"password {r.new_key_id} was stored by an earlier run of this remediation")
    r.mint_started_at = ctx.clock().isoformat()
    ctx.checkpoint(r)
    object_id = r.app_object_id or ""
    password = ctx.directory.add_password(object_id, password_name(r), ctx.clock() + ctx.config.secret_lifetime)
    # Graph shows the secret text only now: store it before anything else, or take the password back.
    try:
        stored = ctx.vault.set_secret(
            secret_name, password.secret_text, content_type=SECRET_CONTENT_TYPE, expires=password.end,
            tags={"clusterResourceId": r.cluster_id[:256], "appId": r.client_id or "", "keyId": password.key_id,
                  "remediationId": r.id})
    except BaseException as err:
        ctx.directory.remove_password(object_id, password.key_id)
        if isinstance(err, RemediationError):
            raise TransientError(f"could not store the new secret in Key Vault, so password {password.key_id} was"
                                 f" removed again: {err}", retry_after=getattr(err, "retry_after", None)) from err
        raise
    r.new_key_id, r.vault_secret_name, r.vault_secret_version = password.key_id, stored.name, stored.version
    ctx.secret = password.secret_text
    return Done("SecretStored", f"password {password.key_id} (hint {password.hint}) stored as"
                                f" {stored.name}/{stored.version}")


def start_reset(ctx: StepContext, r: Remediation) -> Outcome:
    """Start the reset once per attempt and save its status URL before anything waits on it."""
    if r.reset_status_url:
        return Done("ResetStarted", "the reset was started by an earlier run")
    if r.reset_started_at:
        # An earlier run counted an attempt and may have died before saving the answer: look before calling.
        earlier = _earlier_reset(ctx, r)
        if earlier is not None:
            return earlier
    else:
        # The last look before each disruptive write (a retry too): decided from the present, not the hint's moment.
        cluster = ctx.clusters.get_cluster(r.cluster)
        if cluster.busy:
            return Wait(ctx.config.poll_seconds, "ClusterBusy", f"cluster is {cluster.provisioning_state}")
        if r.source != "manual" and cluster.provisioning_state == "Succeeded" and cluster.last_modified_at \
                and cluster.last_modified_at >= datetime.fromisoformat(r.created_at):
            return Stop("FixedMeanwhile", f"the cluster was changed successfully at {cluster.last_modified_at}, after"
                                          " the decision: its credentials work; not reset")
    if r.reset_attempts >= MAX_RESET_ATTEMPTS:
        raise PermanentError(f"the reset failed {r.reset_attempts} times", code="ResetFailed")
    secret = ctx.secret or ctx.vault.get_secret(r.vault_secret_name or "", r.vault_secret_version or "")
    previous = r.reset_started_at
    r.reset_attempts += 1
    r.reset_started_at = ctx.clock().isoformat()
    ctx.checkpoint(r)
    try:
        r.reset_status_url = ctx.clusters.begin_reset_service_principal_profile(r.cluster, r.client_id or "", secret)
    except OperationInProgressError as err:
        # Refused before it began: not an attempt. Someone else's operation is running; ours starts after it.
        r.reset_attempts -= 1
        r.reset_started_at = previous
        return Wait(ctx.config.poll_seconds, "ClusterBusy", f"another operation is running on the cluster: {err}")
    return Done("ResetStarted", f"reset attempt {r.reset_attempts} started")


def await_reset(ctx: StepContext, r: Remediation) -> Outcome:
    """Follow the reset to its end: by its status URL, or by the cluster when the URL was never saved."""
    started = datetime.fromisoformat(r.reset_started_at or ctx.clock().isoformat())
    elapsed = (ctx.clock() - started).total_seconds()
    if elapsed < ctx.config.poll_seconds:
        # A reset takes minutes: the first look comes one poll interval after the start, not at once.
        return Wait(ctx.config.poll_seconds - elapsed, "ResetRunning", "reset started; first look scheduled")
    if r.reset_status_url:
        operation = ctx.clusters.get_operation(r.reset_status_url)
        running, failed, error = not operation.finished, operation.finished and not operation.succeeded, operation.error
    else:
        cluster = ctx.clusters.get_cluster(r.cluster)
        running, failed = cluster.busy, cluster.provisioning_state == "Failed"
        error = f"provisioningState {cluster.provisioning_state}"
    if running:
        if ctx.clock() - started > ctx.config.reset_timeout:
            raise PermanentError(f"the reset has not finished after {ctx.config.reset_timeout}", code="ResetTimedOut")
        return Wait(ctx.config.poll_seconds, "ResetRunning", f"reset attempt {r.reset_attempts} is running")
    if failed:
        return _retry_reset(ctx, r, error or "the reset failed")
    return Done("ResetSucceeded", f"reset attempt {r.reset_attempts} succeeded")


def verify_cluster(ctx: StepContext, r: Remediation) -> Outcome:
    """The cluster is back: Succeeded, and still on the service principal the remediation reset."""
    cluster = ctx.clusters.get_cluster(r.cluster)
    if cluster.busy:
        return Wait(ctx.config.poll_seconds, "ClusterBusy", f"cluster is {cluster.provisioning_state}")
    if cluster.provisioning_state == "Failed":
        return _retry_reset(ctx, r, "the cluster's provisioningState is Failed after the reset")
    if (cluster.client_id or "").lower() != (r.client_id or "").lower():
        raise PermanentError(f"the cluster now uses service principal {cluster.client_id}, not {r.client_id}:"
                             " someone else changed it", code="ServicePrincipalChanged")
    return Done("Verified", f"provisioningState {cluster.provisioning_state}")


STEPS: tuple[tuple[str, Step], ...] = (
    ("mint_secret", mint_secret),
    ("start_reset", start_reset),
    ("await_reset", await_reset),
    ("verify_cluster", verify_cluster),
)
DRY_RUN_STEPS: tuple[tuple[str, Step], ...] = (("plan", plan),)


def steps_of(remediation: Remediation) -> tuple[tuple[str, Step], ...]:
    return DRY_RUN_STEPS if remediation.dry_run else STEPS


def step_names(remediation: Remediation) -> tuple[str, ...]:
    return tuple(name for name, _ in steps_of(remediation))


# ------------------------------------------------------------------------------------- helpers


def backoff(retry_delay_seconds: float, attempt: int) -> float:
    return min(retry_delay_seconds * 2 ** max(attempt - 1, 0), MAX_DELAY_SECONDS)


def _retry_reset(ctx: StepContext, r: Remediation, error: str) -> Outcome:
    # A new secret can take minutes to be accepted everywhere, so a failed reset is tried again with backoff.
    if r.reset_attempts >= MAX_RESET_ATTEMPTS:
        raise PermanentError(f"the reset failed {r.reset_attempts} times; last: {error}", code="ResetFailed")
    r.reset_status_url = None
    r.reset_started_at = None
    delay = backoff(ctx.config.retry_delay_seconds, r.reset_attempts)
    log.warning("remediation %s: reset attempt %s failed, retrying in %ss: %s", r.id, r.reset_attempts, delay, error)
    return Retry("start_reset", delay, "ResetFailed", f"reset attempt {r.reset_attempts} failed: {error}")


def _earlier_reset(ctx: StepContext, r: Remediation) -> Outcome | None:
    """What became of a reset an earlier run may have started without saving its URL; None if it never began."""
    cluster = ctx.clusters.get_cluster(r.cluster)
    if cluster.busy:
        return Done("ResetInProgress",
                    f"a reset started by an earlier run is still running ({cluster.provisioning_state})")
    started = datetime.fromisoformat(r.reset_started_at or "")
    if cluster.provisioning_state == "Succeeded" and (cluster.last_modified_at is None
                                                       or cluster.last_modified_at > started):
        return Done("ResetFinished", "the reset an earlier run started has finished")
    return None


def _recover_minted_secret(ctx: StepContext, r: Remediation, secret_name: str) -> bool:
    """After a crash between minting and recording: adopt a stored password, remove an unstored one."""
    app = ctx.directory.get_application_by_app_id(r.client_id or "")
    ours = {p.key_id for p in app.passwords if p.display_name == password_name(r)}
    if not ours:
        return False
    stored = [v for v in ctx.vault.list_versions(secret_name)
              if v.tags.get("remediationId") == r.id and v.tags.get("keyId") in ours]
    adopted = stored[-1] if stored else None
    for key_id in sorted(ours - {adopted.tags["keyId"] if adopted else ""}):
        log.warning("remediation %s: removing password %s whose secret was never stored", r.id, key_id)
        ctx.directory.remove_password(r.app_object_id or app.object_id, key_id)
    if adopted is None:
        return False
    r.new_key_id, r.vault_secret_name, r.vault_secret_version = adopted.tags["keyId"], adopted.name, adopted.version
    return True

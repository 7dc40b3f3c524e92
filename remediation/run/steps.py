"""The steps of a rotation, in order, each a named function of (context, record) that returns
Done, Wait, Retry or Stop with a reason code. (A replacement's own steps are in
remediation/run/replacement.py; remediation/run/procedures.py says which steps a remediation runs.)

    discover_clusters     which clusters the application serves in scope (the fan-out), each checked
                          against the guardrails (scope, opt-out tag)
    mint_secret           one new password for the application, stored in Key Vault at once
    await_propagation     sign in with it until Entra ID accepts it several times in a row
    apply_to_clusters     reset every target cluster to it (each reset a tracked, resumable sub-step
                          under the fleet's reset cap) and verify each
    retire_old_passwords  after a grace period, remove the passwords the rotation replaced

A dry run, and any remediation in observe mode, runs `discover_clusters` then `plan` and writes
nothing to Azure.

A rotation is about one credential of its clusters (`Remediation.credential`): the service
principal's secret (reset with resetServicePrincipalProfile) or the legacy Azure AD
integration's server application secret (reset with resetAADProfile); everything else is the same.

Every step is idempotent and keyed by the remediation id: running it again after a crash, a
duplicate message or a retry repeats no write that already happened. A step that is about to
make a write Azure cannot take back (addPassword, a reset, a removePassword) records its intent
first, through `ctx.checkpoint`, so the next run can tell "never sent" from "sent, answer lost".

Guarantees:
- A new secret is stored in Key Vault before anything else happens; if it cannot be stored, the
  password is removed from the application again, so no secret is lost.
- No cluster is reset with a secret Entra ID does not yet accept (propagation), and none twice for
  one attempt: a reset's status URL is saved before anything waits on it, and a run that finds an
  attempt without a URL looks at the cluster before calling again. A 409 because that earlier
  reset is still running means "in progress", not a failed attempt.
- Every cluster is read once more before its reset: if it was changed successfully after the
  decision (someone fixed it), it is skipped instead of re-imaged.
- Nothing is retired while a cluster may still hold it: unexpired passwords go only when every
  cluster using the application in scope was moved to the new one and verified, after the grace
  period; ones someone else added stay unless a setting says otherwise. Expired ones may always go.
- No step waits inside an invocation: a step that must wait returns Wait and the runner schedules
  the next message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from remediation.decide.guardrails import Guardrails
from remediation.errors import (
    InvalidInputError,
    NotFoundError,
    OperationInProgressError,
    PermanentError,
    RemediationError,
    TransientError,
)
from remediation.ids import ClusterId
from remediation.model import ClusterInfo, Credential, SecretText
from remediation.ports import (
    Directory,
    IncidentStore,
    ManagedClusters,
    ResourceGroups,
    RoleAssignments,
    SecretStore,
    SignIn,
)
from remediation.record import Remediation, Target, TargetStatus

log = logging.getLogger(__name__)

SECRET_CONTENT_TYPE = "application/x-aks-service-principal-secret"
PASSWORD_PREFIX = "aks-sp-remediator"
MAX_RESET_ATTEMPTS = 5
MAX_DELAY_SECONDS = 15 * 60
RESET_WINDOW_SECONDS = 3600


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
    propagation_successes: int = 3
    propagation_interval_seconds: float = 10.0
    propagation_timeout: timedelta = timedelta(minutes=20)
    retire_after: timedelta = timedelta(hours=24)  # zero keeps the replaced passwords
    retire_foreign_passwords: bool = False
    guardrails: Guardrails = field(default_factory=Guardrails)
    subscriptions: tuple[str, ...] = ()  # where the fan-out looks for clusters; empty: the hint's own
    owner_id: str = ""  # the remediator's own service principal: owner of the applications a replacement creates

    @property
    def stalled_after(self) -> timedelta:
        """No progress for this long: the chain of work messages was lost (the lease, the longest wait, a margin)."""
        return self.lease + timedelta(seconds=MAX_DELAY_SECONDS) + timedelta(minutes=1)


@dataclass
class StepContext:
    clusters: ManagedClusters
    directory: Directory
    vault: SecretStore
    sign_in: SignIn
    resource_groups: ResourceGroups
    ledger: IncidentStore
    config: StepConfig
    clock: Callable[[], datetime]
    # Saves the record (ETag-checked) before a write Azure cannot take back; set by the runner.
    checkpoint: Callable[[Remediation], Remediation]
    # The new secret, kept only for the rest of this invocation so later steps need not read it back.
    secret: SecretText | None = field(default=None, repr=False)
    group_tags: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    roles: RoleAssignments | None = None  # a replacement's role assignments

    def new_secret(self, r: Remediation) -> SecretText:
        if self.secret is None:
            self.secret = self.vault.get_secret(r.vault_secret_name or "", r.vault_secret_version or "")
        return self.secret


Step = Callable[[StepContext, Remediation], Outcome]


def password_name(remediation: Remediation) -> str:
    return f"{PASSWORD_PREFIX} {remediation.id}"


def vault_secret_name(app_id: str) -> str:
    """One Key Vault secret per application: every cluster using it holds the same secret."""
    return f"aks-sp-app-{app_id.lower()}"


# ------------------------------------------------------------------------------------- the steps


def discover_clusters(ctx: StepContext, r: Remediation) -> Outcome:
    """The fan-out. When every password of the application has ended, every cluster using it is broken
    too, so all of them in scope are targets; otherwise only the clusters whose own hints joined."""
    now = ctx.clock()
    unnamed: list[str] = []  # clusters using the application whose ids the remediator refuses to act on
    if r.application_expired:
        for sub in ctx.config.subscriptions or (r.cluster.subscription_id,):
            for info in ctx.clusters.list_clusters(sub):
                if info.app_id_for(r.kind) != (r.client_id or "").lower():
                    continue
                try:
                    cluster = ClusterId.parse(info.id)
                except InvalidInputError:  # a name ARM allows but we take only in ASCII (remediation/ids.py)
                    unnamed.append(info.id.encode("ascii", "backslashreplace").decode()[:300])
                    continue
                if r.target(cluster):
                    continue
                target = Target(str(cluster), joined_by="application")
                r.targets.append(target)
                # Clusters with a hint of their own passed the reconcile's checks; these are checked here.
                if refusal := _guardrail_refusal(ctx, cluster, info):
                    target.set(TargetStatus.SKIPPED, *refusal, now)
    pending = sum(1 for t in r.targets if t.status is TargetStatus.PENDING)
    refused = (f"; {len(unnamed)} more left to a person, their names outside the ASCII ARM names the remediator"
               f" acts on: {', '.join(unnamed)}") if unnamed else ""
    return Done("Discovered", f"{len(r.targets)} cluster(s) use application {r.client_id} in scope: {pending} to"
                              f" reset, {len(r.targets) - pending} skipped{refused}")


def reset_command(r: Remediation, cluster: ClusterId, info: ClusterInfo | None = None) -> str:
    """The `az` command that does what the reset of one cluster does (the secret left out)."""
    head = f"az aks update-credentials -g {cluster.resource_group} -n {cluster.name} --subscription" \
           f" {cluster.subscription_id}"
    if r.kind is Credential.AAD_SERVER:
        client = info.aad_client_app_id if info else "<its client application id>"
        tenant = f" --aad-tenant-id {info.aad_tenant_id}" if info and info.aad_tenant_id else ""
        return (f"{head} --reset-aad --aad-server-app-id {r.client_id} --aad-server-app-secret <the new secret>"
                f" --aad-client-app-id {client}{tenant}")
    app_id = r.secret_app_id or "<the new application's appId>"
    return f"{head} --reset-service-principal --service-principal {app_id} --client-secret <the new secret>"


def plan(ctx: StepContext, r: Remediation) -> Outcome:
    """A dry run or observe mode: what the remediation would do, with the equivalent commands; writes nothing."""
    pending = [t.cluster for t in r.targets if t.status is TargetStatus.PENDING]
    if r.replace:
        from remediation.run.replacement import replacement_plan  # the replacement's own steps import these

        head = replacement_plan(ctx, r)
    else:
        head = [f"add a password named '{password_name(r)}' to application {r.app_object_id} (appId {r.client_id}),"
                f" valid {ctx.config.secret_lifetime.days} days: az ad app credential reset --id {r.client_id}"
                f" --append --display-name '{password_name(r)}'",
                f"store it in Key Vault as secret '{vault_secret_name(r.client_id or '')}'"]
    what = "the legacy Azure AD profile" if r.kind is Credential.AAD_SERVER else "the service principal profile"
    r.plan = [
        *head,
        f"sign in as the application until Entra ID accepts the new secret {ctx.config.propagation_successes}"
        " times in a row",
        *(f"reset {what} of {c.name} (re-images its nodes): {reset_command(r, c)}" for c in pending),
        *(f"skip {t.cluster.name}: {t.code}: {t.detail}" for t in r.targets if t.status is TargetStatus.SKIPPED),
        f"verify each cluster returns to provisioningState Succeeded on application {r.secret_app_id or 'the new one'}",
        *([] if r.replace else [_retirement_plan(ctx, r)]),
    ]
    mode = "observe mode" if r.observe else "dry run"
    return Done("Planned", f"{mode}: nothing was written; {len(pending)} cluster(s) would be reset")


def mint_secret(ctx: StepContext, r: Remediation) -> Outcome:
    """Add a password to the application and store its text in Key Vault straight away."""
    secret_name = vault_secret_name(r.secret_app_id)
    if r.mint_started_at and _recover_minted_secret(ctx, r, secret_name):
        return Done("SecretRecovered", f"password {r.new_key_id} was stored by an earlier run of this remediation")
    r.mint_started_at = ctx.clock().isoformat()
    ctx.checkpoint(r)
    object_id = r.secret_app_object_id
    password = ctx.directory.add_password(object_id, password_name(r), ctx.clock() + ctx.config.secret_lifetime)
    # Graph shows the secret text only now: store it before anything else, or take the password back.
    try:
        stored = ctx.vault.set_secret(
            secret_name, password.secret_text, content_type=SECRET_CONTENT_TYPE, expires=password.end,
            tags={"appId": r.secret_app_id, "keyId": password.key_id, "remediationId": r.id})
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


def await_propagation(ctx: StepContext, r: Remediation) -> Outcome:
    """Sign in as the application with the new secret until Entra ID accepts it several times in a row: a new
    secret can take minutes to be accepted everywhere, and a reset with a secret not yet accepted fails."""
    now = ctx.clock()
    r.propagation_started_at = r.propagation_started_at or now.isoformat()
    result = ctx.sign_in.sign_in(r.secret_app_id, ctx.new_secret(r))
    r.propagation_successes = r.propagation_successes + 1 if result.ok else 0
    needed = ctx.config.propagation_successes
    if r.propagation_successes >= needed:
        return Done("SecretPropagated", f"Entra ID accepted the new secret {needed} times in a row")
    if now - datetime.fromisoformat(r.propagation_started_at) > ctx.config.propagation_timeout:
        raise PermanentError(f"Entra ID did not accept the new secret within {ctx.config.propagation_timeout}"
                             f" (last: {result.code or 'accepted'})", code="SecretNotAccepted")
    seen = "accepted" if result.ok else f"refused ({result.code})"
    return Wait(ctx.config.propagation_interval_seconds, "AwaitingPropagation",
                f"sign-in {seen}; {r.propagation_successes} of {needed} in a row")


def apply_to_clusters(ctx: StepContext, r: Remediation) -> Outcome:
    """Move every target to the new secret, each at its own pace; done when none is left running."""
    waits = []
    for target in r.targets:
        if target.status.terminal:
            continue
        seconds = _advance(ctx, r, target)
        ctx.checkpoint(r)
        if seconds is not None:
            waits.append(seconds)
    summary = ", ".join(f"{n} {s.value.lower()}" for s in TargetStatus
                        if (n := sum(1 for t in r.targets if t.status is s)))
    if waits:
        return Wait(min(waits), "ApplyingToClusters", summary)
    failed = [t.cluster.name for t in r.targets if t.status is TargetStatus.FAILED]
    if failed:
        raise PermanentError(f"the new secret could not be applied to {', '.join(failed)} ({summary})",
                             code="ResetFailed" if len(failed) == len(r.targets) else "PartlyApplied")
    r.verified_at = ctx.clock().isoformat()
    return Done("Applied", summary)


def retire_old_passwords(ctx: StepContext, r: Remediation) -> Outcome:
    """After the grace period, remove what the rotation replaced (see the module's guarantees)."""
    grace = ctx.config.retire_after
    if grace <= timedelta(0):
        return Done("Kept", "REMEDIATOR_RETIRE_AFTER_HOURS is 0: the replaced passwords are kept")
    due = datetime.fromisoformat(r.verified_at or ctx.clock().isoformat()) + grace
    now = ctx.clock()
    if now < due:
        return Wait((due - now).total_seconds(), "RetirementGrace", f"replaced passwords go after {due.isoformat()}")
    app = ctx.directory.get_application_by_app_id(r.client_id or "")
    moved_all = _moved_every_cluster(r)
    for password in app.passwords:
        expired = password.end is not None and password.end <= now
        ours = (password.display_name or "").startswith(PASSWORD_PREFIX)
        replaced = password.key_id in r.old_key_ids and moved_all and (ours or ctx.config.retire_foreign_passwords)
        if password.key_id == r.new_key_id or not (expired or replaced):
            continue
        if any(entry["keyId"] == password.key_id for entry in r.retired):  # recorded by a run that died after
            ctx.directory.remove_password(r.app_object_id or app.object_id, password.key_id)
            continue
        r.retired.append({"keyId": password.key_id, "hint": password.hint or "", "displayName":
                          password.display_name or "", "endDateTime": password.end.isoformat() if password.end
                          else "", "removedAt": now.isoformat(), "why": "expired" if expired else "replaced"})
        ctx.checkpoint(r)  # recorded before it goes: a removal is never done unrecorded
        ctx.directory.remove_password(r.app_object_id or app.object_id, password.key_id)
    kept = "" if moved_all else "; unexpired ones kept: not every cluster using the application was moved"
    return Done("Retired", f"{len(r.retired)} password(s) removed{kept}")


# ------------------------------------------------------------------------------------- one target


def _advance(ctx: StepContext, r: Remediation, t: Target) -> float | None:
    """Move one target one step along Pending -> Resetting -> Verifying -> Verified; seconds to wait, or None."""
    now = ctx.clock()
    if t.status is TargetStatus.PENDING:
        return _start_reset(ctx, r, t, now)
    started = datetime.fromisoformat(t.reset_started_at or now.isoformat())
    if t.status is TargetStatus.RESETTING:
        elapsed = (now - started).total_seconds()
        if elapsed < ctx.config.poll_seconds:
            return ctx.config.poll_seconds - elapsed  # a reset takes minutes: the first look waits one interval
        if t.reset_status_url:
            operation = ctx.clusters.get_operation(t.reset_status_url)
            running, failed, error = not operation.finished, operation.finished and not operation.succeeded, \
                operation.error
        else:
            cluster = ctx.clusters.get_cluster(t.cluster)
            running, failed = cluster.busy, cluster.provisioning_state == "Failed"
            error = f"provisioningState {cluster.provisioning_state}"
        if running:
            if now - started > ctx.config.reset_timeout:
                t.set(TargetStatus.FAILED, "ResetTimedOut", f"the reset has not finished after"
                                                            f" {ctx.config.reset_timeout}", now)
                return None
            return ctx.config.poll_seconds
        if failed:
            return _retry(ctx, t, error or "the reset failed", now)
        t.set(TargetStatus.VERIFYING, "ResetSucceeded", f"reset attempt {t.reset_attempts} succeeded", now)
    cluster = ctx.clusters.get_cluster(t.cluster)
    if cluster.busy:
        return ctx.config.poll_seconds
    if cluster.provisioning_state == "Failed":
        return _retry(ctx, t, "the cluster's provisioningState is Failed after the reset", now)
    if cluster.app_id_for(r.kind) != r.secret_app_id.lower():
        t.set(TargetStatus.FAILED, "ServicePrincipalChanged", f"the cluster now uses application"
                                                              f" {cluster.app_id_for(r.kind)}: someone else changed it",
              now)
        return None
    t.set(TargetStatus.VERIFIED, "Verified", f"provisioningState {cluster.provisioning_state} on the new secret", now)
    return None


def _start_reset(ctx: StepContext, r: Remediation, t: Target, now: datetime) -> float | None:
    if t.reset_status_url:
        t.set(TargetStatus.RESETTING, "ResetStarted", "the reset was started by an earlier run", now)
        return 0
    try:
        cluster = ctx.clusters.get_cluster(t.cluster)
    except NotFoundError:
        t.set(TargetStatus.SKIPPED, "ClusterGone", "the cluster no longer exists", now)
        return None
    if t.reset_started_at:
        # An earlier run counted an attempt and may have died before saving the answer: look before calling.
        started = datetime.fromisoformat(t.reset_started_at)
        if cluster.busy:
            t.set(TargetStatus.RESETTING, "ResetInProgress", f"a reset started by an earlier run is still running"
                                                             f" ({cluster.provisioning_state})", now)
            return ctx.config.poll_seconds
        if cluster.provisioning_state == "Succeeded" and (cluster.last_modified_at is None
                                                           or cluster.last_modified_at > started):
            t.set(TargetStatus.VERIFYING, "ResetFinished", "the reset an earlier run started has finished", now)
            return 0
    # Our reset never started (or the earlier run died before calling it): the same last look as a first attempt,
    # so a cluster someone repaired meanwhile is not re-imaged.
    skip = _changed_under_us(r, t, cluster)
    if skip:
        t.set(TargetStatus.SKIPPED, *skip, now)
        return None
    if cluster.busy:
        t.set(TargetStatus.PENDING, "ClusterBusy", f"the cluster is {cluster.provisioning_state}", now)
        return ctx.config.poll_seconds
    if t.not_before and now < datetime.fromisoformat(t.not_before):
        return (datetime.fromisoformat(t.not_before) - now).total_seconds()
    if t.reset_attempts >= MAX_RESET_ATTEMPTS:
        t.set(TargetStatus.FAILED, "ResetFailed", f"the reset failed {t.reset_attempts} times", now)
        return None
    if t.not_after and now >= datetime.fromisoformat(t.not_after):
        # A proactive rotation re-images nodes only inside the cluster's window; the next health check comes back.
        t.set(TargetStatus.SKIPPED, "MaintenanceWindowClosed", f"the cluster's maintenance window closed at"
                                                               f" {t.not_after} before its reset could start", now)
        return None
    cap = ctx.config.guardrails.max_resets_per_hour
    frees_at = ctx.ledger.reserve_reset(now, cap=cap, window_seconds=RESET_WINDOW_SECONDS)
    if frees_at is not None:
        t.set(TargetStatus.PENDING, "ResetCapReached", f"{cap} resets started in the last hour across the fleet"
                                                       " (REMEDIATOR_MAX_RESETS_PER_HOUR)", now)
        return max((frees_at - now).total_seconds(), 1.0)
    previous = t.reset_started_at
    t.reset_attempts += 1
    t.reset_started_at = now.isoformat()
    ctx.checkpoint(r)
    try:
        t.reset_status_url = _begin_reset(ctx, r, t.cluster, cluster)
    except OperationInProgressError as err:
        # Refused before it began: not an attempt. Someone else's operation is running; ours starts after it.
        t.reset_attempts -= 1
        t.reset_started_at = previous
        t.set(TargetStatus.PENDING, "ClusterBusy", f"another operation is running on the cluster: {err}", now)
        return ctx.config.poll_seconds
    t.set(TargetStatus.RESETTING, "ResetStarted", f"reset attempt {t.reset_attempts} started", now)
    return ctx.config.poll_seconds


def _begin_reset(ctx: StepContext, r: Remediation, cluster: ClusterId, info: ClusterInfo) -> str:
    if r.kind is Credential.AAD_SERVER:
        return ctx.clusters.begin_reset_aad_profile(cluster, server_app_id=r.client_id or "",
                                                    client_app_id=info.aad_client_app_id or "",
                                                    tenant_id=info.aad_tenant_id, secret=ctx.new_secret(r))
    return ctx.clusters.begin_reset_service_principal_profile(cluster, r.secret_app_id, ctx.new_secret(r))


def _changed_under_us(r: Remediation, t: Target, cluster: ClusterInfo) -> tuple[str, str] | None:
    """The last look before a disruptive write, decided from the present rather than the hint's moment."""
    if cluster.app_id_for(r.kind) != (r.client_id or "").lower():
        return "ServicePrincipalChanged", (f"the cluster now uses {cluster.app_id_for(r.kind) or 'no application'},"
                                           f" not {r.client_id}")
    if r.source != "manual" and cluster.provisioning_state == "Succeeded" and cluster.last_modified_at \
            and cluster.last_modified_at >= datetime.fromisoformat(r.created_at):
        return "FixedMeanwhile", (f"the cluster was changed successfully at {cluster.last_modified_at}, after the"
                                  " decision: its credentials work; not reset")
    return None


def _retry(ctx: StepContext, t: Target, error: str, now: datetime) -> float | None:
    # A new secret can take minutes to be accepted everywhere, so a failed reset is tried again with backoff.
    if t.reset_attempts >= MAX_RESET_ATTEMPTS:
        t.set(TargetStatus.FAILED, "ResetFailed", f"the reset failed {t.reset_attempts} times; last: {error}", now)
        return None
    delay = backoff(ctx.config.retry_delay_seconds, t.reset_attempts)
    log.warning("%s: reset attempt %s failed, retrying in %ss: %s", t.cluster.name, t.reset_attempts, delay, error)
    t.reset_status_url, t.reset_started_at = None, None
    t.not_before = (now + timedelta(seconds=delay)).isoformat()
    t.set(TargetStatus.PENDING, "ResetFailed", f"reset attempt {t.reset_attempts} failed: {error}", now)
    return delay


def backoff(retry_delay_seconds: float, attempt: int) -> float:
    return min(retry_delay_seconds * 2 ** max(attempt - 1, 0), MAX_DELAY_SECONDS)


# ------------------------------------------------------------------------------------- helpers


def _guardrail_refusal(ctx: StepContext, cluster: ClusterId, info: ClusterInfo) -> tuple[str, str] | None:
    """Why the guardrails keep a cluster out of the fan-out: scope, or the opt-out tag on it or its group."""
    guardrails = ctx.config.guardrails
    refusal = guardrails.scope.refusal(cluster)
    if refusal:
        return refusal
    if info.uses_managed_identity:
        return "ManagedIdentityCluster", "the cluster uses a managed identity"
    if guardrails.opt_out.on(info.tags):
        return "OptedOut", f"the cluster carries the opt-out tag {guardrails.opt_out}"
    key = (cluster.subscription_id, cluster.resource_group.lower())
    if key not in ctx.group_tags:
        try:
            ctx.group_tags[key] = ctx.resource_groups.get_tags(cluster.subscription_id, cluster.resource_group)
        except NotFoundError:
            ctx.group_tags[key] = {}
    if guardrails.opt_out.on(ctx.group_tags[key]):
        return "OptedOut", f"resource group {cluster.resource_group} carries the opt-out tag {guardrails.opt_out}"
    return None


def _moved_every_cluster(r: Remediation) -> bool:
    """Every cluster known to use the application holds the new secret: none can still need an old one."""
    return r.application_expired and all(t.status is TargetStatus.VERIFIED for t in r.targets)


def _retirement_plan(ctx: StepContext, r: Remediation) -> str:
    if ctx.config.retire_after <= timedelta(0):
        return "keep the replaced passwords (REMEDIATOR_RETIRE_AFTER_HOURS is 0)"
    hours = ctx.config.retire_after.total_seconds() / 3600
    return (f"{hours:g} h after every cluster is verified, remove the application's expired passwords"
            " and, if every cluster using it was moved, the remediator's earlier ones")


def _recover_minted_secret(ctx: StepContext, r: Remediation, secret_name: str) -> bool:
    """After a crash between minting and recording: adopt a stored password, remove an unstored one."""
    app = ctx.directory.get_application_by_app_id(r.secret_app_id)
    ours = {p.key_id for p in app.passwords if p.display_name == password_name(r)}
    if not ours:
        return False
    stored = [v for v in ctx.vault.list_versions(secret_name)
              if v.tags.get("remediationId") == r.id and v.tags.get("keyId") in ours]
    adopted = stored[-1] if stored else None
    for key_id in sorted(ours - {adopted.tags["keyId"] if adopted else ""}):
        log.warning("remediation %s: removing password %s whose secret was never stored", r.id, key_id)
        ctx.directory.remove_password(r.secret_app_object_id or app.object_id, key_id)
    if adopted is None:
        return False
    r.new_key_id, r.vault_secret_name, r.vault_secret_version = adopted.tags["keyId"], adopted.name, adopted.version
    return True

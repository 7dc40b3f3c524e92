"""The steps of a rotation, in order (remediation/run/step.py says what a step is; remediation/run/procedures.py
which steps a remediation runs, with their limits; a replacement's own steps are in remediation/run/replacement.py,
a plan's in remediation/run/plan.py).

    discover_clusters     which clusters the application serves in scope (the fan-out), each checked
                          against the guardrails (scope, opt-out tag)
    mint_secret           one new password for the application, stored in Key Vault at once
    await_propagation     sign in with it until Entra ID accepts it several times in a row
    apply_to_clusters     reset every target cluster to it (each reset a tracked, resumable sub-step
                          under the fleet's reset cap) and verify each
    retire_old_passwords  after a grace period, remove the passwords the rotation replaced

A dry run, and any remediation in observe mode, runs `discover_clusters` then `plan` (remediation/run/plan.py) and
writes nothing to Azure.

A rotation is about one credential of its clusters (`Remediation.credential`): the service
principal's secret (reset with resetServicePrincipalProfile) or the legacy Azure AD
integration's server application secret (reset with resetAADProfile); everything else is the same.

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
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from remediation.decide.observation import Readers
from remediation.errors import (
    InvalidInputError,
    NotFoundError,
    OperationInProgressError,
    PermanentError,
    RemediationError,
    TransientError,
)
from remediation.ids import ClusterId
from remediation.model import Application, ClusterInfo, Credential, OperationStarted
from remediation.ports import ResourceGroups
from remediation.record import Remediation, RetiredPassword, Target, TargetStatus
from remediation.run.step import (
    PASSWORD_PREFIX,
    SECRET_CONTENT_TYPE,
    Done,
    Outcome,
    StepContext,
    Wait,
    backoff,
    look_after,
    password_name,
    vault_secret_name,
)

log = logging.getLogger(__name__)

RESET_WINDOW_SECONDS = 3600  # the fleet's reset cap counts the resets started in the last hour


# ------------------------------------------------------------------------------------- the steps


def discover_clusters(ctx: StepContext, r: Remediation) -> Outcome:
    """The fan-out. When every password of the application has ended, every cluster using it is broken
    too, so all of them in scope are targets; otherwise only the clusters whose own hints joined."""
    now = ctx.clock()
    unnamed: list[str] = []  # clusters using the application whose ids the remediator refuses to act on
    if r.application_expired:
        for info in _clusters_using(ctx, r):
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
            if refusal := _guardrail_refusal(ctx, r, cluster, info):
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
    if r.credential_kind is Credential.AAD_SERVER:
        client = info.aad_client_app_id if info else "<its client application id>"
        tenant = f" --aad-tenant-id {info.aad_tenant_id}" if info and info.aad_tenant_id else ""
        return (f"{head} --reset-aad --aad-server-app-id {r.client_id} --aad-server-app-secret <the new secret>"
                f" --aad-client-app-id {client}{tenant}")
    app_id = r.secret_app_id or "<the new application's appId>"
    return f"{head} --reset-service-principal --service-principal {app_id} --client-secret <the new secret>"


def mint_secret(ctx: StepContext, r: Remediation) -> Outcome:
    """Add a password to the application and store its text in Key Vault straight away."""
    secret_name = vault_secret_name(r.secret_app_id)
    # An earlier run went through this step (the runner counts runs before the body): it may have added a password
    # and died before recording it.
    if ctx.progress.attempts > 1 and _recover_minted_secret(ctx, r, secret_name):
        return Done("SecretRecovered", f"password {r.secret.key_id} was stored by an earlier run of this remediation")
    ctx.checkpoint(r)  # this run's attempt is recorded before the password is added
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
    r.secret.key_id, r.secret.vault_name, r.secret.vault_version = password.key_id, stored.name, stored.version
    ctx.secret = password.secret_text
    return Done("SecretStored", f"password {password.key_id} (hint {password.hint}) stored as"
                                f" {stored.name}/{stored.version}")


def await_propagation(ctx: StepContext, r: Remediation) -> Outcome:
    """Sign in as the application with the new secret until Entra ID accepts it several times in a row: a new
    secret can take minutes to be accepted everywhere, and a reset with a secret not yet accepted fails."""
    result = ctx.sign_in.sign_in(r.secret_app_id, ctx.new_secret(r))
    r.secret.accepted_in_a_row = r.secret.accepted_in_a_row + 1 if result.ok else 0
    needed = ctx.config.propagation_successes
    if r.secret.accepted_in_a_row >= needed:
        return Done("SecretPropagated", f"Entra ID accepted the new secret {needed} times in a row")
    seen = "accepted" if result.ok else f"refused ({result.code})"
    return Wait(ctx.config.propagation_interval_seconds, "AwaitingPropagation",
                f"sign-in {seen}; {r.secret.accepted_in_a_row} of {needed} in a row")


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
    return retire_replaced(ctx, r, moved_all=_moved_every_cluster(r))


def retire_replaced(ctx: StepContext, r: Remediation, *, moved_all: bool, app: Application | None = None) -> Outcome:
    """Remove the application's ended passwords, and those in `r.old_key_ids` when `moved_all` (no cluster can still
    need one): the remediator's own, and others only with REMEDIATOR_RETIRE_FOREIGN_PASSWORDS. Each removal is
    recorded before it is made, and made again by a run that finds it recorded. `app`: already read."""
    now = ctx.clock()
    app = app or ctx.directory.get_application_by_app_id(r.client_id or "")
    for password in app.passwords:
        expired = password.end is not None and password.end <= now
        ours = (password.display_name or "").startswith(PASSWORD_PREFIX)
        replaced = password.key_id in r.old_key_ids and moved_all and (ours or ctx.config.retire_foreign_passwords)
        if password.key_id == r.secret.key_id or not (expired or replaced):
            continue
        if any(gone.key_id == password.key_id for gone in r.retired):  # recorded by a run that died after
            ctx.directory.remove_password(r.app_object_id or app.object_id, password.key_id)
            continue
        r.retired.append(RetiredPassword(password.key_id, password.hint or "", password.display_name or "",
                                         password.end.isoformat() if password.end else "", now.isoformat(),
                                         "expired" if expired else "replaced"))
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
        # A reset takes minutes: no look before ARM's Retry-After (the setting when it sent none) has passed.
        look_at = datetime.fromisoformat(t.not_before) if t.not_before else started + timedelta(
            seconds=ctx.config.poll_seconds)
        if now < look_at:
            return (look_at - now).total_seconds()
        retry_after = None
        if t.reset_status_url:
            operation = ctx.clusters.get_operation(t.reset_status_url)
            running, failed, error = not operation.finished, operation.finished and not operation.succeeded, \
                operation.error
            retry_after = operation.retry_after
        else:
            cluster = ctx.clusters.get_cluster(t.cluster)
            running, failed = cluster.busy, cluster.provisioning_state == "Failed"
            error = f"provisioningState {cluster.provisioning_state}"
        if running:
            if ctx.limits.attempt_timeout is not None and now - started > ctx.limits.attempt_timeout:
                t.set(TargetStatus.FAILED, "ResetTimedOut", f"the reset has not finished after"
                                                            f" {ctx.limits.attempt_timeout}", now)
                return None
            return _look_again(ctx, t, now, retry_after)
        if failed:
            return _retry(ctx, t, error or "the reset failed", now)
        t.set(TargetStatus.VERIFYING, "ResetSucceeded", f"reset attempt {t.reset_attempts} succeeded", now)
    cluster = ctx.clusters.get_cluster(t.cluster)
    if cluster.busy:
        return ctx.config.poll_seconds
    if cluster.provisioning_state == "Failed":
        return _retry(ctx, t, "the cluster's provisioningState is Failed after the reset", now)
    now_uses = cluster.app_id_for(r.credential_kind)
    if now_uses != r.secret_app_id.lower():
        t.set(TargetStatus.FAILED, "ServicePrincipalChanged", f"the cluster now uses application {now_uses}: someone"
                                                              " else changed it", now)
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
            return _look_again(ctx, t, now, None)
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
    if t.reset_attempts >= _attempts(ctx):
        t.set(TargetStatus.FAILED, "ResetFailed", f"the reset failed {t.reset_attempts} times", now)
        return None
    if t.not_after and now >= datetime.fromisoformat(t.not_after):
        # A proactive rotation re-images nodes only inside the cluster's window; the next health check comes back.
        t.set(TargetStatus.SKIPPED, "MaintenanceWindowClosed", f"the cluster's maintenance window closed at"
                                                               f" {t.not_after} before its reset could start", now)
        return None
    cap = ctx.config.guardrails.max_resets_per_hour
    frees_at = ctx.incidents.reserve_reset(now, cap=cap, window_seconds=RESET_WINDOW_SECONDS)
    if frees_at is not None:
        t.set(TargetStatus.PENDING, "ResetCapReached", f"{cap} resets started in the last hour across the fleet"
                                                       " (REMEDIATOR_MAX_RESETS_PER_HOUR)", now)
        return max((frees_at - now).total_seconds(), 1.0)
    previous = t.reset_started_at
    t.reset_attempts += 1
    t.reset_started_at = now.isoformat()
    ctx.checkpoint(r)
    try:
        started = _begin_reset(ctx, r, t.cluster, cluster)
    except OperationInProgressError as err:
        # Refused before it began: not an attempt. Someone else's operation is running; ours starts after it.
        t.reset_attempts -= 1
        t.reset_started_at = previous
        t.set(TargetStatus.PENDING, "ClusterBusy", f"another operation is running on the cluster: {err}", now)
        return ctx.config.poll_seconds
    t.reset_status_url = started.status_url
    t.set(TargetStatus.RESETTING, "ResetStarted", f"reset attempt {t.reset_attempts} started", now)
    return _look_again(ctx, t, now, started.retry_after)


def _look_again(ctx: StepContext, t: Target, now: datetime, retry_after: float | None) -> float:
    """When to look at a running reset next: when ARM's answer asked (`Retry-After`, as every ARM client waits), or
    REMEDIATOR_RESET_POLL_SECONDS when it did not say; kept on the target, so an earlier wake-up does not look."""
    seconds = look_after(ctx.config, retry_after)
    t.not_before = (now + timedelta(seconds=seconds)).isoformat()
    return seconds


def _begin_reset(ctx: StepContext, r: Remediation, cluster: ClusterId, info: ClusterInfo) -> OperationStarted:
    if r.credential_kind is Credential.AAD_SERVER:
        return ctx.clusters.begin_reset_aad_profile(cluster, server_app_id=r.client_id or "",
                                                    client_app_id=info.aad_client_app_id or "",
                                                    tenant_id=info.aad_tenant_id, secret=ctx.new_secret(r))
    return ctx.clusters.begin_reset_service_principal_profile(cluster, r.secret_app_id, ctx.new_secret(r))


def _changed_under_us(r: Remediation, t: Target, cluster: ClusterInfo) -> tuple[str, str] | None:
    """The last look before a disruptive write, decided from the present rather than the hint's moment."""
    now_uses = cluster.app_id_for(r.credential_kind)
    if now_uses != (r.client_id or "").lower():
        return "ServicePrincipalChanged", f"the cluster now uses {now_uses or 'no application'}, not {r.client_id}"
    if r.source != "manual" and cluster.provisioning_state == "Succeeded" and cluster.last_modified_at \
            and cluster.last_modified_at >= datetime.fromisoformat(r.created_at):
        return "FixedMeanwhile", (f"the cluster was changed successfully at {cluster.last_modified_at}, after the"
                                  " decision: its credentials work; not reset")
    return None


def _retry(ctx: StepContext, t: Target, error: str, now: datetime) -> float | None:
    # A new secret can take minutes to be accepted everywhere, so a failed reset is tried again with backoff.
    if t.reset_attempts >= _attempts(ctx):
        t.set(TargetStatus.FAILED, "ResetFailed", f"the reset failed {t.reset_attempts} times; last: {error}", now)
        return None
    delay = backoff(ctx.config.retry_delay_seconds, t.reset_attempts)
    log.warning("%s: reset attempt %s failed, retrying in %ss: %s", t.cluster.name, t.reset_attempts, delay, error)
    t.reset_status_url, t.reset_started_at = None, None
    t.not_before = (now + timedelta(seconds=delay)).isoformat()
    t.set(TargetStatus.PENDING, "ResetFailed", f"reset attempt {t.reset_attempts} failed: {error}", now)
    return delay


# ------------------------------------------------------------------------------------- helpers


def _clusters_using(ctx: StepContext, r: Remediation) -> list[ClusterInfo]:
    """The clusters in scope that use the application: one Resource Graph query over every managed subscription (the
    cluster's own when none is set). Resource Graph may lag ARM; each target is read again through ARM right before
    its reset (`_changed_under_us`), so a cluster that moved off the application meanwhile is not reset."""
    subscriptions = ctx.config.subscriptions or (r.cluster.subscription_id,)
    if ctx.inventory is None:
        raise PermanentError("no cluster inventory is configured for the fan-out", code="InvalidConfiguration")
    return ctx.inventory.clusters_using(r.client_id or "", r.credential_kind, subscriptions)


def _guardrail_refusal(ctx: StepContext, r: Remediation, cluster: ClusterId, info: ClusterInfo
                       ) -> tuple[str, str] | None:
    """Why the guardrails keep a cluster out of the fan-out: the decision chain's own guardrail checks (scope, a
    managed identity, the opt-out tag on it or its group), each resource group's tags read once per invocation."""
    if ctx.reconciler is None:
        raise PermanentError("no decision chain is configured for the fan-out's guardrails",
                             code="InvalidConfiguration")
    verdict = ctx.reconciler.guardrail_refusal(cluster, info, r.credential_kind,
                                               readers=Readers(resource_groups=_TagsOnce(ctx.resource_groups,
                                                                                         ctx.group_tags)))
    return (verdict.code, verdict.message) if verdict else None


class _TagsOnce:
    """A resource group's tags, read once for every cluster of the fan-out in it."""

    def __init__(self, groups: ResourceGroups, seen: dict[tuple[str, str], dict[str, str]]) -> None:
        self._groups, self._seen = groups, seen

    def get_tags(self, subscription_id: str, resource_group: str) -> dict[str, str]:
        key = (subscription_id.lower(), resource_group.lower())
        if key not in self._seen:
            try:
                self._seen[key] = self._groups.get_tags(subscription_id, resource_group)
            except NotFoundError:
                self._seen[key] = {}
        return self._seen[key]


def _moved_every_cluster(r: Remediation) -> bool:
    """Every cluster known to use the application holds the new secret: none can still need an old one."""
    return r.application_expired and all(t.status is TargetStatus.VERIFIED for t in r.targets)


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
    r.secret.key_id, r.secret.vault_name, r.secret.vault_version = adopted.tags["keyId"], adopted.name, adopted.version
    return True


def _attempts(ctx: StepContext) -> int:
    """The resets one cluster gets in this step, as its procedure declares (remediation/run/procedures.py)."""
    assert ctx.limits.attempts_per_cluster is not None, "apply_to_clusters declares attempts_per_cluster"
    return ctx.limits.attempts_per_cluster

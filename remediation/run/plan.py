"""A dry run's, or observe mode's, last step: what the remediation would do, with the equivalent `az` commands;
it writes nothing to Azure. (Apart from the rotation's and the replacement's steps, which it describes.)"""

from __future__ import annotations

from datetime import timedelta

from remediation.model import Credential
from remediation.record import Remediation, TargetStatus
from remediation.run.replacement import replacement_plan
from remediation.run.rotation import reset_command
from remediation.run.step import Done, Outcome, StepContext, password_name, vault_secret_name


def plan(ctx: StepContext, r: Remediation) -> Outcome:
    """A dry run or observe mode: what the remediation would do, with the equivalent commands; writes nothing."""
    pending = [t.cluster for t in r.targets if t.status is TargetStatus.PENDING]
    if r.replace:
        head = replacement_plan(ctx, r)
    else:
        head = [f"add a password named '{password_name(r)}' to application {r.app_object_id} (appId {r.client_id}),"
                f" valid {ctx.config.secret_lifetime.days} days: az ad app credential reset --id {r.client_id}"
                f" --append --display-name '{password_name(r)}'",
                f"store it in Key Vault as secret '{vault_secret_name(r.client_id or '')}'"]
    aad = r.credential_kind is Credential.AAD_SERVER
    what = "the legacy Azure AD profile" if aad else "the service principal profile"
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


def _retirement_plan(ctx: StepContext, r: Remediation) -> str:
    if ctx.config.retire_after <= timedelta(0):
        return "keep the replaced passwords (REMEDIATOR_RETIRE_AFTER_HOURS is 0)"
    hours = ctx.config.retire_after.total_seconds() / 3600
    return (f"{hours:g} h after every cluster is verified, remove the application's expired passwords"
            " and, if every cluster using it was moved, the remediator's earlier ones")

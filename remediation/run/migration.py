"""The steps of a move to managed identity (REMEDIATOR_MIGRATE=execute), after the gate (remediation/decide/
migration_gate.py) let it start inside the cluster's maintenance window:

    plan_move             the plan from the present (remediation/decide/migration.py): what to create and grant;
                          blocked: nothing is written
    create_identities     the user-assigned identities, by names derived from the cluster, in the identity group
    assign_roles          each carried role, by an assignment name derived from (scope, principal, role)
    await_roles           until ARM lists every one of them (a new principal replicates for minutes)
    switch_identity       the cluster's identity update, its status URL saved before anything waits on it
    upgrade_node_images   one node-image upgrade per agent pool: the kubelet takes its new identity only then
    verify_migration      the cluster reads back with client id "msi", the identities made, Succeeded; the kubelet
                          identity holds AcrPull on every registry the service principal could pull from
    retire_old_secret     after REMEDIATOR_RETIRE_AFTER_HOURS, when no cluster in scope uses the application any more,
                          its passwords go as any replaced password does; the application itself is never deleted

Every step re-derives from what Azure holds, so a crash at any step boundary converges to one migration: an identity
is a PUT by name (the same name is the same identity; one carrying another cluster's tag is never adopted), a role
assignment a PUT by a derived name (ARM answers 409 RoleAssignmentExists for the same one), the switch is recorded as
started before it is sent and, when a run dies before saving its status URL, the next run reads the cluster: already
on managed identity means switched, busy means still switching. Nothing ever switches a cluster back to a secret: a
failure after the switch stops with the way forward for a person.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from remediation.decide import migration_gate
from remediation.decide.migration import CONTROL_PLANE, KUBELET, READY, ClusterShape, gather, plan_migration
from remediation.decide.migration_gate import MigrationFacts
from remediation.errors import (
    ConflictError,
    NotFoundError,
    OperationInProgressError,
    PermanentError,
    PrincipalNotReplicatedError,
)
from remediation.ids import subscription_of
from remediation.model import IN_PROGRESS_STATES, Credential, ManagedIdentity, OperationStatus
from remediation.record import IdentityMade, Operation, Remediation, TargetStatus
from remediation.run.chain import MAX_DELAY_SECONDS
from remediation.run.replacement import assignment_name, role_assignments
from remediation.run.rotation import RESET_WINDOW_SECONDS, retire_replaced
from remediation.run.step import Done, MigrationPorts, Outcome, StepContext, Wait, look_after

ASSIGNED, PENDING = "Assigned", "Pending"
CLUSTER_TAG = "aks-sp-remediator-cluster"  # on each identity the move makes: whose it is
ROLL_FORWARD = ("nothing switches the cluster back to a secret: roll forward by hand with the plan's commands"
                " (`python -m remediation migrate plan <cluster>`)")


def plan_move(ctx: StepContext, r: Remediation) -> Outcome:
    ports = _ports(ctx)
    present = gather(r.cluster, clusters=ports.documents, maintenance=ctx.clusters, roles=role_assignments(ctx),
                     principal_of=lambda app_id: getattr(ctx.directory.get_service_principal(app_id), "object_id",
                                                         None))
    migration = ctx.config.guardrails.migration
    plan = plan_migration(present, ctx.config.guardrails, now=ctx.clock(), identity_group=migration.identity_group,
                          retire_after=ctx.config.retire_after)
    # Decided again from the present, as the gate decided (a role may have been granted elsewhere since).
    checks = (migration_gate.plan_blocked, migration_gate.roles_out_of_reach)
    refusal = migration_gate.first_refusal(MigrationFacts(None, {}, None, 0, plan), ctx.config.guardrails,
                                           ctx.clock(), checks)
    if refusal is not None or plan.status != READY:
        raise PermanentError(f"the move is not possible now: {refusal.message if refusal else plan.reason}",
                             code="MigrationBlocked")
    state = r.migration
    # Only the identities the plan gives the cluster: a kubelet identity only where the kubelet needs roles (AcrPull).
    used = {CONTROL_PLANE: plan.control_plane == "userAssigned", KUBELET: plan.kubelet == "userAssigned"}
    state.identity_group, state.location = plan.identity_group or "", present.shape.location
    state.names = {which: name for which, name in plan.identity_names.items() if used.get(which)}
    state.roles = [{"identity": role.identity, "scope": role.scope, "role": role.grant_role_id, "status": PENDING,
                    "detail": role.reason} for role in plan.roles]
    return Done("Planned", f"{len(state.names)} identity(ies) to create, {len(state.roles)} role(s) to grant;"
                           f" control plane {plan.control_plane}, kubelet {plan.kubelet}")


def create_identities(ctx: StepContext, r: Remediation) -> Outcome:
    state, identities = r.migration, _ports(ctx).identities
    sub, mine = r.cluster.subscription_id, {CLUSTER_TAG: _cluster_mark(r)}
    for which, name in state.names.items():
        if which in state.made:
            continue
        try:
            found = identities.get(sub, state.identity_group, name)
        except NotFoundError:
            found = None
        # A name proves nothing: an identity of this name made for something else is never given this cluster's roles.
        if found is not None and found.tags.get(CLUSTER_TAG) != mine[CLUSTER_TAG]:
            raise PermanentError(f"managed identity {name} in {state.identity_group} exists and is not this"
                                 f" cluster's (tag {CLUSTER_TAG}); rename or remove it", code="IdentityNameTaken")
        made = found or identities.create_or_update(sub, state.identity_group, name, location=state.location,
                                                    tags=mine)
        state.made[which] = IdentityMade(made.id, made.principal_id, made.client_id)
        ctx.checkpoint(r)
    return Done("IdentitiesCreated", ", ".join(f"{k}: {v.id}" for k, v in state.made.items()) or
                "none: a system-assigned identity is made by the switch")


def assign_roles(ctx: StepContext, r: Remediation) -> Outcome:
    state = r.migration
    for role in state.roles:
        if role["status"] == ASSIGNED:
            continue
        principal = state.made[role["identity"]].principal_id
        name = assignment_name(role["scope"], principal, role["role"])
        definition = f"/subscriptions/{subscription_of(role['scope'])}/providers/Microsoft.Authorization/" \
                     f"roleDefinitions/{role['role']}"
        try:
            role_assignments(ctx).create(role["scope"], definition, principal, name=name)
        except PrincipalNotReplicatedError as err:
            role["detail"] = "PrincipalNotFound: waiting for replication"
            return Wait(ctx.config.propagation_interval_seconds, "AwaitingReplication",
                        f"ARM does not see identity {principal} yet: {err}")
        except ConflictError:  # RoleAssignmentExists: this very assignment, made by a run that died before recording
            pass
        role["status"], role["detail"] = ASSIGNED, f"assignment {name}"
        ctx.checkpoint(r)
    return Done("RolesAssigned", f"{len(state.roles)} role assignment(s)")


def await_roles(ctx: StepContext, r: Remediation) -> Outcome:
    state, missing = r.migration, []
    listed: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for role in state.roles:
        principal, sub = state.made[role["identity"]].principal_id, subscription_of(role["scope"])
        if (sub, principal) not in listed:
            listed[(sub, principal)] = {(a.scope.lower().rstrip("/"), a.role_guid)
                                        for a in role_assignments(ctx).list_for_principal(sub, principal)}
        if (role["scope"].lower().rstrip("/"), role["role"].lower()) not in listed[(sub, principal)]:
            missing.append(f"{role['role']} on {role['scope']}")
    if missing:
        return Wait(ctx.config.propagation_interval_seconds, "RolesNotListed",
                    f"ARM does not list {len(missing)} assignment(s) yet: {'; '.join(missing[:3])}")
    return Done("RolesListed", f"ARM lists all {len(state.roles)} role assignment(s)")


def switch_identity(ctx: StepContext, r: Remediation) -> Outcome:
    state, op, now = r.migration, r.migration.switch, ctx.clock()
    if op.status_url:
        return _follow(ctx, r, op, "the switch to managed identity", "SwitchFailed", "Switched")
    cluster = ctx.clusters.get_cluster(r.cluster)
    if cluster.uses_managed_identity:  # switched by an earlier run whose answer was lost (or by a person)
        op.finished_at = now.isoformat()
        return Done("Switched", "the cluster already uses managed identity")
    if op.started_at and cluster.busy:
        return Wait(ctx.config.poll_seconds, "SwitchInProgress", f"an earlier run's switch is running"
                                                                 f" ({cluster.provisioning_state})")
    if cluster.client_id.lower() != (r.client_id or "").lower():
        raise PermanentError(f"the cluster now uses {cluster.client_id}, not {r.client_id}: someone changed it",
                             code="ServicePrincipalChanged")
    if cluster.busy:
        return Wait(ctx.config.poll_seconds, "ClusterBusy", f"the cluster is {cluster.provisioning_state}")
    if state.window_end and now >= datetime.fromisoformat(state.window_end):
        raise PermanentError(f"the maintenance window closed at {state.window_end} before the switch could start;"
                             " the next health check comes back to it", code="MaintenanceWindowClosed")
    cap = ctx.config.guardrails.max_resets_per_hour
    frees_at = ctx.incidents.reserve_reset(now, cap=cap, window_seconds=RESET_WINDOW_SECONDS)
    if frees_at is not None:
        return Wait(max((frees_at - now).total_seconds(), 1.0), "ResetCapReached",
                    f"{cap} resets started in the last hour across the fleet (REMEDIATOR_MAX_RESETS_PER_HOUR)")
    op.started_at = now.isoformat()
    ctx.checkpoint(r)  # recorded before it is sent: a run that dies now is found again by reading the cluster
    try:
        started = _ports(ctx).moves.begin_enable_managed_identity(
            r.cluster, control_plane=_identity(r, CONTROL_PLANE), kubelet=_identity(r, KUBELET))
    except OperationInProgressError as err:
        op.started_at = None
        return Wait(ctx.config.poll_seconds, "ClusterBusy", f"another operation is running on the cluster: {err}")
    op.status_url = started.status_url
    return _look_again(ctx, op, now, started.retry_after, "SwitchStarted", "the switch to managed identity started")


def upgrade_node_images(ctx: StepContext, r: Remediation) -> Outcome:
    state, moves = r.migration, _ports(ctx).moves
    if not state.pools:  # the cluster's agent pools, as its body lists them (agentPoolProfiles)
        shape = ClusterShape.from_arm(_ports(ctx).documents.get_cluster_document(r.cluster))
        state.pools = {pool: Operation() for pool in shape.pools}
        ctx.checkpoint(r)
    for pool, op in state.pools.items():
        if op.finished_at:
            continue
        if op.status_url:
            outcome = _follow(ctx, r, op, f"the node-image upgrade of pool {pool}", "NodeImageUpgradeFailed",
                              "NodeImagesUpgraded")
            if isinstance(outcome, Wait):
                return outcome
            continue
        now = ctx.clock()
        # Started by a run that died before saving the URL: sending it again is safe (AKS refuses a second one while
        # the first runs, 409, and an upgrade to the image a pool already has changes nothing).
        op.started_at = now.isoformat()
        ctx.checkpoint(r)
        try:
            started = moves.begin_upgrade_node_image(r.cluster, pool)
        except OperationInProgressError as err:
            return Wait(ctx.config.poll_seconds, "ClusterBusy", f"pool {pool}: an operation is running: {err}")
        op.status_url = started.status_url
        return _look_again(ctx, op, now, started.retry_after, "NodeImageUpgradeStarted",
                           f"the node-image upgrade of pool {pool} started")
    return Done("NodeImagesUpgraded", f"{len(state.pools)} pool(s): {', '.join(state.pools)}")


def verify_migration(ctx: StepContext, r: Remediation) -> Outcome:
    state, now = r.migration, ctx.clock()
    document = _ports(ctx).documents.get_cluster_document(r.cluster)
    shape = ClusterShape.from_arm(document)
    state_now = str((document.get("properties") or {}).get("provisioningState") or "")
    if state_now in IN_PROGRESS_STATES:
        return Wait(ctx.config.poll_seconds, "ClusterBusy", f"the cluster is {state_now}")
    problems = []
    if shape.uses_service_principal:
        problems.append(f"the cluster still uses service principal {shape.client_id}")
    if state_now != "Succeeded":
        problems.append(f"provisioningState {state_now}")
    control = state.made.get(CONTROL_PLANE)
    held = {k.lower() for k in ((document.get("identity") or {}).get("userAssignedIdentities") or {})}
    if control and control.id.lower() not in held:
        problems.append(f"its control-plane identity is not {control.id}")
    kubelet = state.made.get(KUBELET)
    shown = ((document.get("properties") or {}).get("identityProfile") or {}).get("kubeletidentity") or {}
    if kubelet and str(shown.get("resourceId") or "").lower() != kubelet.id.lower():
        problems.append(f"its kubelet identity is not {kubelet.id}")
    pulls = [role for role in state.roles if role["identity"] == KUBELET and "/registries/" in role["scope"].lower()]
    if kubelet and pulls:
        listed = {(a.scope.lower(), a.role_guid) for a in
                  role_assignments(ctx).list_for_principal(r.cluster.subscription_id, kubelet.principal_id)}
        problems += [f"the kubelet identity lacks {p['role']} on {p['scope']}" for p in pulls
                     if (p["scope"].lower(), p["role"].lower()) not in listed]
    if problems:
        raise PermanentError(f"the cluster did not read back as moved: {'; '.join(problems)}; {ROLL_FORWARD}",
                             code="MigrationNotVerified")
    state.verified_at = r.verified_at = now.isoformat()
    for target in r.targets:
        target.set(TargetStatus.VERIFIED, "Verified", "managed identity, its identities and roles read back", now)
    return Done("Verified", f"the cluster uses managed identity; the node-image upgrade ({len(state.pools)} pool(s))"
                            " succeeded after the switch" + (f"; {len(pulls)} registry pull(s) authorized" if pulls
                                                             else ""))


def retire_old_secret(ctx: StepContext, r: Remediation) -> Outcome:
    """The application's passwords go after the grace period, as any replaced password does, once no cluster in
    scope uses the application any more; the application itself stays (`orphans` reports it)."""
    grace = ctx.config.retire_after
    if grace <= timedelta(0):
        return Done("Kept", "REMEDIATOR_RETIRE_AFTER_HOURS is 0: the old passwords are kept")
    due, now = datetime.fromisoformat(r.verified_at or ctx.clock().isoformat()) + grace, ctx.clock()
    if now < due:
        return Wait(min((due - now).total_seconds(), MAX_DELAY_SECONDS), "RetirementGrace",
                    f"the service principal's passwords go after {due.isoformat()}")
    if ctx.inventory is None:
        raise PermanentError("no cluster inventory is configured", code="InvalidConfiguration")
    users = [c.name for c in ctx.inventory.clusters_using(r.client_id or "", Credential.SERVICE_PRINCIPAL,
                                                          ctx.config.subscriptions or (r.cluster.subscription_id,))]
    if users:
        return Done("StillInUse", f"application {r.client_id} still serves {', '.join(users[:5])}: its passwords stay")
    # No cluster in scope holds any of its passwords now: every one of them is replaced (by the managed identity).
    app = ctx.directory.get_application_by_app_id(r.client_id or "")
    r.old_key_ids = sorted({*r.old_key_ids, *(p.key_id for p in app.passwords)})
    return retire_replaced(ctx, r, moved_all=True, app=app)


# ------------------------------------------------------------------------------------------ helpers


def _follow(ctx: StepContext, r: Remediation, op: Operation, what: str, failed_code: str, done_code: str
            ) -> Outcome:
    now = ctx.clock()
    if op.not_before and now < datetime.fromisoformat(op.not_before):
        return Wait((datetime.fromisoformat(op.not_before) - now).total_seconds(), "Waiting", f"{what} runs")
    status: OperationStatus = ctx.clusters.get_operation(op.status_url or "")
    if not status.finished:
        return _look_again(ctx, op, now, status.retry_after, "InProgress", f"{what} runs")
    if not status.succeeded:
        raise PermanentError(f"{what} ended {status.status}: {status.error or 'no error given'}; {ROLL_FORWARD}",
                             code=failed_code)
    op.finished_at = now.isoformat()
    ctx.checkpoint(r)
    return Done(done_code, f"{what} succeeded")


def _look_again(ctx: StepContext, op: Operation, now: datetime, retry_after: float | None, code: str,
                detail: str) -> Wait:
    seconds = look_after(ctx.config, retry_after)
    op.not_before = (now + timedelta(seconds=seconds)).isoformat()
    return Wait(seconds, code, detail)


def _identity(r: Remediation, which: str) -> ManagedIdentity | None:
    made = r.migration.made.get(which)
    return ManagedIdentity(made.id, made.principal_id, made.client_id) if made else None


def _cluster_mark(r: Remediation) -> str:
    """The tag value that says an identity is this cluster's: a digest of its id (an id may exceed a tag's 256)."""
    return hashlib.sha256(str(r.cluster).lower().encode()).hexdigest()[:32]


def _ports(ctx: StepContext) -> MigrationPorts:
    if ctx.migration is None:
        raise PermanentError("this deployment cannot move clusters (REMEDIATOR_MIGRATE is off)",
                             code="InvalidConfiguration")
    return ctx.migration

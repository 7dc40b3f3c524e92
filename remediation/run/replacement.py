"""The steps only a replacement runs: a cluster's application was deleted, so a new one takes its place.

    find_old_principal   the deleted service principal in Entra ID's deleted items, and its role
                         assignments in the subscriptions in scope (ARM keeps them after the delete)
    create_application   a new application, owned by the remediator, and its service principal
    carry_over_roles     the old principal's role assignments, given to the new one

Between them run the rotation's own steps (remediation/run/rotation.py): the new application's first
password is minted and stored in Key Vault before anything else, Entra ID must accept it several
times in a row, and each cluster is reset to the new client id and secret and verified.

Every write is recorded before it is made and found again after a crash: the role assignments by names derived
from (scope, principal, role), which ARM treats as the same assignment when created again; the application by a
random creation nonce, recorded before the create and written into its notes. A name proves nothing (anyone may
register one, and an owner of an application may add the remediator as co-owner), so an application found after a
crash is adopted only when it carries the nonce, the remediator is its only owner, and it holds no credential of any
kind (nothing could sign in as it yet); two candidates, or one that fails these, stop the replacement with a reason
for a person. The creates themselves are not idempotent and never retried automatically: after an error or a lost
answer the next run looks before it creates. Nothing is written before the old principal's role assignments are known
and every one of them may be given (REMEDIATOR_ASSIGNABLE_ROLE_IDS, inside the scope guardrails): a cluster is never
moved to a principal that lacks what it had.
"""

from __future__ import annotations

import secrets
import uuid

from remediation.errors import ConflictError, PermanentError, PrincipalNotReplicatedError
from remediation.model import Application
from remediation.ports import RoleAssignments
from remediation.record import CarriedRole, Remediation
from remediation.run.step import Done, Outcome, StepContext, Wait, password_name, vault_secret_name

MANAGEMENT_GROUPS = "/providers/microsoft.management/managementgroups/"

ASSIGNED, PENDING, NOT_ASSIGNABLE = "Assigned", "Pending", "NotAssignable"
_NONCE_LABEL = "Creation nonce"  # in the new application's notes, which only its owners may write
# A namespace of our own for uuid5 names: the same (scope, principal, role) always gets the same assignment name.
_ASSIGNMENT_NAMES = uuid.UUID("5b0e3c1e-9a57-4f2e-9d0c-6a1f3b7e2c41")


def assignment_name(scope: str, principal_id: str, role_definition_id: str) -> str:
    return str(uuid.uuid5(_ASSIGNMENT_NAMES, f"{scope.lower()}|{principal_id.lower()}|{role_definition_id.lower()}"))


def application_name(r: Remediation) -> str:
    """The new application's name: the old one's, marked, and unique to this remediation (found again by it)."""
    return f"{r.replacement.old_display_name or 'aks-service-principal'} (aks-sp-remediator {r.id[:12]})"


def find_old_principal(ctx: StepContext, r: Remediation) -> Outcome:
    deleted = ctx.directory.find_deleted_service_principal(r.client_id or "")
    if deleted is None:
        message = (f"Entra ID's deleted items hold no service principal of application {r.client_id}: it was deleted"
                   " over 30 days ago or purged, so its role assignments cannot be found; create the replacement by"
                   " hand (the plan lists the commands) and assign it the roles the clusters need")
        if r.dry_run or r.observe:
            return Done("OldPrincipalNotFound", message)
        raise PermanentError(message, code="OldPrincipalNotFound")
    state = r.replacement
    state.old_principal_id, state.old_display_name = deleted.object_id, deleted.display_name
    found: dict[tuple[str, str], CarriedRole] = {}
    for subscription in ctx.config.subscriptions or (r.cluster.subscription_id,):
        for assignment in role_assignments(ctx).list_for_principal(subscription, deleted.object_id):
            key = (assignment.scope.lower(), assignment.role_guid)
            found.setdefault(key, CarriedRole(assignment.scope, assignment.role_definition_id, assignment.role_guid))
    state.roles = sorted(found.values(), key=lambda a: (a.scope.lower(), a.role))
    for carried in state.roles:
        if refusal := _refusal(ctx, carried):
            carried.status, carried.detail = NOT_ASSIGNABLE, refusal
    refused = [c for c in state.roles if c.status != PENDING]
    summary = (f"service principal {deleted.object_id} ('{deleted.display_name}') was deleted"
               f" {deleted.deleted_at.isoformat() if deleted.deleted_at else ''}; {len(state.roles)} role"
               f" assignment(s) to carry over")
    if refused and not (r.dry_run or r.observe):
        raise PermanentError(f"{summary}, of which {len(refused)} the remediator may not give: "
                             + "; ".join(f"{c.role} at {c.scope}: {c.detail}" for c in refused),
                             code="RoleNotAssignable")
    return Done("OldPrincipalFound", summary)


def create_application(ctx: StepContext, r: Remediation) -> Outcome:
    owner = (ctx.config.owner_id or "").lower()
    if not owner:
        raise PermanentError("REMEDIATOR_PRINCIPAL_ID is not set: a replacement must be able to tell the"
                             " application it created from any other", code="InvalidConfiguration")
    name, state = application_name(r), r.replacement
    if not state.new_client_id:
        found = _created_earlier(ctx, r, owner) if state.app_nonce else None
        if found is None:
            state.app_nonce = state.app_nonce or secrets.token_hex(16)
            ctx.checkpoint(r)  # recorded before the create: a run that dies now, or loses the answer, looks first
            found = ctx.directory.create_application(name, notes=_notes(r))
        state.new_client_id, state.new_app_object_id = found.app_id.lower(), found.object_id
        ctx.checkpoint(r)
    state.new_principal_id = _service_principal(ctx, r, owner)
    return Done("ApplicationCreated", f"application {state.new_client_id} ('{name}') with service principal"
                                      f" {state.new_principal_id}")


def _notes(r: Remediation) -> str:
    return (f"Replaces deleted application {r.client_id} for AKS clusters (aks-sp-remediator remediation {r.id})."
            f" {_NONCE_LABEL} {r.replacement.app_nonce}.")


def _created_earlier(ctx: StepContext, r: Remediation, owner: str) -> Application | None:
    """The application an earlier run of this step created, if it did: the one application the remediator owns whose
    notes carry this remediation's nonce. PermanentError (nothing adopted) for two such applications, or for one that
    someone else also owns or that holds any credential: it is not provably the remediator's alone."""
    marker = f"{_NONCE_LABEL} {r.replacement.app_nonce}."
    candidates = [a for a in ctx.directory.list_owned_applications(owner) if marker in a.notes]
    if not candidates:
        return None
    if len(candidates) > 1:
        raise PermanentError(f"{len(candidates)} applications ({', '.join(sorted(a.app_id for a in candidates))})"
                             " carry this replacement's creation nonce; none is used: a person must look at them",
                             code="AmbiguousReplacement")
    (app,) = candidates
    others = sorted((app.owner_ids or frozenset({"<unread>"})) - {owner})
    credentials = len(app.passwords) + app.certificates + ctx.directory.count_federated_credentials(app.object_id)
    if others or credentials:
        reasons = ([f"it is also owned by {', '.join(others)}"] if others else []) + (
            [f"it holds {credentials} credential(s) the remediator did not add"] if credentials else [])
        raise PermanentError(f"application {app.app_id} carries this replacement's creation nonce but is not the"
                             f" remediator's alone ({'; '.join(reasons)}); it is not used: a person must look",
                             code="ReplacementNotAdoptable")
    return app


def _service_principal(ctx: StepContext, r: Remediation, owner: str) -> str:
    """The new application's service principal, created once: looked for first, since a create whose answer was lost
    may have happened. One someone else owns, or with credentials of its own, is not used."""
    app_id = r.replacement.new_client_id or ""
    found = ctx.directory.get_service_principal(app_id)
    if found is None:
        try:
            return ctx.directory.create_service_principal(app_id)
        except ConflictError:  # made meanwhile (by whom, the checks below tell)
            found = ctx.directory.get_service_principal(app_id)
            if found is None:
                raise
    others = sorted(found.owner_ids - {owner})
    if others or found.credentials:
        raise PermanentError(f"the service principal {found.object_id} of application {app_id} is also owned by"
                             f" {', '.join(others) or 'no one else'} and holds {found.credentials} credential(s) of"
                             " its own; it is not used: a person must look", code="ReplacementNotAdoptable")
    return found.object_id


def carry_over_roles(ctx: StepContext, r: Remediation) -> Outcome:
    """Give the new principal each role the old one held; wait while ARM does not see the new principal yet (for as
    long as the procedure allows: remediation/run/procedures.py)."""
    principal = r.replacement.new_principal_id or ""
    for carried in r.replacement.roles:
        if carried.status == ASSIGNED:
            continue
        name = assignment_name(carried.scope, principal, carried.role_definition_id)
        try:
            role_assignments(ctx).create(carried.scope, carried.role_definition_id, principal, name=name)
        except PrincipalNotReplicatedError as err:
            carried.detail = "PrincipalNotFound: waiting for replication"
            return Wait(ctx.config.propagation_interval_seconds, "AwaitingReplication",
                        f"ARM does not see service principal {principal} yet: {err}")
        carried.status, carried.detail = ASSIGNED, f"assignment {name}"
        ctx.checkpoint(r)
    return Done("RolesCarriedOver", f"{len(r.replacement.roles)} role assignment(s) given to {principal}")


def replacement_plan(ctx: StepContext, r: Remediation) -> list[str]:
    """The plan's first lines for a replacement: what is created and assigned, with the `az` commands."""
    name = application_name(r)
    lines = [f"application {r.client_id} was deleted: create application '{name}' owned by the remediator:"
             f" az ad app create --display-name '{name}'",
             "create its service principal: az ad sp create --id <the new appId>",
             f"add a password named '{password_name(r)}' and store it in Key Vault as secret"
             f" '{vault_secret_name('<the new appId>')}': az ad app credential reset --id <the new appId> --append"]
    state = r.replacement
    if state.old_principal_id is None:
        lines.append("the old service principal is not in Entra ID's deleted items: its role assignments are"
                     " unknown; assign the roles the clusters need (node resource group, subnet, registry, DNS"
                     " zones) by hand")
    elif not state.roles:
        lines.append(f"the old service principal {state.old_principal_id} held no role assignments in the subscriptions"
                     " in scope: none to carry over")
    for carried in state.roles:
        command = (f"az role assignment create --assignee-object-id <the new service principal's object id>"
                   f" --assignee-principal-type ServicePrincipal --role {carried.role} --scope {carried.scope}")
        refused = f" (not possible for the remediator: {carried.detail})" if carried.status == NOT_ASSIGNABLE else ""
        lines.append(f"carry over role {carried.role} at {carried.scope}{refused}: {command}")
    return lines


def role_assignments(ctx: StepContext) -> RoleAssignments:
    if ctx.roles is None:
        raise PermanentError("no role assignments adapter is configured", code="InvalidConfiguration")
    return ctx.roles


def _refusal(ctx: StepContext, carried: CarriedRole) -> str | None:
    """Why the remediator may not give this assignment, or None. The scope guardrails apply to every write, a role
    assignment's included: a role in a denied subscription or resource group is refused like a reset there."""
    scope = carried.scope
    if MANAGEMENT_GROUPS in scope.lower():
        return "a management group scope: the remediator assigns roles only in subscriptions"
    allowed = ctx.config.guardrails.assignable_roles
    if allowed and carried.role not in allowed:
        return "not among REMEDIATOR_ASSIGNABLE_ROLE_IDS (the condition of its role assignment rights)"
    subscription, group = _segment(scope, "subscriptions"), _segment(scope, "resourcegroups")
    guardrails = ctx.config.guardrails.scope
    refusal = guardrails.refusal_at(subscription, group) if group else guardrails.refusal_of_subscription(subscription)
    if refusal:
        return f"{refusal[0]}: {refusal[1]}"
    return None


def _segment(resource_id: str, key: str) -> str:
    """The value after `key` in an ARM id (case-insensitive), or ""."""
    parts = resource_id.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    return parts[lowered.index(key) + 1] if key in lowered[:-1] else ""

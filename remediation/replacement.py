"""The steps only a replacement runs: a cluster's application was deleted, so a new one takes its place.

    find_old_principal   the deleted service principal in Entra ID's deleted items, and its role
                         assignments in the subscriptions in scope (ARM keeps them after the delete)
    create_application   a new application, owned by the remediator, and its service principal
    carry_over_roles     the old principal's role assignments, given to the new one

Between them run the rotation's own steps (remediation/steps.py): the new application's first
password is minted and stored in Key Vault before anything else, Entra ID must accept it several
times in a row, and each cluster is reset to the new client id and secret and verified.

Every write is recorded before it is made and found again after a crash: the application by its
name among those the remediator owns, the role assignments by names derived from (scope,
principal, role), which ARM treats as the same assignment when created again. Nothing is written
before the old principal's role assignments are known and every one of them may be given
(REMEDIATOR_ASSIGNABLE_ROLE_IDS): a cluster is never moved to a principal that lacks what it had.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from remediation.errors import PermanentError, PrincipalNotReplicatedError
from remediation.ports import RoleAssignments
from remediation.record import Remediation
from remediation.steps import Done, Outcome, StepContext, Wait, password_name, vault_secret_name

MANAGEMENT_GROUPS = "/providers/microsoft.management/managementgroups/"

ASSIGNED, PENDING = "Assigned", "Pending"
# A namespace of our own for uuid5 names: the same (scope, principal, role) always gets the same assignment name.
_ASSIGNMENT_NAMES = uuid.UUID("5b0e3c1e-9a57-4f2e-9d0c-6a1f3b7e2c41")


def assignment_name(scope: str, principal_id: str, role_definition_id: str) -> str:
    return str(uuid.uuid5(_ASSIGNMENT_NAMES, f"{scope.lower()}|{principal_id.lower()}|{role_definition_id.lower()}"))


def application_name(r: Remediation) -> str:
    """The new application's name: the old one's, marked, and unique to this remediation (found again by it)."""
    return f"{r.old_display_name or 'aks-service-principal'} (aks-sp-remediator {r.id[:12]})"


def find_old_principal(ctx: StepContext, r: Remediation) -> Outcome:
    deleted = ctx.directory.find_deleted_service_principal(r.client_id or "")
    if deleted is None:
        message = (f"Entra ID's deleted items hold no service principal of application {r.client_id}: it was deleted"
                   " over 30 days ago or purged, so its role assignments cannot be found; create the replacement by"
                   " hand (the plan lists the commands) and assign it the roles the clusters need")
        if r.dry_run or r.observe:
            return Done("OldPrincipalNotFound", message)
        raise PermanentError(message, code="OldPrincipalNotFound")
    r.old_principal_id, r.old_display_name = deleted.object_id, deleted.display_name
    found: dict[tuple[str, str], dict[str, str]] = {}
    for subscription in ctx.config.subscriptions or (r.cluster.subscription_id,):
        for assignment in _roles(ctx).list_for_principal(subscription, deleted.object_id):
            key = (assignment.scope.lower(), assignment.role_guid)
            found.setdefault(key, {"scope": assignment.scope, "roleDefinitionId": assignment.role_definition_id,
                                   "role": assignment.role_guid, "status": PENDING, "detail": ""})
    r.role_assignments = sorted(found.values(), key=lambda a: (a["scope"].lower(), a["role"]))
    for entry in r.role_assignments:
        if refusal := _refusal(ctx, entry):
            entry["status"], entry["detail"] = "NotAssignable", refusal
    refused = [e for e in r.role_assignments if e["status"] != PENDING]
    summary = (f"service principal {deleted.object_id} ('{deleted.display_name}') was deleted"
               f" {deleted.deleted_at.isoformat() if deleted.deleted_at else ''}; {len(r.role_assignments)} role"
               f" assignment(s) to carry over")
    if refused and not (r.dry_run or r.observe):
        raise PermanentError(f"{summary}, of which {len(refused)} the remediator may not give: "
                             + "; ".join(f"{e['role']} at {e['scope']}: {e['detail']}" for e in refused),
                             code="RoleNotAssignable")
    return Done("OldPrincipalFound", summary)


def create_application(ctx: StepContext, r: Remediation) -> Outcome:
    if not ctx.config.owner_id:
        raise PermanentError("REMEDIATOR_PRINCIPAL_ID is not set: a replacement must be able to find the"
                             " application it created again after a crash", code="InvalidConfiguration")
    name = application_name(r)
    if not r.new_client_id:
        found = ctx.directory.find_owned_application(ctx.config.owner_id, name) if r.app_create_started_at else None
        if found is None:
            r.app_create_started_at = ctx.clock().isoformat()
            ctx.checkpoint(r)  # recorded before the create: a run that dies now looks for it first
            found = ctx.directory.create_application(name, notes=f"Replaces deleted application {r.client_id} for"
                                                     f" AKS clusters (aks-sp-remediator remediation {r.id}).")
        r.new_client_id, r.new_app_object_id = found.app_id.lower(), found.object_id
        ctx.checkpoint(r)
    r.new_principal_id = ctx.directory.ensure_service_principal(r.new_client_id)
    return Done("ApplicationCreated", f"application {r.new_client_id} ('{name}') with service principal"
                                      f" {r.new_principal_id}")


def carry_over_roles(ctx: StepContext, r: Remediation) -> Outcome:
    """Give the new principal each role the old one held; wait while ARM does not see the new principal yet."""
    now = ctx.clock()
    r.roles_started_at = r.roles_started_at or now.isoformat()
    for entry in r.role_assignments:
        if entry["status"] == ASSIGNED:
            continue
        name = assignment_name(entry["scope"], r.new_principal_id or "", entry["roleDefinitionId"])
        try:
            _roles(ctx).create(entry["scope"], entry["roleDefinitionId"], r.new_principal_id or "", name=name)
        except PrincipalNotReplicatedError as err:
            waited = now - datetime.fromisoformat(r.roles_started_at)
            if waited > ctx.config.propagation_timeout:
                raise PermanentError(f"ARM still does not see service principal {r.new_principal_id} after"
                                     f" {waited}", code="PrincipalNotFound") from err
            entry["detail"] = "PrincipalNotFound: waiting for replication"
            return Wait(ctx.config.propagation_interval_seconds, "AwaitingReplication", str(err))
        entry["status"], entry["detail"] = ASSIGNED, f"assignment {name}"
        ctx.checkpoint(r)
    return Done("RolesCarriedOver", f"{len(r.role_assignments)} role assignment(s) given to {r.new_principal_id}")


def replacement_plan(ctx: StepContext, r: Remediation) -> list[str]:
    """The plan's first lines for a replacement: what is created and assigned, with the `az` commands."""
    name = application_name(r)
    lines = [f"application {r.client_id} was deleted: create application '{name}' owned by the remediator:"
             f" az ad app create --display-name '{name}'",
             "create its service principal: az ad sp create --id <the new appId>",
             f"add a password named '{password_name(r)}' and store it in Key Vault as secret"
             f" '{vault_secret_name('<the new appId>')}': az ad app credential reset --id <the new appId> --append"]
    if r.old_principal_id is None:
        lines.append("the old service principal is not in Entra ID's deleted items: its role assignments are"
                     " unknown; assign the roles the clusters need (node resource group, subnet, registry, DNS"
                     " zones) by hand")
    elif not r.role_assignments:
        lines.append(f"the old service principal {r.old_principal_id} held no role assignments in the subscriptions"
                     " in scope: none to carry over")
    for entry in r.role_assignments:
        command = (f"az role assignment create --assignee-object-id <the new service principal's object id>"
                   f" --assignee-principal-type ServicePrincipal --role {entry['role']} --scope {entry['scope']}")
        refused = f" (not possible for the remediator: {entry['detail']})" if entry["status"] == "NotAssignable" else ""
        lines.append(f"carry over role {entry['role']} at {entry['scope']}{refused}: {command}")
    return lines


def _roles(ctx: StepContext) -> RoleAssignments:
    if ctx.roles is None:
        raise PermanentError("no role assignments adapter is configured", code="InvalidConfiguration")
    return ctx.roles


def _refusal(ctx: StepContext, entry: dict[str, str]) -> str | None:
    if MANAGEMENT_GROUPS in entry["scope"].lower():
        return "a management group scope: the remediator assigns roles only in subscriptions"
    allowed = ctx.config.guardrails.assignable_roles
    if allowed and entry["role"] not in allowed:
        return "not among REMEDIATOR_ASSIGNABLE_ROLE_IDS (the condition of its role assignment rights)"
    return None

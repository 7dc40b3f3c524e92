"""A planned move of a service-principal cluster to managed identity (`az aks update --enable-managed-identity`), from
the present state, without writing anything.

The move is more than one command. The new identity must hold the roles the service principal held on resources
outside the node resource group (its own subnet, route table, private DNS zone; AcrPull on registries for the kubelet
identity) **before** the switch, or the cluster loses access to its network and images (a scale set write then fails
with LinkedAuthorizationFailed on `subnets/join/action`); the kubelet changes identity only when the node images are
upgraded ("kubelet will KEEP USING SERVICE PRINCIPAL until you upgrade your agentpool", azure-cli); both disturb
workloads, so they belong in the cluster's maintenance window.

`plan_migration` is pure: it takes what `gather` read (the cluster as ARM returns it, the service principal's role
assignments through the RoleAssignments port, the cluster's maintenance configurations) and the guardrails, and
returns a `MigrationPlan`: each role split into what the control-plane identity needs and what the kubelet identity
needs, mapped to the role the managed identity should get, with blockers named (a management-group scope, a role
outside REMEDIATOR_ASSIGNABLE_ROLE_IDS, a scope on a deny list); whether a user-assigned control-plane identity is
required (a bring-your-own network or private DNS zone: a system-assigned identity exists only after the switch, so
nothing can be granted to it before); the exact `az` commands in order; the next maintenance window; the disruption
to expect; and what happens to the old service principal. Guarantees: reads only (gather calls `get_`/`list_`
methods, nothing else); the same inputs give the same plan; no secret is read or shown. What the reader was not
allowed to read (ARM's 403 AuthorizationFailed on a subscription's role assignments or on the maintenance
configurations) is named in the plan (`unread`), and unread role assignments block it: a role missed there is a role
the new identity would lack.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from remediation.decide.guardrails import Guardrails
from remediation.decide.maintenance import MaintenanceSchedule, choose_schedule
from remediation.errors import InvalidInputError, NotFoundError, PermanentError
from remediation.ids import ClusterId, subscription_of
from remediation.model import MSI_CLIENT_ID, RoleAssignment
from remediation.ports import RoleAssignments

# Built-in role definition GUIDs (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
PRIVATE_DNS_ZONE_CONTRIBUTOR = "b12aa53e-6015-4669-85d0-8515ebb3ae7f"
MANAGED_IDENTITY_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
ROLE_NAMES = {ACR_PULL: "AcrPull", NETWORK_CONTRIBUTOR: "Network Contributor",
              PRIVATE_DNS_ZONE_CONTRIBUTOR: "Private DNS Zone Contributor",
              MANAGED_IDENTITY_OPERATOR: "Managed Identity Operator", CONTRIBUTOR: "Contributor", OWNER: "Owner",
              READER: "Reader"}
_BROAD = frozenset({CONTRIBUTOR, OWNER})  # narrowed to the one role AKS needs where the scope says which

CONTROL_PLANE, KUBELET = "controlPlane", "kubelet"
READY, BLOCKED, NOT_APPLICABLE = "ready", "blocked", "notApplicable"
HORIZON = timedelta(days=62)  # how far ahead a window is looked for
# ARM's code when the reader lacks the action at the scope (its role is not assigned there).
NOT_AUTHORIZED = "AuthorizationFailed"
ROLE_ASSIGNMENTS_UNREAD = "RoleAssignmentsUnread"
ROLE_ASSIGNMENTS, MAINTENANCE = "roleAssignments", "maintenanceConfigurations"  # what a reader may be refused


class ClusterDocuments(Protocol):
    def get_cluster_document(self, cluster: ClusterId) -> dict[str, Any]:
        """The cluster as ARM's REST API returns it (camelCase). Raises NotFoundError."""


class MaintenanceReads(Protocol):
    def list_maintenance_configurations(self, cluster: ClusterId) -> dict[str, dict[str, Any]]: ...


# ------------------------------------------------------------------------------------------ what is read


@dataclass(frozen=True)
class ClusterShape:
    """What the plan needs of a cluster, parsed from its ARM body at the edge."""

    id: ClusterId
    location: str
    client_id: str  # the service principal's appId, or "msi"
    identity_type: str | None  # SystemAssigned / UserAssigned; None for a service-principal cluster
    node_resource_group: str
    subnet_ids: tuple[str, ...] = ()  # the agent pools' vnetSubnetID (a bring-your-own network)
    private_dns_zone: str | None = None  # apiServerAccessProfile.privateDNSZone when it is a resource id
    pools: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_arm(cls, body: Mapping[str, Any]) -> ClusterShape:
        if not isinstance(body, Mapping) or not isinstance(body.get("properties"), Mapping):
            raise InvalidInputError("cluster: properties missing")
        properties = body["properties"]
        cluster = ClusterId.parse(body.get("id"))
        pools = [p for p in properties.get("agentPoolProfiles") or () if isinstance(p, Mapping)]
        zone = (properties.get("apiServerAccessProfile") or {}).get("privateDNSZone")
        identity = body.get("identity") if isinstance(body.get("identity"), Mapping) else None
        return cls(
            id=cluster, location=str(body.get("location") or ""),
            client_id=str((properties.get("servicePrincipalProfile") or {}).get("clientId") or ""),
            identity_type=str(identity["type"]) if identity and identity.get("type") else None,
            node_resource_group=str(properties.get("nodeResourceGroup") or ""),
            subnet_ids=tuple(dict.fromkeys(str(p["vnetSubnetID"]) for p in pools if p.get("vnetSubnetID"))),
            private_dns_zone=str(zone) if isinstance(zone, str) and zone.startswith("/") else None,
            pools=tuple(str(p["name"]) for p in pools if p.get("name")),
            tags=dict(body.get("tags") or {}))

    @property
    def uses_service_principal(self) -> bool:
        return self.identity_type is None and self.client_id.lower() not in ("", MSI_CLIENT_ID)


@dataclass(frozen=True)
class Unread:
    """Something the plan needed that ARM refused to show the reader (403): where, what, and ARM's answer."""

    scope: str
    what: str  # ROLE_ASSIGNMENTS or MAINTENANCE
    code: str
    message: str

    def view(self) -> dict[str, str]:
        return {"scope": self.scope, "what": self.what, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class Present:
    """Everything the plan is computed from."""

    shape: ClusterShape
    principal_id: str | None  # the service principal's object id (None: not found)
    assignments: tuple[RoleAssignment, ...]
    maintenance: Mapping[str, Mapping[str, Any]]
    unread: tuple[Unread, ...] = ()


def gather(cluster: ClusterId, *, clusters: ClusterDocuments, maintenance: MaintenanceReads,
           roles: RoleAssignments, principal_of: Any) -> Present:
    """Read the present: the cluster, its service principal's object id (`principal_of(app_id)`, None if none), the
    principal's role assignments in the cluster's subscription and in every subscription its network names, and the
    maintenance configurations. Reads only. A subscription whose role assignments, or a cluster whose maintenance
    configurations, ARM refuses to show (AuthorizationFailed) is recorded in `unread`, not raised; every other
    error is raised. Raises NotFoundError with code ClusterNotFound when the cluster does not exist."""
    try:
        document = clusters.get_cluster_document(cluster)
    except NotFoundError as err:
        raise NotFoundError(f"cluster {cluster.name} does not exist: {err}", code="ClusterNotFound") from err
    shape = ClusterShape.from_arm(document)
    principal = principal_of(shape.client_id) if shape.uses_service_principal else None
    assignments: dict[str, RoleAssignment] = {}
    unread: list[Unread] = []
    if principal:
        subscriptions = dict.fromkeys([cluster.subscription_id.lower(), *filter(None, (
            subscription_of(s) for s in (*shape.subnet_ids, shape.private_dns_zone or "")))])
        for subscription in subscriptions:
            try:
                found_here = roles.list_for_principal(subscription, principal)
            except PermanentError as err:
                if err.code != NOT_AUTHORIZED:
                    raise
                unread.append(Unread(f"/subscriptions/{subscription}", ROLE_ASSIGNMENTS, err.code, str(err)))
                continue
            for found in found_here:
                assignments.setdefault(found.id.lower(), found)
    configurations: Mapping[str, Mapping[str, Any]] = {}
    if shape.uses_service_principal:
        try:
            configurations = maintenance.list_maintenance_configurations(cluster)
        except PermanentError as err:
            if err.code != NOT_AUTHORIZED:
                raise
            unread.append(Unread(str(cluster), MAINTENANCE, err.code, str(err)))
    return Present(shape, principal, tuple(sorted(assignments.values(), key=lambda a: (a.scope.lower(), a.role_guid))),
                   configurations, tuple(unread))


# ------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class CarriedRole:
    identity: str  # CONTROL_PLANE or KUBELET
    scope: str
    role_id: str  # the GUID the service principal held ("" for one the move itself needs)
    grant_role_id: str  # the GUID the managed identity gets
    reason: str
    blocker: str | None = None  # a reason code when it cannot be carried
    blocker_reason: str | None = None

    def view(self) -> dict[str, Any]:
        return {"identity": self.identity, "scope": self.scope, "heldRole": _role_name(self.role_id) or None,
                "heldRoleId": self.role_id or None, "grantRole": _role_name(self.grant_role_id),
                "grantRoleId": self.grant_role_id, "reason": self.reason, "blocker": self.blocker,
                "blockerReason": self.blocker_reason}


@dataclass(frozen=True)
class MigrationPlan:
    cluster: str
    status: str  # READY, BLOCKED or NOT_APPLICABLE
    reason: str
    service_principal: str | None = None  # appId
    control_plane: str | None = None  # "userAssigned" or "systemAssigned"
    user_assigned_required: bool = False
    user_assigned_why: str = ""
    kubelet: str | None = None  # "userAssigned" or "madeByAks"
    identity_group: str | None = None
    identity_names: Mapping[str, str] = field(default_factory=dict)
    roles: tuple[CarriedRole, ...] = ()
    left_alone: tuple[Mapping[str, str], ...] = ()
    commands: tuple[str, ...] = ()
    window: Mapping[str, Any] = field(default_factory=dict)
    disruption: tuple[str, ...] = ()
    afterwards: tuple[str, ...] = ()
    unread: tuple[Unread, ...] = ()  # what ARM refused to show the reader

    @property
    def blockers(self) -> tuple[CarriedRole, ...]:
        return tuple(r for r in self.roles if r.blocker)

    @property
    def unread_roles(self) -> tuple[Unread, ...]:
        return tuple(u for u in self.unread if u.what == ROLE_ASSIGNMENTS)

    def view(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "status": self.status, "reason": self.reason,
                "servicePrincipal": self.service_principal, "controlPlaneIdentity": self.control_plane,
                "userAssignedRequired": self.user_assigned_required, "userAssignedWhy": self.user_assigned_why or None,
                "kubeletIdentity": self.kubelet, "identityResourceGroup": self.identity_group,
                "identityNames": dict(self.identity_names), "roles": [r.view() for r in self.roles],
                "blockers": [{"code": r.blocker, "reason": r.blocker_reason, "scope": r.scope}
                             for r in self.blockers]
                + [{"code": ROLE_ASSIGNMENTS_UNREAD, "reason": _unread_reason(u), "scope": u.scope}
                   for u in self.unread_roles],
                "leftAlone": [dict(x) for x in self.left_alone], "commands": list(self.commands),
                "window": dict(self.window), "disruption": list(self.disruption),
                "afterwards": list(self.afterwards), "unread": [u.view() for u in self.unread], "writes": 0}


def plan_migration(present: Present, guardrails: Guardrails, *, now: datetime, identity_group: str | None = None,
                   retire_after: timedelta = timedelta(hours=24)) -> MigrationPlan:
    """The plan for one cluster (see the module's docstring). `identity_group`: where the user-assigned identities
    go (default: the cluster's resource group)."""
    shape = present.shape
    cluster = str(shape.id)
    if not shape.uses_service_principal:
        kind = shape.identity_type or "managed identity"
        return MigrationPlan(cluster, NOT_APPLICABLE,
                             f"the cluster already uses a {kind} identity: no secret to expire")
    if present.principal_id is None:
        return MigrationPlan(cluster, BLOCKED, f"the service principal {shape.client_id} was not found, so the roles "
                             "it held cannot be read; see `orphans` and the replacement plan", shape.client_id)
    group = identity_group or shape.id.resource_group
    # Two clusters of one name in different groups share the identity group: a digest of the id keeps them apart.
    digest = hashlib.sha256(str(shape.id).lower().encode()).hexdigest()[:6]
    names = {CONTROL_PLANE: f"id-{shape.id.name}-{digest}-control-plane",
             KUBELET: f"id-{shape.id.name}-{digest}-kubelet"}
    carried, left = _carry(present, guardrails)
    kubelet_roles = [r for r in carried if r.identity == KUBELET]
    required, why = _user_assigned_required(shape, carried)
    if kubelet_roles:
        kubelet_id = f"/subscriptions/{shape.id.subscription_id}/resourceGroups/{group}/providers/" \
                     f"Microsoft.ManagedIdentity/userAssignedIdentities/{names[KUBELET]}"
        carried.append(_checked(CarriedRole(
            CONTROL_PLANE, kubelet_id, "", MANAGED_IDENTITY_OPERATOR,
            "the control-plane identity assigns the kubelet identity to the nodes (--assign-kubelet-identity needs "
            "Managed Identity Operator on it)"), guardrails))
    user_assigned = required or bool(kubelet_roles)
    if not required and kubelet_roles:
        why = "the kubelet identity is given (to hold AcrPull before the nodes use it), which needs a user-assigned " \
              "control-plane identity"
    if not user_assigned:
        names = {}
    blocked = [r for r in carried if r.blocker]
    unread_roles = [u for u in present.unread if u.what == ROLE_ASSIGNMENTS]
    status = BLOCKED if blocked or unread_roles else READY
    causes = "; ".join(sorted({r.blocker_reason or "" for r in blocked}))
    reason = (f"{len(blocked)} role(s) cannot be carried: {causes}"
              if blocked else f"{len(carried)} role(s) to grant before the switch" if carried
              else "nothing to carry: a system-assigned identity suffices")
    if unread_roles:
        reason = "; ".join([*(_unread_reason(u) for u in unread_roles), *([reason] if blocked else [])])
    return MigrationPlan(
        cluster=cluster, status=status, reason=reason, service_principal=shape.client_id,
        control_plane="userAssigned" if user_assigned else "systemAssigned", user_assigned_required=required,
        user_assigned_why=why, kubelet="userAssigned" if kubelet_roles else "madeByAks",
        identity_group=group if user_assigned else None, identity_names=names, roles=tuple(carried),
        left_alone=tuple(left), commands=_commands(shape, group, names, carried, bool(kubelet_roles), user_assigned),
        window=_window(present.maintenance, guardrails, now, present.unread),
        disruption=_disruption(shape, bool(kubelet_roles)), afterwards=_afterwards(shape, retire_after),
        unread=present.unread)


def _unread_reason(unread: Unread) -> str:
    return (f"the service principal's role assignments in {unread.scope} could not be read ({unread.code}): a role "
            "it holds there would be missing from the plan; give the reader Microsoft.Authorization/roleAssignments/"
            "read on that subscription and plan again")


def _carry(present: Present, guardrails: Guardrails) -> tuple[list[CarriedRole], list[dict[str, str]]]:
    shape = present.shape
    nodes = f"/subscriptions/{shape.id.subscription_id}/resourcegroups/{shape.node_resource_group}".lower()
    carried: list[CarriedRole] = []
    left: list[dict[str, str]] = []
    for assignment in present.assignments:
        scope, role = assignment.scope, assignment.role_guid
        lowered = scope.lower().rstrip("/")
        if shape.node_resource_group and (lowered == nodes or lowered.startswith(nodes + "/")):
            left.append({"scope": scope, "role": _role_name(role), "why": "in the node resource group: AKS grants its "
                         "managed identity what it needs there itself"})
            continue
        elsewhere = _another_clusters(shape, lowered)
        if elsewhere:
            left.append({"scope": scope, "role": _role_name(role), "why": elsewhere})
            continue
        carried.append(_checked(_map(assignment), guardrails))
    return carried, left


def _another_clusters(shape: ClusterShape, scope: str) -> str | None:
    """Why a role on a subnet, virtual network or private DNS zone is not this cluster's to carry: clusters that share
    one service principal share its roles, and each cluster's identity should get only its own network's. None when
    the scope is this cluster's, or when nothing tells (a route table, a registry: carried)."""
    if "/providers/microsoft.network/virtualnetworks/" in scope:
        mine = [s.lower().rstrip("/") for s in shape.subnet_ids]
        if not any(subnet == scope or subnet.startswith(scope + "/") for subnet in mine):
            return "another network than this cluster's (the service principal is shared with other clusters)"
    if "/providers/microsoft.network/privatednszones/" in scope:
        if (shape.private_dns_zone or "").lower().rstrip("/") != scope:
            return "another private DNS zone than this cluster's (the service principal is shared)"
    return None


def _map(assignment: RoleAssignment) -> CarriedRole:
    scope, role = assignment.scope, assignment.role_guid
    lowered = scope.lower()
    if "/providers/microsoft.containerregistry/registries/" in lowered:
        grant = ACR_PULL if role in _BROAD | {ACR_PULL, READER} else role
        why = "the kubelet pulls images from the registry" + (
            "; narrowed to AcrPull, all image pulls need" if grant != role else "")
        return CarriedRole(KUBELET, scope, role, grant, why)
    if "/providers/microsoft.network/privatednszones/" in lowered:
        grant = PRIVATE_DNS_ZONE_CONTRIBUTOR if role in _BROAD else role
        why = "the control plane writes the API server's record in the private DNS zone" + (
            "; narrowed to Private DNS Zone Contributor" if grant != role else "")
        return CarriedRole(CONTROL_PLANE, scope, role, grant, why)
    if "/providers/microsoft.network/" in lowered:
        grant = NETWORK_CONTRIBUTOR if role in _BROAD else role
        why = "the control plane joins nodes and load balancers to the cluster's own network" + (
            "; narrowed to Network Contributor" if grant != role else "")
        return CarriedRole(CONTROL_PLANE, scope, role, grant, why)
    return CarriedRole(CONTROL_PLANE, scope, role, role, "held by the service principal; carried as it is (review "
                       "whether the cluster still needs it)")


def _checked(role: CarriedRole, guardrails: Guardrails) -> CarriedRole:
    """The role with its blocker, if it cannot be carried: a management-group scope (the remediator's role
    assignment administrator is granted at subscriptions), a role outside REMEDIATOR_ASSIGNABLE_ROLE_IDS, a scope on
    a deny list."""
    lowered = role.scope.lower()
    if "/providers/microsoft.management/managementgroups/" in lowered:
        return _blocked(role, "ManagementGroupScope", f"a management-group scope ({role.scope}) is above every "
                        "subscription the remediator manages")
    if guardrails.assignable_roles and role.grant_role_id not in guardrails.assignable_roles:
        return _blocked(role, "RoleNotAssignable", f"{_role_name(role.grant_role_id)} is not in "
                        "REMEDIATOR_ASSIGNABLE_ROLE_IDS")
    parts = lowered.strip("/").split("/")
    if len(parts) >= 2 and parts[0] == "subscriptions":
        refusal = (guardrails.scope.refusal_at(parts[1], parts[3]) if len(parts) >= 4 and parts[2] == "resourcegroups"
                   else guardrails.scope.refusal_of_subscription(parts[1]))
        if refusal and refusal[0] in ("DeniedSubscription", "DeniedResourceGroup"):
            return _blocked(role, refusal[0], f"the scope {role.scope} is on a deny list: {refusal[1]}")
    return role


def _blocked(role: CarriedRole, code: str, reason: str) -> CarriedRole:
    return CarriedRole(role.identity, role.scope, role.role_id, role.grant_role_id, role.reason, code, reason)


def _user_assigned_required(shape: ClusterShape, carried: Sequence[CarriedRole]) -> tuple[bool, str]:
    reasons = []
    if shape.subnet_ids:
        reasons.append("the cluster uses its own subnet")
    if shape.private_dns_zone:
        reasons.append("the cluster uses its own private DNS zone")
    if any(r.identity == CONTROL_PLANE for r in carried) and not reasons:
        reasons.append("the service principal holds roles outside the node resource group")
    if not reasons:
        return False, ""
    return True, (" and ".join(reasons) + ": the control-plane identity must hold its roles before the switch, and a "
                  "system-assigned identity exists only after it (the switch would fail with "
                  "LinkedAuthorizationFailed)")


def _commands(shape: ClusterShape, group: str, names: Mapping[str, str], carried: Sequence[CarriedRole],
              kubelet: bool, user_assigned: bool) -> tuple[str, ...]:
    sub, location = shape.id.subscription_id, shape.location
    q = shlex.quote
    lines: list[str] = []
    variables = {CONTROL_PLANE: ("CONTROL_PLANE_ID", "CONTROL_PLANE_PRINCIPAL"), KUBELET: ("KUBELET_ID",
                                                                                          "KUBELET_PRINCIPAL")}
    made = [CONTROL_PLANE, *([KUBELET] if kubelet else [])] if user_assigned else []
    for which in made:
        resource, principal = variables[which]
        lines.append(f"{resource}=$(az identity create --subscription {sub} --resource-group {q(group)} --name "
                     f"{q(names[which])} --location {q(location)} --query id -o tsv)")
        lines.append(f'{principal}=$(az identity show --ids "${resource}" --query principalId -o tsv)')
    for role in carried:
        if role.blocker:
            continue
        principal = variables[role.identity][1]
        lines.append(f'az role assignment create --assignee-object-id "${principal}" --assignee-principal-type '
                     f"ServicePrincipal --role {role.grant_role_id} --scope {q(role.scope)}")
    for role in carried:
        if role.blocker:
            continue
        principal = variables[role.identity][1]
        lines.append(f'until [ -n "$(az role assignment list --assignee "${principal}" --role {role.grant_role_id} '
                     f"--scope {q(role.scope)} --query '[0].id' -o tsv)\" ]; do sleep 15; done")
    update = (f"az aks update --subscription {sub} --resource-group {q(shape.id.resource_group)} --name "
              f"{q(shape.id.name)} --enable-managed-identity")
    if user_assigned:
        update += ' --assign-identity "$CONTROL_PLANE_ID"'
    if kubelet:
        update += ' --assign-kubelet-identity "$KUBELET_ID"'
    lines.append(update + " --yes")
    for pool in shape.pools or ("<each node pool>",):
        lines.append(f"az aks nodepool upgrade --subscription {sub} --resource-group {q(shape.id.resource_group)} "
                     f"--cluster-name {q(shape.id.name)} --name {q(pool)} --node-image-only --yes")
    lines.append(f"az aks show --subscription {sub} --resource-group {q(shape.id.resource_group)} --name "
                 f"{q(shape.id.name)} --query \"{{identity: identity.type, clientId: servicePrincipalProfile.clientId, "
                 f"kubelet: identityProfile.kubeletidentity.resourceId, state: provisioningState}}\"")
    return tuple(lines)


def _window(configurations: Mapping[str, Mapping[str, Any]], guardrails: Guardrails, now: datetime,
            unread: Sequence[Unread] = ()) -> dict[str, Any]:
    refused = next((u for u in unread if u.what == MAINTENANCE), None)
    if refused:
        return {"source": "maintenanceConfiguration", "nextOpening": None,
                "error": f"the cluster's maintenance configurations could not be read ({refused.code}); choose a "
                         "time by hand or give the reader Microsoft.ContainerService/managedClusters/"
                         "maintenanceConfigurations/read"}
    try:
        chosen = choose_schedule(configurations)
    except InvalidInputError as err:
        return {"source": "maintenanceConfiguration", "error": str(err), "nextOpening": None}
    source, schedule = (chosen if chosen else ("REMEDIATOR_ROTATION_WINDOW", guardrails.rotation.window))
    if schedule is None:
        return {"source": None, "nextOpening": None, "description": "no maintenance window: the cluster has no AKS "
                "planned maintenance configuration and REMEDIATOR_ROTATION_WINDOW is empty; choose a time by hand"}
    return _window_of(source, schedule, now)


def _window_of(source: str, schedule: MaintenanceSchedule, now: datetime) -> dict[str, Any]:
    open_now = schedule.window_at(now)
    if open_now:
        return {"source": source, "description": schedule.describe(), "openNow": True,
                "nextOpening": open_now[0].isoformat(), "closes": open_now[1].isoformat()}
    opening = schedule.next_opening(now, horizon=HORIZON)
    return {"source": source, "description": schedule.describe(), "openNow": False,
            "nextOpening": opening.isoformat() if opening else None}


def _disruption(shape: ClusterShape, kubelet: bool) -> tuple[str, ...]:
    pools = len(shape.pools) or 1
    return (
        "az aks update --enable-managed-identity reconciles the control plane: no node is re-imaged; the control "
        "plane and add-on pods switch to the managed identity",
        "until the node images are upgraded the kubelet keeps using the service principal (azure-cli's warning): its "
        "secret must stay valid until then",
        f"the node-image upgrade re-images every node of each of the {pools} node pool(s) (surge, cordon, drain): "
        "pods are rescheduled, as in a node OS upgrade; PodDisruptionBudgets apply"
        + ("; image pulls then use the kubelet identity's AcrPull" if kubelet else ""),
    )


def _afterwards(shape: ClusterShape, retire_after: timedelta) -> tuple[str, ...]:
    hours = int(retire_after.total_seconds() // 3600)
    return (
        f"the service principal {shape.client_id} is no longer used by this cluster once the node images are upgraded",
        f"its password is retired after the grace period (REMEDIATOR_RETIRE_AFTER_HOURS, {hours} h), like any "
        "replaced password, unless other clusters still use the application",
        "the application itself is never deleted by the remediator: `python -m remediation orphans` reports it with "
        "the command to delete it",
        "nothing switches a cluster back to a secret: if a step fails after the switch, roll forward (grant the "
        "missing role, run the update or the node-image upgrade again)",
    )


def _role_name(guid: str) -> str:
    return ROLE_NAMES.get(guid, guid)

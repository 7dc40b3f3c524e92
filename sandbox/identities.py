"""What moving a cluster from a service principal to managed identity touches (`az aks update
--enable-managed-identity`): user-assigned identities, the cluster's identity update, node-image upgrades, and the
failure a cluster shows when its new identity lacks the network role on its own subnet.

- User-assigned identities (Microsoft.ManagedIdentity/userAssignedIdentities, api-versions 2018-11-30, 2023-01-31,
  2024-11-30): `PUT` (UserAssignedIdentities_CreateOrUpdate, tests/reference/msi_IdentityCreate_2023-01-31.json: 201
  for a new one, 200 for an existing one, whose tags it replaces) and `GET` (IdentityGet.json), the body `{"id",
  "location", "name", "properties": {"clientId", "principalId", "tenantId"}, "tags", "type"}`. A missing location is
  400 LocationRequired (wording assumed, as resource groups'). Each identity has a service principal, which the
  sandbox keeps as an Application without owners or passwords (so role assignments name it as any principal, and ARM
  sees it only after `principal_replication_seconds`, as a new service principal); its appId is the clientId, its
  service principal's object id the principalId. Permissions: userAssignedIdentities/read and /write.
- The identity update: a cluster PUT of a service-principal cluster whose body carries `identity` (`{"type":
  "SystemAssigned"}`, or `{"type": "UserAssigned", "userAssignedIdentities": {id: {}}}`), with
  `servicePrincipalProfile.clientId` "msi" and optionally `identityProfile.kubeletidentity.resourceId`, as azure-cli's
  `az aks update --enable-managed-identity [--assign-identity ID] [--assign-kubelet-identity ID]` sends it. A
  long-running operation (`Azure-AsyncOperation`), like every cluster write; it ends with the cluster carrying
  `identity` (a system-assigned one's principalId; a user-assigned one's `userAssignedIdentities` {id: {clientId,
  principalId}}, `principalId` and `tenantId` then absent, as AKS shows them), `identityProfile.kubeletidentity`
  ({clientId, objectId, resourceId}: the one given, else one AKS makes, `{name}-agentpool` in the node resource group)
  and `servicePrincipalProfile.clientId` "msi". The shapes are those of the official ManagedClustersGet examples and
  Microsoft's "Use a managed identity in AKS" (learn.microsoft.com/azure/aks/use-managed-identity). The old service
  principal's secret is not needed for it (the cluster stops using it). Until its agent pools' node images are
  upgraded the kubelet keeps using the service principal (azure-cli's own warning, aks/custom.py: "kubelet will KEEP
  USING SERVICE PRINCIPAL until you upgrade your agentpool"): `kubeletInUse` in the state's view stays null.
- A cluster on its own subnet (`vnetSubnetID`) whose new control-plane identity may not join that subnet
  (`Microsoft.Network/virtualNetworks/subnets/join/action` at the subnet or above, e.g. Network Contributor) fails the
  update with `LinkedAuthorizationFailed`: "The client '<clientId>' with object id '<principalId>' has permission to
  perform action 'Microsoft.Compute/virtualMachineScaleSets/write' on scope '<the node pool's scale set>'; however, it
  does not have permission to perform action 'Microsoft.Network/virtualNetworks/subnets/join/action' on the linked
  scope(s) '<subnet>' or the linked scope(s) are invalid." (the public report quoted in
  tests/reference/aks_LinkedAuthorizationFailed_subnet_join.json, with its source). A system-assigned identity is
  made by the update itself, so it can hold no role yet: on a custom subnet it always fails this way, which is why a
  bring-your-own network needs a user-assigned control-plane identity given its roles first. The identity stays in
  the cluster's model (AKS keeps the PUT's model when the reconcile fails; assumed, as for tags) and the cluster is
  `Failed` until a write succeeds.
- Node-image upgrade: `POST …/agentPools/{pool}/upgradeNodeImageVersion` (AgentPools_UpgradeNodeImageVersion,
  tests/reference/aks_AgentPoolsUpgradeNodeImageVersion_2024-09-01.json): 202 with the pool
  (`provisioningState` UpgradingNodeImageVersion) and `Azure-AsyncOperation`; when it ends the nodes use the
  cluster's kubelet identity. The sandbox's clusters have one pool, `nodepool1`. Permission:
  managedClusters/agentPools/upgradeNodeImageVersion/action. Counted in the cluster's writes as "nodeImage".
- The identity update names user-assigned identities: its caller must hold
  `Microsoft.ManagedIdentity/userAssignedIdentities/assign/action` on each (Managed Identity Operator, Contributor),
  or the PUT is refused with 403 LinkedAuthorizationFailed, in the words Azure uses for a linked identity
  (Azure/secrets-store-csi-driver-provider-azure#66). A kubelet identity the control-plane identity may not assign
  (Managed Identity Operator on it) fails the update (CustomKubeletIdentityMissingPermissionError; the rule is
  Learn's "Use a managed identity in AKS", the code and wording assumed).
"""

from __future__ import annotations

import fnmatch
import uuid
from typing import TYPE_CHECKING, Any

from sandbox import access
from sandbox.rbac import BUILT_IN_ROLE_DEFINITIONS
from sandbox.server import Request, Response
from sandbox.state import LOCATION, ApiError, Cluster, Operation

if TYPE_CHECKING:
    from sandbox.arm import ArmApi

IDENTITY_API_VERSIONS = ("2018-11-30", "2023-01-31", "2024-11-30")
IDENTITY_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
IDENTITY_READ = "Microsoft.ManagedIdentity/userAssignedIdentities/read"
IDENTITY_WRITE = "Microsoft.ManagedIdentity/userAssignedIdentities/write"
# Naming a user-assigned identity in a resource's write needs this on the identity (LinkedAuthorizationFailed
# otherwise: Azure/secrets-store-csi-driver-provider-azure#66 quotes the message); Managed Identity Operator grants it.
IDENTITY_ASSIGN = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"
CLUSTER_WRITE = "Microsoft.ContainerService/managedClusters/write"
NODE_IMAGE = "Microsoft.ContainerService/managedClusters/agentPools/upgradeNodeImageVersion/action"
JOIN_SUBNET = "Microsoft.Network/virtualNetworks/subnets/join/action"
POOL = "nodepool1"
MSI = "msi"


def identity_key(subscription_id: str, resource_group: str, name: str) -> str:
    return f"{subscription_id}/{resource_group}/{name}".lower()


def identity_id(record: dict[str, Any]) -> str:
    return (f"/subscriptions/{record['subscriptionId']}/resourcegroups/{record['resourceGroup']}/providers/"
            f"{IDENTITY_TYPE}/{record['name']}")


class ManagedIdentities:
    """The routes above, registered on the ARM API (sandbox/arm.py), and the two operations they start."""

    def __init__(self, arm: ArmApi) -> None:
        self.arm, self.state = arm, arm.state
        self.state.appliers.update(identity_write=self._end_identity_write, node_image=self._end_node_image)
        group = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
        one = rf"{group}/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/(?P<identity>[^/]+)"
        arm.route("GET", one, "GET userAssignedIdentities/{name}", self.get)
        arm.route("PUT", one, "PUT userAssignedIdentities/{name}", self.put)
        pool = (rf"{group}/providers/Microsoft\.ContainerService/managedClusters/(?P<name>[^/]+)/agentPools/"
                r"(?P<pool>[^/]+)/upgradeNodeImageVersion")
        arm.route("POST", pool, "POST managedClusters/{name}/agentPools/{pool}/upgradeNodeImageVersion",
                  self.upgrade_node_image)

    # ------------------------------------------------------------------ user-assigned identities

    def _authorized(self, request: Request, action: str) -> Any:
        caller = self.arm._authorize(request, action, request.path)
        self.arm.require_api_version(request, IDENTITY_API_VERSIONS, "userAssignedIdentities", LOCATION)
        self.arm._group(request)
        return caller

    def get(self, request: Request) -> Response:
        self._authorized(request, IDENTITY_READ)
        with self.state.lock:
            record = self.state.user_identities.get(
                identity_key(request.params["sub"], request.params["rg"], request.params["identity"]))
            if record is None:
                raise ApiError(404, "ResourceNotFound", (
                    f"The Resource '{IDENTITY_TYPE}/{request.params['identity']}' under resource group "
                    f"'{request.params['rg']}' was not found. For more details please go to "
                    "https://aka.ms/ARMResourceNotFoundFix"))
            return Response(200, self.identity_body(record))

    def put(self, request: Request) -> Response:
        self._authorized(request, IDENTITY_WRITE)
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("location"), str) or not body["location"]:
            raise ApiError(400, "LocationRequired", "The location property is required for this definition.")
        tags = body.get("tags") or {}
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise ApiError(400, "InvalidRequestContent", "The request content was invalid: tags must be strings.")
        record, created = self.create(request.params["sub"], request.params["rg"], request.params["identity"],
                                      location=body["location"], tags=tags)
        return Response(201 if created else 200, self.identity_body(record))

    def create(self, subscription_id: str, resource_group: str, name: str, *, location: str = LOCATION,
               tags: dict[str, str] | None = None) -> tuple[dict[str, Any], bool]:
        """The identity (made, with its service principal, if new; its tags replaced if not) and whether it is new."""
        with self.state.lock:
            key = identity_key(subscription_id, resource_group, name)
            record = self.state.user_identities.get(key)
            if record is not None:
                record["tags"] = dict(tags or {})
                return record, False
            app = self.state.add_application(name, created_at=self.state.now())
            app.service_principal_created_at = self.state.now()
            group = self.state.resource_group(resource_group, subscription_id)
            record = {"subscriptionId": subscription_id.lower(), "resourceGroup": group.name if group else
                      resource_group, "name": name, "location": location, "tags": dict(tags or {}),
                      "appId": app.app_id}
            self.state.user_identities[key] = record
            return record, True

    def identity_body(self, record: dict[str, Any]) -> dict[str, Any]:
        app = self.state.applications[record["appId"]]
        return {"id": identity_id(record), "location": record["location"], "name": record["name"],
                "properties": {"clientId": app.app_id, "principalId": app.sp_object_id,
                               "tenantId": self.state.tenant_id},
                "tags": dict(record["tags"]), "type": IDENTITY_TYPE}

    def by_id(self, resource_id: str) -> dict[str, Any] | None:
        parts = resource_id.strip("/").split("/")
        if len(parts) != 8 or parts[0].lower() != "subscriptions" or parts[5].lower() != "microsoft.managedidentity":
            return None
        with self.state.lock:
            return self.state.user_identities.get(identity_key(parts[1], parts[3], parts[7]))

    # ------------------------------------------------------------------ the cluster's identity update

    def changes_identity(self, cluster: Cluster, body: Any) -> bool:
        """Whether a cluster PUT moves a service-principal cluster to managed identity (what this module serves)."""
        return (isinstance(body, dict) and isinstance(body.get("identity"), dict) and cluster.identity is None
                and cluster.client_id != MSI)

    def put_identity(self, request: Request, cluster: Cluster, caller: Any, correlation: str, body: dict[str, Any]
                     ) -> Response:
        """Start the move (ArmApi.put_cluster hands such a PUT here): check the body, then a write operation."""
        identity, properties = body["identity"], body.get("properties") or {}
        kind = identity.get("type")
        if kind not in ("SystemAssigned", "UserAssigned"):
            raise ApiError(400, "InvalidParameter", "The value of parameter identity.type is invalid: "
                           "SystemAssigned or UserAssigned.")  # wording assumed
        control_plane = None
        if kind == "UserAssigned":
            given = identity.get("userAssignedIdentities")
            if not isinstance(given, dict) or len(given) != 1 or self.by_id(next(iter(given))) is None:
                raise ApiError(400, "InvalidParameter", "The value of parameter identity.userAssignedIdentities is "
                               "invalid: one existing user-assigned identity is required.")  # wording assumed
            control_plane = next(iter(given))
        profile = properties.get("servicePrincipalProfile") or {}
        if str(profile.get("clientId", "")).lower() != MSI:
            raise ApiError(400, "InvalidParameter", "The value of parameter servicePrincipalProfile.clientId is "
                           "invalid: 'msi' when the cluster uses a managed identity.")  # wording assumed
        kubelet = ((properties.get("identityProfile") or {}).get("kubeletidentity") or {}).get("resourceId")
        if kubelet is not None and (kind != "UserAssigned" or self.by_id(kubelet) is None):
            raise ApiError(400, "InvalidParameter", "The value of parameter identityProfile.kubeletidentity is "
                           "invalid: an existing user-assigned identity, with a user-assigned control plane identity.")
        for named in (control_plane, kubelet):
            if named is not None and not access.permits(self.state, caller, IDENTITY_ASSIGN, named):
                raise ApiError(403, "LinkedAuthorizationFailed", (
                    f"The client '{caller.app_id}' with object id '{caller.sp_object_id}' has permission to perform "
                    f"action '{CLUSTER_WRITE}' on scope '{request.path}'; however, it does not have permission to "
                    f"perform action '{IDENTITY_ASSIGN}' on the linked scope(s) '{named}' or the linked scope(s) are "
                    "invalid."))
        self.arm._check_etag(request, cluster)
        with self.state.lock:
            self.arm._refuse_while_busy(cluster, caller, correlation, CLUSTER_WRITE, "PUT")
            self.state.log_operation(cluster=cluster, operation_name=CLUSTER_WRITE, correlation_id=correlation,
                                     caller=caller, method="PUT", status="Started", status_code="",
                                     event_name="BeginRequest")
            cluster.provisioning_state = "Updating"
            operation = self.state.start_operation(cluster, "identity_write", {
                "caller": caller.app_id, "correlation": correlation, "type": kind, "controlPlane": control_plane,
                "kubelet": kubelet})
            return Response(200, self.arm.cluster_body(cluster),
                            self.arm._async_headers(cluster, operation.id, correlation))

    def _end_identity_write(self, operation: Operation) -> dict[str, Any] | None:
        cluster, caller, correlation = self.arm._operation_parts(operation)
        params = operation.params
        kubelet = params.get("kubelet")
        if kubelet is None:  # AKS makes one in the node resource group
            made, _ = self.create(cluster.subscription_id, cluster.node_resource_group, f"{cluster.name}-agentpool")
            kubelet = identity_id(made)
        cluster.identity = {"type": params["type"], "controlPlane": params.get("controlPlane"), "kubelet": kubelet,
                            "kubeletInUse": None}
        cluster.client_id = MSI
        cluster._held_secret = None
        principal = self.control_plane_principal(cluster)
        if params.get("kubelet") is not None and (principal is None or not self.holds(principal, IDENTITY_ASSIGN,
                                                                                      params["kubelet"])):
            return self._fail_kubelet(cluster, caller, correlation, params["kubelet"])
        if cluster.vnet_subnet_id and (principal is None or not self.may_join(principal, cluster.vnet_subnet_id)):
            return self._fail_linked(cluster, caller, correlation)
        return self.arm._succeed(cluster, caller, correlation, CLUSTER_WRITE, "PUT")

    def may_join(self, principal: Any, subnet: str) -> bool:
        """Whether a role assigned to the principal (no condition) at the subnet or above grants joining it, by the
        built-in roles' Actions and NotActions (sandbox/rbac.py): Network Contributor, Contributor, Owner do."""
        return self.holds(principal, JOIN_SUBNET, subnet)

    def holds(self, principal: Any, action: str, scope: str) -> bool:
        """Whether a built-in role assigned to the principal (no condition) at `scope` or above grants `action`."""
        target = scope.lower().rstrip("/")
        with self.state.lock:
            roles = [a.role_definition_id for a in self.state.role_assignments.values()
                     if a.principal_id == principal.sp_object_id and a.condition is None
                     and f"{target}/".startswith(a.scope.lower().rstrip("/") + "/")]
        for role in roles:
            definition = BUILT_IN_ROLE_DEFINITIONS.get(role)
            if definition and any(_grants(a, action) for a in definition.actions) \
                    and not any(_grants(n, action) for n in definition.not_actions):
                return True
        return False

    def control_plane_principal(self, cluster: Cluster) -> Any:
        """The Application standing for the cluster's control-plane identity's service principal; None for a
        system-assigned one (the sandbox keeps no object for it, and no role can name it before it exists)."""
        identity = cluster.identity or {}
        record = self.by_id(identity["controlPlane"]) if identity.get("controlPlane") else None
        return self.state.applications.get(record["appId"]) if record else None

    def _fail_linked(self, cluster: Cluster, caller: Any, correlation: str) -> dict[str, Any]:
        body = self.identity_of(cluster)
        client = body.get("clientId") or ""
        principal = body.get("principalId") or ""
        number = uuid.uuid5(uuid.NAMESPACE_URL, cluster.key).int % 10**8
        scale_set = (f"/subscriptions/{cluster.subscription_id}/resourceGroups/{cluster.node_resource_group}/providers/"
                     f"Microsoft.Compute/virtualMachineScaleSets/aks-{POOL}-{number:08d}-vmss")
        error = {"code": "LinkedAuthorizationFailed", "message": (
            f"The client '{client}' with object id '{principal}' has permission to perform action "
            f"'Microsoft.Compute/virtualMachineScaleSets/write' on scope '{scale_set}'; however, it does not have "
            f"permission to perform action '{JOIN_SUBNET}' on the linked scope(s) '{cluster.vnet_subnet_id}' or the "
            "linked scope(s) are invalid.")}
        cluster.provisioning_state = "Failed"
        self.state.log_operation(cluster=cluster, operation_name=CLUSTER_WRITE, correlation_id=correlation,
                                 caller=caller, method="PUT", status="Failed", status_code="Forbidden",
                                 status_message={"status": "Failed", "error": error})
        return error

    def _fail_kubelet(self, cluster: Cluster, caller: Any, correlation: str, kubelet: str) -> dict[str, Any]:
        """A kubelet identity the control-plane identity may not assign (Managed Identity Operator on it is required:
        learn.microsoft.com/azure/aks/use-managed-identity, quoted in MicrosoftDocs/azure-docs#104830). The code
        and wording are assumed, in ARM's linked-authorization form."""
        body = self.identity_of(cluster)
        error = {"code": "CustomKubeletIdentityMissingPermissionError", "message": (
            f"The cluster using user-assigned managed identity must be granted 'Managed Identity Operator' role to "
            f"assign kubelet identity. The control-plane identity '{body.get('clientId')}' does not have permission to "
            f"perform action '{IDENTITY_ASSIGN}' on '{kubelet}'.")}
        cluster.provisioning_state = "Failed"
        self.state.log_operation(cluster=cluster, operation_name=CLUSTER_WRITE, correlation_id=correlation,
                                 caller=caller, method="PUT", status="Failed", status_code="BadRequest",
                                 status_message={"status": "Failed", "error": error})
        return error

    def identity_of(self, cluster: Cluster) -> dict[str, str]:
        """The control-plane identity's clientId and principalId (a system-assigned one's: stable for the cluster)."""
        principal = self.control_plane_principal(cluster)
        if principal is not None:
            return {"clientId": principal.app_id, "principalId": principal.sp_object_id}
        return {"clientId": "", "principalId": str(uuid.uuid5(uuid.NAMESPACE_URL, cluster.key))}

    def decorate(self, cluster: Cluster, body: dict[str, Any]) -> None:
        """Add to a cluster's GET body what a move to managed identity (and a private DNS zone) put there."""
        if cluster.private_dns_zone_id:
            body["properties"]["apiServerAccessProfile"] = {"enablePrivateCluster": True,
                                                            "privateDNSZone": cluster.private_dns_zone_id}
        if cluster.identity is None:
            return
        body["properties"]["servicePrincipalProfile"] = {"clientId": MSI}
        if cluster.identity.get("controlPlane"):
            body["identity"] = {"type": "UserAssigned", "userAssignedIdentities": {
                cluster.identity["controlPlane"]: self.identity_of(cluster)}}
        else:
            body["identity"] = {"type": "SystemAssigned", "tenantId": self.state.tenant_id,
                                **{"principalId": self.identity_of(cluster)["principalId"]}}
        kubelet = self.by_id(cluster.identity["kubelet"])
        if kubelet is not None:
            app = self.state.applications[kubelet["appId"]]
            body["properties"]["identityProfile"] = {"kubeletidentity": {
                "clientId": app.app_id, "objectId": app.sp_object_id, "resourceId": cluster.identity["kubelet"]}}

    # ------------------------------------------------------------------ node-image upgrade

    def upgrade_node_image(self, request: Request) -> Response:
        self.arm._count_write(request, "nodeImage")
        caller = self.arm._authorize(request, NODE_IMAGE, request.path)
        cluster = self.arm._cluster(request)
        if request.params["pool"].lower() != POOL:
            raise ApiError(404, "NotFound", f"The agent pool '{request.params['pool']}' was not found.")  # assumed
        correlation = request.headers.get("x-ms-correlation-request-id") or str(uuid.uuid4())
        with self.state.lock:
            self.arm._refuse_while_busy(cluster, caller, correlation, NODE_IMAGE, "POST")
            operation = self.state.start_operation(cluster, "node_image", {"caller": caller.app_id,
                                                                           "correlation": correlation})
            pool = self.arm.cluster_body(cluster)["properties"]["agentPoolProfiles"][0]
            body = {"id": f"{self.arm.cluster_body(cluster)['id']}/agentPools/{POOL}", "name": POOL,
                    "properties": {**{k: v for k, v in pool.items() if k != "name"},
                                   "provisioningState": "UpgradingNodeImageVersion",
                                   "upgradeSettings": {"maxSurge": "33%"}}}
            return Response(202, body, self.arm._async_headers(cluster, operation.id, correlation))

    def _end_node_image(self, operation: Operation) -> dict[str, Any] | None:
        cluster, caller, correlation = self.arm._operation_parts(operation)
        if cluster.identity is not None:
            cluster.identity["kubeletInUse"] = cluster.identity["kubelet"]
        cluster.provisioning_state = "Succeeded"
        self.state.log_operation(cluster=cluster, operation_name=NODE_IMAGE, correlation_id=correlation,
                                 caller=caller, method="POST", status="Succeeded", status_code="OK")
        return None


def _grants(pattern: str, action: str) -> bool:
    """Whether a role's action pattern covers `action`. A `/*/` also stands for no segment at all: Managed Identity
    Operator's `userAssignedIdentities/*/assign/action` is what grants `userAssignedIdentities/assign/action` (its
    purpose, "Read and Assign User Assigned Identity", built-in-roles)."""
    pattern, action = pattern.lower(), action.lower()
    return fnmatch.fnmatchcase(action, pattern) or ("/*/" in pattern
                                                     and fnmatch.fnmatchcase(action, pattern.replace("/*/", "/")))

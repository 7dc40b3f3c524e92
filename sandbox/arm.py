"""Azure Resource Manager: resource groups, AKS managed clusters, their long-running operations, the Activity Log,
role assignments (sandbox/authorization.py), in every subscription of the state.

URLs, bodies, status codes and the LRO protocol follow the official examples in `tests/reference/`
(ManagedClustersGet, ResetServicePrincipalProfile, ResetAADProfile, GetActivityLogsFiltered). AKS checks a
cluster's service principal by signing in as it (`SandboxState.sign_in`), so a bad secret fails writes with the
same nesting real AKS uses: ServicePrincipalValidationClientError wrapping the AADSTS response. A cluster with the
legacy Azure AD integration holds its server application's secret the same way; resetAADProfile checks the new one
by signing in as the server application. Lists of clusters come in pages of `SandboxState.cluster_page_size` with
ARM's `nextLink`.

What azure-cli reads of a cluster is there: the read-only fields of ManagedClustersGet (maxAgentPools, which `az aks
upgrade` compares, azurePortalFQDN, the agent pool's nodeImageVersion) and of the 2024-09-01 model (agent pool
osDiskSizeGB, osSKU; systemData createdBy*/lastModifiedBy*: the values are the sandbox's, its creator assumed). A
cluster PUT keeps its tags and Kubernetes version and refuses what AKS refuses (`cluster_update`); the tags stay
even when the write then fails, so an operator can opt a broken cluster out with `az aks update --tags`.
listClusterUserCredential and abort follow their official examples (tests/reference/). Every route here checks its
api-version (`_VERSIONED`: a version AKS does not take is 400 NoRegisteredProviderFound, Azure/azure-cli#28368), and
a path no route serves is answered in ARM's words (sandbox/armerrors.py). The Activity Log reads the $filter
azure-cli writes (`_parse_filter`).
"""

from __future__ import annotations

import base64
import copy
import re
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from sandbox import access
from sandbox.armerrors import unknown_route
from sandbox.authorization import ASSIGNMENT_API_VERSIONS, DEFINITION_API_VERSIONS, RoleAssignments, RoleDefinitions
from sandbox.deployment import DeploymentRoutes
from sandbox.identities import ManagedIdentities
from sandbox.resourcegraph import ResourceGraph
from sandbox.resourcegroups import ResourceGroups
from sandbox.server import Api, Request, Response
from sandbox.state import (
    LOCATION,
    ApiError,
    Application,
    Cluster,
    LegacyAadProfile,
    Operation,
    ResourceGroup,
    SandboxState,
    parse_time,
    utc_iso,
)
from sandbox.tenancy import Tenancy

CLUSTER_TYPE = "Microsoft.ContainerService/ManagedClusters"
WRITE = "Microsoft.ContainerService/managedClusters/write"
RESET = "Microsoft.ContainerService/managedClusters/resetServicePrincipalProfile/action"
RESET_AAD = "Microsoft.ContainerService/managedClusters/resetAADProfile/action"
READ = "Microsoft.ContainerService/managedClusters/read"
MAINTENANCE_TYPE = "Microsoft.ContainerService/managedClusters/maintenanceConfigurations"
MAINTENANCE_NAMES = ("default", "aksManagedAutoUpgradeSchedule", "aksManagedNodeOSUpgradeSchedule")
OPERATION_API_VERSION = "2017-08-31"
ACTIVITY_PAGE = 100
MAX_SECRET_BYTES = 190
MAX_TAG_VALUE = 256  # characters (learn.microsoft.com/azure/azure-resource-manager/management/tag-resources)
# azure-core reads Retry-After 0 as absent and falls back to its polling interval (30 s for AKS).
RETRY_AFTER = "1"
# An OData string literal writes a quote inside it as two (''); azure-cli writes times bare (eventTimestamp ge 2026-…).
_FILTER_TERM = re.compile(r"^\s*(\w+)\s+(eq|ge|le)\s+(?:'((?:[^']|'')*)'|([\w:.+-]+))\s*$", re.IGNORECASE)
# How AKS names an operation in progress in its 409 (see _refuse_while_busy).
_IN_PROGRESS = {"write": "update", "reset": "reset service principal profile", "reset_aad": "reset AAD profile",
                "identity_write": "update", "node_image": "upgrade node image version"}  # the last two assumed
# The terms that say where to look (one at most) and those that may follow it (each once at most).
_NARROWING = {"correlationid": "correlationId", "resourceprovider": "resourceProvider",
              "resourceuri": "resourceUri", "resourceid": "resourceUri", "resourcegroupname": "resourceGroupName"}
_REFINING = {"caller": "caller", "status": "status"}
# Microsoft.ContainerService's api-versions for managedClusters: stable ones from 2022-01-01 on, as the folder names of
# azure-rest-api-specs (specification/containerservice/resource-manager/Microsoft.ContainerService/aks/stable) run,
# up to 2026-06-01 (what azure-cli 2.91 sends: azure-mgmt-containerservice 41.6.0's default) and 2026-08-01 (the
# remediator's SDK's default). The list is monthly where the specs have gaps: which months exist is assumed.
AKS_API_VERSIONS = ("2022-01-01", "2022-02-01", "2022-03-01", "2022-04-01", "2022-06-01", "2022-07-01", "2022-09-01",
                    "2022-11-01", "2023-01-01", "2023-02-01", "2023-03-01", "2023-04-01", "2023-05-01", "2023-06-01",
                    "2023-07-01", "2023-08-01", "2023-09-01", "2023-10-01", "2023-11-01", "2024-01-01", "2024-02-01",
                    "2024-05-01", "2024-07-01", "2024-08-01", "2024-09-01", "2024-10-01", "2025-01-01", "2025-02-01",
                    "2025-03-01", "2025-04-01", "2025-05-01", "2025-06-01", "2025-07-01", "2025-08-01", "2025-09-01",
                    "2025-10-01", "2026-01-01", "2026-02-01", "2026-03-01", "2026-04-01", "2026-05-01", "2026-06-01",
                    "2026-07-01", "2026-08-01")
# The operation status URLs AKS hands out carry 2017-08-31 (OPERATION_API_VERSION) or the request's own version.
AKS_OPERATION_API_VERSIONS = (OPERATION_API_VERSION, *AKS_API_VERSIONS)
# Microsoft.Resources resourceGroups (azure-cli 2.91 sends 2024-11-01) and Microsoft.Insights eventtypes (2015-04-01).
# 2024-09-01 is listed because the sandbox's own tests read groups with the AKS version: not verified for
# Microsoft.Resources.
GROUP_API_VERSIONS = ("2019-10-01", "2020-06-01", "2020-10-01", "2021-01-01", "2021-04-01", "2022-09-01", "2023-07-01",
                      "2024-03-01", "2024-07-01", "2024-09-01", "2024-11-01", "2025-03-01", "2025-04-01")
ACTIVITY_LOG_API_VERSIONS = ("2015-04-01",)
# The Kubernetes versions the sandbox's region offers (assumed; a cluster's own version stays valid for it).
KUBERNETES_VERSIONS = ("1.29.7", "1.29.9", "1.30.4", "1.30.6", "1.31.1", "1.31.2", "1.32.0")
NODE_IMAGE_VERSION = "AKSUbuntu-2204gen2containerd-202411.12.0"
# systemData.createdBy of a cluster the sandbox made: it keeps no creator (assumed: a user of the tenant).
CREATOR = "admin@contoso.onmicrosoft.com"
# Which routes of this module take which api-versions: (path pattern, resource type, versions, location in the error).
_VERSIONED = (
    (re.compile(r"/providers/Microsoft\.ContainerService/locations/", re.I), "locations/operations",
     AKS_OPERATION_API_VERSIONS, LOCATION),
    (re.compile(r"/providers/Microsoft\.ContainerService/managedClusters", re.I), "managedClusters", AKS_API_VERSIONS,
     LOCATION),
    (re.compile(r"/providers/microsoft\.insights/eventtypes", re.I), "eventtypes", ACTIVITY_LOG_API_VERSIONS, "global"),
    (re.compile(r"/providers/Microsoft\.Authorization/roleAssignments", re.I), "roleAssignments",
     ASSIGNMENT_API_VERSIONS, "global"),
    (re.compile(r"/providers/Microsoft\.Authorization/roleDefinitions", re.I), "roleDefinitions",
     DEFINITION_API_VERSIONS, "global"),
    (re.compile(r"^/subscriptions/[^/]+/resourceGroups(/[^/]+)?$", re.I), "resourceGroups", GROUP_API_VERSIONS,
     "global"),
)


class ArmApi(Api):
    name = "arm"

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self._request_local = threading.local()
        # Operations are data (they outlive a restart); these end them.
        state.appliers.update(write=self._end_write, reset=self._end_reset, reset_aad=self._end_reset_aad,
                              abort=lambda operation: None)
        sub = r"/subscriptions/(?P<sub>[^/]+)"
        clusters = rf"{sub}/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.ContainerService/managedClusters"
        one = rf"{clusters}/(?P<name>[^/]+)"
        operations = rf"{sub}/providers/Microsoft\.ContainerService/locations/(?P<location>[^/]+)"
        self.route("GET", one, "GET managedClusters/{name}", self.get_cluster)
        self.route("PUT", one, "PUT managedClusters/{name}", self.put_cluster)
        self.route("POST", rf"{one}/resetServicePrincipalProfile",
                   "POST managedClusters/{name}/resetServicePrincipalProfile", self.reset)
        self.route("POST", rf"{one}/resetAADProfile", "POST managedClusters/{name}/resetAADProfile", self.reset_aad)
        self.route("POST", rf"{one}/listClusterUserCredential", "POST managedClusters/{name}/listClusterUserCredential",
                   self.user_credentials)
        self.route("POST", rf"{one}/abort", "POST managedClusters/{name}/abort", self.abort)
        maintenance = "managedClusters/{name}/maintenanceConfigurations"
        self.route("GET", rf"{one}/maintenanceConfigurations", f"GET {maintenance}", self.list_maintenance)
        for method, handler in (("GET", self.get_maintenance), ("PUT", self.put_maintenance),
                                ("DELETE", self.delete_maintenance)):
            self.route(method, rf"{one}/maintenanceConfigurations/(?P<config>[^/]+)",
                       f"{method} {maintenance}/{{config}}", handler)
        self.route("GET", clusters, "GET resourceGroups/{rg}/managedClusters", self.list_clusters)
        self.route("GET", rf"{sub}/providers/Microsoft\.ContainerService/managedClusters", "GET managedClusters",
                   self.list_clusters)
        self.route("GET", rf"{operations}/operations/(?P<op>[^/]+)", "GET locations/{l}/operations/{id}",
                   self.operation_status)
        self.route("GET", rf"{operations}/operationresults/(?P<op>[^/]+)", "GET locations/{l}/operationresults/{id}",
                   self.operation_result)
        self.route("GET", rf"{sub}/providers/microsoft\.insights/eventtypes/management/values",
                   "GET eventtypes/management/values", self.activity_log)
        self.role_assignments = RoleAssignments(self)
        self.role_definitions = RoleDefinitions(self)
        self.resource_graph = ResourceGraph(self)
        self.deployment = DeploymentRoutes(self)
        self.tenancy = Tenancy(self)
        self.resource_groups = ResourceGroups(self)
        self.identities = ManagedIdentities(self)  # a move to managed identity (sandbox/identities.py)

    # ------------------------------------------------------------------ the checks every ARM request passes

    def error_body(self, err: ApiError) -> Any:
        body: dict[str, Any] = {"code": err.code, "message": err.message}
        if err.details is not None:  # Resource Graph's errors carry them
            body["details"] = err.details
        return {"error": body}

    def _authorize(self, request: Request, action: str, scope: str) -> Application:
        """The caller, if it may perform `action` at `scope` in the request's subscription (sandbox/access.py)."""
        caller = self._authenticate(request)
        self._check_api_version(request)
        if not self.state.has_subscription(request.params["sub"]):
            raise ApiError(404, "SubscriptionNotFound", f"The subscription '{request.params['sub']}' could not be "
                           "found.")
        if not access.permits(self.state, caller, action, scope):
            raise ApiError(403, "AuthorizationFailed", (
                f"The client '{caller.app_id}' with object id '{caller.sp_object_id}' does not have authorization "
                f"to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently "
                "granted, please refresh your credentials."))
        return caller

    def _authenticate(self, request: Request) -> Application:
        """The calling identity, as ARM's front door checks it for every route: an api-version, a bearer token."""
        if "api-version" not in request.query:
            raise ApiError(400, "MissingApiVersionParameter",
                           "The api-version query parameter (?api-version=) is required for all requests.")
        if "authorization" not in request.headers:
            raise ApiError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is "
                           "missing.", {"WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/",'
                                        ' error="invalid_token", error_description="The authentication failed '
                                        'because of missing \'Authorization\' header."'})
        caller = self.state.caller(request.headers["authorization"], "arm")
        if caller is None:
            raise ApiError(401, "InvalidAuthenticationToken", "The access token is invalid.")
        return caller

    def _check_api_version(self, request: Request) -> None:
        """The api-version check of the routes whose resource type this module serves (the others check their own)."""
        for pattern, resource_type, supported, location in _VERSIONED:
            if pattern.search(request.path):
                self.require_api_version(request, supported, resource_type, location)
                return

    def no_route(self, method: str, path: str) -> ApiError:
        """ARM's answer for a resource type it does not know (sandbox/armerrors.py)."""
        return unknown_route(path, getattr(self._request_local, "api_version", ""))

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes, *,
                 skip_faults: tuple[str, ...] = ()) -> tuple[Response, bool]:
        # no_route quotes the request's api-version, which only the target has (one request per thread).
        self._request_local.api_version = dict(parse_qsl(urlsplit(target).query)).get("api-version", "")
        return super().dispatch(method, target, headers, body, skip_faults=skip_faults)

    def require_api_version(self, request: Request, supported: tuple[str, ...], resource_type: str,
                            location: str = "global") -> None:
        """400 NoRegisteredProviderFound in ARM's words unless the request's api-version is one the resource type
        takes (call after `_authenticate`, which makes sure there is one)."""
        if request.query["api-version"].lower() not in (v.lower() for v in supported):  # ARM ignores its case
            raise ApiError(400, "NoRegisteredProviderFound", (
                f"No registered resource provider found for location '{location}' and API version "
                f"'{request.query['api-version']}' for type '{resource_type}'. The supported api-versions are "
                f"'{', '.join(supported)}'. The supported locations are ''."))

    def _group(self, request: Request) -> ResourceGroup:
        group = self.state.resource_group(request.params["rg"], request.params["sub"])
        if group is None:
            raise ApiError(404, "ResourceGroupNotFound", f"Resource group '{request.params['rg']}' could not be found.")
        return group

    def _cluster(self, request: Request) -> Cluster:
        group, name = request.params["rg"], request.params["name"]
        cluster = self.state.cluster(group, name, request.params["sub"])
        if cluster is not None:
            return cluster
        self._group(request)
        raise ApiError(404, "ResourceNotFound", (
            f"The Resource 'Microsoft.ContainerService/managedClusters/{name}' under resource group '{group}' was "
            "not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"))

    def _scope(self, request: Request) -> str:
        return request.path.split("/resetServicePrincipalProfile")[0].split("/resetAADProfile")[0]

    def _count_write(self, request: Request, kind: str) -> None:
        """Count a write that reached an existing cluster, before any check: a refused one was still attempted."""
        with self.state.lock:
            cluster = self.state.clusters.get(
                f"{request.params['sub']}/{request.params['rg']}/{request.params['name']}".lower())
            if cluster is not None:
                cluster.writes[kind] += 1

    # ------------------------------------------------------------------ clusters

    def get_cluster(self, request: Request) -> Response:
        self._authorize(request, READ, self._scope(request))
        return Response(200, self.cluster_body(self._cluster(request)))

    def list_clusters(self, request: Request) -> Response:
        """One page of the clusters of a subscription or of one of its resource groups, with `nextLink` if more."""
        self._authorize(request, READ, request.path)
        subscription, group = request.params["sub"].lower(), request.params.get("rg")
        if group is not None:
            self._group(request)
        start = _skip(request.query.get("$skipToken", "0"))
        with self.state.lock:
            self.state.settle()
            size = self.state.cluster_page_size
            found = [c for c in self.state.clusters.values() if c.subscription_id == subscription
                     and (group is None or c.resource_group.lower() == group.lower())]
            body: dict[str, Any] = {"value": [self.cluster_body(c) for c in found[start:start + size]]}
        if start + size < len(found):
            body["nextLink"] = self._next_link(request, start + size)
        return Response(200, body)

    def _system_identity(self, cluster: Cluster) -> dict[str, str]:
        """A managed identity cluster's `identity` (ManagedClusterIdentity): system-assigned, its principal id stable
        for the cluster (the sandbox keeps no object for it)."""
        principal = uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox:cluster-identity:{cluster.key}")
        return {"type": "SystemAssigned", "principalId": str(principal), "tenantId": self.state.tenant_id}

    def _next_link(self, request: Request, start: int) -> str:
        query = {k: v for k, v in request.query.items() if k != "$skipToken"}
        query["$skipToken"] = str(start)
        return f"{self.base_url}{request.path}?{urlencode(query, quote_via=quote)}"

    def cluster_body(self, cluster: Cluster) -> dict[str, Any]:
        sub = cluster.subscription_id
        body: dict[str, Any] = {
            "id": f"/subscriptions/{sub}/resourcegroups/{cluster.resource_group}/providers/"
                  f"Microsoft.ContainerService/managedClusters/{cluster.name}",
            "location": LOCATION, "name": cluster.name, "type": CLUSTER_TYPE, "eTag": cluster.etag,
            "tags": dict(cluster.tags), "sku": {"name": "Base", "tier": "Free"},
            "properties": {
                "provisioningState": cluster.provisioning_state,
                "powerState": {"code": "Running"},
                "kubernetesVersion": cluster.kubernetes_version,
                "currentKubernetesVersion": cluster.kubernetes_version,
                "maxAgentPools": 100,
                "dnsPrefix": cluster.name, "fqdn": f"{cluster.name}-5f2a1c3b.hcp.{LOCATION}.azmk8s.io",
                "azurePortalFQDN": f"{cluster.name}-5f2a1c3b.portal.hcp.{LOCATION}.azmk8s.io",
                "agentPoolProfiles": [{
                    "name": "nodepool1", "count": 3, "vmSize": "Standard_D4ds_v5", "osDiskSizeGB": 128,
                    "osDiskType": "Managed", "maxPods": 110, "osType": "Linux", "osSKU": "Ubuntu",
                    "nodeImageVersion": NODE_IMAGE_VERSION, "type": "VirtualMachineScaleSets", "mode": "System",
                    "provisioningState": cluster.provisioning_state, "orchestratorVersion": cluster.kubernetes_version,
                    "currentOrchestratorVersion": cluster.kubernetes_version}],
                "servicePrincipalProfile": {"clientId": cluster.client_id},
                "nodeResourceGroup": cluster.node_resource_group,
                "enableRBAC": True,
                "networkProfile": {"networkPlugin": "kubenet", "podCidr": "10.244.0.0/16",
                                   "serviceCidr": "10.0.0.0/16", "dnsServiceIP": "10.0.0.10",
                                   "loadBalancerSku": "standard", "outboundType": "loadBalancer"},
            },
        }
        if cluster.vnet_subnet_id:
            body["properties"]["agentPoolProfiles"][0]["vnetSubnetID"] = cluster.vnet_subnet_id
        if cluster.client_id == "msi":
            body["identity"] = self._system_identity(cluster)
        if cluster.aad is not None:
            # The legacy integration (managed false). serverAppSecret is left out, as AKS leaves out every secret it
            # holds (servicePrincipalProfile.secret too); that it is absent rather than null is assumed.
            body["properties"]["aadProfile"] = {"managed": False, "clientAppID": cluster.aad.client_app_id,
                                                "serverAppID": cluster.aad.server_app_id,
                                                "tenantID": cluster.aad.tenant_id}
        if cluster.created_at and cluster.last_modified_at:
            # ARM's systemData; the remediator reads lastModifiedAt to tell a failure from an older one.
            modifier = cluster.last_modified_by
            body["systemData"] = {"createdBy": CREATOR, "createdByType": "User",
                                  "createdAt": utc_iso(cluster.created_at),
                                  "lastModifiedBy": modifier or CREATOR,
                                  "lastModifiedByType": "Application" if modifier else "User",
                                  "lastModifiedAt": utc_iso(cluster.last_modified_at)}
        if cluster.client_id == "msi":
            body["identity"] = {"type": "SystemAssigned", "principalId": str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                                                        cluster.key)),
                                "tenantId": self.state.tenant_id}
        self.identities.decorate(cluster, body)
        return body

    def put_cluster(self, request: Request) -> Response:
        self._count_write(request, "put")
        caller = self._authorize(request, WRITE, self._scope(request))
        cluster = self._cluster(request)
        body = request.json()
        correlation = _correlation(request)
        self._refuse_long_tags(cluster, caller, correlation, body)
        if self.identities.changes_identity(cluster, body):  # --enable-managed-identity: sandbox/identities.py
            return self.identities.put_identity(request, cluster, caller, correlation, body)
        tags, version = cluster_update(cluster, body)
        self._check_etag(request, cluster)
        operation = self.begin_write(cluster, caller, correlation, version)
        with self.state.lock:
            if tags is not None:  # the model AKS keeps is the one PUT, whatever the reconcile then does (assumed)
                cluster.tags = tags
            return Response(200, self.cluster_body(cluster), self._async_headers(cluster, operation.id, correlation))

    def _check_etag(self, request: Request, cluster: Cluster) -> None:
        """`If-Match` (az aks update/upgrade --if-match): 412 PreconditionFailed unless it is the cluster's eTag or *
        (ARM's optimistic concurrency; AKS's wording is assumed)."""
        wanted = request.headers.get("if-match")
        if wanted and wanted.strip('"') not in ("*", cluster.etag):
            raise ApiError(412, "PreconditionFailed", f"Operation is not allowed: the eTag '{wanted}' in If-Match "
                           f"does not match the managed cluster's eTag '{cluster.etag}'.")

    def _refuse_long_tags(self, cluster: Cluster, caller: Application, correlation: str, body: Any) -> None:
        """ARM's own check of a write's tags, before AKS sees it: a value over 256 characters is refused with a 400
        that quotes it (whatever its writer put in it), logged as a failed write like any other, so also an event.
        The code and wording are ARM's as Microsoft's Az.Migrate module reproduces them (Azure/azure-powershell,
        New-AzMigrateServerReplication.ps1); no public capture of ARM's answer itself was found. The sandbox keeps
        no tags a PUT sends (a valid one changes nothing here)."""
        tags = body.get("tags") if isinstance(body, dict) else None
        too_long = [v for v in tags.values() if isinstance(v, str) and len(v) > MAX_TAG_VALUE] \
            if isinstance(tags, dict) else []
        if not too_long:
            return
        error = {"code": "InvalidTagValueLength", "message": (
            f"Tag value too large. Following tag value '{', '.join(too_long)}' exceeded the maximum length. Maximum "
            f"allowed length for tag value - '{MAX_TAG_VALUE}' characters.")}
        self.state.log_operation(cluster=cluster, operation_name=WRITE, correlation_id=correlation, caller=caller,
                                 method="PUT", status="Failed", status_code="BadRequest",
                                 status_message={"error": error})
        raise ApiError(400, error["code"], error["message"])

    def begin_write(self, cluster: Cluster, caller: Application, correlation: str, version: str) -> Operation:
        """Start a cluster write (an upgrade when the version changes); raise 409 while another runs."""
        with self.state.lock:
            self._refuse_while_busy(cluster, caller, correlation, WRITE, "PUT")
            self.state.log_operation(cluster=cluster, operation_name=WRITE, correlation_id=correlation,
                                     caller=caller, method="PUT", status="Started", status_code="",
                                     event_name="BeginRequest")
            cluster.provisioning_state = "Upgrading" if version != cluster.kubernetes_version else "Updating"
            return self.state.start_operation(cluster, "write", {"caller": caller.app_id, "correlation": correlation,
                                                                 "version": version})

    def _end_write(self, operation: Operation) -> dict[str, Any] | None:
        cluster, caller, correlation = self._operation_parts(operation)
        problem = self.state.cluster_secret_problem(cluster)
        if problem:
            return self._fail(cluster, caller, correlation, WRITE, "PUT", problem)
        cluster.kubernetes_version = operation.params["version"]
        return self._succeed(cluster, caller, correlation, WRITE, "PUT")

    def _operation_parts(self, operation: Operation) -> tuple[Cluster, Application, str]:
        return (self.state.clusters[operation.cluster], self.state.applications[operation.params["caller"]],
                operation.params["correlation"])

    def reset(self, request: Request) -> Response:
        self._count_write(request, "reset")
        caller = self._authorize(request, RESET, self._scope(request))
        cluster = self._cluster(request)
        body = request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                           "deserialized: expected a JSON object.")
        client_id, secret = body.get("clientId"), body.get("secret")
        if not isinstance(client_id, str) or not client_id:
            raise ApiError(400, "InvalidParameter", "Required parameter servicePrincipalProfile.clientId is missing "
                           "(null).")
        if not isinstance(secret, str) or not secret or len(secret.encode()) > MAX_SECRET_BYTES:
            raise ApiError(400, "InvalidParameter", "The value of parameter servicePrincipalProfile.secret is "
                           "invalid: it is required and must not be longer than 190 bytes.")
        if cluster.client_id == "msi":
            raise ApiError(400, "BadRequest", "ResetServicePrincipalProfile is not allowed: the managed cluster "
                           f"{cluster.name} uses a managed identity, not a service principal.")
        correlation = _correlation(request)
        with self.state.lock:
            self._refuse_while_busy(cluster, caller, correlation, RESET, "POST")
            self.state.log_operation(cluster=cluster, operation_name=RESET, correlation_id=correlation,
                                     caller=caller, method="POST", status="Started", status_code="",
                                     event_name="BeginRequest")
            cluster.provisioning_state = "Updating"
            operation = self.state.start_operation(cluster, "reset", {
                "caller": caller.app_id, "correlation": correlation, "clientId": client_id, "secret": secret})
        headers = self._async_headers(cluster, operation.id, correlation)
        headers["Location"] = self._operation_url(cluster.subscription_id, operation.id, "operationresults")
        return Response(202, None, headers)

    def reset_aad(self, request: Request) -> Response:
        """POST resetAADProfile (legacy Azure AD integration): the same long-running protocol as the service
        principal reset (202, Location, Azure-AsyncOperation). The body is the ManagedClusterAADProfile azure-cli
        sends: clientAppID, serverAppID and serverAppSecret required, tenantID optional (the subscription's tenant)."""
        caller = self._authorize(request, RESET_AAD, self._scope(request))
        cluster = self._cluster(request)
        profile = _aad_request(request.json(), self.state.tenant_id)
        if cluster.aad is None:  # AKS's wording is assumed: no public example of this refusal was found
            raise ApiError(400, "BadRequest", "ResetAADProfile is not allowed: the managed cluster "
                           f"{cluster.name} does not use the legacy Azure AD integration (aadProfile.managed false).")
        correlation = _correlation(request)
        with self.state.lock:
            self._refuse_while_busy(cluster, caller, correlation, RESET_AAD, "POST")
            self.state.log_operation(cluster=cluster, operation_name=RESET_AAD, correlation_id=correlation,
                                     caller=caller, method="POST", status="Started", status_code="",
                                     event_name="BeginRequest")
            cluster.provisioning_state = "Updating"
            operation = self.state.start_operation(cluster, "reset_aad", {
                "caller": caller.app_id, "correlation": correlation, "clientAppID": profile.client_app_id,
                "serverAppID": profile.server_app_id, "tenantID": profile.tenant_id,
                "secret": profile._server_secret})
        headers = self._async_headers(cluster, operation.id, correlation)
        headers["Location"] = self._operation_url(cluster.subscription_id, operation.id, "operationresults")
        return Response(202, None, headers)

    def _end_reset_aad(self, operation: Operation) -> dict[str, Any] | None:
        """AKS checks the new server secret by signing in as the server application, as it checks a service
        principal's; a refused secret fails the operation with the AADSTS text (the error's code and wording are
        assumed, modelled on the service principal's: no public text of this failure exists)."""
        cluster, caller, correlation = self._operation_parts(operation)
        params = operation.params
        problem = self.state.sign_in_problem(params["serverAppID"], params["secret"])
        if problem:
            error = {"code": "InvalidAADProfile", "message": (
                f"The credentials of the AAD server application {params['serverAppID']} in AADProfile were invalid. "
                "Please see https://aka.ms/aks/aad-legacy for more details. (Details: adal: Refresh request failed. "
                f"Status Code = '401'. Response body: {problem} Endpoint "
                f"https://login.microsoftonline.com/{params['tenantID']}/oauth2/token?api-version=1.0)")}
            cluster.provisioning_state = "Failed"
            self.state.log_operation(cluster=cluster, operation_name=RESET_AAD, correlation_id=correlation,
                                     caller=caller, method="POST", status="Failed", status_code="BadRequest",
                                     status_message=_status_message(error))
            return error
        cluster.aad = LegacyAadProfile(params["clientAppID"], params["serverAppID"], params["tenantID"],
                                       params["secret"])
        return self._succeed(cluster, caller, correlation, RESET_AAD, "POST")

    def _end_reset(self, operation: Operation) -> dict[str, Any] | None:
        cluster, caller, correlation = self._operation_parts(operation)
        if self.state.reset_failures > 0:
            self.state.reset_failures -= 1
            error = {"code": "InternalOperationError", "message": "Reset service principal profile failed "
                     "with an internal error. Please retry the operation."}
            cluster.provisioning_state = "Failed"
            self.state.log_operation(cluster=cluster, operation_name=RESET, correlation_id=correlation,
                                     caller=caller, method="POST", status="Failed", status_code="InternalServerError",
                                     status_message=_status_message(error))
            return error
        client_id, secret = operation.params["clientId"], operation.params["secret"]
        problem = self.state.sign_in_problem(client_id, secret)
        if problem:
            return self._fail(cluster, caller, correlation, RESET, "POST", problem)
        cluster.client_id, cluster._held_secret = client_id, secret
        return self._succeed(cluster, caller, correlation, RESET, "POST")

    def _refuse_while_busy(self, cluster: Cluster, caller: Application, correlation: str, action: str,
                           method: str) -> None:
        """409 OperationNotAllowed while an operation runs on the cluster, in AKS's current words (as quoted in
        Azure/azure-cli-extensions#9855, 2026; older AKS said "Another operation (Updating) is in progress")."""
        self.state.settle()
        if cluster.operation is None:
            return
        running = self.state.operations[cluster.operation]
        error = {"code": "OperationNotAllowed", "message": (
            f"Operation is not allowed because there's an in progress {_IN_PROGRESS[running.kind]} managed cluster "
            f"operation (operation ID: {running.id}) on the managed cluster started on UTC "
            f"{utc_iso(running.started)[:19]}Z. Please wait for it to finish before starting a new operation. You can "
            "also use 'az aks operation-abort ...' to abort the ongoing operation.")}
        self.state.log_operation(cluster=cluster, operation_name=action, correlation_id=correlation, caller=caller,
                                 method=method, status="Failed", status_code="Conflict",
                                 status_message={"error": error})
        raise ApiError(409, error["code"], error["message"])

    def _fail(self, cluster: Cluster, caller: Application, correlation: str, action: str, method: str,
              aad_response: str) -> dict[str, Any]:
        error = {"code": "ServicePrincipalValidationClientError", "message": (
            "The credentials in ServicePrincipalProfile were invalid. Please see https://aka.ms/aks-sp-help for more "
            f"details. (Details: adal: Refresh request failed. Status Code = '401'. Response body: {aad_response} "
            f"Endpoint https://login.microsoftonline.com/{self.state.tenant_id}/oauth2/token?api-version=1.0)")}
        cluster.provisioning_state = "Failed"
        self.state.log_operation(cluster=cluster, operation_name=action, correlation_id=correlation, caller=caller,
                                 method=method, status="Failed", status_code="BadRequest",
                                 status_message=_status_message(error))
        return error

    def _succeed(self, cluster: Cluster, caller: Application, correlation: str, action: str, method: str) -> None:
        cluster.provisioning_state = "Succeeded"
        cluster.etag = uuid.uuid4().hex[:8]
        cluster.last_modified_at, cluster.last_modified_by = self.state.now(), caller.app_id
        self.state.log_operation(cluster=cluster, operation_name=action, correlation_id=correlation, caller=caller,
                                 method=method, status="Succeeded", status_code="OK")
        return None

    # ------------------------------------------------------------------ long-running operations

    def _operation_url(self, subscription_id: str, operation_id: str, kind: str) -> str:
        return (f"{self.base_url}/subscriptions/{subscription_id}/providers/Microsoft.ContainerService/"
                f"locations/{LOCATION}/{kind}/{operation_id}?api-version={OPERATION_API_VERSION}")

    def _async_headers(self, cluster: Cluster, operation_id: str, correlation: str) -> dict[str, str]:
        return {"Azure-AsyncOperation": self._operation_url(cluster.subscription_id, operation_id, "operations"),
                "Retry-After": RETRY_AFTER, "x-ms-correlation-request-id": correlation}

    def _operation(self, request: Request) -> Operation:
        """The operation a status URL names, if it ran in that URL's subscription."""
        operation = self.state.read_operation(request.params["op"])
        with self.state.lock:
            cluster = self.state.clusters.get(operation.cluster) if operation else None
        if operation is None or cluster is None or cluster.subscription_id != request.params["sub"].lower():
            raise ApiError(404, "NotFound", f"Operation {request.params['op']} was not found.")
        return operation

    def operation_status(self, request: Request) -> Response:
        self._authorize(request, "Microsoft.ContainerService/locations/operations/read", request.path)
        operation = self._operation(request)
        headers = {"Retry-After": RETRY_AFTER} if operation.status == "InProgress" else {}
        return Response(200, operation.body(request.params["sub"].lower()), headers)

    def operation_result(self, request: Request) -> Response:
        self._authorize(request, "Microsoft.ContainerService/locations/operationresults/read", request.path)
        operation = self._operation(request)
        if operation.status == "InProgress":
            return Response(202, None, {"Location": self._operation_url(request.params["sub"].lower(), operation.id,
                                                                        "operationresults"),
                                        "Retry-After": RETRY_AFTER})
        if operation.error:
            raise ApiError(400, operation.error["code"], operation.error["message"])
        return Response(204)

    # ------------------------------------------------------------------ credentials and abort

    def user_credentials(self, request: Request) -> Response:
        """listClusterUserCredential: `{"kubeconfigs": [{"name", "value": base64 kubeconfig}]}` (the official
        example, tests/reference/aks_ManagedClustersListClusterUserCredentials_2024-09-01.json). The kubeconfig points
        at the cluster's fqdn with a token that opens nothing: the sandbox runs no Kubernetes API server."""
        self._authorize(request, f"{CLUSTER_TYPE}/listClusterUserCredential/action", request.path)
        cluster = self._cluster(request)
        return Response(200, {"kubeconfigs": [{"name": "clusterUser", "value": base64.b64encode(
            _kubeconfig(cluster, request.params["rg"]).encode()).decode()}]})

    def abort(self, request: Request) -> Response:
        """POST abort (tests/reference/aks_ManagedClustersAbortOperation_2024-09-01.json: 202 with
        Azure-AsyncOperation and Location, or 204). The running operation ends Canceled and so does the cluster's
        provisioningState ("Once complete, the cluster provisioning state shows a Canceled state",
        learn.microsoft.com/azure/aks/manage-abort-operations); the abort is an operation of its own that has ended
        by the first poll. Assumed: 204 with nothing running; the canceled operation's error (the code
        OperationCancelled is the one AKS's troubleshooting docs name, MicrosoftDocs/azure-docs#82546; the message
        is the sandbox's) and its Activity Log entry (status Canceled)."""
        caller = self._authorize(request, f"{CLUSTER_TYPE}/abort/action", request.path)
        cluster, correlation = self._cluster(request), _correlation(request)
        with self.state.lock:
            running = self.state.cancel_operation(cluster, {
                "code": "OperationCancelled", "message": "The operation was canceled by an abort request."})
            if running is None:
                return Response(204)
            action = {"write": WRITE, "reset": RESET, "reset_aad": RESET_AAD}[running.kind]
            self.state.log_operation(cluster=cluster, operation_name=action, correlation_id=correlation,
                                     caller=caller, method="POST", status="Canceled", status_code="")
            cluster.provisioning_state = "Canceled"
            abort = self.state.start_operation(cluster, "abort", {})
            abort.ready_at = abort.started
            self.state.settle()
        headers = self._async_headers(cluster, abort.id, correlation)
        headers["Location"] = self._operation_url(cluster.subscription_id, abort.id, "operationresults")
        return Response(202, None, headers)

    # ------------------------------------------------------------------ planned maintenance

    def list_maintenance(self, request: Request) -> Response:
        self._authorize(request, f"{MAINTENANCE_TYPE}/read", request.path)
        cluster = self._cluster(request)
        with self.state.lock:
            return Response(200, {"value": [self.maintenance_body(cluster, name, properties)
                                            for name, properties in cluster.maintenance_configurations.items()]})

    def get_maintenance(self, request: Request) -> Response:
        """404 for a configuration the cluster lacks: the status is what the SDK maps; the code and wording are
        assumed (no public example of AKS's answer was found)."""
        self._authorize(request, f"{MAINTENANCE_TYPE}/read", request.path)
        cluster, name = self._cluster(request), _maintenance_name(request.params["config"])
        with self.state.lock:
            properties = cluster.maintenance_configurations.get(name or "")
            if properties is None:
                raise ApiError(404, "NotFound", f"The maintenance configuration '{request.params['config']}' of "
                               f"managed cluster '{cluster.name}' was not found.")
            return Response(200, self.maintenance_body(cluster, name or "", properties))

    def put_maintenance(self, request: Request) -> Response:
        """createOrUpdate: 201 for a new configuration, 200 for a replaced one, the body as stored."""
        self._authorize(request, f"{MAINTENANCE_TYPE}/write", request.path)
        cluster, body = self._cluster(request), request.json()
        if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
            raise ApiError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                           "deserialized: 'properties' is required.")
        name, properties = maintenance_configuration(request.params["config"], body["properties"], self.state.now())
        with self.state.lock:
            created = name not in cluster.maintenance_configurations
            cluster.maintenance_configurations[name] = properties
            return Response(201 if created else 200, self.maintenance_body(cluster, name, properties))

    def delete_maintenance(self, request: Request) -> Response:
        """200 when it was there, 204 when it was not (ARM's delete protocol, as the Delete example lists both)."""
        self._authorize(request, f"{MAINTENANCE_TYPE}/delete", request.path)
        cluster, name = self._cluster(request), _maintenance_name(request.params["config"])
        with self.state.lock:
            return Response(200 if cluster.maintenance_configurations.pop(name or "", None) is not None else 204)

    def maintenance_body(self, cluster: Cluster, name: str, properties: dict[str, Any]) -> dict[str, Any]:
        """A configuration as MaintenanceConfigurationsGet / List show it (the legacy examples add "type", as here;
        no systemData: the sandbox does not keep it)."""
        return {"id": f"/subscriptions/{cluster.subscription_id}/resourcegroups/{cluster.resource_group}/providers/"
                      f"Microsoft.ContainerService/managedClusters/{cluster.name}/maintenanceConfigurations/{name}",
                "name": name, "type": MAINTENANCE_TYPE, "properties": copy.deepcopy(properties)}

    # ------------------------------------------------------------------ Activity Log

    def activity_log(self, request: Request) -> Response:
        self._authorize(request, "Microsoft.Insights/eventtypes/values/read", request.path)
        since, until, terms = _parse_filter(request.query.get("$filter", ""))
        subscription = request.params["sub"].lower()
        with self.state.lock:
            now = self.state.now()
            entries = [e for e in self.state.activity_log if e["subscriptionId"] == subscription
                       and since <= parse_time(e["eventTimestamp"]) <= until
                       and parse_time(e["submissionTimestamp"]) <= now and _matches(e, terms)]
        entries.reverse()  # newest first, as the service returns them
        start = _skip(request.query.get("$skipToken", "0"))
        page = entries[start:start + ACTIVITY_PAGE]
        selected = [f.strip() for f in request.query.get("$select", "").split(",") if f.strip()]
        if selected:
            page = [{k: v for k, v in entry.items() if k in selected} for entry in page]
        body: dict[str, Any] = {"value": copy.deepcopy(page)}
        if start + ACTIVITY_PAGE < len(entries):
            body["nextLink"] = self._next_link(request, start + ACTIVITY_PAGE)
        return Response(200, body)


def cluster_update(cluster: Cluster, body: Any) -> tuple[dict[str, str] | None, str]:
    """(the tags, or None to keep them; the Kubernetes version) of a cluster PUT, or AKS's refusal.

    What the sandbox models of a PUT: `tags` (all of them, replacing the old: ARM's PUT semantics) and
    `properties.kubernetesVersion` (absent: unchanged). Refused as AKS refuses them: a downgrade (400
    OperationNotAllowed, "Downgrading Kubernetes version 1.14.8 to 1.14.7 is not allowed. Available upgrades: ...",
    rancher/rancher#24071), a version the region does not offer (400 AgentPoolK8sVersionNotSupported, "Version 1.20.7
    is not supported in this region. ...", dspace-group/simphera-reference-architecture-azure#29), another location
    (400 InvalidResourceLocation, ARM's refusal to move a resource by PUT; its wording here is assumed) and another
    dnsPrefix (400 PropertyChangeNotAllowed, "Changing property 'dnsPrefix' is not allowed.": assumed, no public
    capture found). Everything else a PUT sends (agent pools, network profile, servicePrincipalProfile without a
    secret or left out, as azure-cli sends them back) is taken and not kept: the sandbox's cluster has none of it
    to change."""
    properties = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(properties, dict):
        raise ApiError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                       "deserialized: 'properties' is required.")
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tags.items())):
        raise ApiError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                       "deserialized: 'tags' must map names to string values.")
    location = body.get("location")
    if isinstance(location, str) and location.replace(" ", "").lower() != LOCATION:
        raise ApiError(400, "InvalidResourceLocation", (
            f"The resource '{cluster.name}' already exists in location '{LOCATION}' in resource group "
            f"'{cluster.resource_group}'. A resource with the same name cannot be created in location '{location}'. "
            "Please select a new resource name."))
    if properties.get("dnsPrefix") not in (None, cluster.name):
        raise ApiError(400, "PropertyChangeNotAllowed", "Changing property 'dnsPrefix' is not allowed.")
    version = properties.get("kubernetesVersion") or cluster.kubernetes_version
    if not isinstance(version, str) or version == cluster.kubernetes_version:
        return (None if tags is None else dict(tags)), cluster.kubernetes_version
    upgrades = [v for v in KUBERNETES_VERSIONS if _version_key(v) > _version_key(cluster.kubernetes_version)]
    if _fits(r"\d+\.\d+\.\d+", version) and _version_key(version) < _version_key(cluster.kubernetes_version):
        raise ApiError(400, "OperationNotAllowed", (
            f"Downgrading Kubernetes version {cluster.kubernetes_version} to {version} is not allowed. Available "
            f"upgrades: {','.join(upgrades)}. Please see https://aka.ms/aks-supported-k8s-ver for version details."))
    if version not in KUBERNETES_VERSIONS:
        raise ApiError(400, "AgentPoolK8sVersionNotSupported", (
            f"Version {version} is not supported in this region. Please use [az aks get-versions] command to get the "
            "supported version list in this region. For more information, please check "
            "https://aka.ms/supported-version-list"))
    return (None if tags is None else dict(tags)), version


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _kubeconfig(cluster: Cluster, group: str) -> str:
    """A kubeconfig as AKS hands a clusterUser one out (Azure AD-less cluster: a client token)."""
    server = f"https://{cluster.name}-5f2a1c3b.hcp.{LOCATION}.azmk8s.io:443"
    user = f"clusterUser_{group}_{cluster.name}"
    token = uuid.uuid5(uuid.NAMESPACE_URL, cluster.key).hex
    return (f"apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {_SANDBOX_CA_STUB}\n"
            f"    server: {server}\n  name: {cluster.name}\ncontexts:\n- context:\n    cluster: {cluster.name}\n"
            f"    user: {user}\n  name: {cluster.name}\ncurrent-context: {cluster.name}\nkind: Config\n"
            f"preferences: {{}}\nusers:\n- name: {user}\n  user:\n    token: {token}\n")


_SANDBOX_CA_STUB = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"  # "-----BEGIN CERTIFICATE-----": no cluster to trust


def _maintenance_name(name: str) -> str | None:
    return next((n for n in MAINTENANCE_NAMES if n.lower() == name.lower()), None)


def _refuse(where: str, rule: str) -> ApiError:
    # AKS's wording for these is assumed; only the config-name refusal below is quoted.
    return ApiError(400, "InvalidParameter", f"The value of parameter {where} is invalid: {rule}.")


def maintenance_configuration(name: str, properties: Any, now: datetime) -> tuple[str, dict[str, Any]]:
    """(the configuration's name as AKS spells it, its `properties` as AKS stores them), or 400 InvalidParameter.

    The name must be one of MAINTENANCE_NAMES (AKS's refusal, quoted in Azure/ARO-HCP#3260). The checks are the
    2024-09-01 model's: `maintenanceWindow` (each kind's ranges, durationHours 4-24, startTime HH:mm, utcOffset
    +/-HH:mm, dates YYYY-MM-DD), or the legacy timeInWeek/notAllowedTime, for `default` only; and `default` schedules
    only weekly (the docs' table). A missing startDate becomes the date of `now` at the offset, as AKS stores "the
    current date at creation time". Nulls (the kinds not chosen, as readers show them) are dropped."""
    canonical = _maintenance_name(name)
    if canonical is None:
        raise ApiError(400, "InvalidParameter", "Only 'default', 'aksManagedAutoUpgradeSchedule' and "
                       "'aksManagedNodeOSUpgradeSchedule' are allowed configNames for maintenance configuration.")
    if not isinstance(properties, dict):
        raise _refuse("properties", "it must be an object")
    stored = _without_nulls(properties)
    window = stored.get("maintenanceWindow")
    if window is None:
        if canonical != "default" or not isinstance(stored.get("timeInWeek"), list):
            raise _refuse("properties.maintenanceWindow", "it is required")
        for entry in stored["timeInWeek"]:
            hours = entry.get("hourSlots", []) if isinstance(entry, dict) else None
            if not isinstance(hours, list) or entry.get("day") not in _DAYS or not all(
                    _allowed(h, range(24)) for h in hours):
                raise _refuse("properties.timeInWeek", "each entry is a day of the week and hourSlots from 0 to 23")
        spans = stored.get("notAllowedTime", [])
        if not isinstance(spans, list) or not all(
                isinstance(span, dict) and _is_time(span.get("start")) and _is_time(span.get("end")) for span in spans):
            raise _refuse("properties.notAllowedTime", "each entry has a start and an end date-time")
        return canonical, stored
    if not isinstance(window, dict):
        raise _refuse("properties.maintenanceWindow", "it must be an object")
    schedule = window.get("schedule")
    kinds = sorted(schedule) if isinstance(schedule, dict) else []
    if len(kinds) != 1 or kinds[0] not in _SCHEDULE_RULES or not isinstance(schedule[kinds[0]], dict):
        raise _refuse("maintenanceWindow.schedule", "exactly one of daily, weekly, absoluteMonthly and relativeMonthly")
    if canonical == "default" and kinds[0] != "weekly":
        raise _refuse("maintenanceWindow.schedule", "the default configuration only supports a weekly schedule")
    for field, allowed in _SCHEDULE_RULES[kinds[0]].items():
        if not _allowed(schedule[kinds[0]].get(field), allowed):
            raise _refuse(f"maintenanceWindow.schedule.{kinds[0]}.{field}", "it is missing or out of range")
    spans = window.get("notAllowedDates", [])
    checks = {"durationHours": (_allowed(window.get("durationHours"), range(4, 25)), "whole hours from 4 to 24"),
              "startTime": (_fits(r"([01]\d|2[0-3]):[0-5]\d", window.get("startTime")), "a time HH:mm"),
              "utcOffset": ("utcOffset" not in window or _fits(r"[+-]\d{2}:[0-5]\d", window["utcOffset"]),
                            "+HH:mm or -HH:mm"),
              "startDate": ("startDate" not in window or _is_date(window["startDate"]), "a date YYYY-MM-DD"),
              "notAllowedDates": (isinstance(spans, list) and all(
                  isinstance(s, dict) and _is_date(s.get("start")) and _is_date(s.get("end")) for s in spans),
                  "a list of {start, end} dates YYYY-MM-DD")}
    if bad := next((field for field, (ok, _) in checks.items() if not ok), None):
        raise _refuse(f"maintenanceWindow.{bad}", checks[bad][1])
    if "startDate" not in window:
        offset = window.get("utcOffset", "+00:00")
        local = now + (1 if offset[0] == "+" else -1) * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
        window["startDate"] = local.date().isoformat()
    return canonical, stored


_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_SCHEDULE_RULES: dict[str, dict[str, Any]] = {
    "daily": {"intervalDays": range(1, 8)},
    "weekly": {"intervalWeeks": range(1, 5), "dayOfWeek": _DAYS},
    "absoluteMonthly": {"intervalMonths": range(1, 7), "dayOfMonth": range(1, 32)},
    "relativeMonthly": {"intervalMonths": range(1, 7), "weekIndex": ("First", "Second", "Third", "Fourth", "Last"),
                        "dayOfWeek": _DAYS},
}


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _allowed(value: Any, allowed: range | tuple[str, ...]) -> bool:
    """`value` is one of `allowed`: a whole number in the range (not a bool or a float), or one of the words."""
    if isinstance(allowed, range):
        return isinstance(value, int) and not isinstance(value, bool) and value in allowed
    return value in allowed


def _fits(pattern: str, value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(pattern, value) is not None


def _is_date(value: Any) -> bool:
    try:
        return _fits(r"\d{4}-\d{2}-\d{2}", value) and bool(datetime.strptime(value, "%Y-%m-%d"))
    except ValueError:
        return False


def _is_time(value: Any) -> bool:
    try:
        return isinstance(value, str) and bool(parse_time(value))
    except ValueError:
        return False


def _status_message(error: dict[str, Any]) -> dict[str, Any]:
    """statusMessage of a failed long-running operation: the cause sits in error.details."""
    return {"status": "Failed", "error": {
        "code": "ResourceOperationFailure",
        "message": "The resource operation completed with terminal provisioning state 'Failed'.",
        "details": [error]}}


def _aad_request(body: Any, tenant_id: str) -> LegacyAadProfile:
    """The resetAADProfile body as a profile; 400 InvalidParameter for a field missing (azure-cli requires all three:
    "usage error: --reset-aad --aad-client-app-id ID --aad-server-app-id ID --aad-server-app-secret SECRET")."""
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                       "deserialized: expected a JSON object.")
    for field in ("clientAppID", "serverAppID", "serverAppSecret"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise ApiError(400, "InvalidParameter", f"Required parameter aadProfile.{field} is missing (null).")
    tenant = body.get("tenantID") or tenant_id
    if not isinstance(tenant, str):
        raise ApiError(400, "InvalidParameter", "The value of parameter aadProfile.tenantID is invalid.")
    return LegacyAadProfile(body["clientAppID"], body["serverAppID"], tenant, body["serverAppSecret"])


def _correlation(request: Request) -> str:
    return request.headers.get("x-ms-correlation-request-id") or str(uuid.uuid4())


def _bad_filter(detail: str) -> ApiError:
    return ApiError(400, "BadRequest", f"The $filter is invalid: {detail}. It must be \"eventTimestamp ge '<start>' "
                    "and eventTimestamp le '<end>'\", optionally followed by one of \"and correlationId eq '<id>'\", "
                    "\"and resourceGroupName eq '<name>'\", \"and resourceUri eq '<uri>'\" or "
                    "\"and resourceProvider eq '<namespace>'\", then by \"and caller eq '<caller>'\" and \"and "
                    "status eq '<status>'\".")


def _parse_filter(text: str) -> tuple[datetime, datetime, dict[str, str]]:
    """(since, until, {field: value} of the narrowing and refining terms) of an Activity Log $filter.

    The REST reference (Activity Logs - List) documents the time range, then one of correlationId, resourceGroupName,
    resourceUri and resourceProvider; azure-cli (`az monitor activity-log list`, monitor/custom.py
    _build_activity_log_odata_filter) also sends `resourceId eq` for --resource-id, `caller eq` and `status eq`,
    which the service takes (the command is documented for them), and writes the times without quotes."""
    if not text:
        raise _bad_filter("$filter is required")
    since = until = None
    terms: dict[str, str] = {}
    for term in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        match = _FILTER_TERM.match(term)
        if not match:
            raise _bad_filter(f"cannot read {term!r}")
        name, op = match.group(1).lower(), match.group(2).lower()
        value = match.group(3).replace("''", "'") if match.group(3) is not None else match.group(4)
        if name == "eventtimestamp" and op in ("ge", "le"):
            try:
                moment = parse_time(value)
            except ValueError as err:
                raise _bad_filter(f"{value!r} is not a time") from err
            since, until = (moment, until) if op == "ge" else (since, moment)
        elif op == "eq" and name in _NARROWING and not set(terms) & set(_NARROWING.values()):
            terms[_NARROWING[name]] = value
        elif op == "eq" and name in _REFINING and _REFINING[name] not in terms:
            terms[_REFINING[name]] = value
        else:
            raise _bad_filter(f"{term!r} is not supported here")
    if since is None or until is None:
        raise _bad_filter("both eventTimestamp ge and eventTimestamp le are required")
    if until - since > timedelta(days=90):
        raise _bad_filter("the time range may span at most 90 days")
    return since, until, terms


def _matches(entry: dict[str, Any], terms: dict[str, str]) -> bool:
    actual = {"correlationId": entry["correlationId"], "resourceProvider": entry["resourceProviderName"]["value"],
              "resourceUri": entry["resourceId"], "resourceGroupName": entry["resourceGroupName"],
              "caller": entry["caller"], "status": entry["status"]["value"]}
    return all(actual[field].lower() == value.lower() for field, value in terms.items())


def _skip(token: str) -> int:
    try:
        return max(int(token), 0)
    except ValueError as err:
        raise ApiError(400, "BadRequest", "The $skipToken is invalid.") from err

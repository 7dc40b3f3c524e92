"""What ARM answers for a request it has no route for, in its own words (`ArmApi.no_route`).

ARM routes a request by the resource provider namespace and resource type in its path, before any provider sees it:

- a namespace ARM does not know: 400 InvalidResourceNamespace, "The resource namespace 'Microsoft.Container' is
  invalid." (Azure/aci-connector-k8s#13; JulianHayward/Azure-MG-Sub-Governance-Reporting#52). The status is assumed
  (the reports quote the code and text only).
- a type the namespace does not have (for that api-version): 404 InvalidResourceType, "The resource type
  'classicAdministrators' could not be found in the namespace 'Microsoft.Authorization' for api version
  '2015-07-01'." (JulianHayward/Azure-MG-Sub-Governance-Reporting#297, status 404 NotFound; Azure/acs-engine#4037
  has the same words). A path with no `providers` segment (`/subscriptions/{id}/foo`) names a type of
  Microsoft.Resources, as ARM's own types (subscriptions, resourceGroups) are: that it is answered the same way is
  assumed.
- an api-version ARM's routes do not take for a type the sandbox serves: the route itself answers, 400
  NoRegisteredProviderFound with the supported list (`ArmApi.require_api_version`, Azure/azure-cli#28368).

The namespaces the sandbox knows are those it serves and a few common ones whose resources it does not model: a
request for one of those (a virtual network, say) is InvalidResourceType here, where Azure would find it.
"""

from __future__ import annotations

from sandbox.state import ApiError

KNOWN_NAMESPACES = {n.lower(): n for n in (
    "Microsoft.Resources", "Microsoft.ContainerService", "Microsoft.Authorization", "Microsoft.Insights",
    "Microsoft.ResourceGraph", "Microsoft.Web", "Microsoft.EventGrid", "Microsoft.KeyVault", "Microsoft.Network",
    "Microsoft.Compute", "Microsoft.Storage", "Microsoft.ManagedIdentity", "Microsoft.ContainerRegistry",
    "Microsoft.OperationalInsights")}


def unknown_route(path: str, api_version: str) -> ApiError:
    """InvalidResourceNamespace or InvalidResourceType for a path no route serves."""
    segments = [s for s in path.split("/") if s]
    lowered = [s.lower() for s in segments]
    if "providers" in lowered and lowered.index("providers") + 1 < len(segments):
        at = len(lowered) - 1 - lowered[::-1].index("providers")  # the innermost provider names the type
        namespace, rest = segments[at + 1], segments[at + 2:]
    else:  # ARM's own types: /subscriptions/{id}/{type}/..., /tenants/..., /{type}
        namespace = "Microsoft.Resources"
        rest = segments[2:] if lowered[:1] == ["subscriptions"] else segments
    if namespace.lower() not in KNOWN_NAMESPACES:
        return ApiError(400, "InvalidResourceNamespace", f"The resource namespace '{namespace}' is invalid.")
    resource_type = "/".join(rest[0::2]) or namespace
    return ApiError(404, "InvalidResourceType", (
        f"The resource type '{resource_type}' could not be found in the namespace "
        f"'{KNOWN_NAMESPACES[namespace.lower()]}' for api version '{api_version}'."))

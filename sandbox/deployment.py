"""The ARM routes a deployment preflight reads, on the ARM host behind its front door (api-version, bearer token,
subscription; sandbox/arm.py): the cloud's endpoint metadata, the regions that offer the Flex Consumption plan, Event
Grid system topics and their event subscriptions, and function apps with their app settings. What they serve is
what `POST /_sandbox/remediators` plants (sandbox/fleets.py), the way the remediator's Bicep leaves it in Azure.

What follows Azure, and where from (copies in tests/reference/, each with its .source.txt):

- `GET /metadata/endpoints?api-version=2022-09-01`, no token (as management.azure.com answers it): one object, the
  public cloud's document (arm_metadata_endpoints_2022-09-01.json, a copy of Azure's answer), with the sandbox's own
  ARM URL (`resourceManager`), token endpoint (`authentication.loginEndpoint`) and Graph URL
  (`microsoftGraphResourceId`), and `name` the state's `cloud_name` (AzureCloud unless the admin API changes it).
  The Key Vault suffix (`suffixes.keyVaultDns`) is the sandbox's own, `vault.sandbox.invalid`: a vault is reached by
  name through the sandbox's CONNECT proxy (sandbox/vaulthosts.py). Services the sandbox does not serve keep the
  public cloud's values, their DNS suffixes too.
- `GET /subscriptions/{sub}/providers/Microsoft.Web/geoRegions?sku=FlexConsumption` (what the Azure Functions tools
  ask, microsoft/vscode-azurefunctions' getFlexLocations, and `az functionapp list-flexconsumption-locations`, whose
  response azure-cli#30467 shows): `{"value": [{"id": ".../geoRegions/<display name>", "name": "<display name>",
  "type": "Microsoft.Web/geoRegions", "properties": {"name", "description", "sortOrder", "displayName",
  "orgDomain"}}]}`, the regions of `state.flex_regions`. Action Microsoft.Web/geoRegions/Read ("Get the list of Geo
  regions.", the resource provider operations reference), api-versions 2022-03-01 to 2025-05-01 (azure-mgmt-web 11
  sends the last). An api-version the type does not take is 404
  InvalidResourceType in the words Azure/azure-sdk-for-net#18091 quotes.
- Event Grid, api-version 2022-06-15 or 2025-02-15 (the stable versions whose examples are copied here):
  `GET /subscriptions/{sub}[/resourceGroups/{rg}]/providers/Microsoft.EventGrid/systemTopics`,
  `GET .../systemTopics/{name}`, `GET .../systemTopics/{name}/eventSubscriptions[/{name}]`, bodies as
  SystemTopics_ListBySubscription / _Get and SystemTopicEventSubscriptions_Get show them, the destination an
  AzureFunction's as EventSubscriptions_GetForCustomTopic_AzureFunctionDestination shows it. Actions
  Microsoft.EventGrid/systemTopics/read and Microsoft.EventGrid/systemTopics/eventSubscriptions/read.
- Function apps, api-version 2022-09-01, 2023-12-01, 2024-04-01, 2024-11-01 or 2025-05-01 (the stable versions
  with these examples; the last is azure-mgmt-web 11's): `GET .../Microsoft.Web/sites/{name}`
  (GetWebApp: id, name, type, kind, location as a display name, tags, properties) and
  `POST .../sites/{name}/config/appsettings/list` (ListAppSettings: id, name "appsettings", type
  "Microsoft.Web/sites/config", kind, properties: the settings, values included, as Azure answers a caller allowed to
  list them). Actions Microsoft.Web/sites/read and Microsoft.Web/sites/config/list/action (Reader's `*/read` has the
  first, not the second).

Assumed (no public text found): the list of regions (state.DEFAULT_FLEX_REGIONS) and their `orgDomain` and
`sortOrder`; that a geoRegions request without `sku=FlexConsumption` (or with another sku) lists every region the
sandbox names (`REGION_NAMES`), and that `zoneRedundant`/`linuxWorkersEnabled` are ignored; the metadata document's
answer to another api-version (400 InvalidApiVersionParameter) and to none (400 MissingApiVersionParameter); a missing
system topic, event subscription or function app is 404 ResourceNotFound in ARM's usual words; a function app's
properties beyond those few (`state`, host names, `serverFarmId` of a plan named after it, ...); an event
subscription list is `{"value": [...]}` of the Get bodies (its example is not in the copies found); other
api-versions are 400 NoRegisteredProviderFound, as the other ARM routes answer them.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from sandbox.server import Request, Response
from sandbox.state import ApiError, FunctionSite, SystemTopic, SystemTopicSubscription
from sandbox.vaulthosts import VAULT_DNS_SUFFIX

if TYPE_CHECKING:
    from sandbox.arm import ArmApi

METADATA_API_VERSION = "2022-09-01"
GEO_REGIONS_API_VERSIONS = ("2022-03-01", "2023-01-01", "2023-12-01", "2024-04-01", "2024-11-01", "2025-05-01")
EVENT_GRID_API_VERSIONS = ("2022-06-15", "2025-02-15")
WEB_API_VERSIONS = ("2022-09-01", "2023-12-01", "2024-04-01", "2024-11-01", "2025-05-01")
GEO_REGIONS_READ = "Microsoft.Web/geoRegions/Read"
TOPIC_READ = "Microsoft.EventGrid/systemTopics/read"
EVENT_SUBSCRIPTION_READ = "Microsoft.EventGrid/systemTopics/eventSubscriptions/read"
SITE_READ = "Microsoft.Web/sites/read"
APP_SETTINGS_LIST = "Microsoft.Web/sites/config/list/action"
SITE_TYPE, TOPIC_TYPE = "Microsoft.Web/sites", "Microsoft.EventGrid/systemTopics"
# Azure regions by programmatic name, with their display names (as Microsoft.Web and `az account list-locations`
# name them): the ones the sandbox names.
REGION_NAMES = {"australiaeast": "Australia East", "canadacentral": "Canada Central", "centralus": "Central US",
                "eastasia": "East Asia", "eastus": "East US", "eastus2": "East US 2", "francecentral": "France Central",
                "germanywestcentral": "Germany West Central", "japaneast": "Japan East", "northeurope": "North Europe",
                "southeastasia": "Southeast Asia", "swedencentral": "Sweden Central", "uksouth": "UK South",
                "westeurope": "West Europe", "westus2": "West US 2", "westus3": "West US 3"}
FLEX_ORG_DOMAIN = "PUBLIC;DREAMSPARK;MSFTPUBLIC;FUNCTIONS;DYNAMIC;LINUX;FLEXCONSUMPTION"
# Azure's public cloud document, api-version 2022-09-01 (the sandbox fills in its own endpoints).
_PUBLIC_CLOUD: dict[str, Any] = {
    "portal": "https://portal.azure.com",
    "authentication": {"loginEndpoint": "https://login.microsoftonline.com",
                       "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
                       "tenant": "common", "identityProvider": "AAD"},
    "media": "https://rest.media.azure.net", "graphAudience": "https://graph.windows.net/",
    "graph": "https://graph.windows.net/", "name": "AzureCloud",
    "suffixes": {"azureDataLakeStoreFileSystem": "azuredatalakestore.net", "acrLoginServer": "azurecr.io",
                 "sqlServerHostname": "database.windows.net",
                 "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net", "keyVaultDns": "vault.azure.net",
                 "storage": "core.windows.net", "azureFrontDoorEndpointSuffix": "azurefd.net",
                 "storageSyncEndpointSuffix": "afs.azure.net", "mhsmDns": "managedhsm.azure.net",
                 "mysqlServerEndpoint": "mysql.database.azure.com",
                 "postgresqlServerEndpoint": "postgres.database.azure.com",
                 "mariadbServerEndpoint": "mariadb.database.azure.com", "synapseAnalytics": "dev.azuresynapse.net",
                 "attestationEndpoint": "attest.azure.net"},
    "batch": "https://batch.core.windows.net/", "resourceManager": "https://management.azure.com/",
    "vmImageAliasDoc": "https://raw.githubusercontent.com/Azure/azure-rest-api-specs/master/arm-compute/"
                       "quickstart-templates/aliases.json",
    "activeDirectoryDataLake": "https://datalake.azure.net/",
    "sqlManagement": "https://management.core.windows.net:8443/",
    "microsoftGraphResourceId": "https://graph.microsoft.com/",
    "appInsightsResourceId": "https://api.applicationinsights.io",
    "appInsightsTelemetryChannelResourceId": "https://dc.applicationinsights.azure.com/v2/track",
    "attestationResourceId": "https://attest.azure.net", "synapseAnalyticsResourceId": "https://dev.azuresynapse.net",
    "logAnalyticsResourceId": "https://api.loganalytics.io",
    "ossrDbmsResourceId": "https://ossrdbms-aad.database.windows.net",
}


def display_name(location: str) -> str:
    """A region's display name (`West Europe`) from its programmatic name; the name itself if the sandbox knows none."""
    return REGION_NAMES.get(location.lower(), location)


def endpoints_document(cloud_name: str, arm_url: str, login_url: str, graph_url: str) -> dict[str, Any]:
    """The cloud's endpoint metadata (2022-09-01) for a sandbox serving ARM, Entra ID and Graph at these URLs, and
    its vaults by name under its own Key Vault suffix, `vault.sandbox.invalid` (sandbox/vaulthosts.py: a name that
    never resolves outside the sandbox, so no client carries a sandbox token to a real vault)."""
    document = copy.deepcopy(_PUBLIC_CLOUD)
    document["authentication"]["loginEndpoint"] = login_url
    document["suffixes"]["keyVaultDns"] = VAULT_DNS_SUFFIX.removeprefix(".")
    document.update(name=cloud_name, resourceManager=f"{arm_url}/", microsoftGraphResourceId=f"{graph_url}/")
    return document


class DeploymentRoutes:
    """The preflight's routes of the ARM API (registered on it: they share its port, checks and errors)."""

    def __init__(self, arm: ArmApi) -> None:
        self.arm, self.state = arm, arm.state
        sub, group = r"/subscriptions/(?P<sub>[^/]+)", r"/resourceGroups/(?P<rg>[^/]+)"
        topics = r"/providers/Microsoft\.EventGrid/systemTopics"
        site = rf"{sub}{group}/providers/Microsoft\.Web/sites/(?P<name>[^/]+)"
        arm.route("GET", r"/metadata/endpoints", "GET metadata/endpoints", self.metadata)
        arm.route("GET", rf"{sub}/providers/Microsoft\.Web/geoRegions", "GET Microsoft.Web/geoRegions",
                  self.geo_regions)
        arm.route("GET", rf"{sub}(?:{group})?{topics}", "GET systemTopics", self.list_topics)
        arm.route("GET", rf"{sub}{group}{topics}/(?P<topic>[^/]+)", "GET systemTopics/{name}", self.get_topic)
        arm.route("GET", rf"{sub}{group}{topics}/(?P<topic>[^/]+)/eventSubscriptions",
                  "GET systemTopics/{name}/eventSubscriptions", self.list_event_subscriptions)
        arm.route("GET", rf"{sub}{group}{topics}/(?P<topic>[^/]+)/eventSubscriptions/(?P<es>[^/]+)",
                  "GET systemTopics/{name}/eventSubscriptions/{name}", self.get_event_subscription)
        arm.route("GET", site, "GET sites/{name}", self.get_site)
        arm.route("POST", rf"{site}/config/appsettings/list", "POST sites/{name}/config/appsettings/list",
                  self.list_app_settings)

    # ------------------------------------------------------------------ the cloud

    def metadata(self, request: Request) -> Response:
        """The cloud's endpoints; no token needed."""
        version = request.query.get("api-version")
        if version is None:
            raise ApiError(400, "MissingApiVersionParameter",
                           "The api-version query parameter (?api-version=) is required for all requests.")
        if version != METADATA_API_VERSION:
            raise ApiError(400, "InvalidApiVersionParameter", f"The api-version '{version}' is invalid. The "
                           f"supported versions are '{METADATA_API_VERSION}'.")
        return Response(200, endpoints_document(self.state.cloud_name, self.arm.base_url, self.state.login_url,
                                                self.state.graph_url))

    def geo_regions(self, request: Request) -> Response:
        """The regions that offer a plan: the Flex Consumption ones for `sku=FlexConsumption`."""
        self.arm._authenticate(request)
        version = request.query["api-version"]
        if version not in GEO_REGIONS_API_VERSIONS:
            raise ApiError(404, "InvalidResourceType", f"The resource type 'georegions' could not be found in the "
                           f"namespace 'Microsoft.Web' for api version '{version}'. The supported api-versions are "
                           f"'{','.join(GEO_REGIONS_API_VERSIONS)}'.")
        self.arm._authorize(request, GEO_REGIONS_READ, request.path)
        flex = request.query.get("sku", "").lower() == "flexconsumption"
        with self.state.lock:
            regions = list(self.state.flex_regions) if flex else list(REGION_NAMES.values())
        return Response(200, {"value": [self._geo_region(request.params["sub"], region, order)
                                        for order, region in enumerate(regions)]})

    def _geo_region(self, subscription_id: str, region: str, order: int) -> dict[str, Any]:
        return {"id": f"/subscriptions/{subscription_id}/providers/Microsoft.Web/geoRegions/{region}", "name": region,
                "type": "Microsoft.Web/geoRegions",
                "properties": {"name": region, "description": region, "sortOrder": order, "displayName": region,
                               "orgDomain": FLEX_ORG_DOMAIN}}

    # ------------------------------------------------------------------ Event Grid system topics

    def list_topics(self, request: Request) -> Response:
        self._checked(request, EVENT_GRID_API_VERSIONS, "systemTopics", TOPIC_READ)
        subscription, group = request.params["sub"].lower(), request.params.get("rg")
        with self.state.lock:
            found = [t for t in self.state.system_topics.values() if t.subscription_id == subscription
                     and (group is None or t.resource_group.lower() == group.lower())]
            return Response(200, {"value": [topic_body(t) for t in found]})

    def get_topic(self, request: Request) -> Response:
        self._checked(request, EVENT_GRID_API_VERSIONS, "systemTopics", TOPIC_READ)
        return Response(200, topic_body(self._topic(request)))

    def list_event_subscriptions(self, request: Request) -> Response:
        self._checked(request, EVENT_GRID_API_VERSIONS, "systemTopics/eventSubscriptions", EVENT_SUBSCRIPTION_READ)
        topic = self._topic(request)
        with self.state.lock:
            return Response(200, {"value": [event_subscription_body(topic, e)
                                            for e in topic.event_subscriptions.values()]})

    def get_event_subscription(self, request: Request) -> Response:
        self._checked(request, EVENT_GRID_API_VERSIONS, "systemTopics/eventSubscriptions", EVENT_SUBSCRIPTION_READ)
        topic = self._topic(request)
        with self.state.lock:
            found = next((e for name, e in topic.event_subscriptions.items()
                          if name.lower() == request.params["es"].lower()), None)
            if found is None:
                raise _not_found(f"{TOPIC_TYPE}/{topic.name}/eventSubscriptions/{request.params['es']}",
                                 request.params["rg"])
            return Response(200, event_subscription_body(topic, found))

    def _topic(self, request: Request) -> SystemTopic:
        topic = self.state.system_topic(request.params["rg"], request.params["topic"], request.params["sub"])
        if topic is None:
            raise _not_found(f"{TOPIC_TYPE}/{request.params['topic']}", request.params["rg"])
        return topic

    # ------------------------------------------------------------------ function apps

    def get_site(self, request: Request) -> Response:
        self._checked(request, WEB_API_VERSIONS, "sites", SITE_READ)
        return Response(200, site_body(self._site(request)))

    def list_app_settings(self, request: Request) -> Response:
        self._checked(request, WEB_API_VERSIONS, "sites/config", APP_SETTINGS_LIST,
                      scope=request.path.removesuffix("/list"))
        site = self._site(request)
        with self.state.lock:
            return Response(200, {"id": f"{site.id}/config/appsettings", "name": "appsettings",
                                  "type": "Microsoft.Web/sites/config", "kind": site.kind,
                                  "location": display_name(site.location), "properties": dict(site.app_settings)})

    def _site(self, request: Request) -> FunctionSite:
        site = self.state.site(request.params["rg"], request.params["name"], request.params["sub"])
        if site is None:
            raise _not_found(f"{SITE_TYPE}/{request.params['name']}", request.params["rg"])
        return site

    # ------------------------------------------------------------------ checks

    def _checked(self, request: Request, versions: tuple[str, ...], resource_type: str, action: str, *,
                 scope: str | None = None) -> None:
        """ARM's checks in its order: api-version and token, the type's api-versions, the subscription and the
        action at `scope` (default: the request's path), the resource group."""
        self.arm._authenticate(request)
        self.arm.require_api_version(request, versions, resource_type)
        self.arm._authorize(request, action, scope or request.path)
        if request.params.get("rg") is not None:
            self.arm._group(request)


def topic_body(topic: SystemTopic) -> dict[str, Any]:
    """A system topic as SystemTopics_Get shows it (subscription-level topics are global)."""
    return {"properties": {"provisioningState": "Succeeded", "source": topic.source, "topicType": topic.topic_type,
                           "metricResourceId": topic.metric_resource_id},
            "location": "global", "tags": dict(topic.tags) or None, "id": topic.id, "name": topic.name,
            "type": TOPIC_TYPE}


def event_subscription_body(topic: SystemTopic, subscription: SystemTopicSubscription) -> dict[str, Any]:
    """An event subscription as SystemTopicEventSubscriptions_Get shows it, to an Azure Function."""
    return {"properties": {
        "topic": topic.id, "provisioningState": "Succeeded",
        "destination": {"properties": {"resourceId": subscription.destination_resource_id,
                                       "maxEventsPerBatch": subscription.max_events_per_batch,
                                       "preferredBatchSizeInKilobytes": subscription.preferred_batch_size_kb},
                        "endpointType": "AzureFunction"},
        "filter": {"isSubjectCaseSensitive": False, "subjectBeginsWith": "", "subjectEndsWith": "",
                   "includedEventTypes": list(subscription.included_event_types)},
        "labels": [], "eventDeliverySchema": subscription.delivery_schema,
        "retryPolicy": {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440}},
        "id": f"{topic.id}/eventSubscriptions/{subscription.name}", "name": subscription.name,
        "type": f"{TOPIC_TYPE}/eventSubscriptions"}


def site_body(site: FunctionSite) -> dict[str, Any]:
    """A function app as GetWebApp shows a site, with the few properties a reader of a Flex Consumption app needs."""
    host = f"{site.name.lower()}.azurewebsites.net"
    plan = site.id.split("/providers/")[0] + f"/providers/Microsoft.Web/serverfarms/plan-{site.name}"
    return {"id": site.id, "name": site.name, "type": SITE_TYPE, "kind": site.kind,
            "location": display_name(site.location), "tags": dict(site.tags),
            "properties": {"state": "Running", "hostNames": [host], "repositorySiteName": site.name,
                           "usageState": "Normal", "enabled": True,
                           "enabledHostNames": [host, host.replace(".azurewebsites", ".scm.azurewebsites")],
                           "availabilityState": "Normal", "serverFarmId": plan, "reserved": True,
                           "resourceGroup": site.resource_group,
                           "defaultHostName": host, "httpsOnly": True, "publicNetworkAccess": "Enabled"}}


def _not_found(resource: str, group: str) -> ApiError:
    return ApiError(404, "ResourceNotFound", f"The Resource '{resource}' under resource group '{group}' was not found. "
                    "For more details please go to https://aka.ms/ARMResourceNotFoundFix")

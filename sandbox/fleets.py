"""Fleets: many subscriptions, resource groups with tags, clusters sharing their service principals' applications.

Three ways to make one, all through the same checked builders (`create_*`, one per admin route):

- piece by piece over the admin API (`POST /_sandbox/subscriptions`, `/resourcegroups`, `/applications`,
  `/clusters`; sandbox/admin.py), which also plants other deployments of the remediator (`POST /_sandbox/remediators`)
  and changes an application's Graph permissions and directory roles (`PATCH /_sandbox/applications/{appId}`);
- a scenario document (a JSON file for `serve --scenario-file`, or a dict for `Sandbox(fleet=...)`): the same
  bodies in lists, except that a cluster names its application by `displayName` (`"application"`), since
  appIds are made when the world is;
- `fleet(...)`: a scenario document generated from a few numbers, the same for the same seed.

Applications of a fleet are owned by the remediator (Graph's OwnedBy lets it manage them, unless
`ownedByRemediator` is false); the clusters of one application hold the same password. A cluster or a
resource group opts out with the tag `OPT_OUT_TAG` (the remediator's REMEDIATOR_OPT_OUT_TAG default).
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sandbox.arm import maintenance_configuration
from sandbox.directory import DIRECTORY_ROLES, directory_role_template
from sandbox.rbac import BUILT_IN_ROLES
from sandbox.state import (
    DEFAULT_WORLD_OPTIONS,
    GRAPH_PERMISSIONS,
    LOCATION,
    ApiError,
    Application,
    FunctionSite,
    Identities,
    LegacyAadProfile,
    ResourceGroup,
    RoleAssignment,
    SandboxState,
    SystemTopic,
    SystemTopicSubscription,
    WorldOptions,
    new_world,
    utc_iso,
)

OPT_OUT_TAG = {"aks-sp-remediator": "off"}
SCENARIO_FORMAT = 1
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# ARM's rules for names: resource groups (1-90 of letters, digits, - _ . ( ), not ending in '.'), AKS clusters
# (1-63 of letters, digits, - _, starting and ending alphanumeric), locations.
_GROUP_NAME = re.compile(r"^[-\w.()]{0,89}[-\w()]$")
_SITE_NAME = re.compile(r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]{0,58}[a-zA-Z0-9])$")  # Microsoft.Web/sites: 2-60
_CLUSTER_NAME = re.compile(r"^[a-zA-Z0-9](?:[-_a-zA-Z0-9]{0,61}[a-zA-Z0-9])?$")
_LOCATION = re.compile(r"^[a-z0-9]{1,40}$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_TAG_NAME_FORBIDDEN = set("<>%&\\?/")
MAX_TAGS = 50  # ARM's limits: 50 tags, names up to 512 characters, values up to 256
MAX_PASSWORDS = 20
MAX_DAYS = 36_500  # a password's start and end lie within a century of now


# ---------------------------------------------------------------------- checks of one JSON body


def _bad(message: str) -> ApiError:
    return ApiError(400, "InvalidRequest", message)


def _fields(body: Any, allowed: set[str], required: set[str] = frozenset()) -> dict[str, Any]:
    """`body` as an object with only `allowed` fields (a typo would otherwise be ignored) and all `required` ones."""
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _bad(f"unknown field {unknown[0]!r}; the fields are {', '.join(sorted(allowed))}")
    missing = sorted(required - set(body))
    if missing:
        raise _bad(f"{missing[0]} is required")
    return body


def _text(body: dict[str, Any], name: str, pattern: re.Pattern[str] | None = None, default: str | None = None,
          rule: str = "") -> str | None:
    """A string field checked against `pattern`; `default` when absent or null."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str) or not value or (pattern is not None and not pattern.match(value)):
        raise _bad(f"{name} must be {rule or 'a non-empty string'}")
    return value


def _required(body: dict[str, Any], name: str, pattern: re.Pattern[str] | None = None, rule: str = "",
              default: str | None = None) -> str:
    """`_text`, which must have a value (its own or the default)."""
    value = _text(body, name, pattern, default, rule)
    if value is None:
        raise _bad(f"{name} is required")
    return value


def _days(body: dict[str, Any], name: str, default: float | None = None) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -MAX_DAYS <= value <= MAX_DAYS:
        raise _bad(f"{name} must be a number of days from -{MAX_DAYS} to {MAX_DAYS}")
    return float(value)


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise _bad(f"{name} must be true or false")
    return value


def _tags(body: dict[str, Any]) -> dict[str, str]:
    tags = body.get("tags", {})
    if not isinstance(tags, dict) or len(tags) > MAX_TAGS:
        raise _bad(f"tags must be an object of at most {MAX_TAGS} string values")
    for name, value in tags.items():
        if not name or len(name) > 512 or _TAG_NAME_FORBIDDEN & set(name):
            raise _bad(f"tag name {name!r} must be 1-512 characters without any of < > % & \\ ? /")
        if not isinstance(value, str) or len(value) > 256:
            raise _bad(f"the value of tag {name!r} must be a string of at most 256 characters")
    return dict(tags)


def _subscription_of(state: SandboxState, body: dict[str, Any]) -> str:
    """The body's subscriptionId, which must exist; the default subscription without one."""
    subscription = _required(body, "subscriptionId", _GUID, "a GUID", state.subscription_id)
    if not state.has_subscription(subscription):
        raise ApiError(404, "SubscriptionNotFound", f"The subscription '{subscription}' could not be found.")
    return subscription.lower()


# ---------------------------------------------------------------------- the builders, one per admin route


def create_subscription(state: SandboxState, body: Any) -> dict[str, Any]:
    """`{"subscriptionId"?: GUID, "displayName"?}` -> `{"subscriptionId", "displayName"}`."""
    subscription, display_name = _subscription_body(body)
    with state.lock:
        if subscription is not None and state.has_subscription(subscription):
            raise ApiError(409, "SubscriptionExists", f"The subscription '{subscription}' exists already.")
        created = state.add_subscription(subscription, display_name)
    return {"subscriptionId": created.subscription_id, "displayName": created.display_name}


def _subscription_body(body: Any) -> tuple[str | None, str | None]:
    body = _fields(body, {"subscriptionId", "displayName"})
    return _text(body, "subscriptionId", _GUID, rule="a GUID"), _text(body, "displayName")


def create_resource_group(state: SandboxState, body: Any) -> tuple[dict[str, Any], bool]:
    """`{"subscriptionId"?, "name", "location"?, "tags"?}` -> (the group as the state shows it, whether it is new).

    As ARM's create-or-update: a group that exists gets these tags; its location cannot change."""
    body = _fields(body, {"subscriptionId", "name", "location", "tags"}, {"name"})
    name = _required(body, "name", _GROUP_NAME, "1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'")
    location = _required(body, "location", _LOCATION, "an Azure region such as 'westeurope'", LOCATION)
    tags = _tags(body)
    with state.lock:
        subscription = _subscription_of(state, body)
        existing = state.resource_group(name, subscription)
        if existing is not None and existing.location != location:
            raise ApiError(409, "InvalidResourceGroupLocation", f"Invalid resource group location '{location}'. The "
                           f"Resource group already exists in location '{existing.location}'.")
        group = state.add_resource_group(name, subscription_id=subscription, location=location, tags=tags)
        return state.group_view(group), existing is None


def create_application(state: SandboxState, body: Any, *, remediator_app_id: str) -> dict[str, Any]:
    """`{"displayName", "ownedByRemediator"?: true, "passwords"?: [{"displayName"?, "startDaysAgo"?: 30,
    "endInDays"}], "withSecret"?: false}` -> `{"appId", "objectId", "displayName", "passwords": [{"keyId", "hint",
    "endDateTime"}]}`.

    A password's text is kept in the state (clusters hold it) and never answered, but for `withSecret`: one more
    password, valid from a day ago for a year, whose text is answered once, as `clientSecret` (a test signs in with
    it as Graph's addPassword caller would)."""
    body = _fields(body, {"displayName", "ownedByRemediator", "passwords", "withSecret"}, {"displayName"})
    display_name = _required(body, "displayName")
    owned, with_secret = _flag(body, "ownedByRemediator", True), _flag(body, "withSecret", False)
    specs = body.get("passwords", [])
    if not isinstance(specs, list) or len(specs) > MAX_PASSWORDS:
        raise _bad(f"passwords must be a list of at most {MAX_PASSWORDS} objects")
    lifetimes = [_password_lifetime(spec) for spec in specs]
    with state.lock:
        app = state.add_application(display_name, owners={remediator_app_id} if owned else set())
        now = state.now()
        for label, start_days_ago, end_in_days in lifetimes:
            state.add_password(app, label, start=now - timedelta(days=start_days_ago),
                               end=now + timedelta(days=end_in_days))
        secret = state.add_password(app, "sandbox sign-in", start=now - timedelta(days=1),
                                    end=now + timedelta(days=365))[1] if with_secret else None
        return application_view(app) | ({"clientSecret": secret} if secret else {})


def _password_lifetime(spec: Any) -> tuple[str, float, float]:
    spec = _fields(spec, {"displayName", "startDaysAgo", "endInDays"}, {"endInDays"})
    start_days_ago, end_in_days = _days(spec, "startDaysAgo", 30), _days(spec, "endInDays")
    if end_in_days <= -start_days_ago:
        raise _bad("a password must end after it starts: endInDays > -startDaysAgo")
    return _text(spec, "displayName", default="rbac") or "rbac", start_days_ago, end_in_days


def application_view(app: Application) -> dict[str, Any]:
    return {"appId": app.app_id, "objectId": app.object_id, "displayName": app.display_name,
            "passwords": [{"keyId": p.key_id, "hint": p.hint, "endDateTime": utc_iso(p.end)} for p in app.passwords]}


def update_application_grants(state: SandboxState, app_id: str, body: Any) -> dict[str, Any]:
    """`{"graphPermissions"?: [names], "directoryRoles"?: [role names or template ids]}`: each given list replaces
    the application's grants of that kind (Graph app roles, Entra directory roles) -> `{"appId", "objectId",
    "displayName", "servicePrincipalObjectId", "graphPermissions", "directoryRoles"}`."""
    body = _fields(body, {"graphPermissions", "directoryRoles"})
    permissions = _names(body, "graphPermissions", lambda name: name if name in GRAPH_PERMISSIONS else None,
                         f"one of {', '.join(sorted(GRAPH_PERMISSIONS))}")
    roles = _names(body, "directoryRoles", lambda role: (found := directory_role_template(role)) and found.template_id,
                   f"a role name or template id of {', '.join(r.display_name for r in DIRECTORY_ROLES.values())}")
    with state.lock:
        app = state.applications.get(app_id.lower())
        if app is None:
            raise ApiError(404, "ApplicationNotFound", f"No application has the appId '{app_id}'.")
        if permissions is not None:
            app.graph_permissions = permissions
        if roles is not None:
            app.directory_roles = roles
        return {"appId": app.app_id, "objectId": app.object_id, "displayName": app.display_name,
                "servicePrincipalObjectId": app.sp_object_id if app.has_service_principal else None,
                "graphPermissions": sorted(app.graph_permissions), "directoryRoles": sorted(app.directory_roles)}


def _names(body: dict[str, Any], name: str, known: Callable[[str], str | None], rule: str) -> set[str] | None:
    """A list field of names, each mapped by `known` (None: unknown, refused); None when the field is absent."""
    if name not in body:
        return None
    values = body[name]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise _bad(f"{name} must be a list of strings")
    mapped = [known(v) for v in values]
    unknown = next((v for v, found in zip(values, mapped, strict=True) if found is None), None)
    if unknown is not None:
        raise _bad(f"{name}: {unknown!r} is not {rule}")
    return {found for found in mapped if found is not None}


# What the remediator's Bicep leaves in Azure besides the function app (infra/modules/eventgrid*.bicep): the event
# subscription that feeds its Event Grid trigger, on the subscription's one Azure Resource Manager system topic.
REMEDIATOR_FUNCTION = "on_resource_failure"
FAILURE_EVENT_TYPES = ("Microsoft.Resources.ResourceWriteFailure", "Microsoft.Resources.ResourceActionFailure")
SUBSCRIPTION_TOPIC_TYPE = "Microsoft.Resources.Subscriptions"
EVENT_SUBSCRIPTION_PREFIX = "aks-cluster-failures-"
MAX_EVENT_SUBSCRIPTION_NAME = 64  # Event Grid's naming rules: event subscriptions 3-64 characters


def create_remediator(state: SandboxState, body: Any) -> tuple[dict[str, Any], bool]:
    """`{"subscriptionId"?, "resourceGroup", "name", "location"?, "tags"?, "appSettings", "eventSubscription"?: true}`
    -> (`{"resourceGroupId", "siteId", "systemTopicId"?, "eventSubscriptionId"?}`, whether the function app is new).

    Another deployment of the remediator, as its Bicep leaves it: the resource group (made if missing), the function
    app (created or replaced), and with `eventSubscription` the subscription's Microsoft.Resources.Subscriptions
    system topic (the one it has, else `evgt-arm-<subscription id prefix>` in this resource group) with the event
    subscription `aks-cluster-failures-<name>` to the function `on_resource_failure`."""
    body = _fields(body, {"subscriptionId", "resourceGroup", "name", "location", "tags", "appSettings",
                          "eventSubscription"}, {"resourceGroup", "name", "appSettings"})
    name = _required(body, "name", _SITE_NAME, "2-60 letters, digits or '-', starting and ending alphanumeric")
    group_name = _required(body, "resourceGroup", _GROUP_NAME, "a resource group name ARM takes")
    location = _text(body, "location", _LOCATION, rule="an Azure region such as 'westeurope'")
    tags, settings, subscribe = _tags(body), _settings(body), _flag(body, "eventSubscription", True)
    if subscribe and len(f"{EVENT_SUBSCRIPTION_PREFIX}{name}") > MAX_EVENT_SUBSCRIPTION_NAME:
        raise _bad(f"name makes the event subscription's name longer than Event Grid's "
                   f"{MAX_EVENT_SUBSCRIPTION_NAME} characters: give a shorter one, or eventSubscription false")
    with state.lock:
        subscription = _subscription_of(state, body)
        group = state.resource_group(group_name, subscription) or state.add_resource_group(
            group_name, subscription_id=subscription, location=location or LOCATION)
        site, created = state.put_site(FunctionSite(subscription, group.name, name, location or group.location, tags,
                                                    settings))
        answer = {"resourceGroupId": group.id, "siteId": site.id}
        if subscribe:
            answer |= _subscribe_remediator(state, group, site)
        return answer, created


def _subscribe_remediator(state: SandboxState, group: ResourceGroup, site: FunctionSite) -> dict[str, str]:
    source = f"/subscriptions/{group.subscription_id}"
    topic = state.system_topic_of_source(source) or state.add_system_topic(SystemTopic(
        group.subscription_id, group.name, f"evgt-arm-{group.subscription_id[:8]}", source, SUBSCRIPTION_TOPIC_TYPE))
    subscription = SystemTopicSubscription(f"{EVENT_SUBSCRIPTION_PREFIX}{site.name}",
                                           f"{site.id}/functions/{REMEDIATOR_FUNCTION}", list(FAILURE_EVENT_TYPES))
    topic.event_subscriptions[subscription.name] = subscription
    return {"systemTopicId": topic.id, "eventSubscriptionId": f"{topic.id}/eventSubscriptions/{subscription.name}"}


def _settings(body: dict[str, Any]) -> dict[str, str]:
    settings = body.get("appSettings")
    if not isinstance(settings, dict) or not all(isinstance(k, str) and k and isinstance(v, str)
                                                 for k, v in settings.items()):
        raise _bad("appSettings must be an object of string values")
    return dict(settings)


def create_cluster(state: SandboxState, body: Any) -> dict[str, Any]:
    """`{"subscriptionId"?, "resourceGroup", "name", "applicationAppId"? | "managedIdentity": true, "holdsPassword"?,
    "tags"?, "kubernetesVersion"?, "vnetSubnetId"?, "legacyAad"?: {"serverAppId", "clientAppId",
    "holdsPassword"?}, "maintenanceConfigurations"?: {configName: properties}, "privateDnsZoneId"?,
    "attachedRegistryId"?, "grantNetworkRoles"?}` -> the cluster as the state shows it.

    The shapes a move to managed identity must carry (sandbox/identities.py): `privateDnsZoneId`, a private
    cluster's own zone; `attachedRegistryId`, a container registry whose AcrPull the cluster's service principal holds
    (what `az aks create --attach-acr` assigns); `grantNetworkRoles` (default false), Network Contributor on the
    subnet and Private DNS Zone Contributor on the zone for the service principal, as `az aks create` assigns them.

    A service principal cluster holds one of its application's passwords: `holdsPassword` (a keyId), else the
    newest. `legacyAad`: the legacy Azure AD integration, holding one of its server application's passwords the
    same way. `maintenanceConfigurations`: its planned maintenance, each configuration's `properties` as ARM's PUT
    takes them (default, aksManagedAutoUpgradeSchedule, aksManagedNodeOSUpgradeSchedule), checked as that PUT
    checks them."""
    body = _fields(body, {"subscriptionId", "resourceGroup", "name", "applicationAppId", "managedIdentity",
                          "holdsPassword", "tags", "kubernetesVersion", "vnetSubnetId", "legacyAad",
                          "maintenanceConfigurations", "privateDnsZoneId", "attachedRegistryId", "grantNetworkRoles"},
                   {"resourceGroup", "name"})
    name = _required(body, "name", _CLUSTER_NAME, "1-63 letters, digits, '-' or '_', starting and ending with a "
                     "letter or digit")
    version = _required(body, "kubernetesVersion", _VERSION, "a version such as '1.30.4'", "1.29.7")
    group_name = _required(body, "resourceGroup")
    managed = _flag(body, "managedIdentity", False)
    if managed == ("applicationAppId" in body):
        raise _bad("give either applicationAppId (a service principal cluster) or managedIdentity: true")
    if managed and "holdsPassword" in body:
        raise _bad("a managed identity cluster holds no password")
    tags = _tags(body)
    maintenance = _maintenance(state, body)
    with state.lock:
        group = _group(state, body, group_name)
        if state.cluster(group.name, name, group.subscription_id) is not None:
            raise ApiError(409, "ClusterExists", f"The cluster '{name}' exists already in resource group "
                           f"'{group.name}'.")
        client_id, secret = ("msi", None) if managed else _held_password(state, body)
        aad = _legacy_aad(state, body.get("legacyAad")) if "legacyAad" in body else None
        subnet = _text(body, "vnetSubnetId", re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                                                        r"Microsoft\.Network/virtualNetworks/[^/]+/subnets/[^/]+$",
                                                        re.IGNORECASE), rule="a subnet's resource id")
        cluster = state.add_cluster(group.name, name, client_id=client_id, secret=secret, kubernetes_version=version,
                                    subscription_id=group.subscription_id, tags=tags, vnet_subnet_id=subnet,
                                    aad=aad)
        cluster.maintenance_configurations = maintenance
        _shape(state, cluster, body, subnet)
        return state.cluster_view(cluster)


_ZONE = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/privateDnsZones/[^/]+$",
                   re.IGNORECASE)
_REGISTRY = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ContainerRegistry/"
                       r"registries/[^/]+$", re.IGNORECASE)


def _shape(state: SandboxState, cluster: Any, body: dict[str, Any], subnet: str | None) -> None:
    """A new cluster's private DNS zone and attached registry, and the roles its service principal holds on them
    (create_cluster's docstring)."""
    zone = _text(body, "privateDnsZoneId", _ZONE, rule="a private DNS zone's resource id")
    registry = _text(body, "attachedRegistryId", _REGISTRY, rule="a container registry's resource id")
    network = _flag(body, "grantNetworkRoles", False)
    cluster.private_dns_zone_id = zone
    app = state.applications.get(cluster.client_id)
    if app is None:  # a managed identity cluster: nothing to assign to a service principal
        return
    wanted = [(scope, role) for scope, role in ((subnet if network else None, "Network Contributor"),
                                                (zone if network else None, "Private DNS Zone Contributor"),
                                                (registry, "AcrPull")) if scope]
    now = state.now()
    for scope, role in wanted:
        if state.role_assignment_like(scope, app.sp_object_id, BUILT_IN_ROLES[role]) is None:
            state.add_role_assignment(RoleAssignment(
                name=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope}|{app.sp_object_id}|{role}")), scope=scope,
                role_definition_id=BUILT_IN_ROLES[role], principal_id=app.sp_object_id,
                principal_type="ServicePrincipal", created_on=now, updated_on=now))


def _maintenance(state: SandboxState, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A new cluster's maintenance configurations by name, as ARM's PUT would store them (sandbox/arm.py)."""
    given = body.get("maintenanceConfigurations", {})
    if not isinstance(given, dict):
        raise _bad("maintenanceConfigurations must be an object: configuration name -> its properties")
    found = {}
    for config, properties in given.items():
        try:
            name, stored = maintenance_configuration(config, properties, state.now())
        except ApiError as err:
            raise _bad(f"maintenanceConfigurations.{config}: {err.message}") from err
        found[name] = stored
    return found


def _group(state: SandboxState, body: dict[str, Any], name: str) -> ResourceGroup:
    subscription = _subscription_of(state, body)
    group = state.resource_group(name, subscription)
    if group is None:
        raise ApiError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
    return group


def _legacy_aad(state: SandboxState, body: Any) -> LegacyAadProfile:
    """The legacy Azure AD profile of a new cluster: its server application's password held like a service
    principal's (`holdsPassword`, else the newest)."""
    body = _fields(body, {"serverAppId", "clientAppId", "holdsPassword"}, {"serverAppId", "clientAppId"})
    server, secret = _held_password(state, {"applicationAppId": body["serverAppId"],
                                            **({"holdsPassword": body["holdsPassword"]} if "holdsPassword" in body
                                               else {})})
    client = _required(body, "clientAppId", _GUID, "the appId (a GUID) of the legacy integration's client app")
    return LegacyAadProfile(client.lower(), server, state.tenant_id, secret)


def _held_password(state: SandboxState, body: dict[str, Any]) -> tuple[str, str]:
    """(appId, secret text) of the password the new cluster holds."""
    app_id = _required(body, "applicationAppId", _GUID, "the appId (a GUID) of an application in the sandbox")
    app = state.applications.get(app_id.lower())
    if app is None:
        raise ApiError(404, "ApplicationNotFound", f"No application has the appId '{app_id}'.")
    key_id = _text(body, "holdsPassword", _GUID, rule="the keyId (a GUID) of one of the application's passwords")
    if not app.passwords:
        raise _bad(f"the application '{app.display_name}' has no password for the cluster to hold")
    password = app.passwords[-1] if key_id is None else next(
        (p for p in app.passwords if p.key_id == key_id.lower()), None)
    if password is None:
        raise _bad(f"the application '{app.display_name}' has no password with keyId '{key_id}'")
    return app.app_id, password._text


# ---------------------------------------------------------------------- scenario documents


class ScenarioError(ValueError):
    """A scenario document that cannot be built: says which entry and why."""


def load_scenario_file(path: str | Path) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ScenarioError(f"{path}: cannot read a JSON scenario: {err}") from err
    return document


def build_fleet(document: Any, *, tenant_id: str | None = None,
                options: WorldOptions = DEFAULT_WORLD_OPTIONS) -> tuple[SandboxState, Identities]:
    """The world of a scenario document: the identities every scenario has (state.new_world), then its
    subscriptions (the first is the default one), resource groups, applications and clusters, in that order."""
    document = _document(document)
    subscriptions = document.get("subscriptions") or [{}]
    first, display_name = _entry("subscriptions[0]", lambda: _subscription_body(subscriptions[0]))
    state, identities = new_world(tenant_id=tenant_id, subscription_id=first, options=options)
    if display_name:
        state.subscriptions[state.subscription_id].display_name = display_name
    for index, body in enumerate(subscriptions[1:], start=1):
        _entry(f"subscriptions[{index}]", lambda body=body: create_subscription(state, body))
    for index, body in enumerate(document.get("resourceGroups", [])):
        _entry(f"resourceGroups[{index}]", lambda body=body: create_resource_group(state, body))
    apps: dict[str, str] = {}  # displayName -> appId
    for index, body in enumerate(document.get("applications", [])):
        created = _entry(f"applications[{index}]", lambda body=body: create_application(
            state, body, remediator_app_id=identities.remediator.client_id))
        if created["displayName"] in apps:
            raise ScenarioError(f"applications[{index}]: another application is called {created['displayName']!r}")
        apps[created["displayName"]] = created["appId"]
    for index, body in enumerate(document.get("clusters", [])):
        _entry(f"clusters[{index}]", lambda body=body: create_cluster(state, _with_app_id(body, apps)))
    state.cluster_page_size = document.get("clusterPageSize", state.cluster_page_size)
    return state, identities


def _document(document: Any) -> dict[str, Any]:
    known = {"format", "description", "clusterPageSize", "subscriptions", "resourceGroups", "applications",
             "clusters"}
    if not isinstance(document, dict):
        raise ScenarioError("a scenario must be a JSON object")
    unknown = sorted(set(document) - known)
    if unknown:
        raise ScenarioError(f"unknown field {unknown[0]!r}; the fields are {', '.join(sorted(known))}")
    if document.get("format", SCENARIO_FORMAT) != SCENARIO_FORMAT:
        raise ScenarioError(f"format must be {SCENARIO_FORMAT}")
    for name in ("subscriptions", "resourceGroups", "applications", "clusters"):
        if not isinstance(document.get(name, []), list):
            raise ScenarioError(f"{name} must be a list")
    size = document.get("clusterPageSize", 1)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ScenarioError("clusterPageSize must be an integer >= 1")
    return document


def _entry(where: str, build: Any) -> Any:
    try:
        return build()
    except ApiError as err:
        raise ScenarioError(f"{where}: {err.message}") from err


def _with_app_id(body: Any, apps: dict[str, str]) -> Any:
    """A file's cluster names its application by displayName (`"application"`); the builder takes its appId."""
    if not isinstance(body, dict) or "application" not in body:
        return body
    found = {k: v for k, v in body.items() if k != "application"}
    if body["application"] not in apps:
        raise _bad(f"no application in the scenario is called {body['application']!r}")
    found["applicationAppId"] = apps[body["application"]]
    return found


# ---------------------------------------------------------------------- the generator

TEAMS = ("payments", "checkout", "search", "identity", "ledger", "catalog", "media", "data", "edge", "ml")
ENVIRONMENTS = ("prod", "staging")
VERSIONS = ("1.29.7", "1.30.4", "1.31.2")


def fleet(*, clusters: int = 50, subscriptions: int = 3, applications: int = 10, expired: float = 1.0,
          managed_identity: int = 5, opted_out_clusters: int = 3, opted_out_groups: int = 1,
          groups_per_subscription: int = 3, seed: int = 7) -> dict[str, Any]:
    """A scenario document for a fleet, the same for the same arguments.

    `clusters` go round-robin over `groups_per_subscription` resource groups in each of `subscriptions`;
    `managed_identity` of them (chosen at random) use one; the others share `applications` owned by the
    remediator, round-robin, each cluster holding its application's one password. A share `expired` of the
    applications have a password that expired 1-20 days ago, the rest one valid for 200-400 more days.
    `opted_out_groups` resource groups carry OPT_OUT_TAG, and so do `opted_out_clusters` service principal
    clusters outside those groups.
    """
    groups_total = subscriptions * groups_per_subscription
    _check_counts(clusters=clusters, subscriptions=subscriptions, applications=applications, expired=expired,
                  managed_identity=managed_identity, opted_out_groups=opted_out_groups, groups_total=groups_total)
    rng = random.Random(seed)
    subs = [{"subscriptionId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
             "displayName": f"fleet-{i + 1:02d}"} for i in range(subscriptions)]
    groups = [_generated_group(rng, subs[g % subscriptions]["subscriptionId"], g) for g in range(groups_total)]
    for g in rng.sample(range(groups_total), opted_out_groups):
        groups[g]["tags"].update(OPT_OUT_TAG)
    apps = _generated_applications(rng, applications, expired)
    placed = [groups[i % groups_total] for i in range(clusters)]
    managed = set(rng.sample(range(clusters), managed_identity))
    service_principal = [i for i in range(clusters) if i not in managed]
    candidates = [i for i in service_principal if not opted_out_by(placed[i]["tags"])]
    if opted_out_clusters > len(candidates):
        raise ValueError(f"only {len(candidates)} service principal clusters lie outside opted-out groups; "
                         f"cannot opt out {opted_out_clusters}")
    opted_out = set(rng.sample(candidates, opted_out_clusters))
    app_of = {cluster: apps[n % applications]["displayName"] for n, cluster in enumerate(service_principal)}
    bodies = []
    for i, group in enumerate(placed):
        team, env = group["tags"]["team"], group["tags"]["env"]
        body: dict[str, Any] = {"subscriptionId": group["subscriptionId"], "resourceGroup": group["name"],
                                "name": f"aks-{team}-{i + 1:03d}", "kubernetesVersion": rng.choice(VERSIONS),
                                "tags": {"team": team, "env": env} | (OPT_OUT_TAG if i in opted_out else {})}
        if i in managed:
            body["managedIdentity"] = True
        else:
            body["application"] = app_of[i]
        bodies.append(body)
    return {"format": SCENARIO_FORMAT,
            "description": f"fleet(clusters={clusters}, subscriptions={subscriptions}, applications={applications}, "
                           f"expired={expired}, managed_identity={managed_identity}, opted_out_clusters="
                           f"{opted_out_clusters}, opted_out_groups={opted_out_groups}, groups_per_subscription="
                           f"{groups_per_subscription}, seed={seed})",
            "subscriptions": subs, "resourceGroups": groups, "applications": apps, "clusters": bodies}


def opted_out_by(tags: dict[str, str]) -> bool:
    """Whether these tags (a cluster's or its resource group's) opt it out of remediation."""
    return all(tags.get(name) == value for name, value in OPT_OUT_TAG.items())


def _check_counts(*, clusters: int, subscriptions: int, applications: int, expired: float, managed_identity: int,
                  opted_out_groups: int, groups_total: int) -> None:
    if clusters < 0 or subscriptions < 1 or groups_total < 1:
        raise ValueError("a fleet needs clusters >= 0, subscriptions >= 1 and groups_per_subscription >= 1")
    if not 0 <= managed_identity <= clusters:
        raise ValueError("managed_identity must be between 0 and clusters")
    if applications < (1 if managed_identity < clusters else 0):
        raise ValueError("service principal clusters need applications >= 1")
    if not 0 <= expired <= 1:
        raise ValueError("expired is a share of the applications, from 0 to 1")
    if not 0 <= opted_out_groups <= groups_total:
        raise ValueError(f"opted_out_groups must be between 0 and the {groups_total} resource groups")


def _generated_group(rng: random.Random, subscription_id: str, index: int) -> dict[str, Any]:
    team = TEAMS[index % len(TEAMS)]
    return {"subscriptionId": subscription_id, "name": f"rg-{team}-{index + 1:02d}", "location": LOCATION,
            "tags": {"team": team, "env": rng.choice(ENVIRONMENTS)}}


def _generated_applications(rng: random.Random, count: int, expired: float) -> list[dict[str, Any]]:
    lapsed = set(rng.sample(range(count), round(expired * count)))
    apps = []
    for a in range(count):
        if a in lapsed:  # a one-year secret, as `az aks create` makes, that ran out
            password = {"displayName": "rbac", "startDaysAgo": 365 + (days := rng.randint(1, 20)), "endInDays": -days}
        else:
            password = {"displayName": "rbac", "startDaysAgo": 30, "endInDays": rng.randint(200, 400)}
        apps.append({"displayName": f"aks-fleet-sp-{a + 1:02d}", "ownedByRemediator": True, "passwords": [password]})
    return apps


# Named fleet scenarios (`Sandbox(scenario=...)`, `serve --scenario`).
FLEETS = {
    # 50 clusters in 3 subscriptions on 10 shared applications, all expired; 5 with a managed identity; 3
    # opted out by a tag on the cluster, and the clusters of one resource group by a tag on the group.
    "fleet-50": lambda: fleet(clusters=50, subscriptions=3, applications=10, expired=1.0, managed_identity=5,
                              opted_out_clusters=3, opted_out_groups=1, seed=7),
}

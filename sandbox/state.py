"""The sandbox's world: one tenant, its subscriptions and resource groups, applications, clusters, a vault, a log.

Every API server reads and changes this one object under its lock, so the APIs agree with
each other the way Azure's do: a password added through Graph signs in at the token
endpoint, a cluster reset through ARM holds that secret, a failed write appears in the
Activity Log and is delivered as an Event Grid event.

Secret text lives only here, in private fields, for the checks Azure itself makes (sign-in,
AKS validating its service principal) and for tests that must prove it never leaks, and,
with a state directory, in its mode-0600 files (sandbox/persist.py), so that a restart keeps it.
`snapshot()` carries ids, key ids, hints and dates, never secret text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import secrets
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.directory import (
    GRAPH_APP_ROLE_ASSIGNMENT_WRITE,
    GRAPH_APPLICATION_PERMISSIONS,
    GRAPH_OWNED_BY,
    GRAPH_READ_ALL,
    GRAPH_READ_WRITE_ALL,
    MICROSOFT_GRAPH_APP_ID,
    MICROSOFT_GRAPH_NAME,
    PRIVILEGED_ROLE_ADMINISTRATOR,
    app_role,
    microsoft_graph_principal_id,
)
from sandbox.rbac import BUILT_IN_ROLES, delegation_condition, role_definition_guid, role_name

log = logging.getLogger("sandbox")
T = TypeVar("T")
LOCATION = "westeurope"
ARM_AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net")
GRAPH_AUDIENCE = "https://graph.microsoft.com"
VAULT_AUDIENCE = "https://vault.azure.net"
# The world's one vault, the remediator's (infra/ names it kv-rem-<token>): by name `https://kv-rem-sandbox<keyVaultDns>`
# (sandbox/vaulthosts.py), and at the vault server's own address, which REMEDIATOR_KEY_VAULT_URL names (wiring.py).
DEFAULT_VAULT_NAME = "kv-rem-sandbox"
EVENTGRID_AUDIENCE = "https://eventgrid.azure.net"  # Event Grid topics' data plane (sandbox/topics.py)
TOKEN_LIFETIME = timedelta(hours=1)
V1_ISSUER = "https://sts.windows.net/{tenant}/"  # Entra ID's issuer of v1.0 access tokens in public Azure
# The remediator's own API (infra/modules/api-app.bicep): its app roles, as Entra ID puts them in `roles`.
API_READ_ROLE, API_WRITE_ROLE = "Remediations.Read", "Remediations.Write"
DEFAULT_PASSWORD_LIFETIME = timedelta(days=730)  # Graph's default for addPassword: two years
# How long an ARM operation runs. Below the 1 s Retry-After the API sends, so a client's first
# status poll finds it done: one poll per operation, and every client goes through the protocol.
DEFAULT_OPERATION_SECONDS = 0.5
# Clusters per page of ARM's list APIs; a fleet larger than a page makes clients follow `nextLink`.
DEFAULT_CLUSTER_PAGE_SIZE = 50
# Azure Resource Graph's documented example quota: 15 queries per user in every 5-second window
# (guidance-for-throttled-requests; "subject to change").
RESOURCE_GRAPH_QUOTA = 15
RESOURCE_GRAPH_WINDOW_SECONDS = 5.0
# What GET /metadata/endpoints calls the cloud (`name`), as Azure's public cloud does.
DEFAULT_CLOUD_NAME = "AzureCloud"
# The regions that offer the Flex Consumption plan (display names, as Microsoft.Web's geoRegions name them). Assumed:
# a plausible list, not a copy of Azure's current one, which grows; what matters is that it holds some and not others.
DEFAULT_FLEX_REGIONS = ("Australia East", "East Asia", "East US", "East US 2", "North Europe", "Southeast Asia",
                        "Sweden Central", "UK South", "West Europe", "West US 2", "West US 3")
# Role assignments per page of ARM's role assignment lists (ARM does not document its own page size; small enough
# that a test sees `nextLink`).
DEFAULT_ROLE_ASSIGNMENT_PAGE_SIZE = 50

# What each identity may do on ARM; the remediator's set is exactly infra/'s custom role.
REMEDIATOR_ARM_ACTIONS = frozenset({
    "Microsoft.Authorization/roleAssignments/read",  # a replacement carries the old principal's assignments over
    "Microsoft.ContainerService/managedClusters/read",
    "Microsoft.ContainerService/managedClusters/maintenanceConfigurations/read",  # proactive rotation's windows
    "Microsoft.ContainerService/managedClusters/resetServicePrincipalProfile/action",
    "Microsoft.ContainerService/managedClusters/resetAADProfile/action",  # legacy Azure AD integration's server app
    "Microsoft.ContainerService/locations/operations/read",
    "Microsoft.ContainerService/locations/operationresults/read",
    "Microsoft.Insights/eventtypes/values/read",
    "Microsoft.Resources/subscriptions/resourceGroups/read",  # an opt-out tag may sit on the cluster's group
})
# What infra/ adds with migrate=execute (remediation/run/migration.py): the switch (a cluster write naming identities it
# must be allowed to assign), the node-image upgrade, and the user-assigned identities in their resource group.
MIGRATION_ARM_ACTIONS = frozenset({
    "Microsoft.ContainerService/managedClusters/write",
    "Microsoft.ContainerService/managedClusters/agentPools/upgradeNodeImageVersion/action",
    "Microsoft.ManagedIdentity/userAssignedIdentities/read",
    "Microsoft.ManagedIdentity/userAssignedIdentities/write",
    "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
})
ALL_ACTIONS = frozenset({"*"})
# What infra/'s role assignment writer role adds with REMEDIATOR_REPLACE_DELETED=replace: write role assignments (not
# delete them), under the identity's condition (Application.role_assignment_condition).
ROLE_ASSIGNMENT_WRITE_ACTIONS = frozenset({"Microsoft.Authorization/roleAssignments/write"})
# Microsoft Graph application permissions the sandbox knows (sandbox/directory.py). What each lets an app do with
# applications and service principals (permissions reference; serviceprincipal-get, application-get): each of the
# Application.* ones reads all of them; OwnedBy writes only what its identity owns; Read.All writes nothing.
# AppRoleAssignment.ReadWrite.All manages app role assignments and consent grants: alone it reads no application.
GRAPH_PERMISSIONS = frozenset(GRAPH_APPLICATION_PERMISSIONS)
GRAPH_APPLICATION_READERS = frozenset({GRAPH_READ_ALL, GRAPH_OWNED_BY, GRAPH_READ_WRITE_ALL})
# Not a Graph permission: what a member user signed in to a tool may do with applications (MemberUser).
MEMBER_USER = "member user"
# The Azure CLI, the public client a user signs in to (its well-known application id).
AZURE_CLI_APP_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
# A deleted application or service principal stays in Graph's deleted items this long, then is gone for good.
DELETED_ITEM_RETENTION = timedelta(days=30)
# Key Vault data actions of the remediator's custom data role on its vault (infra/): set, get, list; no delete.
REMEDIATOR_VAULT_DATA_ACTIONS = frozenset({
    "Microsoft.KeyVault/vaults/secrets/setSecret/action",
    "Microsoft.KeyVault/vaults/secrets/getSecret/action",
    "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
})


def utc_iso(moment: datetime) -> str:
    """ISO 8601 with seven fractional digits and Z, as Azure writes timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def parse_time(value: str) -> datetime:
    """An Azure timestamp (up to 7 fractional digits, Z or an offset, or a date) as an aware UTC datetime."""
    text = value.strip()
    text = text[:-1] + "+00:00" if text.endswith("Z") else text
    match = re.match(r"^([^.+]*?(?:T[\d:]+)?)(\.\d+)?([+-]\d\d:\d\d)?$", text)
    if not match:
        raise ValueError(f"not a time: {value!r}")
    head, fraction, offset = match.groups()
    return datetime.fromisoformat(head + (fraction or "")[:7] + (offset or "+00:00")).astimezone(UTC)


class ApiError(Exception):
    """An error an API answers with; each server renders it in its own error shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.details = details


@dataclass(frozen=True)
class Identity:
    """A workload identity's sign-in: what a test or a local run passes to ClientSecretCredential."""

    client_id: str
    client_secret: str = field(repr=False)


@dataclass(frozen=True)
class MemberUser:
    """A member user of the tenant, signed in to the Azure CLI (delegated Application.ReadWrite.All and
    Directory.Read.All). What Graph then lets the user do is what the user may do: with Entra ID's default user
    permissions ("Default user permissions", Microsoft Learn), read every application, register applications (the
    tenant default "Users can register applications": Yes) and manage the ones the user owns, their owners included
    (application-post-owners: delegated Application.ReadWrite.All). Owner lists hold the user's object id."""

    object_id: str
    display_name: str
    graph_permissions: frozenset[str] = frozenset({MEMBER_USER})

    @property
    def app_id(self) -> str:
        """The id owner lists know this identity by (an application's appId; a user's object id)."""
        return self.object_id

    @property
    def user_principal_name(self) -> str:
        return f"{self.display_name.lower().replace(' ', '.')}@contoso.example"


@dataclass
class Password:
    key_id: str
    display_name: str
    hint: str
    start: datetime
    end: datetime
    _text: str = field(repr=False)

    def public(self, now: datetime) -> dict[str, Any]:
        return {"keyId": self.key_id, "hint": self.hint, "displayName": self.display_name,
                "startDateTime": utc_iso(self.start), "endDateTime": utc_iso(self.end),
                "validNow": self.start <= now < self.end}

    def graph(self) -> dict[str, Any]:
        return {"customKeyIdentifier": None, "displayName": self.display_name, "endDateTime": utc_iso(self.end),
                "hint": self.hint, "keyId": self.key_id, "secretText": None, "startDateTime": utc_iso(self.start)}


@dataclass
class Application:
    object_id: str
    app_id: str
    display_name: str
    owners: set[str] = field(default_factory=set)  # appIds of identities that own it
    graph_permissions: set[str] = field(default_factory=set)  # the application permissions it holds on Graph
    arm_actions: frozenset[str] = frozenset()
    # The subscriptions (lower-case ids) its own `arm_actions` hold in, as infra/ assigns the custom role on this
    # subscription and each of extraSubscriptionIds; None: every subscription of the world.
    arm_subscriptions: frozenset[str] | None = None
    vault_data_actions: frozenset[str] = frozenset()
    passwords: list[Password] = field(default_factory=list)
    sp_object_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    identifier_uris: list[str] = field(default_factory=list)
    # Its appRoles, as Graph shows them (an application that is an API publishes them; `app_roles` maps value -> id).
    app_role_objects: list[dict[str, Any]] = field(default_factory=list)
    # Graph's client-provided alternate key (upsert: PATCH /applications(uniqueName='...')); immutable once set.
    unique_name: str | None = None
    api: dict[str, Any] = field(default_factory=lambda: default_api())  # Graph's apiApplication
    sign_in_audience: str = "AzureADMyOrg"
    directory_roles: set[str] = field(default_factory=set)  # Entra directory roles it holds: role template ids
    # App roles this application was granted on other applications (APIs): their appId -> role values.
    granted_roles: dict[str, set[str]] = field(default_factory=dict)
    # What removePassword took away, as the state shows it (keyId, hint, displayName, endDateTime, removedAt).
    removed_passwords: list[dict[str, str]] = field(default_factory=list)
    # Applications of the scenarios come with their service principal; one made by Graph's POST /applications has
    # none until POST /servicePrincipals (and cannot sign in before).
    has_service_principal: bool = True
    # When its service principal was made; None: before the world began, so every replica knows it (see
    # SandboxState.principal_visible_to_arm).
    service_principal_created_at: datetime | None = None
    created_at: datetime | None = None  # None: before the world began
    deleted_at: datetime | None = None  # set while it lies in Graph's deleted items
    # An ABAC condition on the identity's role assignment writes and deletes (constrained delegation, sandbox/rbac.py).
    role_assignment_condition: str | None = None
    notes: str | None = None  # Graph's `notes`: free text only its owners (or ReadWrite.All) may write
    # The service principal's own owners (appIds of identities), apart from the application's: the creator of a
    # service principal made through Graph owns it.
    sp_owners: set[str] = field(default_factory=set)
    # The service principal's own passwords (Graph's servicePrincipal addPassword): not the application's, and they
    # sign in as the application too.
    sp_passwords: list[Password] = field(default_factory=list)
    # Federated identity credentials ({"id", "name", "issuer", "subject", "audiences"}): sign-ins without a secret.
    federated_credentials: list[dict[str, Any]] = field(default_factory=list)

    @property
    def app_roles(self) -> dict[str, str]:
        """Its app roles, value -> id."""
        return {r["value"]: r["id"] for r in self.app_role_objects if r.get("value")}


def default_api() -> dict[str, Any]:
    """A new application's `api`, as Graph answers it (application-post-applications, the create example)."""
    return {"requestedAccessTokenVersion": 2, "acceptMappedClaims": None, "knownClientApplications": [],
            "oauth2PermissionScopes": [], "preAuthorizedApplications": []}


@dataclass
class Operation:
    """An ARM long-running operation. Plain data, so that it survives a restart: what it does when it ends is
    `SandboxState.appliers[kind](operation)`, which reads `params`."""

    id: str
    kind: str  # "reset" or "write"
    cluster: str  # Cluster.key (subscription/resource group/name, lower case)
    started: datetime
    ready_at: datetime
    params: dict[str, Any] = field(default_factory=dict, repr=False)  # a reset's holds the secret, until it ends
    status: str = "InProgress"
    error: dict[str, Any] | None = None
    ended: datetime | None = None

    def body(self, subscription_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": f"/subscriptions/{subscription_id}/providers/Microsoft.ContainerService/locations/{LOCATION}"
                  f"/operations/{self.id}",
            "name": self.id, "status": self.status, "startTime": utc_iso(self.started)}
        if self.ended:
            body["endTime"] = utc_iso(self.ended)
        if self.error:
            body["error"] = self.error
        return body


@dataclass
class Subscription:
    subscription_id: str  # lower case, as the state keys it
    display_name: str


@dataclass
class ResourceGroup:
    subscription_id: str
    name: str
    location: str = LOCATION
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.subscription_id}/{self.name}".lower()

    @property
    def id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.name}"


@dataclass
class LegacyAadProfile:
    """A cluster's legacy Azure AD integration (aadProfile with managed false): the server application's secret
    is held by AKS, like a service principal's, and never shown."""

    client_app_id: str
    server_app_id: str
    tenant_id: str
    _server_secret: str = field(repr=False)


@dataclass
class RoleAssignment:
    """An Azure RBAC role assignment (Microsoft.Authorization/roleAssignments, api-version 2022-04-01)."""

    name: str  # a GUID, lower case; unique in the tenant
    scope: str  # as the PUT's URL gave it
    role_definition_id: str  # the role definition's GUID, lower case
    principal_id: str
    principal_type: str
    created_on: datetime
    updated_on: datetime
    created_by: str | None = None
    updated_by: str | None = None
    description: str | None = None
    condition: str | None = None
    condition_version: str | None = None

    @property
    def id(self) -> str:
        return f"{self.scope}/providers/Microsoft.Authorization/roleAssignments/{self.name}"

    @property
    def subscription_id(self) -> str:
        return self.scope.split("/")[2].lower()


@dataclass
class Cluster:
    subscription_id: str
    resource_group: str
    name: str
    client_id: str  # "msi" for a managed identity cluster
    kubernetes_version: str
    _held_secret: str | None = field(default=None, repr=False)
    provisioning_state: str = "Succeeded"
    operation: str | None = None  # the id of the operation in progress
    etag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    # systemData: when it was created and last changed successfully (the sandbox's clock).
    created_at: datetime | None = None
    last_modified_at: datetime | None = None
    last_modified_by: str | None = None  # the application id of the last successful writer (None: its creator)
    tags: dict[str, str] = field(default_factory=dict)
    # Write requests that reached the cluster's ARM routes, refused ones included ("reset", "put"): a test can
    # prove that nobody wrote to a cluster it must leave alone.
    writes: Counter[str] = field(default_factory=Counter)
    aad: LegacyAadProfile | None = None
    node_resource_group: str = ""  # add_cluster fills in AKS's default, MC_{group}_{name}_{location}
    vnet_subnet_id: str | None = None
    # Planned maintenance (ARM's maintenanceConfigurations): config name -> its `properties`, as stored (arm.py).
    maintenance_configurations: dict[str, dict[str, Any]] = field(default_factory=dict)
    # A private cluster's own private DNS zone (apiServerAccessProfile.privateDNSZone), a resource id; None: none.
    private_dns_zone_id: str | None = None
    # After a move to managed identity (sandbox/identities.py): {"type": SystemAssigned|UserAssigned, "controlPlane":
    # the user-assigned identity's resource id or None, "kubelet": the kubelet identity's resource id, "kubeletInUse":
    # what the nodes use, the kubelet identity once their node image was upgraded, else None (the old principal's)}.
    identity: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.subscription_id}/{self.resource_group}/{self.name}".lower()

    @property
    def group_key(self) -> str:
        return f"{self.subscription_id}/{self.resource_group}".lower()


@dataclass
class FunctionSite:
    """A function app as ARM knows it (Microsoft.Web/sites): where it is, its tags and app settings. The sandbox runs
    no code for it: the remediator's own function app is the function worker (sandbox/worker.py)."""

    subscription_id: str
    resource_group: str
    name: str
    location: str  # ARM's programmatic name, e.g. westeurope
    tags: dict[str, str] = field(default_factory=dict)
    app_settings: dict[str, str] = field(default_factory=dict, repr=False)  # may name secrets (…_KEY): never shown
    kind: str = "functionapp,linux"

    @property
    def key(self) -> str:
        return f"{self.subscription_id}/{self.resource_group}/{self.name}".lower()

    @property
    def id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/Microsoft.Web/" \
               f"sites/{self.name}"


@dataclass
class SystemTopicSubscription:
    """An event subscription of a system topic, as ARM shows it (delivery to webhooks is sandbox/eventgrid.py's)."""

    name: str
    destination_resource_id: str  # an Azure Function: <site id>/functions/<function name>
    included_event_types: list[str]
    max_events_per_batch: int = 1
    preferred_batch_size_kb: int = 64
    delivery_schema: str = "EventGridSchema"


@dataclass
class SystemTopic:
    """An Event Grid system topic (Microsoft.EventGrid/systemTopics) and its event subscriptions, by name."""

    subscription_id: str
    resource_group: str
    name: str
    source: str  # the resource it publishes the events of, e.g. /subscriptions/{id}
    topic_type: str
    metric_resource_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    tags: dict[str, str] = field(default_factory=dict)
    event_subscriptions: dict[str, SystemTopicSubscription] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.subscription_id}/{self.resource_group}/{self.name}".lower()

    @property
    def id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/" \
               f"Microsoft.EventGrid/systemTopics/{self.name}"


@dataclass
class SecretVersion:
    version: str
    _value: str = field(repr=False)
    content_type: str | None
    tags: dict[str, str]
    enabled: bool
    expires: int | None
    not_before: int | None
    created: int
    updated: int


# Faults that answer instead of the API; the handler never runs.
BEFORE_FAULTS = ("throttle", "error", "latency")
# Faults that spoil the answer of a write that committed (a 2xx from the handler).
AFTER_COMMIT_FAULTS = ("error_after_commit", "lose_answer", "kill_worker")


@dataclass
class Fault:
    kind: str  # BEFORE_FAULTS or AFTER_COMMIT_FAULTS
    api: str
    remaining: int  # how many requests it may still hit
    route: str | None = None  # a route label as counted in `requests`; None: every route of the API
    rate: float = 1.0  # the share of requests it hits, until `remaining` runs out
    status: int = 503
    retry_after: float = 1.0
    seconds: float = 0.0
    when: str = "after"  # kill_worker only: "before" kills the worker instead of committing the write
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def after_commit(self) -> bool:
        return self.kind in AFTER_COMMIT_FAULTS and not (self.kind == "kill_worker" and self.when == "before")

    def public(self) -> dict[str, Any]:
        """The fault as POST /_sandbox/faults takes it, with what is left of it."""
        body: dict[str, Any] = {"id": self.id, "api": self.api, "kind": self.kind, "route": self.route,
                                "remaining": self.remaining, "rate": self.rate}
        if self.kind in ("throttle", "error", "error_after_commit"):
            body["retryAfter"] = self.retry_after
        if self.kind in ("error", "error_after_commit"):
            body["status"] = self.status
        if self.kind == "latency":
            body["seconds"] = self.seconds
        if self.kind == "kill_worker":
            body["when"] = self.when
        return body


class Store(Protocol):
    """Where `SandboxState.commit` writes the state through to (sandbox/persist.py)."""

    def save(self, state: SandboxState) -> None: ...


def token_key(token: str) -> str:
    """What the state keeps of an access token: its hash, so that the state on disk holds no bearer token."""
    return hashlib.sha256(token.encode()).hexdigest()


class SandboxState:
    """All of the sandbox's mutable state. Methods take the lock; callers never do."""

    def __init__(self, *, tenant_id: str, subscription_id: str, signing_key: rsa.RSAPrivateKey | None = None,
                 signing_key_id: str | None = None) -> None:
        self.lock = threading.RLock()
        self.tenant_id = tenant_id
        self.subscription_id = subscription_id.lower()  # the first, default subscription
        self.subscriptions: dict[str, Subscription] = {
            self.subscription_id: Subscription(self.subscription_id, "sandbox")}
        self.resource_groups: dict[str, ResourceGroup] = {}  # by ResourceGroup.key
        self.clock_offset = timedelta()
        self.applications: dict[str, Application] = {}  # by appId
        # Graph's deleted items: soft-deleted applications (with their service principals), by appId, kept
        # DELETED_ITEM_RETENTION from their deletedDateTime (purge_deleted).
        self.deleted_applications: dict[str, Application] = {}
        self.role_assignments: dict[str, RoleAssignment] = {}  # by name (a GUID, lower case)
        self.role_assignment_page_size = DEFAULT_ROLE_ASSIGNMENT_PAGE_SIZE
        self.clusters: dict[str, Cluster] = {}  # by Cluster.key
        # User-assigned managed identities (sandbox/identities.py) by subscription/group/name, lower case: plain data,
        # {"subscriptionId", "resourceGroup", "name", "location", "tags", "appId"}; appId names the Application that
        # stands for the identity's service principal.
        self.user_identities: dict[str, dict[str, Any]] = {}
        self.cluster_page_size = DEFAULT_CLUSTER_PAGE_SIZE
        # Deployment-time ARM resources (sandbox/deployment.py): function apps, Event Grid system topics.
        self.sites: dict[str, FunctionSite] = {}  # by FunctionSite.key
        self.system_topics: dict[str, SystemTopic] = {}  # by SystemTopic.key
        self.cloud_name = DEFAULT_CLOUD_NAME
        self.flex_regions: list[str] = list(DEFAULT_FLEX_REGIONS)
        # Microsoft Graph's service principal: in every tenant, an application of Microsoft's tenant, so not one of
        # `applications` (Graph lists only the tenant's own there). Derived from the tenant: never saved.
        self.microsoft_graph = Application(
            object_id=microsoft_graph_principal_id(tenant_id), app_id=MICROSOFT_GRAPH_APP_ID,
            display_name=MICROSOFT_GRAPH_NAME, sp_object_id=microsoft_graph_principal_id(tenant_id),
            identifier_uris=["https://graph.microsoft.com"],
            app_role_objects=[p.app_role() for p in GRAPH_APPLICATION_PERMISSIONS.values()])
        self.operations: dict[str, Operation] = {}
        self.tokens: dict[str, tuple[str, str, datetime]] = {}  # token_key(token) -> (appId, audience, expires)
        self.users: dict[str, MemberUser] = {}  # by object id
        # Entra ID signs every access token (RS256); its public key is served as the tenant's JWKS.
        self.signing_key = signing_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signing_key_id = signing_key_id or uuid.uuid4().hex
        self.login_url = ""  # the token endpoint's base URL: tokens' issuer is <login_url>/<tenant>/v2.0
        self.graph_url = ""  # Graph's base URL (the cloud's metadata names it); Sandbox.start sets both
        # Which token audiences each API accepts: Azure's own, and the API's endpoint (audience = endpoint, as in
        # every cloud); Sandbox.start adds the endpoints.
        self.audiences: dict[str, set[str]] = {"arm": set(ARM_AUDIENCES), "graph": {GRAPH_AUDIENCE},
                                               "vault": {VAULT_AUDIENCE}, "topic": {EVENTGRID_AUDIENCE}}
        self.vault: dict[str, list[SecretVersion]] = {}
        self.vault_name = DEFAULT_VAULT_NAME  # the same in every world: not saved
        # CloudEvents published to the custom topic (sandbox/topics.py), as received: not persisted.
        self.topic_events: list[dict[str, Any]] = []
        self.deleted_secrets: dict[str, list[SecretVersion]] = {}
        self.activity_log: list[dict[str, Any]] = []
        self.requests: dict[str, Counter[str]] = defaultdict(Counter)
        # Status codes answered: api -> route -> status ("lost" when a fault closed the connection instead).
        self.responses: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        self.requests_by_caller: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        self.tokens_issued: Counter[str] = Counter()
        self.key_fetches = 0  # GETs of the tenant's signing keys, answered or faulted (login is not in `requests`)
        self.faults: list[Fault] = []  # active request faults, in the order they were added
        self.random = random.Random(7)  # fault rates are reproducible from run to run
        self.order_seed = tenant_id  # unordered collections: one permutation per world (`unordered`)
        self.propagation_seconds = 0.0  # a new password signs in only after this long
        self.ingestion_seconds = 0.0  # an Activity Log entry is listed only after this long
        self.reset_failures = 0  # the next N resets fail inside AKS (an internal error)
        # A new service principal reaches ARM's replica only this long after it was made; a role assignment write
        # that names principalType skips the wait (Microsoft's fix), unless the fault says it does not help.
        self.principal_replication_seconds = 0.0
        self.replication_ignores_principal_type = False
        self.operation_seconds = DEFAULT_OPERATION_SECONDS
        # Azure Resource Graph's per-user quota (sandbox/resourcegraph.py): this many queries per window.
        self.resource_graph_quota = RESOURCE_GRAPH_QUOTA
        self.resource_graph_window_seconds = RESOURCE_GRAPH_WINDOW_SECONDS
        self.on_failed_operation: Callable[[dict[str, Any]], None] = lambda entry: None
        # What ends an operation, by kind; the ARM API registers them (operations stay data, see Operation).
        self.appliers: dict[str, Callable[[Operation], dict[str, Any] | None]] = {}
        # Set by whoever started the function worker process (serve, a test): SIGKILL it. kill_worker faults call it.
        self.on_kill_worker: Callable[[], None] | None = None
        # The client address of the request each server thread answers: with several workers, a kill_worker hook
        # kills the one that sent it (`request_peer`; sandbox/worker.py's WorkerPool.kill_sender).
        self._answering = threading.local()
        # Write-through: with a store, commit() saves the state, and `journal` collects the changes of what grows
        # (passwords, removed passwords, vault versions, Activity Log, tokens, operations) for the store to append
        # to its logs. None without a store: nothing collects.
        self.store: Store | None = None
        self.journal: list[tuple[str, Any]] | None = None
        # A read changed something worth keeping (it used up a fault); reads are saved only then.
        self.dirty = False

    # ------------------------------------------------------------------ time

    def now(self) -> datetime:
        return datetime.now(UTC) + self.clock_offset

    def unordered(self, items: Iterable[T], key: Callable[[T], str]) -> list[T]:
        """A collection in an order the API does not promise (Graph and ARM lists without $orderby): a permutation
        fixed by the world's `order_seed` and each item's key, so paging is consistent and no client can rely, by
        accident, on creation order."""
        return sorted(items, key=lambda item: hashlib.sha256(f"{self.order_seed}|{key(item)}".encode()).digest())

    def advance(self, seconds: float) -> datetime:
        with self.lock:
            self.clock_offset += timedelta(seconds=seconds)
            return self.now()

    # ------------------------------------------------------------------ directory and sign-in

    def add_application(self, display_name: str, *, owners: set[str] | None = None,
                        graph_permissions: set[str] | frozenset[str] = frozenset(),
                        arm_actions: frozenset[str] = frozenset(), vault_data_actions: frozenset[str] = frozenset(),
                        with_service_principal: bool = True, created_at: datetime | None = None) -> Application:
        """A new application. `with_service_principal=False` is Graph's POST /applications: no service principal yet."""
        with self.lock:
            app = Application(object_id=str(uuid.uuid4()), app_id=str(uuid.uuid4()), display_name=display_name,
                              owners=set(owners or ()), graph_permissions=set(graph_permissions),
                              arm_actions=arm_actions, vault_data_actions=vault_data_actions,
                              has_service_principal=with_service_principal, created_at=created_at)
            self.applications[app.app_id] = app
            return app

    def application_by_object_id(self, object_id: str) -> Application | None:
        with self.lock:
            return next((a for a in self.applications.values() if a.object_id == object_id.lower()), None)

    def service_principal(self, object_id: str) -> Application | None:
        """The application whose service principal has this object id, if the directory has it (not deleted);
        Microsoft Graph's too."""
        with self.lock:
            return next((a for a in self.service_principals() if a.sp_object_id == object_id.lower()), None)

    def service_principal_by_app_id(self, app_id: str) -> Application | None:
        """The application of the service principal for this appId, if the directory has one; Microsoft Graph's too."""
        with self.lock:
            return next((a for a in self.service_principals() if a.app_id == app_id.lower()), None)

    def service_principals(self) -> list[Application]:
        """The applications the tenant has service principals of: its own, then Microsoft Graph."""
        with self.lock:
            return [*(a for a in self.applications.values() if a.has_service_principal), self.microsoft_graph]

    def application_by_unique_name(self, unique_name: str) -> Application | None:
        with self.lock:
            return next((a for a in self.applications.values() if a.unique_name == unique_name), None)

    def add_service_principal(self, app: Application) -> Application:
        """Graph's POST /servicePrincipals for an application that has none: a new object, replicating from now."""
        with self.lock:
            app.has_service_principal = True
            app.sp_object_id = str(uuid.uuid4())
            app.sp_passwords = []
            app.service_principal_created_at = self.now()
            return app

    def principal_visible_to_arm(self, app: Application, *, principal_type_given: bool) -> bool:
        """Whether ARM's directory replica knows the application's service principal now.

        A principal made less than principal_replication_seconds ago is not replicated yet; a request that names
        its principalType skips that lookup (Microsoft's documented fix), unless the fault ignores it."""
        with self.lock:
            if not app.has_service_principal:
                return False
            if app.service_principal_created_at is None or self.principal_replication_seconds <= 0:
                return True
            if principal_type_given and not self.replication_ignores_principal_type:
                return True
            age = (self.now() - app.service_principal_created_at).total_seconds()
            return age >= self.principal_replication_seconds

    def delete_application(self, app: Application) -> Application:
        """Graph's DELETE /applications/{id}: the application and its service principal go to the deleted items,
        where they stay DELETED_ITEM_RETENTION; its passwords stop signing in at once (it is no longer found)."""
        with self.lock:
            self.applications.pop(app.app_id, None)
            app.deleted_at = self.now()
            self.deleted_applications[app.app_id] = app
            return app

    def delete_service_principal(self, app: Application) -> None:
        """Graph's DELETE /servicePrincipals/{id}: the application stays; its service principal goes with its own
        passwords and owners. Assumed: it is not kept among the deleted items (the sandbox keeps deleted applications
        only)."""
        with self.lock:
            for password in list(app.sp_passwords):
                self.remove_password(app, password.key_id, service_principal=True)
            app.has_service_principal = False
            app.sp_owners = set()

    def purge_deleted(self) -> None:
        """Forget the deleted items older than DELETED_ITEM_RETENTION (Entra ID deletes them for good)."""
        with self.lock:
            now = self.now()
            expired = [k for k, a in self.deleted_applications.items()
                       if a.deleted_at is not None and now - a.deleted_at >= DELETED_ITEM_RETENTION]
            for app_id in expired:
                del self.deleted_applications[app_id]
            if expired:
                self.dirty = True

    def application_record(self, app_id: str) -> Application | None:
        """An application, whether in the directory or in its deleted items (for replaying saved passwords)."""
        with self.lock:
            return self.applications.get(app_id) or self.deleted_applications.get(app_id)

    def add_password(self, app: Application, display_name: str, *, start: datetime | None = None,
                     end: datetime | None = None, service_principal: bool = False) -> tuple[Password, str]:
        """A new password and its text, which only the caller sees, once (as Graph does); on the application's
        service principal with `service_principal`."""
        with self.lock:
            text = new_secret_text()
            start = start or self.now()
            password = Password(key_id=str(uuid.uuid4()), display_name=display_name, hint=text[:3], start=start,
                                end=end or start + DEFAULT_PASSWORD_LIFETIME, _text=text)
            if service_principal:
                app.sp_passwords.append(password)
                self._journal("passwords", (app.app_id, password, "servicePrincipal"))
            else:
                app.passwords.append(password)
                self._journal("passwords", (app.app_id, password))
            return password, text

    def remove_password(self, app: Application, key_id: str, *, service_principal: bool = False) -> bool:
        """Take a password away (Graph's removePassword), remembering what it was; False if the app has none such.
        A service principal's is remembered with `"servicePrincipal": True`."""
        with self.lock:
            held = app.sp_passwords if service_principal else app.passwords
            found = next((p for p in held if p.key_id == key_id), None)
            if found is None:
                return False
            held.remove(found)
            removed = {"keyId": found.key_id, "hint": found.hint, "displayName": found.display_name,
                       "endDateTime": utc_iso(found.end), "removedAt": utc_iso(self.now()),
                       **({"servicePrincipal": True} if service_principal else {})}
            app.removed_passwords.append(removed)
            self._journal("removed", (app.app_id, removed))
            return True

    def sign_in(self, client_id: str, secret: str) -> Application:
        """The application, if `secret` signs in as `client_id` now; ApiError with Entra ID's AADSTS text if not."""
        with self.lock:
            app = self.applications.get(client_id)
            if app is None:
                raise ApiError(400, "unauthorized_client", (
                    f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory "
                    f"'{self.tenant_id}'. This can happen if the application has not been installed by the "
                    "administrator of the tenant or consented to by any user in the tenant. You may have sent "
                    "your authentication request to the wrong tenant."))
            now = self.now()
            matching = [p for p in [*app.passwords, *app.sp_passwords] if secrets.compare_digest(p._text, secret)]
            usable = [p for p in matching
                      if p.start <= now < p.end and (now - p.start).total_seconds() >= self.propagation_seconds]
            if usable and not app.has_service_principal:
                # Entra ID's words (field reports: Azure/Commercial-Marketplace-SaaS-Accelerator#830; Microsoft's
                # Teams SDK troubleshooting page quotes the full response, HTTP 401 invalid_client). That the secret
                # is checked before the service principal is assumed: a wrong secret still answers AADSTS7000215.
                raise ApiError(401, "invalid_client", (
                    f"AADSTS7000229: The client application {client_id} is missing service principal in the tenant "
                    f"{self.tenant_id}. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119"))
            if usable:
                return app
            if matching and all(p.end <= now for p in matching):
                raise ApiError(401, "invalid_client", (
                    f"AADSTS7000222: The provided client secret keys for app '{client_id}' are expired. Visit the "
                    "Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider "
                    "using certificate credentials for added security: https://aka.ms/certCreds."))
            raise ApiError(401, "invalid_client", (
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the "
                f"client secret value, not the client secret ID, for a secret added to app '{client_id}'."))

    def api_application(self, resource: str) -> Application | None:
        """The application whose appId or application ID URI a token request names as its resource."""
        with self.lock:
            return next((a for a in self.applications.values()
                         if resource.lower() in {a.app_id.lower(), *(u.lower() for u in a.identifier_uris)}), None)

    def known_audience(self, resource: str) -> bool:
        with self.lock:
            return any(resource in accepted for accepted in self.audiences.values()) or \
                self.api_application(resource) is not None

    def token_version(self, resource: str) -> str:
        """The version of the access token Entra ID issues for `resource`, "1.0" or "2.0": "The version of the access
        token is determined by the resource's accessTokenAcceptedVersion" (Microsoft identity platform, "Access
        tokens", learn.microsoft.com/entra/identity-platform/access-tokens), whichever endpoint the client used. An API
        application says so in Graph's `api.requestedAccessTokenVersion` (the remediator's own: 2, infra/'s
        api-app.bicep); null or 1 means v1.0, as for Microsoft's own resources (ARM, Graph, Key Vault, Event Grid,
        and the sandbox's endpoints standing in for them)."""
        api = self.api_application(resource)
        return "2.0" if api is not None and api.api.get("requestedAccessTokenVersion") == 2 else "1.0"

    def issue_token(self, app: Application, resource: str, *, requested: str | None = None) -> tuple[str, int]:
        """A signed access token for `resource`, as Entra ID issues for the client credentials grant, in the
        version the resource accepts (`token_version`).

        v2.0 (an API registered as an application that asks for it): the audience is its client id. v1.0: the
        audience is the resource as the client `requested` it (`https://management.core.windows.net/`, trailing
        slash kept), the access-token docs' "aud" for v1.0. `roles` holds the app roles the caller was granted on
        an API (absent when none, as Entra ID leaves it out).
        """
        with self.lock:
            api = self.api_application(resource)
            version = self.token_version(resource)
            audience = api.app_id if api else resource
            claims: dict[str, Any] = {"aud": audience if version == "2.0" else (requested or resource)}
            if api is not None and app.granted_roles.get(api.app_id):
                claims["roles"] = sorted(app.granted_roles[api.app_id])
            token = self.sign_token(app, claims, version=version)
            key, found = token_key(token), (app.app_id, audience, self.now() + TOKEN_LIFETIME)
            self.tokens[key] = found
            self._journal("tokens", (key, *found))
            self.tokens_issued[resource] += 1
            return token, int(TOKEN_LIFETIME.total_seconds())

    def add_user(self, display_name: str) -> MemberUser:
        with self.lock:
            user = MemberUser(str(uuid.uuid4()), display_name)
            self.users[user.object_id] = user
            return user

    def issue_user_token(self, user: MemberUser, resource: str) -> str:
        """A delegated access token of `user` for `resource`, as Entra ID issues to the Azure CLI (in the version
        the resource accepts, `token_version`)."""
        with self.lock:
            version = self.token_version(resource)
            token = self.sign_token(None, {
                "aud": resource, "oid": user.object_id, "sub": user.object_id,
                **_client_claims(AZURE_CLI_APP_ID, "0", version),  # the CLI is a public client: no secret
                "idtyp": "user", "name": user.display_name, "upn": user.user_principal_name,
                "scp": "Application.ReadWrite.All Directory.Read.All"}, version=version)
            key, found = token_key(token), (user.object_id, resource, self.now() + TOKEN_LIFETIME)
            self.tokens[key] = found
            self._journal("tokens", (key, *found))
            self.tokens_issued[resource] += 1
            return token

    def user_caller(self, authorization: str | None, api: str) -> MemberUser | None:
        """The member user a bearer token was issued to, for an audience `api` accepts; None otherwise."""
        with self.lock:
            holder = self._token_holder(authorization, api)
            return self.users.get(holder) if holder else None

    def _token_holder(self, authorization: str | None, api: str) -> str | None:
        """Whom a live bearer token for an audience `api` accepts was issued to (an appId or a user id); None
        without one. Callers hold the lock."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        found = self.tokens.get(token_key(authorization[len("Bearer "):]))
        if found is None or found[2] <= self.now() or found[1] not in self.audiences[api]:
            return None
        return found[0]

    def sign_token(self, app: Application | None, claims: dict[str, Any], *, version: str = "2.0",
                   lifetime: float | None = None, key: rsa.RSAPrivateKey | None = None) -> str:
        """A JWT for `app` with Entra ID's claims of `version` ("Access tokens", the claims reference), `claims`
        laid over them. v2.0: `iss` `<login_url>/<tenant>/v2.0`, `azp`, `azpacr`. v1.0: `iss` and `idp`
        `https://sts.windows.net/<tenant>/` (public Azure's token issuer: a name in the claim, not a host anyone
        calls), `appid`, `appidacr`. Both: `oid`, `sub` (the service principal), `tid`, `idtyp` "app", `uti`, `ver`.
        Not modelled: the opaque `aio` and `rh`.

        Times are wall-clock times, not the sandbox clock: the apps that check them use the real clock.
        """
        issued = int(time.time())
        seconds = int(TOKEN_LIFETIME.total_seconds() if lifetime is None else lifetime)
        issuer = V1_ISSUER.format(tenant=self.tenant_id) if version == "1.0" else \
            f"{self.login_url}/{self.tenant_id}/v2.0"
        body = {"iss": issuer, "iat": issued, "nbf": issued, "exp": issued + seconds, "tid": self.tenant_id,
                "ver": version, "uti": secrets.token_urlsafe(16),
                **({"idp": issuer} if version == "1.0" and app else {}),
                **({"oid": app.sp_object_id, "sub": app.sp_object_id, "idtyp": "app",
                    **_client_claims(app.app_id, "1", version)} if app else {}), **claims}
        return jwt.encode({k: v for k, v in body.items() if v is not None}, key or self.signing_key,
                          algorithm="RS256", headers={"kid": self.signing_key_id, "typ": "JWT"})

    def signing_keys(self) -> dict[str, Any]:
        """The tenant's JWKS, as `discovery/v2.0/keys` serves it."""
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.signing_key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.signing_key_id, "use": "sig",
                          "issuer": f"{self.login_url}/{self.tenant_id}/v2.0"}]}

    def caller(self, authorization: str | None, api: str) -> Application | None:
        """The application a bearer token was issued to, for an audience `api` accepts; None without a usable token."""
        with self.lock:
            holder = self._token_holder(authorization, api)
            return self.applications.get(holder) if holder else None

    # ------------------------------------------------------------------ subscriptions and resource groups

    def add_subscription(self, subscription_id: str | None = None, display_name: str | None = None) -> Subscription:
        with self.lock:
            found = Subscription((subscription_id or str(uuid.uuid4())).lower(),
                                 display_name or f"sandbox-{len(self.subscriptions) + 1}")
            self.subscriptions[found.subscription_id] = found
            return found

    def has_subscription(self, subscription_id: str) -> bool:
        with self.lock:
            return subscription_id.lower() in self.subscriptions

    def add_resource_group(self, name: str, *, subscription_id: str | None = None, location: str = LOCATION,
                           tags: dict[str, str] | None = None) -> ResourceGroup:
        """A new resource group, or the one of that name with these tags (ARM's create or update)."""
        with self.lock:
            group = ResourceGroup((subscription_id or self.subscription_id).lower(), name, location, dict(tags or {}))
            existing = self.resource_groups.get(group.key)
            if existing is not None:
                existing.tags = group.tags
                return existing
            self.resource_groups[group.key] = group
            return group

    def resource_group(self, name: str, subscription_id: str | None = None) -> ResourceGroup | None:
        with self.lock:
            return self.resource_groups.get(f"{subscription_id or self.subscription_id}/{name}".lower())

    # ------------------------------------------------------------------ function apps and Event Grid system topics

    def put_site(self, site: FunctionSite) -> tuple[FunctionSite, bool]:
        """Create or replace a function app (ARM's create or update); True if it is new."""
        with self.lock:
            created = site.key not in self.sites
            self.sites[site.key] = site
            return site, created

    def site(self, resource_group: str, name: str, subscription_id: str) -> FunctionSite | None:
        with self.lock:
            return self.sites.get(f"{subscription_id}/{resource_group}/{name}".lower())

    def system_topic(self, resource_group: str, name: str, subscription_id: str) -> SystemTopic | None:
        with self.lock:
            return self.system_topics.get(f"{subscription_id}/{resource_group}/{name}".lower())

    def system_topic_of_source(self, source: str) -> SystemTopic | None:
        """The system topic of a source: Event Grid allows one per source (learn.microsoft.com, system-topics)."""
        with self.lock:
            return next((t for t in self.system_topics.values() if t.source.lower() == source.lower()), None)

    def add_system_topic(self, topic: SystemTopic) -> SystemTopic:
        with self.lock:
            self.system_topics[topic.key] = topic
            return topic

    # ------------------------------------------------------------------ clusters

    def add_cluster(self, resource_group: str, name: str, *, client_id: str, secret: str | None,
                    kubernetes_version: str = "1.29.7", subscription_id: str | None = None,
                    tags: dict[str, str] | None = None, node_resource_group: str | None = None,
                    vnet_subnet_id: str | None = None, aad: LegacyAadProfile | None = None) -> Cluster:
        """A cluster (in the default subscription unless one is named); its resource group is made if missing, and
        so is its node resource group (AKS's default name: MC_{group}_{name}_{location}), as AKS makes it."""
        with self.lock:
            subscription = (subscription_id or self.subscription_id).lower()
            group = self.resource_group(resource_group, subscription) or self.add_resource_group(
                resource_group, subscription_id=subscription)
            nodes = node_resource_group or f"MC_{group.name}_{name}_{LOCATION}"
            if self.resource_group(nodes, subscription) is None:
                self.add_resource_group(nodes, subscription_id=subscription, location=group.location)
            created = self.now() - timedelta(days=400)  # clusters in scenarios predate their secrets
            cluster = Cluster(subscription, group.name, name, client_id, kubernetes_version, _held_secret=secret,
                              created_at=created, last_modified_at=created, tags=dict(tags or {}), aad=aad,
                              node_resource_group=nodes, vnet_subnet_id=vnet_subnet_id)
            self.clusters[cluster.key] = cluster
            return cluster

    def cluster(self, resource_group: str, name: str, subscription_id: str | None = None) -> Cluster | None:
        with self.lock:
            self.settle()
            return self.clusters.get(f"{subscription_id or self.subscription_id}/{resource_group}/{name}".lower())

    def find_clusters(self, name: str, *, subscription_id: str | None = None,
                      resource_group: str | None = None) -> list[Cluster]:
        """The clusters called `name`, narrowed to a subscription and a resource group when they are given."""
        with self.lock:
            return [c for c in self.clusters.values() if c.name.lower() == name.lower()
                    and (subscription_id is None or c.subscription_id == subscription_id.lower())
                    and (resource_group is None or c.resource_group.lower() == resource_group.lower())]

    def sign_in_problem(self, client_id: str, secret: str) -> str | None:
        """Entra ID's response body (compact JSON, as adal quotes it) if `secret` cannot sign in as `client_id`."""
        try:
            self.sign_in(client_id, secret)
        except ApiError as err:
            return json.dumps({"error": err.code, "error_description": err.message}, separators=(",", ":"))
        return None

    def cluster_secret_problem(self, cluster: Cluster) -> str | None:
        """Why AKS cannot sign in as the cluster's service principal now, or None (also for a managed identity)."""
        if cluster.client_id == "msi":
            return None
        return self.sign_in_problem(cluster.client_id, cluster._held_secret or "")

    def aad_server_secret_problem(self, cluster: Cluster) -> str | None:
        """Why the legacy Azure AD server application cannot sign in with the secret the cluster holds, or None (also
        for a cluster without the legacy integration)."""
        if cluster.aad is None:
            return None
        return self.sign_in_problem(cluster.aad.server_app_id, cluster.aad._server_secret)

    # ------------------------------------------------------------------ role assignments

    def add_role_assignment(self, assignment: RoleAssignment) -> RoleAssignment:
        with self.lock:
            self.role_assignments[assignment.name] = assignment
            return assignment

    def remove_role_assignment(self, name: str) -> RoleAssignment | None:
        with self.lock:
            return self.role_assignments.pop(name.lower(), None)

    def role_assignment_like(self, scope: str, principal_id: str, role_definition_id: str) -> RoleAssignment | None:
        """The assignment of this role to this principal at exactly this scope, under whatever name."""
        with self.lock:
            return next((a for a in self.role_assignments.values() if a.scope.lower() == scope.lower()
                         and a.principal_id == principal_id.lower() and a.role_definition_id == role_definition_id),
                        None)

    def start_operation(self, cluster: Cluster, kind: str, params: dict[str, Any]) -> Operation:
        """An operation of a kind in `appliers`, which ends it with `params` once its time has come."""
        with self.lock:
            now = self.now()
            operation = Operation(id=str(uuid.uuid4()), kind=kind, cluster=cluster.key, started=now,
                                  ready_at=now + timedelta(seconds=self.operation_seconds), params=params)
            self.operations[operation.id] = operation
            cluster.operation = operation.id
            self._journal("operations", operation)
            return operation

    def cancel_operation(self, cluster: Cluster, error: dict[str, Any]) -> Operation | None:
        """End the cluster's running operation as Canceled (an abort), keeping none of its params; None if nothing
        runs."""
        with self.lock:
            self.settle()
            if cluster.operation is None:
                return None
            operation = self.operations[cluster.operation]
            operation.status, operation.error, operation.ended, operation.params = "Canceled", error, self.now(), {}
            cluster.operation = None
            self._journal("operations", operation)
            return operation

    def read_operation(self, operation_id: str) -> Operation | None:
        """An operation as its status URL shows it."""
        with self.lock:
            self.settle()
            return self.operations.get(operation_id)

    def settle(self, force: bool = False) -> None:
        """Finish the operations whose time has come (ARM would have, whether or not anyone polled)."""
        with self.lock:
            now = self.now()
            for operation in self.operations.values():
                if operation.status != "InProgress" or (not force and now < operation.ready_at):
                    continue
                apply = self.appliers.get(operation.kind)
                if apply is None:  # restored from disk before the ARM API that ends it started
                    continue
                operation.error = apply(operation)
                operation.status = "Failed" if operation.error else "Succeeded"
                operation.ended = now
                operation.params = {}  # a reset's secret is the cluster's now, or it failed: keep no copy
                cluster = self.clusters.get(operation.cluster)
                if cluster and cluster.operation == operation.id:
                    cluster.operation = None
                self._journal("operations", operation)

    # ------------------------------------------------------------------ Activity Log

    def log_operation(self, *, cluster: Cluster, operation_name: str, correlation_id: str, caller: Application,
                      method: str, status: str, status_code: str, status_message: dict[str, Any] | None = None,
                      event_name: str = "EndRequest") -> dict[str, Any]:
        """Append an Activity Log entry shaped as the REST API returns it; a failed end is also an event."""
        with self.lock:
            now = self.now()
            resource_id = (f"/subscriptions/{cluster.subscription_id}/resourcegroups/{cluster.resource_group}"
                           f"/providers/Microsoft.ContainerService/managedClusters/{cluster.name}")
            event_id = str(uuid.uuid4())
            properties: dict[str, Any] = {"statusCode": status_code, "eventCategory": "Administrative",
                                          "entity": resource_id, "message": operation_name,
                                          "hierarchy": f"{self.tenant_id}/{cluster.subscription_id}"}
            if status_message is not None:
                # The REST API returns statusMessage as a JSON-encoded string.
                properties["statusMessage"] = json.dumps(status_message)
            entry = {
                "authorization": {"action": operation_name, "scope": resource_id},
                "caller": caller.app_id, "channels": "Operation",
                "claims": {"aud": "https://management.azure.com/", "appid": caller.app_id,
                           "http://schemas.microsoft.com/identity/claims/tenantid": self.tenant_id},
                "correlationId": correlation_id, "description": "", "eventDataId": event_id,
                "eventName": {"value": event_name, "localizedValue": _localized(event_name)},
                "category": {"value": "Administrative", "localizedValue": "Administrative"},
                "httpRequest": {"clientRequestId": str(uuid.uuid4()), "clientIpAddress": "127.0.0.1",
                                "method": method},
                "id": f"{resource_id}/events/{event_id}/ticks/{int(now.timestamp() * 10**7)}",
                "level": "Error" if status == "Failed" else "Informational",
                "resourceGroupName": cluster.resource_group,
                "resourceProviderName": {"value": "Microsoft.ContainerService",
                                         "localizedValue": "Microsoft.ContainerService"},
                "resourceId": resource_id,
                "resourceType": {"value": "Microsoft.ContainerService/managedClusters",
                                 "localizedValue": "Microsoft.ContainerService/managedClusters"},
                "operationId": str(uuid.uuid4()),
                "operationName": {"value": operation_name, "localizedValue": operation_name},
                "properties": properties,
                "status": {"value": status, "localizedValue": status},
                "subStatus": {"value": status_code, "localizedValue": status_code},
                "eventTimestamp": utc_iso(now),
                "submissionTimestamp": utc_iso(now + timedelta(seconds=self.ingestion_seconds)),
                "subscriptionId": cluster.subscription_id, "tenantId": self.tenant_id,
            }
            self.activity_log.append(entry)
            self._journal("activity", entry)
        if status == "Failed" and event_name == "EndRequest":
            self.on_failed_operation(entry)
        return entry

    # ------------------------------------------------------------------ Key Vault

    def set_secret(self, name: str, value: str, *, content_type: str | None, tags: dict[str, str], enabled: bool,
                   expires: int | None, not_before: int | None) -> SecretVersion:
        with self.lock:
            stamp = int(self.now().timestamp())
            version = SecretVersion(uuid.uuid4().hex, value, content_type, tags, enabled, expires, not_before,
                                    stamp, stamp)
            self.vault.setdefault(name.lower(), []).append(version)
            self._journal("vault", ("set", name.lower(), version))
            return version

    def secret_updated(self, name: str, version: SecretVersion) -> None:
        """After a change of a version's attributes (Key Vault's PATCH): stamp it, and keep the change."""
        with self.lock:
            version.updated = int(self.now().timestamp())
            self._journal("vault", ("update", name.lower(), version))

    def has_vault(self, name: str) -> bool:
        """Whether a vault of this name exists in the world (its one vault)."""
        return name.lower() == self.vault_name

    def secret_versions(self, name: str) -> list[SecretVersion]:
        with self.lock:
            return list(self.vault.get(name.lower(), ()))

    def delete_secret(self, name: str) -> list[SecretVersion]:
        """Every version of the secret, moved to the deleted secrets (soft delete; nothing here recovers or purges)."""
        with self.lock:
            versions = self.vault.pop(name.lower(), [])
            if versions:
                self.deleted_secrets[name.lower()] = versions
                self._journal("vault", ("delete", name.lower(), None))
            return versions

    # ------------------------------------------------------------------ faults and counting

    def count(self, api: str, route: str, authorization: str | None) -> None:
        with self.lock:
            self.requests[api][route] += 1
            found = self.tokens.get(token_key((authorization or "").removeprefix("Bearer ")))
            who = (self.applications.get(found[0]) or self.users.get(found[0])) if found else None
            self.requests_by_caller[who.display_name if who else "anonymous"][api][route] += 1

    def record_response(self, api: str, route: str, status: int) -> None:
        with self.lock:
            self.responses[api][route]["lost" if status == 0 else str(status)] += 1

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, api: str, route: str, *, after_commit: bool, skip_kinds: tuple[str, ...] = ()) -> Fault | None:
        """The first active fault of `api` that hits this request (route label `route`) at this point, used up by one.

        `after_commit`: the handler answered 2xx and its write is committed; only faults that spoil that answer apply.
        `skip_kinds`: faults of these kinds pass this request by, unused (a request inside a JSON batch does not
        answer late: the batch's HTTP call does, once).
        """
        with self.lock:
            for fault in self.faults:
                if (fault.api == api and fault.route in (None, route) and fault.after_commit == after_commit
                        and fault.kind not in skip_kinds
                        and (fault.rate >= 1 or self.random.random() < fault.rate)):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                    self.dirty = True
                    return fault
            return None

    def world_faults(self) -> list[dict[str, Any]]:
        """The faults that change how the world behaves (not one request), as POST /_sandbox/faults takes them."""
        with self.lock:
            found: list[dict[str, Any]] = []
            if self.propagation_seconds:
                found.append({"kind": "propagation_delay", "seconds": self.propagation_seconds})
            if self.ingestion_seconds:
                found.append({"kind": "ingestion_delay", "seconds": self.ingestion_seconds})
            if self.reset_failures:
                found.append({"kind": "reset_fails", "remaining": self.reset_failures})
            if self.operation_seconds != DEFAULT_OPERATION_SECONDS:
                found.append({"kind": "slow_operations", "seconds": self.operation_seconds})
            if self.principal_replication_seconds:
                found.append({"kind": "principal_replication_delay", "seconds": self.principal_replication_seconds,
                              "ignorePrincipalType": self.replication_ignores_principal_type})
            return found

    def clear_faults(self) -> None:
        """No request faults, and the world back to its defaults: no delays, resets that work, quick operations."""
        with self.lock:
            self.faults.clear()
            self.propagation_seconds = self.ingestion_seconds = 0.0
            self.reset_failures = 0
            self.operation_seconds = DEFAULT_OPERATION_SECONDS
            self.principal_replication_seconds = 0.0
            self.replication_ignores_principal_type = False

    def answering(self, peer: tuple[str, int]) -> None:
        """The HTTP server notes the client address of the request this thread now answers."""
        self._answering.peer = peer

    def request_peer(self) -> tuple[str, int] | None:
        """The client address of the request this thread answers (None outside a request): the process that sent it
        is the one a kill_worker fault kills."""
        return getattr(self._answering, "peer", None)

    def kill_worker(self) -> None:
        """Call the hook that SIGKILLs the function worker (never under the lock: it waits for a process)."""
        hook = self.on_kill_worker
        if hook is None:
            log.warning("a kill_worker fault fired but no worker hook is registered; the answer is lost instead")
            return
        hook()

    # ------------------------------------------------------------------ persistence

    def _journal(self, log_name: str, item: Any) -> None:
        if self.journal is not None:
            self.journal.append((log_name, item))

    def commit(self, *, changed: bool = True) -> None:
        """Write the state through to its store, if it has one. Never call it holding the lock (the store
        takes its own lock first).

        `changed=False` (a read): saved only if the read changed something (an operation ended, a fault was used).
        Request counts alone are not worth a save: they go with the next one, so a kill may lose the last reads'.
        """
        store = self.store
        if store is not None and (changed or self.journal or self.dirty):
            self.dirty = False
            store.save(self)

    # ------------------------------------------------------------------ for tests and the admin API

    def secret_text_of_cluster(self, name: str) -> str | None:
        """The secret text a cluster holds. Tests use it to prove the text appears nowhere else."""
        with self.lock:
            return next((c._held_secret for c in self.clusters.values() if c.name == name), None)

    def aad_server_secret_of_cluster(self, name: str) -> str | None:
        """The legacy Azure AD server secret a cluster holds. Tests use it to prove the text appears nowhere else."""
        with self.lock:
            return next((c.aad._server_secret for c in self.clusters.values() if c.name == name and c.aad), None)

    def vault_current_value(self, name: str) -> str | None:
        with self.lock:
            versions = self.vault.get(name.lower())
            return versions[-1]._value if versions else None

    def snapshot(self) -> dict[str, Any]:
        """Everything observable, without secret text."""
        with self.lock:
            self.settle()
            self.purge_deleted()
            now = self.now()
            return {
                "now": utc_iso(now),
                "subscriptions": [{"subscriptionId": s.subscription_id, "displayName": s.display_name}
                                  for s in self.subscriptions.values()],
                "resourceGroups": [self.group_view(g) for g in self.resource_groups.values()],
                "clusters": [self.cluster_view(c) for c in self.clusters.values()],
                "applications": [{"objectId": a.object_id, "appId": a.app_id, "displayName": a.display_name,
                                  "uniqueName": a.unique_name,
                                  "servicePrincipalObjectId": a.sp_object_id if a.has_service_principal else None,
                                  "owners": sorted(a.owners), "graphPermissions": sorted(a.graph_permissions),
                                  "directoryRoles": sorted(a.directory_roles),
                                  "passwords": [p.public(now) for p in a.passwords],
                                  "removedPasswords": [dict(r) for r in a.removed_passwords]}
                                 for a in self.applications.values()],
                "deletedApplications": [deleted_view(a) for a in self.deleted_applications.values()],
                "users": [{"id": u.object_id, "displayName": u.display_name,
                           "userPrincipalName": u.user_principal_name} for u in self.users.values()],
                "roleAssignments": [role_assignment_view(r) for r in self.role_assignments.values()],
                "cloudName": self.cloud_name, "flexRegions": list(self.flex_regions),
                "functionApps": [site_view(a) for a in self.sites.values()],
                "systemTopics": [system_topic_view(t) for t in self.system_topics.values()],
                "keyVault": {name: {"currentVersion": versions[-1].version,
                                    "versions": [{"version": v.version, "tags": dict(v.tags), "enabled": v.enabled,
                                                  "contentType": v.content_type, "exp": v.expires}
                                                 for v in versions]}
                             for name, versions in self.vault.items()},
                "activityLog": len(self.activity_log),
                "requests": {api: dict(routes) for api, routes in self.requests.items()},
                "responses": {api: {route: dict(statuses) for route, statuses in routes.items()}
                              for api, routes in self.responses.items()},
                "requestsByCaller": {caller: {api: dict(routes) for api, routes in apis.items()}
                                     for caller, apis in self.requests_by_caller.items()},
                "tokens": dict(self.tokens_issued),
                "keyFetches": self.key_fetches,
            }

    def group_view(self, group: ResourceGroup) -> dict[str, Any]:
        return {"id": group.id, "subscriptionId": group.subscription_id, "name": group.name,
                "location": group.location, "tags": dict(group.tags)}

    def cluster_view(self, cluster: Cluster) -> dict[str, Any]:
        """A cluster as the state shows it: ids, tags, its secret's key id and validity (never its text), writes."""
        with self.lock:
            held = None
            if cluster._held_secret is not None:
                app = self.applications.get(cluster.client_id)
                held = next((p.key_id for p in (app.passwords if app else ())
                             if secrets.compare_digest(p._text, cluster._held_secret)), None)
            view = {"id": (f"/subscriptions/{cluster.subscription_id}/resourceGroups/{cluster.resource_group}"
                           f"/providers/Microsoft.ContainerService/managedClusters/{cluster.name}"),
                    "subscriptionId": cluster.subscription_id, "name": cluster.name,
                    "resourceGroup": cluster.resource_group, "tags": dict(cluster.tags), "clientId": cluster.client_id,
                    "provisioningState": cluster.provisioning_state, "kubernetesVersion": cluster.kubernetes_version,
                    "secretValidNow": self.cluster_secret_problem(cluster) is None,
                    "heldKeyId": held, "writes": {"reset": cluster.writes["reset"], "put": cluster.writes["put"]},
                    "nodeResourceGroup": cluster.node_resource_group, "vnetSubnetId": cluster.vnet_subnet_id,
                    "aad": self._aad_view(cluster)}
            # What a move to managed identity added (sandbox/identities.py), shown only where there is any.
            if cluster.writes["nodeImage"]:
                view["writes"]["nodeImage"] = cluster.writes["nodeImage"]
            if cluster.private_dns_zone_id:
                view["privateDnsZoneId"] = cluster.private_dns_zone_id
            if cluster.identity is not None:
                view["identity"] = dict(cluster.identity)
            return view

    def _aad_view(self, cluster: Cluster) -> dict[str, Any] | None:
        """The legacy Azure AD profile: its ids, and whether the server secret it holds signs in now (never the
        secret)."""
        if cluster.aad is None:
            return None
        return {"clientAppId": cluster.aad.client_app_id, "serverAppId": cluster.aad.server_app_id,
                "tenantId": cluster.aad.tenant_id,
                "serverSecretValidNow": self.aad_server_secret_problem(cluster) is None}


def deleted_view(app: Application) -> dict[str, Any]:
    """A deleted application as the state (and the admin delete route) shows it."""
    return {"appId": app.app_id, "objectId": app.object_id, "displayName": app.display_name,
            "servicePrincipalObjectId": app.sp_object_id if app.has_service_principal else None,
            "deletedDateTime": utc_iso(app.deleted_at) if app.deleted_at else None}


# App settings whose values the state never shows (names ending so hold keys, secrets or connection strings).
SECRET_SETTING_SUFFIXES = ("KEY", "SECRET", "CONNECTION_STRING")


def site_view(site: FunctionSite) -> dict[str, Any]:
    """A function app as the state shows it: its app settings with the values of secret-named ones blanked."""
    return {"id": site.id, "subscriptionId": site.subscription_id, "resourceGroup": site.resource_group,
            "name": site.name, "location": site.location, "kind": site.kind, "tags": dict(site.tags),
            "appSettings": {name: "" if name.upper().endswith(SECRET_SETTING_SUFFIXES) else value
                            for name, value in site.app_settings.items()}}


def system_topic_view(topic: SystemTopic) -> dict[str, Any]:
    return {"id": topic.id, "subscriptionId": topic.subscription_id, "resourceGroup": topic.resource_group,
            "name": topic.name, "source": topic.source, "topicType": topic.topic_type,
            "eventSubscriptions": [{"id": f"{topic.id}/eventSubscriptions/{e.name}", "name": e.name,
                                    "destinationResourceId": e.destination_resource_id,
                                    "includedEventTypes": list(e.included_event_types)}
                                   for e in topic.event_subscriptions.values()]}


def _client_claims(client_id: str, authentication: str, version: str) -> dict[str, str]:
    """Who asked for a token and how it proved itself ("0" public client, "1" secret, "2" certificate): v2.0 says it
    in `azp`/`azpacr`, v1.0 in `appid`/`appidacr` (the access-token claims reference)."""
    if version == "1.0":
        return {"appid": client_id, "appidacr": authentication}
    return {"azp": client_id, "azpacr": authentication}


def role_assignment_view(assignment: RoleAssignment) -> dict[str, Any]:
    return {"id": assignment.id, "name": assignment.name, "scope": assignment.scope,
            "roleDefinitionId": assignment.role_definition_id, "roleName": role_name(assignment.role_definition_id),
            "principalId": assignment.principal_id, "principalType": assignment.principal_type,
            "condition": assignment.condition}


SECRET_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789~._-"
SECRET_MARKER = "8Q~"  # Entra's fixed marker after the 3-character hint: `abc8Q~defghijklmnopqrstuvwxyz-_.~0123456`


def new_secret_text() -> str:
    """A password as Entra ID makes one: 40 characters, the 3 of its hint, then the fixed `8Q~`, then 34 of the
    secret alphabet (Microsoft Purview's "Microsoft Entra client secret" sensitive information type,
    learn.microsoft.com/purview/sit-defn-azure-ad-client-secret: `abc8Q~defghijklmnopqrstuvwxyz-_.~0123456`). Every
    password the sandbox mints (Graph's addPassword on applications and service principals, the scenarios'
    identities) comes from here, so redaction that looks for the marker is tested against what Entra hands out.
    Never longer than AKS's 190-byte limit. (Only its shape: the checksum Purview mentions is not modelled.)"""
    def draw(count: int) -> str:
        return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(count))
    return draw(3) + SECRET_MARKER + draw(34)


def _localized(event_name: str) -> str:
    return {"EndRequest": "End request", "BeginRequest": "Begin request"}.get(event_name, event_name)


@dataclass(frozen=True)
class Identities:
    """The sign-ins a scenario makes: the remediator, an operator allowed to start remediations (the API's
    Remediations.Write and .Read), an auditor who may only read them, and the API application itself."""

    remediator: Identity
    operator: Identity
    auditor: Identity
    api_client_id: str
    api_app_id_uri: str


@dataclass(frozen=True)
class WorldOptions:
    """What a world grants its remediator beyond infra/'s custom roles.

    `remediator_graph_permissions`: its Graph application permissions (default what infra/graph.bicep grants:
    OwnedBy, and Application.Read.All for Graph's deleted items).
    `remediator_role_assignment_roles`: role definitions (built-in names or GUIDs) it may assign, as infra/'s role
    assignment writer role (roleAssignments/write, no delete) under the documented constraining condition, for
    service principals only and never for itself (the condition excludes its own principal id, as infra/ deploys
    it); None: it may only read role assignments.
    `remediator_migrates`: infra/'s migrate=execute permissions (MIGRATION_ARM_ACTIONS).
    `remediator_subscriptions`: the subscriptions infra/'s custom role is assigned on (the deployment's own and its
    extraSubscriptionIds), where its ARM actions hold; elsewhere it gets 403 AuthorizationFailed, as in Azure (a
    network in another subscription, say). None: every subscription of the world."""

    remediator_graph_permissions: frozenset[str] = frozenset({GRAPH_OWNED_BY, GRAPH_READ_ALL})
    remediator_role_assignment_roles: frozenset[str] | None = None
    remediator_subscriptions: frozenset[str] | None = None
    remediator_migrates: bool = False  # infra/'s migrate=execute: MIGRATION_ARM_ACTIONS


DEFAULT_WORLD_OPTIONS = WorldOptions()  # what infra/ deploys, nothing more


def new_world(*, tenant_id: str | None = None, subscription_id: str | None = None,
              options: WorldOptions = WorldOptions()) -> tuple[SandboxState, Identities]:
    """The tenant every scenario starts from: the remediator (Application.ReadWrite.OwnedBy, infra/'s ARM and vault
    roles, and what `options` add), an operator who may do anything (on Graph: Application.ReadWrite.All,
    AppRoleAssignment.ReadWrite.All and the directory role Privileged Role Administrator), an auditor, the
    remediator's API application; no clusters yet."""
    unknown = set(options.remediator_graph_permissions) - GRAPH_PERMISSIONS
    if unknown:
        raise ValueError(f"unknown Graph permission {sorted(unknown)[0]!r}; choose from {sorted(GRAPH_PERMISSIONS)}")
    state = SandboxState(tenant_id=tenant_id or str(uuid.uuid4()), subscription_id=subscription_id or str(uuid.uuid4()))
    now = state.now()
    remediator = state.add_application("aks-sp-remediator", graph_permissions=options.remediator_graph_permissions,
                                       arm_actions=REMEDIATOR_ARM_ACTIONS,
                                       vault_data_actions=REMEDIATOR_VAULT_DATA_ACTIONS)
    if options.remediator_migrates:
        remediator.arm_actions |= MIGRATION_ARM_ACTIONS
    if options.remediator_subscriptions is not None:
        remediator.arm_subscriptions = frozenset(s.lower() for s in options.remediator_subscriptions)
    if options.remediator_role_assignment_roles is not None:
        remediator.arm_actions |= ROLE_ASSIGNMENT_WRITE_ACTIONS
        # As infra/ deploys it: these roles, to service principals only, never to the remediator itself.
        remediator.role_assignment_condition = delegation_condition(
            [_role_guid(role) for role in sorted(options.remediator_role_assignment_roles)],
            principal_types=("ServicePrincipal",), excluded_principals=(remediator.sp_object_id,))
    # The deployer: it may also grant Graph app roles and directory roles, as the template's Graph modules need.
    operator = state.add_application("platform-operator",
                                     graph_permissions={GRAPH_READ_WRITE_ALL, GRAPH_APP_ROLE_ASSIGNMENT_WRITE},
                                     arm_actions=ALL_ACTIONS, vault_data_actions=ALL_ACTIONS)
    operator.directory_roles.add(PRIVILEGED_ROLE_ADMINISTRATOR)
    auditor = state.add_application("platform-auditor")
    _, remediator_secret = state.add_password(remediator, "local run", start=now - timedelta(days=1))
    _, operator_secret = state.add_password(operator, "local run", start=now - timedelta(days=1))
    _, auditor_secret = state.add_password(auditor, "local run", start=now - timedelta(days=1))
    api = state.add_application("aks-sp-remediator-api")
    api.identifier_uris.append(f"api://{state.tenant_id}/aks-sp-remediator")
    api.app_role_objects += [app_role(role, str(uuid.uuid4()), member_types=("User", "Application"))
                             for role in (API_READ_ROLE, API_WRITE_ROLE)]
    operator.granted_roles[api.app_id] = {API_READ_ROLE, API_WRITE_ROLE}
    auditor.granted_roles[api.app_id] = {API_READ_ROLE}
    return state, Identities(Identity(remediator.app_id, remediator_secret), Identity(operator.app_id, operator_secret),
                             Identity(auditor.app_id, auditor_secret), api.app_id, api.identifier_uris[0])


def _role_guid(role: str) -> str:
    found = role_definition_guid(role)
    if found is None:
        raise ValueError(f"unknown role {role!r}: give a built-in role's name or GUID ({', '.join(BUILT_IN_ROLES)})")
    return found


def build_scenario(scenario: str, *, tenant_id: str | None = None, subscription_id: str | None = None,
                   options: WorldOptions = WorldOptions()) -> tuple[SandboxState, Identities]:
    """The world of a named scenario, with its identities (fleet scenarios: sandbox/fleets.py).

    expired-secret: rg-payments/aks-payments holds a password that expired three days ago;
    rg-payments/aks-msi uses a managed identity; rg-platform/aks-healthy is fine.
    healthy: the same, with aks-payments' password valid for another 200 days.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    state, identities = new_world(tenant_id=tenant_id, subscription_id=subscription_id, options=options)
    now = state.now()
    owners = {identities.remediator.client_id}
    payments = state.add_application("aks-payments-sp", owners=owners)
    if scenario == "expired-secret":
        start, end = now - timedelta(days=368), now - timedelta(days=3)
    else:
        start, end = now - timedelta(days=165), now + timedelta(days=200)
    _, payments_secret = state.add_password(payments, "rbac", start=start, end=end)
    state.add_cluster("rg-payments", "aks-payments", client_id=payments.app_id, secret=payments_secret)
    state.add_cluster("rg-payments", "aks-msi", client_id="msi", secret=None)
    healthy = state.add_application("aks-healthy-sp", owners=owners)
    _, healthy_secret = state.add_password(healthy, "rbac", start=now - timedelta(days=30),
                                           end=now + timedelta(days=335))
    state.add_cluster("rg-platform", "aks-healthy", client_id=healthy.app_id, secret=healthy_secret,
                      kubernetes_version="1.30.4")
    return state, identities


SCENARIOS = ("expired-secret", "healthy")

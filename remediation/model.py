"""The remediator's own small types. Adapters return these, never SDK models."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

MSI_CLIENT_ID = "msi"
# Provisioning states in which AKS is still working on an operation.
IN_PROGRESS_STATES = frozenset({"Updating", "Upgrading", "Creating", "Scaling", "Deleting", "Migrating",
                                "Starting", "Stopping", "Canceling", "Resetting"})


class SecretText:
    """Secret text that refuses to show itself: repr and str are redacted.

    Only `reveal()` gives the text, and only adapters that must send it call it.
    """

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        self._text = text

    def reveal(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return "SecretText(<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("SecretText cannot be pickled")


class Credential(StrEnum):
    """Which of a cluster's secrets a remediation is about."""

    SERVICE_PRINCIPAL = "servicePrincipal"  # servicePrincipalProfile: the cluster's identity towards Azure
    AAD_SERVER = "aadServer"  # the legacy Azure AD integration's server application (aadProfile.serverAppSecret)


@dataclass(frozen=True)
class ClusterInfo:
    id: str
    name: str
    location: str
    client_id: str
    provisioning_state: str
    # systemData.lastModifiedAt: when the cluster was last changed (a write that got past validation); None if unknown.
    last_modified_at: datetime | None = None
    tags: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    # The legacy Azure AD integration (aadProfile with managed false): its server and client applications.
    aad_server_app_id: str | None = None
    aad_client_app_id: str | None = None
    aad_tenant_id: str | None = None

    @property
    def uses_managed_identity(self) -> bool:
        return self.client_id.lower() == MSI_CLIENT_ID

    def app_id_for(self, credential: Credential) -> str:
        """The application whose secret the cluster holds for `credential` ("" if none)."""
        if credential is Credential.AAD_SERVER:
            return (self.aad_server_app_id or "").lower()
        return "" if self.uses_managed_identity else self.client_id.lower()

    @property
    def busy(self) -> bool:
        return self.provisioning_state in IN_PROGRESS_STATES


@dataclass(frozen=True)
class PasswordInfo:
    key_id: str
    display_name: str | None
    hint: str | None
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class Application:
    object_id: str
    app_id: str
    display_name: str
    passwords: tuple[PasswordInfo, ...] = ()
    owner_ids: frozenset[str] | None = None  # the owners' object ids, when read ($expand=owners)
    notes: str = ""  # when read (a replacement's creation nonce is there)
    certificates: int = 0  # keyCredentials, when read


@dataclass(frozen=True)
class ServicePrincipal:
    """An application's service principal, as a replacement checks it before using it."""

    object_id: str
    owner_ids: frozenset[str] = frozenset()
    credentials: int = 0  # its own passwords and certificates (a principal's, apart from its application's)


@dataclass(frozen=True)
class DeletedPrincipal:
    """A service principal in Entra ID's deleted items (kept 30 days after its application was deleted)."""

    object_id: str
    app_id: str
    display_name: str
    deleted_at: datetime | None


@dataclass(frozen=True)
class RoleAssignment:
    """An Azure role assignment: `role_definition_id` is the full ARM id, `scope` a resource id."""

    id: str
    name: str
    scope: str
    role_definition_id: str
    principal_id: str
    principal_type: str | None = None

    @property
    def role_guid(self) -> str:
        return self.role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower()


@dataclass(frozen=True)
class NewPassword:
    """What `addPassword` returns: the only time the secret text exists outside Entra ID."""

    key_id: str
    hint: str | None
    display_name: str
    end: datetime
    secret_text: SecretText = field(repr=False)


@dataclass(frozen=True)
class StoredSecretVersion:
    name: str
    version: str
    tags: dict[str, str]
    expires: datetime | None


@dataclass(frozen=True)
class ManagedIdentity:
    """A user-assigned managed identity: its ARM id, its service principal's object id (`principal_id`, what role
    assignments name) and its application's client id; `tags` as ARM holds them."""

    id: str
    principal_id: str
    client_id: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OperationStarted:
    """An ARM long-running operation just accepted (202): where to look, and when ARM asks the first look to come."""

    status_url: str  # its `Azure-AsyncOperation` (or `Location`) URL
    retry_after: float | None = None  # the 202's `Retry-After` in seconds; None when ARM sent none


@dataclass(frozen=True)
class OperationStatus:
    """An ARM long-running operation as its `Azure-AsyncOperation` URL reports it."""

    status: str  # InProgress | Succeeded | Failed | Canceled
    error: str | None = None
    retry_after: float | None = None  # the answer's `Retry-After` in seconds: when to look again; None: not sent

    @property
    def finished(self) -> bool:
        return self.status.lower() in ("succeeded", "failed", "canceled")

    @property
    def succeeded(self) -> bool:
        return self.status.lower() == "succeeded"


@dataclass(frozen=True)
class SignInResult:
    """Whether Entra ID issued a token for an application with a given secret, and if not, its verdict."""

    ok: bool
    code: str | None = None  # AADSTS7000215, AADSTS7000222, AADSTS700016, ...
    message: str | None = None


class Status(StrEnum):
    ACCEPTED = "Accepted"
    RUNNING = "Running"
    WAITING = "Waiting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    PLANNED = "Planned"

    @property
    def terminal(self) -> bool:
        return self in (Status.SUCCEEDED, Status.FAILED, Status.PLANNED)


@dataclass(frozen=True)
class ActivityLogEntry:
    """The parts of an Activity Log entry the remediator reads (REST names in comments)."""

    correlation_id: str  # correlationId
    resource_id: str  # resourceId
    operation_name: str  # operationName.value
    event_name: str  # eventName.value: BeginRequest / EndRequest
    status: str  # status.value: Started / Succeeded / Failed
    event_timestamp: datetime | None  # eventTimestamp
    status_message: str | None  # properties.statusMessage, a JSON-encoded string

    @property
    def is_failed_end(self) -> bool:
        return self.event_name == "EndRequest" and self.status == "Failed"


# ------------------------------------------------------------------------------------------ deployments (preflight)

# The tag infra/ puts on the function app (its azd environment's name): how one deployment finds the others.
REMEDIATOR_TAG = "aks-sp-remediator-environment"
# The Event Grid function every deployment subscribes: an event subscription naming it is a remediator's.
EVENT_FUNCTION = "on_resource_failure"
_ROLE_WRITE = "microsoft.authorization/roleassignments/write"


@dataclass(frozen=True)
class Deployer:
    """Who is signed in: a user, or a service principal (a pipeline), with what it holds in Entra ID."""

    object_id: str
    kind: str  # "user" or "servicePrincipal"
    directory_roles: frozenset[str] = frozenset()  # role template ids, active (PIM-eligible ones are not)
    graph_permissions: frozenset[str] = frozenset()  # Microsoft Graph app role ids (service principals only)


@dataclass(frozen=True)
class DeployedRemediator:
    """Another remediator's function app, as the template left it in Azure."""

    site_id: str
    subscription_id: str
    resource_group: str
    name: str
    environment: str = ""  # its REMEDIATOR_TAG value, if it has one
    settings: Mapping[str, str] | None = None  # its app settings; None: could not be read
    unreadable: str = ""  # why not



@dataclass(frozen=True)
class RoleDefinition:
    role_id: str
    name: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()

    def writes_role_assignments(self) -> bool:
        """Whether the role lets its holder write role assignments (a wildcard counts; NotActions subtract)."""
        def matches(pattern: str) -> bool:
            regex = "^" + ".*".join(re.escape(part) for part in pattern.lower().split("*")) + "$"
            return re.match(regex, _ROLE_WRITE) is not None
        return any(matches(a) for a in self.actions) and not any(matches(n) for n in self.not_actions)

"""The remediator's own small types. Adapters return these, never SDK models."""

from __future__ import annotations

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

    @property
    def uses_managed_identity(self) -> bool:
        return self.client_id.lower() == MSI_CLIENT_ID

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
class OperationStatus:
    """An ARM long-running operation as its `Azure-AsyncOperation` URL reports it."""

    status: str  # InProgress | Succeeded | Failed | Canceled
    error: str | None = None

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

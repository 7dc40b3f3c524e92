"""One small protocol per outside system, named with Azure's verbs.

Each returns the remediator's own types (remediation.model), never SDK models, and
raises only remediation.errors. The production adapters are in remediation/adapters/;
tests/support/fakes.py holds stateful fakes of the same protocols.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from remediation.ids import ClusterId
from remediation.model import (
    ActivityLogEntry,
    Application,
    ClusterInfo,
    Credential,
    DeletedPrincipal,
    DeployedRemediator,
    Deployer,
    ManagedIdentity,
    NewPassword,
    OperationStarted,
    OperationStatus,
    RoleAssignment,
    RoleDefinition,
    SecretText,
    ServicePrincipal,
    SignInResult,
    StoredSecretVersion,
)
from remediation.outcomes import OutcomeEvent
from remediation.record import Remediation


class ManagedClusters(Protocol):
    def get_cluster(self, cluster: ClusterId) -> ClusterInfo:
        """Raises NotFoundError if the cluster does not exist."""

    def list_clusters(self, subscription_id: str) -> list[ClusterInfo]:
        """Every managed cluster of the subscription (all pages)."""

    def begin_reset_service_principal_profile(self, cluster: ClusterId, client_id: str, secret: SecretText
                                              ) -> OperationStarted:
        """Start the reset (a long-running operation) and return its status URL and Retry-After, without waiting.

        Raises OperationInProgressError when AKS refuses because an operation is running on the cluster."""

    def begin_reset_aad_profile(self, cluster: ClusterId, *, server_app_id: str, client_app_id: str,
                                tenant_id: str | None, secret: SecretText) -> OperationStarted:
        """Start the legacy Azure AD profile's reset with a new server application secret; its status URL.

        Raises OperationInProgressError as the service principal's reset does."""

    def get_operation(self, status_url: str) -> OperationStatus:
        """The status of a long-running operation, from the URL its start returned."""

    def list_maintenance_configurations(self, cluster: ClusterId) -> dict[str, dict[str, Any]]:
        """The cluster's planned maintenance configurations by name (`default`, `aksManagedAutoUpgradeSchedule`,
        `aksManagedNodeOSUpgradeSchedule`), each its REST `properties`; empty when it has none."""


class ClusterInventory(Protocol):
    def list_clusters(self, subscription_ids: Sequence[str]) -> Iterable[ClusterInfo]:
        """Every managed cluster the remediator may read in the subscriptions, from one Resource Graph query
        (all pages), possibly lazily: page by page as the caller takes the rows. Rows carry what Resource Graph
        projects: no lastModifiedAt, no agent pools."""

    def clusters_using(self, app_id: str, credential: Credential, subscription_ids: Sequence[str]
                       ) -> list[ClusterInfo]:
        """Every cluster of the subscriptions whose `credential` is application `app_id`, from one Resource Graph
        query. InvalidInputError when `app_id` is not a GUID."""


class ManagedIdentities(Protocol):
    """User-assigned managed identities (a cluster's move to managed identity)."""

    def get(self, subscription_id: str, resource_group: str, name: str) -> ManagedIdentity:
        """NotFoundError when the group holds none of that name."""

    def create_or_update(self, subscription_id: str, resource_group: str, name: str, *, location: str,
                         tags: dict[str, str]) -> ManagedIdentity:
        """ARM's PUT: the same name is the same identity (its tags replaced)."""


class IdentityMoves(Protocol):
    """The cluster writes of a move to managed identity (REMEDIATOR_MIGRATE=execute)."""

    def begin_enable_managed_identity(self, cluster: ClusterId, *, control_plane: ManagedIdentity | None,
                                      kubelet: ManagedIdentity | None) -> OperationStarted: ...

    def begin_upgrade_node_image(self, cluster: ClusterId, pool: str) -> OperationStarted: ...


class ResourceGroups(Protocol):
    def get_tags(self, subscription_id: str, resource_group: str) -> dict[str, str]:
        """The resource group's tags; NotFoundError if it does not exist."""


class Directory(Protocol):
    def get_application_by_app_id(self, app_id: str) -> Application:
        """Raises NotFoundError if no application has this appId."""

    def get_applications_by_app_ids(self, app_ids: Iterable[str]) -> dict[str, Application | None]:
        """Many applications with their passwords (not their owners), by lower-case appId, None for one Graph does
        not have: Graph JSON batching, 20 per call. An appId Graph kept throttling past the retries is left out of
        the answer: unread, which is not the same as missing. `app_ids` may be lazy (ids as a listing's pages
        arrive): every one is taken, and reads may start before the last arrives."""

    def add_password(self, object_id: str, display_name: str, end: datetime) -> NewPassword: ...

    def remove_password(self, object_id: str, key_id: str) -> None:
        """Idempotent: removing a password that is already gone succeeds."""

    def find_deleted_service_principal(self, app_id: str) -> DeletedPrincipal | None:
        """The application's service principal in Entra ID's deleted items, if it is there (deleted < 30 days)."""

    def create_application(self, display_name: str, *, notes: str) -> Application:
        """A new application, owned by the caller (Application.ReadWrite.OwnedBy). Not idempotent: never retried by
        the adapter; after an error the caller looks for it (by the nonce in its notes) before creating again."""

    def list_owned_applications(self, owner_id: str) -> list[Application]:
        """Every application the service principal `owner_id` owns, with its notes, passwords, certificate count
        and owners. Graph promises no order."""

    def count_federated_credentials(self, object_id: str) -> int:
        """The application's federated identity credentials: a way to sign in as it without a password."""

    def get_service_principal(self, app_id: str) -> ServicePrincipal | None:
        """The application's service principal, with its owners and own credentials; None if it has none."""

    def create_service_principal(self, app_id: str) -> str:
        """Create the application's service principal; its object id. Not idempotent: never retried."""


class RoleAssignments(Protocol):
    def list_for_principal(self, subscription_id: str, principal_id: str) -> list[RoleAssignment]:
        """The principal's role assignments at, above or below the subscription (all pages)."""

    def create(self, scope: str, role_definition_id: str, principal_id: str, *, name: str) -> RoleAssignment:
        """Assign the role (principalType ServicePrincipal). Idempotent: an equal assignment counts as made.

        Raises PrincipalNotReplicatedError while ARM does not see the new principal yet, and PermanentError
        (code AuthorizationFailed) when the remediator may not assign the role (its condition)."""


class SignIn(Protocol):
    def sign_in(self, app_id: str, secret: SecretText) -> SignInResult:
        """Ask Entra ID for a token as `app_id` with `secret`: ok, or Entra ID's verdict (AADSTS code).

        Raises TransientError when Entra ID gives no verdict (unreachable, throttled)."""


class SecretStore(Protocol):
    def set_secret(self, name: str, value: SecretText, *, tags: dict[str, str], content_type: str,
                   expires: datetime) -> StoredSecretVersion: ...

    def get_secret(self, name: str, version: str) -> SecretText: ...

    def list_versions(self, name: str) -> list[StoredSecretVersion]:
        """Every version of the secret, without values; empty if the secret does not exist."""


class RemediationStore(Protocol):
    def create(self, remediation: Remediation) -> Remediation:
        """Insert if absent; raises ConflictError if a remediation with this id exists."""

    def get(self, remediation_id: str) -> Remediation:
        """Raises NotFoundError."""

    def save(self, remediation: Remediation) -> Remediation:
        """Replace if unchanged since read (ETag); raises ConcurrencyError if another writer won."""

    def list_for_cluster(self, cluster_key: str, *, limit: int) -> list[Remediation]:
        """The cluster's remediations, newest first."""

    def list_active(self, *, limit: int) -> list[Remediation]:
        """Remediations that have not finished, oldest update first."""

    def list_for_application(self, app_id: str, *, limit: int) -> list[Remediation]:
        """The application's remediations (rotations), newest first."""

    def list_recent(self, *, limit: int) -> list[Remediation]:
        """The fleet's remediations, newest first."""

    def create_claimed(self, remediation: Remediation, claim_key: str, *, replacing: str | None = None) -> bool:
        """Record the remediation and the claim naming it in one atomic write (a new claim, or, with `replacing`, the
        one read with that ETag); False, writing nothing, if the claim exists or changed. ConflictError if the record
        exists."""

    def get_claim(self, claim_key: str) -> tuple[str, str] | None:
        """The claiming remediation's id and the claim's ETag, or None."""

    def list_claims(self, *, limit: int) -> list[tuple[str, str]]:
        """(claim key, remediation id) of every claim."""

    def delete_claim(self, claim_key: str, remediation_id: str) -> None:
        """Release the claim if (and only if) this remediation holds it."""


class WorkQueue(Protocol):
    def send(self, message: dict[str, Any], *, delay_seconds: float = 0) -> None: ...


class ActivityLog(Protocol):
    def list_cluster_failures(self, subscription_id: str, *, since: datetime, until: datetime,
                              correlation_id: str | None = None) -> list[ActivityLogEntry]:
        """Failed EndRequest entries about managed clusters (and their agent pools) in the window."""


class IncidentStore(Protocol):
    def record_incident(self, incident_key: str, fields: dict[str, Any]) -> bool:
        """Record that an incident is being acted on; False if it was recorded before (insert-if-absent)."""

    def get_incident(self, incident_key: str) -> dict[str, Any] | None: ...

    def record_decision(self, fields: dict[str, Any]) -> None:
        """Append one decision (reason code, message, cluster, source, ids) to the decision log."""

    def list_decisions(self, *, cluster_key: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Decisions, newest first; only one cluster's if `cluster_key` is given."""

    def reserve_reset(self, now: datetime, *, cap: int, window_seconds: float) -> datetime | None:
        """Take one of the fleet's `cap` reset slots in the window ending now: None if taken, else when one frees.

        Exact under concurrency (an ETag-guarded ledger), so the cap holds across workers."""

    def get_checkpoint(self, subscription_id: str) -> datetime | None: ...

    def set_checkpoint(self, subscription_id: str, at: datetime) -> None: ...

    def open_lookup(self, cluster_key: str, fields: dict[str, Any]) -> bool:
        """Record the cluster's pending lookup if it has none (insert-if-absent, exact across workers); False if it
        has one."""

    def get_lookup(self, cluster_key: str) -> tuple[dict[str, Any], str] | None:
        """The cluster's pending lookup and its ETag; None if it has none."""

    def replace_lookup(self, cluster_key: str, fields: dict[str, Any], etag: str) -> bool:
        """Replace the pending lookup if nobody changed it since it was read with `etag`; False if changed or gone."""

    def close_lookup(self, cluster_key: str, etag: str) -> bool:
        """Delete the pending lookup if nobody changed it since it was read with `etag` (True also if it is gone);
        False if it changed: a newer failure joined it, or another worker took it over."""


class OutcomePublisher(Protocol):
    def publish(self, events: Sequence[OutcomeEvent]) -> None:
        """Publish these events in one request (all or none). TransientError when worth trying again (429, 5xx, the
        connection), PermanentError otherwise (no permission, a refused event)."""


class DeploymentReader(Protocol):
    """What the preflight reads from Azure, with the deployer's sign-in (remediation/adapters/deployment.py)."""

    def get_cloud_name(self) -> str: ...

    def list_flex_regions(self, subscription_id: str) -> list[str]: ...

    def get_deployer(self) -> Deployer: ...

    def list_remediators(self, subscription_ids: Sequence[str]) -> list[DeployedRemediator]: ...

    def list_app_settings(self, site_id: str) -> dict[str, str]: ...

    def get_role_definition(self, subscription_id: str, role_id: str) -> RoleDefinition | None: ...

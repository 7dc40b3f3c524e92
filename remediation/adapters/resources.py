"""Resource groups' tags through azure-mgmt-resource, for the opt-out tag on a cluster's group; a cluster as ARM's
REST API returns it, for the plan of a move to managed identity (remediation/decide/migration.py); and the user-assigned
managed identities such a move creates, through azure-mgmt-msi.

Permissions: `Microsoft.Resources/subscriptions/resourceGroups/read` on each managed subscription;
`Microsoft.ContainerService/managedClusters/read` for a cluster's document. Only with REMEDIATOR_MIGRATE=execute, on
the resource group given for them: `Microsoft.ManagedIdentity/userAssignedIdentities/read` and `/write`.
`create_or_update` is ARM's PUT: the same name in the same group is the same identity (200 with it, its tags
replaced), which is what makes the migration's create step idempotent after a crash.
"""

from __future__ import annotations

from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.msi.models import Identity
from azure.mgmt.resource.resources import ResourceManagementClient

from remediation.adapters.azure_errors import translate
from remediation.adapters.clients import SDK_RETRY, PerSubscription, RetrySettings, arm_options
from remediation.ids import ClusterId
from remediation.model import ManagedIdentity


class ArmResourceGroups:
    def __init__(self, credential: TokenCredential, *, endpoint: str, connection_verify: str | bool = True,
                 retry: RetrySettings = SDK_RETRY) -> None:
        options = arm_options(endpoint, connection_verify=connection_verify, retry=retry)
        self._client = PerSubscription(lambda sub: ResourceManagementClient(credential, sub, **options))

    def get_tags(self, subscription_id: str, resource_group: str) -> dict[str, str]:
        try:
            group = self._client(subscription_id).resource_groups.get(resource_group)
        except AzureError as err:
            raise translate(err, f"reading resource group {resource_group}") from err
        return dict(group.tags or {})


class ArmClusterDocuments:
    """A managed cluster's whole body, for a plan that parses it itself (`ClusterShape.from_arm`)."""

    def __init__(self, credential: TokenCredential, *, endpoint: str, connection_verify: str | bool = True,
                 retry: RetrySettings = SDK_RETRY) -> None:
        options = arm_options(endpoint, connection_verify=connection_verify, retry=retry)
        self._client = PerSubscription(lambda sub: ContainerServiceClient(credential, sub, **options))

    def get_cluster_document(self, cluster: ClusterId) -> dict[str, Any]:
        """The cluster's REST body (the SDK model's `as_dict()`, keyed as the REST API is: ids, agent pools'
        vnetSubnetID, apiServerAccessProfile, identity, identityProfile). Raises NotFoundError for ARM's 404."""
        try:
            found = self._client(cluster.subscription_id).managed_clusters.get(cluster.resource_group, cluster.name)
        except AzureError as err:
            raise translate(err, f"reading cluster {cluster.name}") from err
        return dict(found.as_dict())


class ArmManagedIdentities:
    def __init__(self, credential: TokenCredential, *, endpoint: str, connection_verify: str | bool = True,
                 retry: RetrySettings = SDK_RETRY) -> None:
        options = arm_options(endpoint, connection_verify=connection_verify, retry=retry)
        self._client = PerSubscription(lambda sub: ManagedServiceIdentityClient(credential, sub, **options))

    def get(self, subscription_id: str, resource_group: str, name: str) -> ManagedIdentity:
        """The identity; NotFoundError when the group holds none of that name."""
        try:
            found = self._client(subscription_id).user_assigned_identities.get(resource_group, name)
        except AzureError as err:
            raise translate(err, f"reading managed identity {name}") from err
        return _identity(found)

    def create_or_update(self, subscription_id: str, resource_group: str, name: str, *, location: str,
                         tags: dict[str, str]) -> ManagedIdentity:
        try:
            made = self._client(subscription_id).user_assigned_identities.create_or_update(
                resource_group, name, Identity(location=location, tags=tags))
        except AzureError as err:
            raise translate(err, f"creating managed identity {name}") from err
        return _identity(made)


def _identity(found: Any) -> ManagedIdentity:
    return ManagedIdentity(id=found.id or "", principal_id=str(found.principal_id or ""),
                           client_id=str(found.client_id or ""), tags=dict(found.tags or {}))

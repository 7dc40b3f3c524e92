"""Resource groups' tags through azure-mgmt-resource, for the opt-out tag on a cluster's group; and a cluster as
ARM's REST API returns it, for the plan of a move to managed identity (remediation/decide/migration.py).

Permissions: `Microsoft.Resources/subscriptions/resourceGroups/read` on each managed subscription;
`Microsoft.ContainerService/managedClusters/read` for a cluster's document. Reads only.
"""

from __future__ import annotations

from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.resource.resources import ResourceManagementClient

from remediation.adapters.azure_errors import translate
from remediation.adapters.clients import SDK_RETRY, PerSubscription, RetrySettings, arm_options
from remediation.ids import ClusterId


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

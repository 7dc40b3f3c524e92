"""Managed clusters through azure-mgmt-containerservice.

Permissions: `Microsoft.ContainerService/managedClusters/read` (get, list),
`Microsoft.ContainerService/managedClusters/resetServicePrincipalProfile/action` (reset),
`Microsoft.ContainerService/managedClusters/resetAADProfile/action` (the legacy Azure AD
integration's reset), and `Microsoft.ContainerService/locations/operations/read` (status URLs).
Only with REMEDIATOR_MIGRATE=execute: `managedClusters/write` (the switch to managed identity),
`managedClusters/agentPools/upgradeNodeImageVersion/action` (the kubelet's new identity), and
`Microsoft.ManagedIdentity/userAssignedIdentities/assign/action` on the identities the switch names.
"""

from __future__ import annotations

import logging
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.core.rest import HttpRequest
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.containerservice.models import (
    ManagedClusterAADProfile,
    ManagedClusterIdentity,
    ManagedClusterServicePrincipalProfile,
    ManagedServiceIdentityUserAssignedIdentitiesValue,
    UserAssignedIdentity,
)

from remediation.adapters.azure_errors import translate
from remediation.adapters.clients import SDK_RETRY, PerSubscription, RetrySettings, arm_options
from remediation.errors import PermanentError, TransientError
from remediation.ids import ClusterId
from remediation.model import MSI_CLIENT_ID, ClusterInfo, ManagedIdentity, OperationStarted, OperationStatus, SecretText

log = logging.getLogger(__name__)


class AksManagedClusters:
    def __init__(self, credential: TokenCredential, *, endpoint: str, connection_verify: str | bool = True,
                 polling_interval: float | None = None, retry: RetrySettings = SDK_RETRY) -> None:
        self._endpoint = endpoint
        options = arm_options(endpoint, connection_verify=connection_verify, retry=retry)
        if polling_interval is not None:
            options["polling_interval"] = polling_interval
        self._client = PerSubscription(lambda sub: ContainerServiceClient(credential, sub, **options))

    def get_cluster(self, cluster: ClusterId) -> ClusterInfo:
        try:
            found = self._client(cluster.subscription_id).managed_clusters.get(cluster.resource_group, cluster.name)
        except AzureError as err:
            raise translate(err, f"reading cluster {cluster.name}") from err
        return _info(found, str(cluster))

    def list_clusters(self, subscription_id: str) -> list[ClusterInfo]:
        """Every cluster of the subscription; the SDK follows ARM's nextLink pages."""
        try:
            return [_info(found, found.id or "") for found in self._client(subscription_id).managed_clusters.list()]
        except AzureError as err:
            raise translate(err, f"listing the clusters of subscription {subscription_id}") from err

    def list_maintenance_configurations(self, cluster: ClusterId) -> dict[str, dict[str, Any]]:
        """The cluster's planned maintenance configurations by name, each as ARM's REST `properties` (camelCase),
        which remediation/decide/maintenance.py reads. Needs managedClusters/maintenanceConfigurations/read."""
        try:
            found = self._client(cluster.subscription_id).maintenance_configurations.list_by_managed_cluster(
                cluster.resource_group, cluster.name)
            return {config.name: config.as_dict().get("properties", {}) for config in found if config.name}
        except AzureError as err:
            raise translate(err, f"reading the maintenance configurations of cluster {cluster.name}") from err

    def begin_reset_service_principal_profile(self, cluster: ClusterId, client_id: str, secret: SecretText
                                              ) -> OperationStarted:
        """POST the reset and return its `Azure-AsyncOperation` URL (or `Location`) and `Retry-After` at once.

        Polling is off: the caller saves the URL before anything waits on it, so a crash never
        loses track of a reset that started. The SDK's continuation token is not used for that,
        because it pickles the initial request, whose body holds the secret.
        """
        profile = ManagedClusterServicePrincipalProfile(client_id=client_id, secret=secret.reveal())
        return self._begin(cluster, "reset", lambda client, **kw: client.managed_clusters
                           .begin_reset_service_principal_profile(cluster.resource_group, cluster.name, profile, **kw))

    def begin_reset_aad_profile(self, cluster: ClusterId, *, server_app_id: str, client_app_id: str,
                                tenant_id: str | None, secret: SecretText) -> OperationStarted:
        """POST resetAADProfile with the server application's new secret, as `az aks update-credentials
        --reset-aad` does (client and server app ids, tenant), and return its status URL at once."""
        profile = ManagedClusterAADProfile(client_app_id=client_app_id, server_app_id=server_app_id,
                                           server_app_secret=secret.reveal(), tenant_id=tenant_id)
        return self._begin(cluster, "AAD profile reset", lambda client, **kw: client.managed_clusters
                           .begin_reset_aad_profile(cluster.resource_group, cluster.name, profile, **kw))

    def begin_enable_managed_identity(self, cluster: ClusterId, *, control_plane: ManagedIdentity | None,
                                      kubelet: ManagedIdentity | None) -> OperationStarted:
        """Switch the cluster from its service principal to managed identity as `az aks update
        --enable-managed-identity [--assign-identity ID] [--assign-kubelet-identity ID]` does: the cluster as ARM
        holds it, with `identity` (user-assigned `control_plane`, else system-assigned), the service principal's
        client id "msi" and, if given, the kubelet identity; PUT, its status URL returned at once."""
        client = self._client(cluster.subscription_id)
        try:
            model = client.managed_clusters.get(cluster.resource_group, cluster.name)
        except AzureError as err:
            raise translate(err, f"reading cluster {cluster.name}") from err
        model.identity = (ManagedClusterIdentity(type="UserAssigned", user_assigned_identities={
            control_plane.id: ManagedServiceIdentityUserAssignedIdentitiesValue()}) if control_plane
            else ManagedClusterIdentity(type="SystemAssigned"))
        model.service_principal_profile = ManagedClusterServicePrincipalProfile(client_id=MSI_CLIENT_ID)
        if kubelet is not None:
            model.identity_profile = {"kubeletidentity": UserAssignedIdentity(
                resource_id=kubelet.id, client_id=kubelet.client_id, object_id=kubelet.principal_id)}
        return self._begin(cluster, "switch to managed identity", lambda c, **kw: c.managed_clusters
                           .begin_create_or_update(cluster.resource_group, cluster.name, model, **kw))

    def begin_upgrade_node_image(self, cluster: ClusterId, pool: str) -> OperationStarted:
        """Upgrade the pool's node images (the kubelet takes the cluster's kubelet identity only then); status URL."""
        return self._begin(cluster, f"node-image upgrade of pool {pool}", lambda c, **kw: c.agent_pools
                           .begin_upgrade_node_image_version(cluster.resource_group, cluster.name, pool, **kw))

    def _begin(self, cluster: ClusterId, what: str, start: Any) -> OperationStarted:
        try:
            poller = start(self._client(cluster.subscription_id), polling=False,
                           cls=lambda response, _deserialized, _headers: response.http_response.headers)
            headers = poller.result()
        except AzureError as err:
            raise translate(err, f"starting the {what} of {cluster.name}") from err
        url = headers.get("Azure-AsyncOperation") or headers.get("Location")
        if not url:
            raise PermanentError(f"the {what} of {cluster.name} started without a status URL", code="NoOperationUrl")
        return OperationStarted(url, _seconds(headers.get("Retry-After")))

    def get_operation(self, status_url: str) -> OperationStatus:
        """GET the operation's status through the client's own pipeline (its token, retries and Retry-After)."""
        if not status_url.lower().startswith(self._endpoint.rstrip("/").lower() + "/"):
            # The URL came back from ARM and was stored; never send the token anywhere else.
            raise PermanentError("the operation URL is not on the Resource Manager endpoint",
                                 code="InvalidOperationUrl")
        subscription = status_url.split("/subscriptions/", 1)[-1].split("/", 1)[0]
        try:
            response = self._client(subscription).send_request(HttpRequest("GET", status_url))
            response.raise_for_status()
            body = response.json()
        except AzureError as err:
            raise translate(err, "reading the reset's status") from err
        except ValueError as err:
            raise TransientError(f"the reset's status was not JSON: {err}") from err
        error = body.get("error") or {}
        message = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ") if error else None
        return OperationStatus(status=str(body.get("status") or "InProgress"), error=message,
                               retry_after=_seconds(response.headers.get("Retry-After")))


def _seconds(retry_after: str | None) -> float | None:
    """ARM's `Retry-After` in seconds (it sends a number); None when absent, not a positive number, or a date."""
    try:
        seconds = float(retry_after or "")
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def _info(found: Any, fallback_id: str) -> ClusterInfo:
    profile = found.service_principal_profile
    aad = found.aad_profile
    legacy_aad = aad is not None and not aad.managed and bool(aad.server_app_id)
    return ClusterInfo(
        id=found.id or fallback_id, name=found.name or "", location=found.location or "",
        client_id=(profile.client_id if profile else None) or "msi",
        provisioning_state=found.provisioning_state or "Unknown",
        last_modified_at=found.system_data.last_modified_at if found.system_data else None,
        tags=dict(found.tags or {}),
        aad_server_app_id=aad.server_app_id if legacy_aad else None,
        aad_client_app_id=aad.client_app_id if legacy_aad else None,
        aad_tenant_id=aad.tenant_id if legacy_aad else None,
    )

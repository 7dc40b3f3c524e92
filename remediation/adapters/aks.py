"""Managed clusters through azure-mgmt-containerservice.

Permissions: `Microsoft.ContainerService/managedClusters/read` (get) and
`Microsoft.ContainerService/managedClusters/resetServicePrincipalProfile/action` (reset).
"""

from __future__ import annotations

import logging
import threading

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.containerservice.models import ManagedClusterServicePrincipalProfile

from remediation.adapters.azure_errors import translate
from remediation.ids import ClusterId
from remediation.model import ClusterInfo, ResetResult, SecretText

log = logging.getLogger(__name__)


class AksManagedClusters:
    def __init__(self, credential: TokenCredential, *, endpoint: str, connection_verify: str | bool = True,
                 polling_interval: float | None = None) -> None:
        self._credential = credential
        self._endpoint = endpoint
        self._verify = connection_verify
        self._polling_interval = polling_interval
        self._clients: dict[str, ContainerServiceClient] = {}
        self._lock = threading.Lock()

    def _client(self, subscription_id: str) -> ContainerServiceClient:
        with self._lock:
            if subscription_id not in self._clients:
                options = {} if self._polling_interval is None else {"polling_interval": self._polling_interval}
                # The SDK defaults to the public cloud's audience; each cloud's ARM is its own.
                self._clients[subscription_id] = ContainerServiceClient(
                    self._credential, subscription_id, base_url=self._endpoint,
                    credential_scopes=[f"{self._endpoint.rstrip('/')}/.default"],
                    connection_verify=self._verify, **options)
            return self._clients[subscription_id]

    def get_cluster(self, cluster: ClusterId) -> ClusterInfo:
        try:
            found = self._client(cluster.subscription_id).managed_clusters.get(cluster.resource_group, cluster.name)
        except AzureError as err:
            raise translate(err, f"reading cluster {cluster.name}") from err
        profile = found.service_principal_profile
        return ClusterInfo(
            id=found.id or str(cluster), name=found.name or cluster.name, location=found.location or "",
            client_id=(profile.client_id if profile else None) or "msi",
            provisioning_state=found.provisioning_state or "Unknown",
        )

    def begin_reset_service_principal_profile(self, cluster: ClusterId, client_id: str, secret: SecretText, *,
                                              wait_seconds: float) -> ResetResult:
        """Start the reset (a long-running operation) and wait at most `wait_seconds` for it.

        Raises for a refused start; a reset that starts and then fails is a ResetResult.
        """
        profile = ManagedClusterServicePrincipalProfile(client_id=client_id, secret=secret.reveal())
        try:
            poller = self._client(cluster.subscription_id).managed_clusters.begin_reset_service_principal_profile(
                cluster.resource_group, cluster.name, profile)
        except AzureError as err:
            raise translate(err, f"starting the reset of {cluster.name}") from err
        try:
            # wait() re-raises the polling thread's error: an operation that ended Failed.
            poller.wait(timeout=wait_seconds)
            if not poller.done():
                log.info("reset of %s still running after %ss", cluster.name, wait_seconds)
                return ResetResult(finished=False)
            poller.result()
        except AzureError as err:
            return ResetResult(finished=True, succeeded=False, error=str(translate(err, "the reset failed")))
        return ResetResult(finished=True, succeeded=True)


"""Resource groups' tags through azure-mgmt-resource, for the opt-out tag on a cluster's group.

Permission: `Microsoft.Resources/subscriptions/resourceGroups/read` on each managed subscription.
"""

from __future__ import annotations

import threading

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.mgmt.resource.resources import ResourceManagementClient

from remediation.adapters.azure_errors import translate


class ArmResourceGroups:
    def __init__(self, credential: TokenCredential, *, endpoint: str, connection_verify: str | bool = True) -> None:
        self._credential = credential
        self._endpoint = endpoint
        self._verify = connection_verify
        self._clients: dict[str, ResourceManagementClient] = {}
        self._lock = threading.Lock()

    def _client(self, subscription_id: str) -> ResourceManagementClient:
        with self._lock:
            if subscription_id not in self._clients:
                # The SDK defaults to the public cloud's audience; each cloud's ARM is its own.
                self._clients[subscription_id] = ResourceManagementClient(
                    self._credential, subscription_id, base_url=self._endpoint,
                    credential_scopes=[f"{self._endpoint.rstrip('/')}/.default"], connection_verify=self._verify)
            return self._clients[subscription_id]

    def get_tags(self, subscription_id: str, resource_group: str) -> dict[str, str]:
        try:
            group = self._client(subscription_id).resource_groups.get(resource_group)
        except AzureError as err:
            raise translate(err, f"reading resource group {resource_group}") from err
        return dict(group.tags or {})

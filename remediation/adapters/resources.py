"""Resource groups' tags through azure-mgmt-resource, for the opt-out tag on a cluster's group.

Permission: `Microsoft.Resources/subscriptions/resourceGroups/read` on each managed subscription.
"""

from __future__ import annotations

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.mgmt.resource.resources import ResourceManagementClient

from remediation.adapters.azure_errors import translate
from remediation.adapters.clients import SDK_RETRY, PerSubscription, RetrySettings, arm_options


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

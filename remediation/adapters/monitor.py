"""The Activity Log through azure-mgmt-monitor.

Permission: `Microsoft.Insights/eventtypes/values/read` on each swept subscription.
"""

from __future__ import annotations

from datetime import datetime

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.mgmt.monitor import MonitorManagementClient

from remediation.adapters.azure_errors import translate
from remediation.adapters.clients import SDK_RETRY, PerSubscription, RetrySettings, arm_options
from remediation.adapters.odata import literal
from remediation.model import ActivityLogEntry

CLUSTER_OPERATION_PREFIX = "microsoft.containerservice/managedclusters"
SELECT = "correlationId,eventName,eventTimestamp,operationName,properties,resourceId,status"


class MonitorActivityLog:
    def __init__(self, credential: TokenCredential, *, endpoint: str, connection_verify: str | bool = True,
                 retry: RetrySettings = SDK_RETRY) -> None:
        options = arm_options(endpoint, connection_verify=connection_verify, retry=retry)
        self._client = PerSubscription(lambda sub: MonitorManagementClient(credential, sub, **options))

    def list_cluster_failures(self, subscription_id: str, *, since: datetime, until: datetime,
                              correlation_id: str | None = None) -> list[ActivityLogEntry]:
        # The API allows one narrowing term besides the time range (its documented patterns), so
        # status and operation are filtered here.
        narrowing = (f"correlationId eq {literal(correlation_id)}" if correlation_id
                     else f"resourceProvider eq {literal('Microsoft.ContainerService')}")
        query = (f"eventTimestamp ge {literal(_iso(since))} and eventTimestamp le {literal(_iso(until))}"
                 f" and {narrowing}")
        try:
            entries = [
                ActivityLogEntry(
                    correlation_id=e.correlation_id or "", resource_id=e.resource_id or "",
                    operation_name=(e.operation_name.value if e.operation_name else "") or "",
                    event_name=(e.event_name.value if e.event_name else "") or "",
                    status=(e.status.value if e.status else "") or "",
                    event_timestamp=e.event_timestamp, status_message=(e.properties or {}).get("statusMessage"))
                for e in self._client(subscription_id).activity_logs.list(filter=query, select=SELECT)
            ]
        except AzureError as err:
            raise translate(err, f"reading the Activity Log of {subscription_id}") from err
        return [e for e in entries if e.is_failed_end and e.operation_name.lower().startswith(CLUSTER_OPERATION_PREFIX)]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")

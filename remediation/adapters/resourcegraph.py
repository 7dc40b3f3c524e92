"""Every managed cluster of many subscriptions from one Azure Resource Graph query, through
azure-mgmt-resourcegraph.

Permission: `Microsoft.ContainerService/managedClusters/read` in each subscription (Resource Graph
shows only what the caller may read; the remediator's custom role grants it). One query answers
for up to 1,000 subscriptions in pages of up to 1,000 rows, continued with `$skipToken`: a fleet of
N clusters costs ceil(N / 1,000) calls where listing it through ARM costs one call per subscription
and page.

Throttling: Resource Graph allows a user about 15 queries per 5-second window and says what is left
in `x-ms-user-quota-remaining` / `x-ms-user-quota-resets-after` on every answer. The adapter waits
out the window before the next page when nothing is left, rather than spending a request on a 429;
a 429 that comes anyway is retried by azure-core's retry policy after its `Retry-After`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from remediation.adapters.azure_errors import translate
from remediation.adapters.clients import SDK_RETRY, RetrySettings, arm_options
from remediation.errors import InvalidInputError
from remediation.ids import is_guid
from remediation.model import ClusterInfo, Credential

log = logging.getLogger(__name__)

PAGE_ROWS = 1000  # Resource Graph's most rows per page
SUBSCRIPTIONS_PER_QUERY = 1000  # and most subscriptions per query
# One line per column the remediator reads; `properties.*` paths are the managed cluster's REST properties.
PROJECTION = """| project id, name, location, resourceGroup, subscriptionId, tags,
    clientId = properties.servicePrincipalProfile.clientId,
    aadServerAppId = properties.aadProfile.serverAppID,
    aadManaged = properties.aadProfile.managed,
    provisioningState = properties.provisioningState,
    identityType = identity.type
| order by id asc"""
CLUSTERS_QUERY = f"""Resources
| where type =~ 'microsoft.containerservice/managedclusters'
{PROJECTION}"""
# The clusters that hold one application's secret: a fan-out's targets across every managed subscription in one
# query (listing them through ARM costs a call per subscription and page). The application id is a GUID, checked
# before it is put in the query (remediation/ids.py `is_guid`), so nothing a caller chose reaches KQL as syntax.
CLUSTERS_USING_QUERY = """Resources
| where type =~ 'microsoft.containerservice/managedclusters' and {path} =~ '{app_id}'
""" + PROJECTION
APPLICATION_PATHS = {Credential.SERVICE_PRINCIPAL: "properties.servicePrincipalProfile.clientId",
                     Credential.AAD_SERVER: "properties.aadProfile.serverAppID"}


class ResourceGraphClusters:
    def __init__(self, credential: TokenCredential, *, endpoint: str, connection_verify: str | bool = True,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 retry: RetrySettings = SDK_RETRY) -> None:
        self._client = ResourceGraphClient(credential, **arm_options(endpoint, connection_verify=connection_verify,
                                                                     retry=retry))
        self._sleep, self._clock = sleep, clock
        self._window: tuple[int, float] | None = None  # this quota window's queries left, and when it ends at latest
        self.calls = 0  # queries sent, pages included (the benchmark reads it)

    def list_clusters(self, subscription_ids: Sequence[str]) -> Iterator[ClusterInfo]:
        """Every managed cluster the remediator may read in the subscriptions, ordered by id, lazily as Azure's
        `list_*` methods are: each page is asked for when the rows before it have been taken, so a caller can work
        on the first page (and through a quota wait) while the next ones come."""
        return (_cluster(row) for row in self._rows(CLUSTERS_QUERY, subscription_ids))

    def clusters_using(self, app_id: str, credential: Credential, subscription_ids: Sequence[str]
                       ) -> list[ClusterInfo]:
        """Every cluster in the subscriptions whose `credential` is application `app_id`, from one query (all pages).
        Resource Graph lags ARM (95% of changes within 30 s, no upper bound: Azure/azure-dev#540), so a caller about
        to write reads each cluster again through ARM first."""
        if not is_guid(app_id):
            raise InvalidInputError(f"not an application id: {app_id[:60]!r}")
        query = CLUSTERS_USING_QUERY.format(path=APPLICATION_PATHS[credential], app_id=app_id.lower())
        return [info for info in map(_cluster, self._rows(query, subscription_ids))
                if info.app_id_for(credential) == app_id.lower()]

    def query(self, query: str, subscription_ids: Sequence[str] | None) -> list[dict[str, Any]]:
        """Every row of `query` (all pages) in the subscriptions; none given: every one the caller may read."""
        return list(self._rows(query, subscription_ids))

    def _rows(self, query: str, subscription_ids: Sequence[str] | None) -> Iterator[dict[str, Any]]:
        subscriptions = list(dict.fromkeys(s.lower() for s in subscription_ids or ()))
        if not subscriptions:  # no scope set: every subscription the caller may read (the tenant's)
            yield from self._pages(query, None)
            return
        for start in range(0, len(subscriptions), SUBSCRIPTIONS_PER_QUERY):
            yield from self._pages(query, subscriptions[start:start + SUBSCRIPTIONS_PER_QUERY])

    def _pages(self, query: str, subscriptions: list[str] | None) -> Iterator[dict[str, Any]]:
        skip_token: str | None = None
        while True:
            request = QueryRequest(subscriptions=subscriptions, query=query, options=QueryRequestOptions(
                top=PAGE_ROWS, skip_token=skip_token, result_format="objectArray"))
            headers: dict[str, str] = {}
            try:
                page = self._client.resources(request, cls=_keep_headers(headers))
            except AzureError as err:
                raise translate(err, f"querying Resource Graph over"
                                     f" {len(subscriptions) if subscriptions else 'every'} subscription(s)") from err
            self.calls += 1
            yield from page.data or ()
            skip_token = page.skip_token
            if not skip_token:
                return
            self._respect_quota(headers)

    def _respect_quota(self, headers: dict[str, str]) -> None:
        remaining, resets = headers.get("x-ms-user-quota-remaining"), headers.get("x-ms-user-quota-resets-after")
        if remaining is None or resets is None or not remaining.isdigit():
            return
        # The header counts whole seconds, rounded up: an answer's receipt plus it is never before the window's end,
        # and the earliest answer of a window bounds it tightest (up to 1 s sooner than the last answer's figure).
        left, now = int(remaining), self._clock()
        ends = now + _hms_seconds(resets)
        if self._window is None or left >= self._window[0]:  # the first answer of a new window
            self._window = (left, ends)
        else:
            self._window = (left, min(self._window[1], ends))
        if left > 0:
            return
        wait = max(self._window[1] - now, 0.0)
        log.info("Resource Graph quota used up: waiting %.1f s for the next page", wait)
        self._sleep(wait)
        self._window = None


def _keep_headers(into: dict[str, str]) -> Callable[[Any, Any, Any], Any]:
    def keep(pipeline_response: Any, deserialized: Any, response_headers: Any) -> Any:
        into.update({k.lower(): v for k, v in pipeline_response.http_response.headers.items()})
        return deserialized
    return keep


def _hms_seconds(text: str) -> float:
    """`hh:mm:ss` (Resource Graph's `x-ms-user-quota-resets-after`) as seconds; 1 s when unreadable."""
    try:
        hours, minutes, seconds = text.split(":")
        return min(max(int(hours) * 3600 + int(minutes) * 60 + float(seconds), 0.0), 300.0)
    except ValueError:
        return 1.0


def _cluster(row: dict[str, Any]) -> ClusterInfo:
    legacy_aad = bool(row.get("aadServerAppId")) and not row.get("aadManaged")
    return ClusterInfo(
        id=row["id"], name=row.get("name") or "", location=row.get("location") or "",
        # A managed-identity cluster's profile says "msi" (or has no profile at all).
        client_id=row.get("clientId") or "msi", provisioning_state=row.get("provisioningState") or "Unknown",
        tags=dict(row.get("tags") or {}), aad_server_app_id=row["aadServerAppId"] if legacy_aad else None)

"""The peer baseline for the fleet health scan: the script a competent engineer writes with the SDKs' typed clients.

Clusters are listed per subscription with azure-mgmt-containerservice (`ManagedClusters.list`, following nextLink),
then every service-principal cluster's application is read with msgraph-sdk's typed client
(`applications(appId='…')` with `$select`), 8 threads at once, each thread with its own event loop and client (the
async client is bound to one loop). Each cluster is judged as the report does: managed identity, application
missing, expired (every password ended), expiring within 30 days, healthy.

    python benchmarks/peer_scan.py '{"tenant": …, "client": …, "secret": …, "login": …, "arm": …, "graph": …,
                                     "ca": …, "subscriptions": [...]}'

prints one JSON line: seconds (from the first request, clients built), CPU seconds, clusters, applications, counts.
benchmarks/fleet_health.py runs it in a fresh process against the same sandbox fleet as the remediator's scan.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from azure.identity import ClientSecretCredential
from azure.mgmt.containerservice import ContainerServiceClient
from kiota_abstractions.api_error import APIError
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.applications_with_app_id.applications_with_app_id_request_builder import (
    ApplicationsWithAppIdRequestBuilder,
)
from msgraph_core import GraphClientFactory

THREADS = 8
WARNING = timedelta(days=30)


def main() -> None:
    given = json.loads(sys.argv[1])
    credential = ClientSecretCredential(given["tenant"], given["client"], given["secret"], authority=given["login"],
                                        disable_instance_discovery=True, connection_verify=given["ca"])
    arm_scope = [f"{given['arm'].rstrip('/')}/.default"]
    local = threading.local()

    def graph() -> tuple[asyncio.AbstractEventLoop, GraphServiceClient]:
        if not hasattr(local, "client"):
            http = GraphClientFactory.create_with_default_middleware(
                client=httpx.AsyncClient(verify=ssl.create_default_context(cafile=given["ca"])))
            auth = AzureIdentityAuthenticationProvider(credential, scopes=[f"{given['graph'].rstrip('/')}/.default"],
                                                       allowed_hosts=["127.0.0.1"])
            adapter = GraphRequestAdapter(auth, http)
            adapter.base_url = given["graph"].rstrip("/") + "/v1.0"
            local.loop, local.client = asyncio.new_event_loop(), GraphServiceClient(request_adapter=adapter)
        return local.loop, local.client

    def clusters_of(subscription: str) -> list[Any]:
        client = ContainerServiceClient(credential, subscription, base_url=given["arm"], credential_scopes=arm_scope,
                                        connection_verify=given["ca"])
        return list(client.managed_clusters.list())

    select = ApplicationsWithAppIdRequestBuilder.ApplicationsWithAppIdRequestBuilderGetRequestConfiguration(
        query_parameters=ApplicationsWithAppIdRequestBuilder.ApplicationsWithAppIdRequestBuilderGetQueryParameters(
            select=["id", "appId", "displayName", "passwordCredentials"]))

    def application(app_id: str) -> Any:
        loop, client = graph()
        try:
            return loop.run_until_complete(client.applications_with_app_id(app_id).get(request_configuration=select))
        except APIError as err:
            if err.response_status_code == 404:
                return None
            raise

    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(THREADS) as pool:
        clusters = [c for listed in pool.map(clusters_of, given["subscriptions"]) for c in listed]
        app_ids = sorted({c.service_principal_profile.client_id.lower() for c in clusters if _uses_secret(c)})
        apps = dict(zip(app_ids, pool.map(application, app_ids), strict=True))
    now = datetime.now(UTC)
    counts = Counter(_judge(c, apps, now) for c in clusters)
    print(json.dumps({"seconds": time.perf_counter() - started, "cpuSeconds": time.process_time() - cpu,
                      "clusters": len(clusters), "applications": len(app_ids), "counts": dict(counts)}))


def _uses_secret(cluster: Any) -> bool:
    profile = cluster.service_principal_profile
    return bool(profile and profile.client_id and profile.client_id.lower() != "msi")


def _judge(cluster: Any, apps: dict[str, Any], now: datetime) -> str:
    if not _uses_secret(cluster):
        return "managedIdentity"
    app = apps[cluster.service_principal_profile.client_id.lower()]
    if app is None:
        return "applicationMissing"
    ends = [p.end_date_time for p in app.password_credentials or () if p.end_date_time]
    valid = [e for e in ends if e > now]
    if not valid and len(ends) == len(app.password_credentials or ()):
        return "expired"
    return "expiring" if valid and min(valid) <= now + WARNING else "healthy"


if __name__ == "__main__":
    main()

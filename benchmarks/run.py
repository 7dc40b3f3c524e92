"""Measure what the issues ask for and print the figures. `make bench` runs it.

1. Fresh-process `import function_app` wall time (median of 5).
2. The first Graph call of a fresh process: our raw-request adapter against msgraph-sdk's
   typed request builders, wall time and resident memory added (median of 3 each).
3. The demo after set-up: wall time, and API calls per remediation by API against the
   minimum the steps need.
4. Event arrival to enqueue: parse + enqueue, in memory (pure CPU) and into Azurite.
5. Classification throughput (benchmarks/bench_classify.py).
6. The scenarios of benchmarks/scenarios.py: a storm of hints, a worker killed at every write and during
   a long reset, 2,000 hostile requests and events; the storm and the kills again with four workers.
7. The fleet scenarios of benchmarks/fleet.py: fleet-50 rotated per application with a 120 s propagation
   delay, observe mode, the reset cap, the circuit breaker; the rotation again with four workers.
8. The identity scenarios of benchmarks/identity.py: a deleted application replaced with its role
   assignments, the same planned, a legacy Azure AD server secret rotated, the orphan report.
9. The fleet health scan of benchmarks/fleet_health.py: 2,000 clusters in 20 subscriptions with 50 ms latency,
   the same with Graph throttling, and a table at 200, 2,000 and 20,000 clusters: our scan, the peer baseline
   (benchmarks/peer_scan.py) and the round-trip floor, with the ratios, peak memory and login requests.
10. The credential health scenarios of benchmarks/health.py: expired now, expiring inside and outside the
   maintenance window, opted out; the fast path with the Activity Log 5 minutes late.
11. The deployment preflight of benchmarks/preflight.py: a fresh process, as azd's hook runs it, with 50 ms on every
   request, on a fresh tenant and on one where another remediator acts on the subscription.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable

from remediation.run.step import StepConfig  # noqa: E402


def fresh_import_seconds(runs: int = 5) -> list[float]:
    code = "import time; t = time.perf_counter(); import function_app; print(time.perf_counter() - t)"
    return [float(subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
            for _ in range(runs)]


FIRST_GRAPH_CALL = r"""
import json, sys, time
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
info = json.loads(sys.argv[1]); ids = json.load(open(info["identitiesFile"]))
from azure.identity import ClientSecretCredential
cred = ClientSecretCredential(info["tenantId"], info["remediatorClientId"], ids["remediatorClientSecret"],
    authority=info["login"], disable_instance_discovery=True, connection_verify=info["ca"])
cred.get_token("https://graph.microsoft.com/.default")  # token cost is not Graph's
app_id = sys.argv[3]
if sys.argv[2] == "raw":
    from remediation.adapters.graph import GraphDirectory
    graph = GraphDirectory(cred, endpoint=info["graph"], ca_bundle=info["ca"])
    before_mem, t = rss_mb(), time.perf_counter()
    found = graph.get_application_by_app_id(app_id).object_id
else:
    import asyncio, ssl, httpx
    from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph_core import GraphClientFactory
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=ssl.create_default_context(cafile=info["ca"])))
    auth = AzureIdentityAuthenticationProvider(cred, scopes=["https://graph.microsoft.com/.default"],
                                               allowed_hosts=["127.0.0.1"])
    adapter = GraphRequestAdapter(auth, http); adapter.base_url = info["graph"] + "/v1.0"
    client = GraphServiceClient(request_adapter=adapter)
    before_mem, t = rss_mb(), time.perf_counter()
    from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder
    config = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetRequestConfiguration(
        query_parameters=ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
            filter=f"appId eq '{app_id}'"))
    found = asyncio.run(client.applications.get(request_configuration=config)).value[0].id
print(json.dumps({"seconds": time.perf_counter() - t, "addedMB": rss_mb() - before_mem, "modules": len(sys.modules)}))
"""


def first_graph_call(info: dict, app_id: str, style: str, runs: int = 3) -> list[dict]:
    results = []
    for _ in range(runs):
        out = subprocess.run([PY, "-c", FIRST_GRAPH_CALL, json.dumps(info), style, app_id], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def with_sandbox(work):
    process = subprocess.Popen([PY, "-m", "sandbox", "serve", "--no-functions"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        info = json.loads(process.stdout.readline())
        return work(info)
    finally:
        process.terminate()
        process.wait(timeout=20)


def demo_figures() -> dict:
    from sandbox.demo import run

    tokens: dict[str, dict[str, int]] = {}
    started = time.perf_counter()
    summary = run(manual=False, out=lambda line: None,
                  before_teardown=lambda sandbox, azurite: tokens.update(tokens_by_caller(sandbox)))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "repaired": summary["repaired"], "requests": summary["requests"],
            "byCaller": summary["requestsByCaller"], "tokens": summary["tokens"], "tokensByCaller": tokens,
            "invocations": len(summary["invocations"])}


def tokens_by_caller(sandbox) -> dict[str, dict[str, int]]:
    """Tokens the sandbox issued, by caller and audience named as the API it stands in for ("arm", "graph", ...)."""
    apis = {url: api for api, url in sandbox.endpoints.items()} | {"https://management.azure.com": "arm",
                                                                   "https://vault.azure.net": "vault",
                                                                   "https://eventgrid.azure.net": "topic"}
    names = {app_id: app.display_name for app_id, app in sandbox.state.applications.items()}
    counted: dict[str, dict[str, int]] = {}
    for app_id, audience, _expires in list(sandbox.state.tokens.values()):
        caller = counted.setdefault(names.get(app_id, app_id), {})
        name = apis.get(audience, audience)
        caller[name] = caller.get(name, 0) + 1
    return counted


def event_to_enqueue(runs: int = 2000) -> dict:
    """From the Event Grid payload, decoded by the azure-functions library as the worker does, to the lookup
    message enqueued: what the trigger does before it answers Event Grid."""
    from remediation.decide.observation import Readers
    from remediation.decide.reconcile import Reconciler
    from remediation.intake.detection import IncidentDetector
    from remediation.intake.events import FailureEvent, parse_event
    from sandbox.functions_host import event_grid_input
    from tests.support.fakes import FakeClock, FakeIncidentStore, FakeQueue, Faults

    def payload() -> str:
        # A cluster of its own per event: events for one cluster join its pending lookup instead of queuing one.
        return json.dumps({
            "id": str(uuid.uuid4()), "topic": "/subscriptions/x", "subject": "s", "dataVersion": "2",
            "eventType": "Microsoft.Resources.ResourceWriteFailure", "eventTime": "2026-11-29T10:00:00Z",
            "data": {"resourceUri": "/subscriptions/6f1c2d3e-0000-4000-8000-000000000001/resourceGroups/rg/"
                                    f"providers/Microsoft.ContainerService/managedClusters/aks-{uuid.uuid4().hex[:12]}",
                     "operationName": "Microsoft.ContainerService/managedClusters/write",
                     "correlationId": str(uuid.uuid4()), "status": "Failed"}})

    def measure(queue, incidents, count: int) -> list[float]:
        # Only accept_event runs here: the decision chain's checks that read nothing (scope), the cluster's
        # pending-lookup row and the lookup queue. The clock moves a second per event, so the per-worker bound (100 new
        # lookups a minute) never drops one. Nothing that acts is reached: admission stays out.
        clock = FakeClock(datetime(2026, 11, 29, 10, 1, tzinfo=UTC))
        reconciler = Reconciler(Readers(incidents=incidents), clock=clock)
        detector = IncidentDetector(activity_log=None, incidents=incidents, lookups=queue, reconciler=reconciler,
                                    admission=None, clock=clock)
        times = []
        for _ in range(count):
            incoming = event_grid_input(payload())
            clock.advance(seconds=1)
            started = time.perf_counter()
            parsed = parse_event(incoming.decode())
            assert isinstance(parsed, FailureEvent)
            assert detector.accept_event(parsed) is not None
            times.append(time.perf_counter() - started)
        return times

    fakes_clock = FakeClock()
    memory = measure(FakeQueue(fakes_clock, Faults(), "lookups"), FakeIncidentStore(Faults()), runs)
    from remediation.adapters.storage import StorageTarget, StorageWorkQueue, TableIncidentStore
    from sandbox.azurite import Azurite

    with Azurite() as azurite:
        target = StorageTarget(connection_string=azurite.connection_string)
        queue = StorageWorkQueue(target.queue("bench"))
        queue.ensure_queue()
        table = target.table("bench")
        incidents = TableIncidentStore(table)
        table.create_table()
        measure(queue, incidents, 20)  # warm the connections
        azurite_times = measure(queue, incidents, 200)
    return {"memory_us": statistics.median(memory) * 1e6, "memory_p99_us": sorted(memory)[int(runs * .99)] * 1e6,
            "azurite_ms": statistics.median(azurite_times) * 1e3,
            "azurite_p99_ms": sorted(azurite_times)[int(len(azurite_times) * .99)] * 1e3}


# What one event-driven repair needs at the least: the remediator's own calls by API and route, each with its
# reason, for the demo's cluster (its application expired; the only cluster using it) under production's settings.
# tests/test_end_to_end.py asserts that the demo's calls are exactly these.
PROPAGATION_SIGN_INS = StepConfig().propagation_successes  # REMEDIATOR_PROPAGATION_SUCCESSES' default
MINIMUM: dict[str, dict[str, tuple[int, str]]] = {
    "arm": {
        "GET eventtypes/management/values": (1, "the failure's Activity Log entry: its error text is what is"
                                                " classified"),
        "GET managedClusters/{name}": (3, "the decision's read of the present (exists, service principal, changed"
                                          " since the failure?); the last look right before the reset (safety: a"
                                          " cluster fixed meanwhile is not re-imaged); the verification after it"
                                          " (safety: Succeeded, on the new application)"),
        "GET resourcegroups/{rg}": (1, "the opt-out tag on the cluster's resource group (safety: a guardrail, read"
                                       " from ARM because Resource Graph may lag it, 95% of changes within 30 s and"
                                       " no upper bound, Azure/azure-dev#540)"),
        "POST Microsoft.ResourceGraph/resources": (1, "the fan-out: every password ended, so every cluster using the"
                                                      " application in scope is broken too (one query over every"
                                                      " managed subscription; each target is read again before its"
                                                      " reset)"),
        "POST managedClusters/{name}/resetServicePrincipalProfile": (1, "the reset"),
        "GET locations/{l}/operations/{id}": (1, "the reset's status, looked at when the 202's Retry-After says"
                                                 " (the sandbox: 1 s; its reset takes 0.5 s)"),
    },
    "graph": {
        "GET /applications(appId=)": (1, "the decision: passwords' end dates, owners, object id"),
        "POST /applications/{id}/addPassword": (1, "the new password"),
    },
    "vault": {
        "PUT /secrets/{name}": (1, "the new secret stored at once; its answer carries the version (no read-back)"),
        "GET /secrets/{name}/{version}": (PROPAGATION_SIGN_INS - 1,
                                          "one per propagation sign-in after the first: each runs in an invocation"
                                          " of its own, REMEDIATOR_PROPAGATION_INTERVAL_SECONDS later, and the secret"
                                          " is kept nowhere but Key Vault (the reset shares the last one's)"),
    },
    "topic": {"POST /api/events": (1, "the outcome event for other teams")},
}
# Outside the remediator's own calls: the Key Vault SDK's challenge (its first request of a process, sent without a
# token to learn the vault's tenant and resource; counted as anonymous), and the tokens.
VAULT_CHALLENGES = 1
TOKENS: dict[str, tuple[int, str]] = {
    "arm": (1, "the remediator's, once per process per audience (one credential, azure-identity's cache)"),
    "graph": (1, "the same"),
    "vault": (1, "the same (Key Vault's audience is https://vault.azure.net)"),
    "topic": (1, "the same (Event Grid's audience is https://eventgrid.azure.net)"),
    "sign-ins": (PROPAGATION_SIGN_INS, "as the application with the new secret: the propagation test itself"
                                       " (REMEDIATOR_PROPAGATION_SUCCESSES in a row), each a token for ARM thrown"
                                       " away"),
}


def print_demo(demo: dict) -> None:
    """The demo's figures: its time, the API calls by API and route, and the remediator's own against MINIMUM."""
    print(f"demo after set-up (event-driven, in-process): {demo['seconds']:.1f} s, repaired: {demo['repaired']}, "
          f"{demo['invocations']} function invocations")
    print("API calls in the demo (two upgrade attempts by the operator included), by API and route:")
    for api, routes in demo["requests"].items():
        print(f"  {api:<6} {sum(routes.values()):>3}  {json.dumps(routes)}")
    print("the remediator's own calls (event lookup + classification + remediation):")
    for api, routes in demo["byCaller"].get("aks-sp-remediator", {}).items():
        print(f"  {api:<6} {sum(routes.values()):>3}  {json.dumps(routes)}")
    print(f"tokens issued by caller and audience: {json.dumps(demo['tokensByCaller'])}")
    print("minimum one repair needs (the remediator's own calls), against the demo's:")
    own = demo["byCaller"].get("aks-sp-remediator", {})
    for api, routes in MINIMUM.items():
        print(f"  {api:<6} {sum(n for n, _ in routes.values())} (demo: {sum(own.get(api, {}).values())})")
        for route, (count, why) in routes.items():
            print(f"    {count} x {route} (demo: {own.get(api, {}).get(route, 0)}): {why}")
    print(f"  + {VAULT_CHALLENGES} Key Vault challenge per process (demo: "
          f"{sum(demo['byCaller'].get('anonymous', {}).get('vault', {}).values())})")
    print(f"  tokens {sum(n for n, _ in TOKENS.values())}: "
          + "; ".join(f"{n} {name}: {why}" for name, (n, why) in TOKENS.items()))


def main() -> None:
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    imports = fresh_import_seconds()
    print(f"import function_app, fresh process: median {statistics.median(imports) * 1000:.0f} ms "
          f"(runs: {', '.join(f'{t * 1000:.0f}' for t in imports)} ms)")

    def graph_figures(info: dict) -> tuple[list, list]:
        import ssl
        import urllib.request

        context = ssl.create_default_context(cafile=info["ca"])
        with urllib.request.urlopen(f"{info['admin']}/_sandbox/state", context=context) as response:
            state = json.loads(response.read())
        app_id = next(c["clientId"] for c in state["clusters"] if c["name"] == "aks-payments")
        return first_graph_call(info, app_id, "raw"), first_graph_call(info, app_id, "typed")

    raw, typed = with_sandbox(graph_figures)
    for name, results in (("raw requests (ours)", raw), ("typed builders", typed)):
        print(f"first Graph call, {name}: median {statistics.median(r['seconds'] for r in results) * 1000:.0f} ms, "
              f"+{statistics.median(r['addedMB'] for r in results):.1f} MB resident, "
              f"{results[0]['modules']} modules loaded")

    print_demo(demo_figures())

    events = event_to_enqueue()
    print(f"event arrival to enqueue: in memory median {events['memory_us']:.0f} us (p99 {events['memory_p99_us']:.0f}"
          f" us); into Azurite median {events['azurite_ms']:.1f} ms (p99 {events['azurite_p99_ms']:.1f} ms)")

    # Module by module, how one Event Grid failure reaches the reset call.
    subprocess.run([PY, str(ROOT / "benchmarks" / "path.py")], cwd=ROOT, check=True)
    subprocess.run([PY, str(ROOT / "benchmarks" / "bench_classify.py")], cwd=ROOT, check=True)
    # The outside tester's scenarios over HTTP with a killable worker (minutes: a 40 s reset is among them).
    subprocess.run([PY, str(ROOT / "benchmarks" / "scenarios.py")], cwd=ROOT, check=True)
    # Scaled out, as Flex Consumption runs it: four workers on one storage.
    subprocess.run([PY, str(ROOT / "benchmarks" / "scenarios.py"), "storm", "crashes", "--workers", "4"], cwd=ROOT,
                   check=True)
    # fleet-50: one rotation per application, the cap, observe mode, the breaker (minutes: 120 s propagation).
    subprocess.run([PY, str(ROOT / "benchmarks" / "fleet.py")], cwd=ROOT, check=True)
    subprocess.run([PY, str(ROOT / "benchmarks" / "fleet.py"), "rotate", "--workers", "4"], cwd=ROOT, check=True)
    # A deleted application replaced (roles carried over), planned, a legacy AAD secret, the orphan report.
    subprocess.run([PY, str(ROOT / "benchmarks" / "identity.py")], cwd=ROOT, check=True)
    # Execute mode: 12 clusters, 3 opted in with windows at different times, migrated by three daily checks (issue 22).
    subprocess.run([PY, str(ROOT / "benchmarks" / "migration.py")], cwd=ROOT, check=True)
    # The fleet health scan at 2,000 clusters with 50 ms on every call, throttled, and at 200/2,000/20,000 beside
    # the peer baseline (8 threads, typed SDK clients) and the round-trip floor (issue 21), with the ratios.
    subprocess.run([PY, str(ROOT / "benchmarks" / "fleet_health.py"), "scan", "throttled", "table"], cwd=ROOT,
                   check=True)
    # Expired now, expiring in and out of the window, opted out; the fast path with a 5-minute-late Activity Log.
    subprocess.run([PY, str(ROOT / "benchmarks" / "health.py")], cwd=ROOT, check=True)
    # What `python -m remediation preflight` costs before every `azd up`.
    subprocess.run([PY, str(ROOT / "benchmarks" / "preflight.py")], cwd=ROOT, check=True)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()

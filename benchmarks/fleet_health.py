"""The fleet credential health scan (issue 11) at scale, against the sandbox with 50 ms on every call.

    scan      2,000 clusters in 20 subscriptions (one application per cluster, as `az aks create` makes; a
              tenth expired, a tenth expiring within 30 days, 50 on a managed identity), 50 ms latency on every
              ARM, Graph and Entra ID request: time, Resource Graph calls against pages, Graph calls against
              ceil(applications / 20), and every answer the sandbox gave by status
    throttled the same with Graph throttling one inner request in ten (429 with Retry-After: 1): every one
              retried, none unhandled
    table     200, 2,000 and 20,000 clusters: time and calls

The scan is `FleetHealth.report()` with the real adapters (azure-mgmt-resourcegraph, the msgraph-sdk request
adapter) over HTTPS, in this process: the same code the timer and `GET /api/health` run.
`python benchmarks/fleet_health.py [scan|throttled|table ...] [--json]`; tests/test_fleet_health_scan.py asserts
the figures at a smaller size.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox import Sandbox  # noqa: E402
from sandbox.fleets import fleet  # noqa: E402
from sandbox.state import Fault  # noqa: E402

LATENCY = 0.05
APIS = ("arm", "graph", "login")
FOREVER = 10**9


def health_fleet(clusters: int, *, subscriptions: int = 20, seed: int = 11) -> dict[str, Any]:
    """One application per cluster; a tenth expired 1-20 days ago, a tenth ending in 1-29 days, the rest later."""
    managed = min(50, clusters // 10)
    document = fleet(clusters=clusters, subscriptions=subscriptions, applications=max(clusters - managed, 1),
                     expired=0.1, managed_identity=managed, opted_out_clusters=0, opted_out_groups=0, seed=seed)
    for n, app in enumerate(document["applications"]):
        if n % 10 == 5:
            app["passwords"][0]["endInDays"] = 1 + n % 29
    return document


SCAN = r"""
import json, sys, time
from azure.identity import ClientSecretCredential
from remediation.adapters.graph import GraphDirectory
from remediation.adapters.resourcegraph import ResourceGraphClusters
from remediation.decide.guardrails import Guardrails
from remediation.intake.health import FleetHealth
given = json.loads(sys.argv[1])
credential = ClientSecretCredential(given["tenant"], given["client"], given["secret"], authority=given["login"],
                                    disable_instance_discovery=True, connection_verify=given["ca"])
inventory = ResourceGraphClusters(credential, endpoint=given["arm"], connection_verify=given["ca"])
directory = GraphDirectory(credential, endpoint=given["graph"], ca_bundle=given["ca"])
health = FleetHealth(inventory=inventory, directory=directory, reconciler=None, admission=None, checks=None,
                     guardrails=Guardrails(), subscriptions=given["subscriptions"])
started, cpu = time.perf_counter(), time.process_time()
report = health.report()
print(json.dumps({"seconds": time.perf_counter() - started, "cpuSeconds": time.process_time() - cpu,
                  "clusters": len(report.clusters), "applications": report.applications, "counts": report.counts,
                  "resourceGraphCalls": inventory.calls, "graphBatchCalls": directory.batch_calls}))
"""


def scan(sandbox: Sandbox, *, latency: float = LATENCY, throttle_rate: float = 0.0) -> dict[str, Any]:
    """One report over the whole fleet, by the remediator's own adapters in a process of their own (as the function
    app's worker is: the sandbox's work is not the remediator's), timed from a cold start of the adapters."""
    if throttle_rate:  # before the latency: a request takes the first fault that hits it
        sandbox.state.add_fault(Fault(kind="throttle", api="graph", remaining=FOREVER, rate=throttle_rate, status=429,
                                      route="GET /applications(appId=)", retry_after=1.0))
    for api in APIS:
        sandbox.state.add_fault(Fault(kind="latency", api=api, remaining=FOREVER, seconds=latency))
    given = {"tenant": sandbox.tenant_id, "client": sandbox.remediator.client_id,
             "secret": sandbox.remediator.client_secret, "login": sandbox.endpoints["login"],
             "arm": sandbox.endpoints["arm"], "graph": sandbox.endpoints["graph"], "ca": sandbox.ca_path,
             "subscriptions": list(sandbox.subscription_ids)}
    before = _requests(sandbox)
    child = subprocess.run([sys.executable, "-c", SCAN, json.dumps(given)], cwd=ROOT, capture_output=True, text=True,
                           check=False)
    if child.returncode:
        raise RuntimeError(f"the scan failed: {child.stderr[-3000:]}")
    after = _requests(sandbox)
    sandbox.state.clear_faults()
    return _figures(json.loads(child.stdout.strip().splitlines()[-1]), before, after, sandbox)


def _requests(sandbox: Sandbox) -> dict[str, Counter[str]]:
    with sandbox.state.lock:
        return {api: Counter(routes) for api, routes in sandbox.state.requests.items()}


def _figures(measured: dict[str, Any], before: dict[str, Counter[str]], after: dict[str, Counter[str]],
             sandbox: Sandbox) -> dict[str, Any]:
    routes = {api: dict(after.get(api, Counter()) - before.get(api, Counter())) for api in after}
    with sandbox.state.lock:
        answers = {f"{api} {route}": dict(statuses) for api, by_route in sandbox.state.responses.items()
                   for route, statuses in by_route.items() if route in routes.get(api, {})}
    inner = {"GET /applications(appId=)"}  # requests inside a $batch: not HTTP calls of their own
    http_calls = {api: sum(n for route, n in counted.items() if route not in inner) for api, counted in routes.items()}
    clusters, applications = measured["clusters"], measured["applications"]
    return {
        **measured, "seconds": round(measured["seconds"], 2), "cpuSeconds": round(measured["cpuSeconds"], 2),
        "resourceGraphPages": math.ceil(clusters / 1000) or 1,
        "graphBatchCallsAllowed": math.ceil(applications / 20),
        "httpCallsByApi": http_calls, "answers": answers,
        "throttledAnswers": sum(statuses.get("429", 0) for statuses in answers.values()),
    }


def run(clusters: int, *, throttle_rate: float = 0.0) -> dict[str, Any]:
    built = time.perf_counter()
    with Sandbox(fleet=health_fleet(clusters)) as sandbox:
        setup = time.perf_counter() - built
        figures = scan(sandbox, throttle_rate=throttle_rate)
    return {**figures, "sandboxSetupSeconds": round(setup, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", default=["scan", "throttled", "table"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"at": datetime.now(UTC).isoformat()}
    for name in args.scenarios:
        if name == "scan":
            results["scan"] = run(2000)
        elif name == "throttled":
            results["throttled"] = run(2000, throttle_rate=0.1)
        elif name == "table":
            results["table"] = [run(n) for n in (200, 2000, 20000)]
        else:
            raise SystemExit(f"unknown scenario {name!r}")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name in ("scan", "throttled"):
        if name in results:
            r = results[name]
            print(f"{name}: {r['clusters']} clusters, {r['applications']} applications in {r['seconds']} s;"
                  f" Resource Graph calls {r['resourceGraphCalls']} (pages {r['resourceGraphPages']}); Graph $batch"
                  f" calls {r['graphBatchCalls']} (ceil(apps/20) = {r['graphBatchCallsAllowed']}); counts"
                  f" {r['counts']}; CPU {r['cpuSeconds']} s; answers {r['answers']}")
    if "table" in results:
        print("clusters | applications | seconds | CPU seconds | Resource Graph calls | Graph $batch calls |"
              " all HTTP calls")
        for r in results["table"]:
            calls = sum(r["httpCallsByApi"].values())
            print(f"{r['clusters']:>8} | {r['applications']:>12} | {r['seconds']:>7} | {r['cpuSeconds']:>11} |"
                  f" {r['resourceGraphCalls']:>20} | {r['graphBatchCalls']:>18} | {calls:>14}")


if __name__ == "__main__":
    main()

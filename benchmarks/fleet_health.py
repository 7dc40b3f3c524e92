"""The fleet credential health scan (issues 11 and 21) at scale, against the sandbox with 50 ms on every call.

    scan      2,000 clusters in 20 subscriptions (one application per cluster, as `az aks create` makes; a
              tenth expired, a tenth expiring within 30 days, 50 on a managed identity), 50 ms latency on every
              ARM, Graph and Entra ID request: time, Resource Graph calls against pages, Graph calls against
              ceil(applications / 20), requests to the login API, and every answer the sandbox gave by status
    throttled the same with Graph throttling one inner request in ten (429 with Retry-After: 1): every one
              retried, none unhandled
    table     at 200, 2,000 and 20,000 clusters (`--sizes`), on one sandbox fleet per size: our scan (median of
              `--runs` fresh processes), the peer baseline (benchmarks/peer_scan.py: ManagedClusters.list per
              subscription and msgraph-sdk's typed client, 8 threads; median of `--peer-runs`, not above 2,000),
              issue 21's round-trip floor, the ratios, the scan's peak memory and its login requests
    inflight  our scan with 8, 16 and 24 $batch calls in flight (the choice of graph.BATCHES_IN_FLIGHT)

The scan is `FleetHealth.report()` with the real adapters (azure-mgmt-resourcegraph, the msgraph-sdk request
adapter) over HTTPS, in a process of its own: the same code the timer and `GET /api/health` run. The floor is
50 ms x (2 token fetches + ceil(N/1000) Resource Graph pages in sequence + ceil(ceil(A/20)/8) rounds of $batch
calls), A the service-principal applications; "quota" adds Resource Graph's 15 queries per 5 s (pages 16-20 of
20,000 clusters wait 4.25 s). Peak memory is the scan process's peak resident set, and in brackets its
growth over the resident set just before the scan (imports and clients made): VmHWM, not ru_maxrss, which
after a spawn also counts the parent's (here the sandbox's) resident set.
`python benchmarks/fleet_health.py [scan|throttled|table|inflight ...] [--sizes 200,2000] [--runs N] [--json]`;
tests/test_fleet_health_scan.py and tests/test_fleet_health_pipeline.py assert the figures at a smaller size.
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

from remediation.adapters.graph import BATCHES_IN_FLIGHT  # noqa: E402
from sandbox import Sandbox  # noqa: E402
from sandbox.fleets import fleet  # noqa: E402
from sandbox.state import RESOURCE_GRAPH_QUOTA, RESOURCE_GRAPH_WINDOW_SECONDS, Fault  # noqa: E402

LATENCY = 0.05
APIS = ("arm", "graph", "login")
FOREVER = 10**9
PEER_MOST = 2000  # the peer is not run above this (about 7 minutes at 20,000)


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
import json, resource, sys, time
from azure.identity import ClientSecretCredential
from remediation.adapters import graph
from remediation.adapters.graph import GraphDirectory
from remediation.adapters.resourcegraph import ResourceGraphClusters
from remediation.decide.guardrails import Guardrails
from remediation.intake.health import FleetHealth
given = json.loads(sys.argv[1])
if given.get("inFlight"):  # measuring the choice of BATCHES_IN_FLIGHT (`inflight`), not the product's setting
    graph.BATCHES_IN_FLIGHT = given["inFlight"]
credential = ClientSecretCredential(given["tenant"], given["client"], given["secret"], authority=given["login"],
                                    disable_instance_discovery=True, connection_verify=given["ca"])
inventory = ResourceGraphClusters(credential, endpoint=given["arm"], connection_verify=given["ca"])
directory = GraphDirectory(credential, endpoint=given["graph"], ca_bundle=given["ca"])
health = FleetHealth(inventory=inventory, directory=directory, reconciler=None, admission=None, checks=None,
                     guardrails=Guardrails(), subscriptions=given["subscriptions"])
with open("/proc/self/statm") as statm:
    before_mb = int(statm.read().split()[1]) * resource.getpagesize() / 2**20
started, cpu = time.perf_counter(), time.process_time()
report = health.report()
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
# VmHWM, this process's own peak resident set: ru_maxrss would also count the parent's (the sandbox's) at the spawn.
with open("/proc/self/status") as status:
    peak_mb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
print(json.dumps({"seconds": seconds, "cpuSeconds": cpu, "peakMB": peak_mb, "scanMB": peak_mb - before_mb,
                  "clusters": len(report.clusters), "applications": report.applications, "counts": report.counts,
                  "resourceGraphCalls": inventory.calls, "graphBatchCalls": directory.batch_calls}))
"""
LOGIN_ROUTES = ("GET openid-configuration", "POST token")


def _given(sandbox: Sandbox) -> dict[str, Any]:
    return {"tenant": sandbox.tenant_id, "client": sandbox.remediator.client_id,
            "secret": sandbox.remediator.client_secret, "login": sandbox.endpoints["login"],
            "arm": sandbox.endpoints["arm"], "graph": sandbox.endpoints["graph"], "ca": sandbox.ca_path,
            "subscriptions": list(sandbox.subscription_ids)}


def _child(sandbox: Sandbox, argv: list[str], *, latency: float, throttle_rate: float = 0.0
           ) -> tuple[dict[str, Any], dict[str, Counter[str]], dict[str, Counter[str]], dict[str, int]]:
    """Run one scan in a fresh process with the faults set; its JSON line, the request counts before and after, and
    the requests to the login API by route (which the sandbox does not count: its latency faults do)."""
    if throttle_rate:  # before the latency: a request takes the first fault that hits it
        sandbox.state.add_fault(Fault(kind="throttle", api="graph", remaining=FOREVER, rate=throttle_rate, status=429,
                                      route="GET /applications(appId=)", retry_after=1.0))
    logins = [Fault(kind="latency", api="login", route=route, remaining=FOREVER, seconds=latency)
              for route in LOGIN_ROUTES]
    for fault in logins:
        sandbox.state.add_fault(fault)
    for api in APIS:
        sandbox.state.add_fault(Fault(kind="latency", api=api, remaining=FOREVER, seconds=latency))
    before = _requests(sandbox)
    try:
        child = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, check=False)
    finally:
        after = _requests(sandbox)
        sandbox.state.clear_faults()
    if child.returncode:
        raise RuntimeError(f"the scan failed: {child.stderr[-3000:]}")
    login = {fault.route or "": FOREVER - fault.remaining for fault in logins}
    return json.loads(child.stdout.strip().splitlines()[-1]), before, after, login


def scan(sandbox: Sandbox, *, latency: float = LATENCY, throttle_rate: float = 0.0,
         in_flight: int | None = None) -> dict[str, Any]:
    """One report over the whole fleet, by the remediator's own adapters in a process of their own (as the function
    app's worker is: the sandbox's work is not the remediator's), timed from a cold start of the adapters."""
    given = {**_given(sandbox), "inFlight": in_flight}
    measured, before, after, login = _child(sandbox, ["-c", SCAN, json.dumps(given)], latency=latency,
                                            throttle_rate=throttle_rate)
    return {**_figures(measured, before, after, sandbox), "loginRequests": login}


def peer(sandbox: Sandbox, *, latency: float = LATENCY) -> dict[str, Any]:
    """The peer baseline (benchmarks/peer_scan.py) over the same fleet, in a fresh process."""
    measured, before, after, login = _child(sandbox, [str(ROOT / "benchmarks" / "peer_scan.py"),
                                                      json.dumps(_given(sandbox))], latency=latency)
    routes = {api: sum((after.get(api, Counter()) - before.get(api, Counter())).values()) for api in after}
    return {**measured, "seconds": round(measured["seconds"], 2), "cpuSeconds": round(measured["cpuSeconds"], 2),
            "httpCallsByApi": routes, "loginRequests": login}


def floor(clusters: int, applications: int, *, latency: float = LATENCY, in_flight: int = 8) -> dict[str, float]:
    """Issue 21's round-trip floor: `latency` x (2 token fetches + ceil(N/1000) Resource Graph pages in sequence +
    ceil(ceil(A/20)/in_flight) rounds of $batch calls), and the same with Resource Graph's quota (15 queries per 5 s
    window: the 16th page waits for the window that began with the first)."""
    pages = math.ceil(clusters / 1000) or 1
    rounds = math.ceil(math.ceil(applications / 20) / in_flight)
    plain = latency * (2 + pages + rounds)
    windows = (pages - 1) // RESOURCE_GRAPH_QUOTA
    quota_wait = windows * max(RESOURCE_GRAPH_WINDOW_SECONDS - RESOURCE_GRAPH_QUOTA * latency, 0.0)
    return {"seconds": round(plain, 2), "quotaAwareSeconds": round(plain + quota_wait, 2)}


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


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median time, with every run's time beside it."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return {**ordered[(len(ordered) - 1) // 2], "runs": [r["seconds"] for r in runs]}


def compare(clusters: int, *, runs: int, peer_runs: int) -> dict[str, Any]:
    """At one size, on one sandbox fleet: our scan (median of `runs` fresh processes), the peer baseline (median of
    `peer_runs`; 0: not run), the floor, and the ratios."""
    with Sandbox(fleet=health_fleet(clusters)) as sandbox:
        ours = _median_run([scan(sandbox) for _ in range(runs)])
        theirs = _median_run([peer(sandbox) for _ in range(peer_runs)]) if peer_runs else None
    if theirs and theirs["counts"] != {k: v for k, v in ours["counts"].items() if v}:
        raise RuntimeError(f"the peer judged differently: {theirs['counts']} against {ours['counts']}")
    low = floor(ours["clusters"], ours["applications"])
    at_ours = floor(ours["clusters"], ours["applications"], in_flight=BATCHES_IN_FLIGHT)  # ours has 16, not 8
    return {"clusters": clusters, "ours": ours, "peer": theirs, "floor": low, "floorAtOurConcurrency": at_ours,
            "oursOverFloor": round(ours["seconds"] / low["quotaAwareSeconds"], 2),
            "peerOverOurs": round(theirs["seconds"] / ours["seconds"], 1) if theirs else None}


def in_flight(clusters: int, *, runs: int) -> list[dict[str, Any]]:
    """Our scan with 8, 16 and 24 $batch calls in flight (median of `runs` each), on one sandbox fleet."""
    with Sandbox(fleet=health_fleet(clusters)) as sandbox:
        return [{"inFlight": n, **_median_run([scan(sandbox, in_flight=n) for _ in range(runs)])} for n in (8, 16, 24)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", default=["scan", "throttled", "table"])
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per figure of ours (the median is shown)")
    parser.add_argument("--peer-runs", type=int, default=3, help="fresh processes per figure of the peer's")
    parser.add_argument("--sizes", default="200,2000,20000", help="fleet sizes of the table")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    results: dict[str, Any] = {"at": datetime.now(UTC).isoformat()}
    for name in args.scenarios:
        if name == "scan":
            results["scan"] = run(2000)
        elif name == "throttled":
            results["throttled"] = run(2000, throttle_rate=0.1)
        elif name == "table":
            results["table"] = [compare(n, runs=args.runs, peer_runs=args.peer_runs if n <= PEER_MOST else 0)
                                for n in sizes]
        elif name == "inflight":
            results["inflight"] = {n: in_flight(n, runs=args.runs) for n in sizes}
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
                  f" calls {r['graphBatchCalls']} (ceil(apps/20) = {r['graphBatchCallsAllowed']}); login requests"
                  f" {r['loginRequests']}; counts {r['counts']}; CPU {r['cpuSeconds']} s; answers {r['answers']}")
    if "table" in results:
        print(f"fleet health scan, {LATENCY * 1000:.0f} ms on every ARM, Graph and login request; median of"
              f" {args.runs} fresh processes (the peer: {args.peer_runs}); floor = issue 21's formula with 8 $batch"
              f" calls in flight, in brackets with Resource Graph's quota (with our {BATCHES_IN_FLIGHT}:"
              " floorAtOurConcurrency in --json)")
        print("clusters | floor s (quota) | ours s (runs)            | ours/floor | peer s (runs)      | peer/ours |"
              " peak MB (scan) | login requests | calls RG/$batch")
        for r in results["table"]:
            o, p = r["ours"], r["peer"]
            theirs = f"{p['seconds']:>6} ({', '.join(map(str, p['runs']))})" if p else "not run"
            print(f"{r['clusters']:>8} | {r['floor']['seconds']:>5} ({r['floor']['quotaAwareSeconds']:>5}) |"
                  f" {o['seconds']:>6} ({', '.join(map(str, o['runs']))}) | {r['oursOverFloor']:>9}x |"
                  f" {theirs} | {r['peerOverOurs'] or '-'}x | {o['peakMB']:.0f} ({o['scanMB']:.0f}) |"
                  f" {sum(o['loginRequests'].values())} {o['loginRequests']} |"
                  f" {o['resourceGraphCalls']}/{o['graphBatchCalls']}")
    if "inflight" in results:
        print("$batch calls in flight: clusters | in flight | seconds (runs) | CPU s | 429s")
        for n, rows in results["inflight"].items():
            for r in rows:
                print(f"{n:>8} | {r['inFlight']:>2} | {r['seconds']} ({', '.join(map(str, r['runs']))}) |"
                      f" {r['cpuSeconds']} | {r['throttledAnswers']}")


if __name__ == "__main__":
    main()

"""A fleet scenario, over HTTP against the sandbox with the function app in its own worker process.

    rotate    fleet-50 (50 clusters in 3 subscriptions on 10 shared applications, all expired; 5 with a
              managed identity; 3 opted out by a tag on the cluster, one resource group by a tag on the
              group), one subscription out of scope, a 120 s propagation delay: every operator's upgrade
              fails, the failures reach the remediator as events, and it rotates each application once
    observe   the same, in observe mode: it decides and plans, and writes nothing
    cap       the same, with at most 5 resets an hour
    breaker   a cluster whose resets keep failing inside AKS: after 2 failed rotations, the next is refused

`python benchmarks/fleet.py [rotate|observe|cap|breaker ...] [--workers N]` prints the figures (`make bench` runs
all; they take minutes: the propagation delay is 120 s of real time). tests/test_fleet_scenarios.py runs
smaller versions and asserts the same outcomes; `--workers N` runs N worker processes on the same storage
(tests/test_scaleout_scenarios.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.scenarios import VISIBILITY_SECONDS, _call  # noqa: E402
from sandbox import Sandbox  # noqa: E402
from sandbox.azurite import Azurite  # noqa: E402
from sandbox.fleets import fleet, opted_out_by  # noqa: E402
from sandbox.wiring import remediator_settings  # noqa: E402
from sandbox.worker import WorkerPool, WorkerProcess  # noqa: E402

FAST = {"REMEDIATOR_LEASE_SECONDS": "10", "REMEDIATOR_RETRY_DELAY_SECONDS": "1", "REMEDIATOR_RESET_POLL_SECONDS": "1",
        "REMEDIATOR_PROPAGATION_SUCCESSES": "3", "REMEDIATOR_PROPAGATION_INTERVAL_SECONDS": "5"}
ADD_PASSWORD = "POST /applications/{id}/addPassword"


@dataclass
class Fleet:
    sandbox: Sandbox
    worker: WorkerProcess  # the first of `pool`'s workers
    in_scope: set[str]  # subscription ids the remediator manages
    started: float
    pool: WorkerPool | None = None  # None: `worker` alone

    @property
    def url(self) -> str:
        """The app's front end: requests spread over the pool's workers."""
        return self.pool.url if self.pool else self.worker.url

    def log_text(self) -> str:
        return self.pool.log_text(4000) if self.pool else self.worker.log_text()[-4000:]

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        status, payload = _call(method, f"{self.sandbox.endpoints['admin']}/_sandbox/{path.lstrip('/')}", body,
                                ca=self.sandbox.ca_path)
        if status >= 400:
            raise RuntimeError(f"admin {path}: {status} {payload[:300]!r}")
        return json.loads(payload or b"null")

    def snapshot(self) -> dict[str, Any]:
        return self.sandbox.snapshot()

    def clusters(self) -> list[dict[str, Any]]:
        return self.snapshot()["clusters"]

    def should_repair(self, cluster: dict[str, Any], groups: dict[tuple[str, str], dict[str, str]]) -> bool:
        """A service-principal cluster in scope that neither it nor its resource group opted out."""
        group_tags = groups.get((cluster["subscriptionId"], cluster["resourceGroup"].lower()), {})
        return (cluster["clientId"] != "msi" and cluster["subscriptionId"] in self.in_scope
                and not opted_out_by(cluster.get("tags") or {}) and not opted_out_by(group_tags))

    def groups(self) -> dict[tuple[str, str], dict[str, str]]:
        return {(g["subscriptionId"], g["name"].lower()): g.get("tags") or {}
                for g in self.snapshot()["resourceGroups"]}

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The remediator's HTTP API as the operator: (status, JSON body)."""
        status, payload = _call(method, f"{self.url}/api/{path.lstrip('/')}", body, headers={
            "x-functions-key": self.worker.function_key,
            "Authorization": f"Bearer {self.sandbox.api_token(self.sandbox.operator)}"})
        return status, json.loads(payload or b"null")

    def quiet(self) -> bool:
        """Every remediation finished and no work queued."""
        status, body = self.api("GET", "remediations?limit=200")
        listed = body.get("value", []) if status == 200 else None
        return listed is not None and all(r["status"] in ("Succeeded", "Failed", "Planned") for r in listed) \
            and bool(listed)

    def remediations(self) -> list[dict[str, Any]]:
        return (self.api("GET", "remediations?limit=200")[1] or {}).get("value", [])

    def wait(self, probe: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if probe():
                return
            time.sleep(1)
        raise TimeoutError(f"{what} not within {timeout:.0f} s; worker log:\n{self.log_text()}")


@contextlib.contextmanager
def served(sandbox: Sandbox, azurite: Azurite, settings: dict[str, str], *,
           kind: type[Fleet] = Fleet, workers: int = 1,
           visibility_seconds: int = VISIBILITY_SECONDS) -> Iterator[Any]:
    """The function app on `sandbox` in `workers` worker processes on the same storage, with `settings` over the
    local ones: each restarted when it dies (a kill_worker fault kills the one that made the request), as the host
    would, and sent the sandbox's failure events by Event Grid through their front end. The remediator manages the
    subscriptions REMEDIATOR_SUBSCRIPTION_IDS names (all by default)."""
    stop = threading.Event()
    pool = WorkerPool(workers, visibility_timeout=visibility_seconds)
    local = remediator_settings(sandbox, azurite.connection_string, **settings)
    pool.start(local)
    sandbox.state.on_kill_worker = lambda: pool.kill_sender(sandbox.state.request_peer())
    pool.keep_alive(stop, delay=0.2)
    world = kind(sandbox, pool.workers[0], set(local["REMEDIATOR_SUBSCRIPTION_IDS"].split(",")), time.monotonic(),
                 pool)
    hook = f"{pool.url}/runtime/webhooks/eventgrid?functionName=on_resource_failure&code={pool.function_key}"
    try:
        world.admin("POST", "eventgrid/subscriptions", {"endpointUrl": hook, "schema": "EventGridSchema"})
        yield world
    finally:
        stop.set()
        pool.stop()


@contextlib.contextmanager
def fleet_world(document: dict[str, Any], *, in_scope: int | None = None, propagation_seconds: float = 120,
                workers: int = 1, **settings: str) -> Iterator[Fleet]:
    """The fleet in the sandbox, the remediator managing its first `in_scope` subscriptions (all by default)."""
    with Azurite() as azurite, Sandbox(fleet=document) as sandbox:
        managed = list(sandbox.subscription_ids)[:in_scope]
        with served(sandbox, azurite, {**FAST, "REMEDIATOR_SUBSCRIPTION_IDS": ",".join(managed), **settings},
                    workers=workers) as world:
            world.admin("POST", "faults", {"kind": "propagation_delay", "seconds": propagation_seconds})
            yield world


def every_upgrade_fails(world: Fleet) -> int:
    """Each operator tries an upgrade; the failures are logged and delivered as events. Returns how many failed."""
    failed = 0
    for cluster in world.clusters():
        attempt = world.admin("POST", f"{cluster['id']}/operate", {"kubernetesVersion": "1.30.4"})
        failed += not attempt["succeeded"]
    return failed


def figures(world: Fleet) -> dict[str, Any]:
    snapshot = world.snapshot()
    groups = world.groups()
    clusters = snapshot["clusters"]
    expected = [c for c in clusters if world.should_repair(c, groups)]
    untouched = [c for c in clusters if not world.should_repair(c, groups)]
    operations = [op for op in world.sandbox.state.operations.values() if op.kind == "reset"]
    remediations = world.remediations()
    calls = snapshot["requestsByCaller"].get("aks-sp-remediator", {})
    return {
        "seconds": round(time.monotonic() - world.started, 1),
        "clusters": len(clusters), "toRepair": len(expected),
        "applicationsToRepair": len({c["clientId"] for c in expected}),
        "repaired": sum(1 for c in expected if c["secretValidNow"]),
        "addPassword": snapshot["requests"].get("graph", {}).get(ADD_PASSWORD, 0),
        "resetsStarted": len(operations),
        "failedResets": sum(1 for op in operations if op.status == "Failed"),
        "resetsPerRepairedCluster": sorted(Counter(c["writes"]["reset"] for c in expected).items()),
        "writesToOthers": sum(c["writes"]["reset"] + c["writes"]["put"] for c in untouched),
        "removedPasswords": sum(len(a["removedPasswords"]) for a in snapshot["applications"]),
        "remediations": dict(Counter(r["status"] for r in remediations)),
        "skipped": dict(Counter(t["code"] for r in remediations for t in r.get("clusters", [])
                                if t["status"] == "Skipped")),
        "remediatorCalls": {api: sum(routes.values()) for api, routes in calls.items()},
        **({"workers": len(world.pool.workers), "connectionsPerWorker": world.pool.connections}
           if world.pool and len(world.pool.workers) > 1 else {}),
    }


def rotate(document: dict[str, Any] | None = None, *, propagation_seconds: float = 120,
           retire_after_hours: float = 0.01, timeout: float = 900, workers: int = 1,
           faults: tuple[dict[str, Any], ...] = (), **settings: str) -> dict[str, Any]:
    """`faults`: request faults (POST /_sandbox/faults bodies) added before the upgrades fail, e.g. kill_worker."""
    document = document or fleet()
    # The default cap (20 an hour) would hold a fleet's second score of resets for an hour: the cap has its own
    # scenario; here every cluster may go.
    settings = {"REMEDIATOR_MAX_RESETS_PER_HOUR": "1000", **settings}
    with fleet_world(document, in_scope=2, propagation_seconds=propagation_seconds, workers=workers,
                     REMEDIATOR_RETIRE_AFTER_HOURS=str(retire_after_hours), **settings) as world:
        for fault in faults:
            world.admin("POST", "faults", fault)
        failed = every_upgrade_fails(world)
        world.wait(lambda: world.quiet() and figures(world)["repaired"] == figures(world)["toRepair"], timeout,
                   "every cluster repaired and every rotation finished")
        kills = {"killed": world.pool.kills} if faults and world.pool else {}
        return {"upgradesFailed": failed, **figures(world), **kills}


def observe(document: dict[str, Any] | None = None, *, workers: int = 1, **settings: str) -> dict[str, Any]:
    document = document or fleet()
    with fleet_world(document, in_scope=2, propagation_seconds=0, workers=workers, REMEDIATOR_MODE="observe",
                     **settings) as world:
        failed = every_upgrade_fails(world)
        world.wait(lambda: world.quiet() and len(world.remediations()) >= 1, 300, "the plans")
        time.sleep(3)  # anything written would be visible by now
        # A plan a later hint re-plans in place is Accepted again for a moment: wait for every plan to be current.
        world.wait(lambda: world.quiet() and all(r["status"] == "Planned" for r in world.remediations()), 120,
                   "the plans to finish")
        return {"upgradesFailed": failed, **figures(world)}


def cap(document: dict[str, Any] | None = None, *, per_hour: int = 5, workers: int = 1) -> dict[str, Any]:
    document = document or fleet()
    with fleet_world(document, in_scope=2, propagation_seconds=0, workers=workers,
                     REMEDIATOR_MAX_RESETS_PER_HOUR=str(per_hour)) as world:
        every_upgrade_fails(world)
        world.wait(lambda: figures(world)["repaired"] >= per_hour, 300, f"{per_hour} repairs")
        time.sleep(10)  # the others wait for the hour to pass: no more resets may start meanwhile
        return figures(world)


def breaker(*, failures: int = 2, cause: str = "resets", workers: int = 1) -> dict[str, Any]:
    """`cause`: "resets" (AKS's own reset keeps failing, five attempts each) or "propagation" (Entra ID never
    accepts the new secret: each rotation fails before any reset, quickly)."""
    document = fleet(clusters=1, subscriptions=1, applications=1, managed_identity=0, opted_out_clusters=0,
                     opted_out_groups=0, groups_per_subscription=1)
    never = cause == "propagation"
    # Three hours: far longer than the rotation waits, shorter than the identities' own day-old passwords.
    with fleet_world(document, propagation_seconds=3 * 3600 if never else 0, workers=workers,
                     REMEDIATOR_BREAKER_FAILURES=str(failures),
                     **({"REMEDIATOR_PROPAGATION_TIMEOUT_MINUTES": "0.05",
                         "REMEDIATOR_PROPAGATION_INTERVAL_SECONDS": "1"} if never else {})) as world:
        if not never:
            world.admin("POST", "faults", {"kind": "reset_fails", "count": 1000})
        [cluster] = world.clusters()
        codes: list[str] = []
        for _ in range(failures + 1):
            # The operator's upgrade fails; what the remediator decides about that very failure:
            correlation = world.admin("POST", f"{cluster['id']}/operate", {"kubernetesVersion": "1.30.4"})[
                "correlationId"]
            world.wait(lambda c=correlation: _decision_of(world, c) is not None and world.quiet(), 300,
                       "the decision")
            codes.append(_decision_of(world, correlation)["code"])
        return {"decisions": codes, **figures(world)}


def _decision_of(world: Fleet, correlation_id: str) -> dict[str, Any] | None:
    return next((d for d in (world.api("GET", "decisions?limit=200")[1] or {}).get("value", [])
                 if d.get("correlationId") == correlation_id and d["code"] != "Waiting"), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", default=["rotate", "observe", "cap", "breaker"])
    parser.add_argument("--workers", type=int, default=1, help="worker processes on the same storage (default 1)")
    args = parser.parse_args(argv)
    for name in args.which:
        print(f"fleet {name}:", json.dumps({"rotate": rotate, "observe": observe, "cap": cap,
                                            "breaker": breaker}[name](workers=args.workers)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Credential health scenarios (issue 11), over HTTP against the sandbox with the function app in its own worker.

    check     one health check (the daily timer) over a fleet where nothing has failed yet:
              - aks-expired-1, aks-expired-2: their application's only password ended 3 days ago: remediated at
                once, with no failed write anywhere (the Activity Log stays empty)
              - aks-window: opted in (aks-sp-remediator=rotate), its secret ends in 10 days, its AKS planned
                maintenance window (aksManagedNodeOSUpgradeSchedule) is open: rotated now
              - aks-later: the same, but its window opens 20-80 s after the check: nothing now; a credential
                check is queued for the opening, and it is rotated then
              - aks-not-opted-in (expiring, window open, no tag), aks-opted-out (expired, tagged off), aks-fine
                (opted in, 300 days left), aks-msi (a managed identity): no write at all
    fastpath  aks-payments' application expired; the Activity Log is 5 minutes late; the operator's upgrade
              fails: from the failure event to the remediation started, and to the cluster repaired

`python benchmarks/health.py [check|fastpath ...] [--json]` prints the figures (`make bench` runs both);
tests/test_health_scenarios.py asserts them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.fleet import FAST, Fleet, served  # noqa: E402
from benchmarks.scenarios import _call  # noqa: E402
from sandbox import Sandbox  # noqa: E402
from sandbox.azurite import Azurite  # noqa: E402
from sandbox.fleets import SCENARIO_FORMAT  # noqa: E402
from sandbox.state import parse_time  # noqa: E402

SUBSCRIPTION = "7d1f0c9a-0000-4000-8000-00000000a11c"
ROTATE = {"aks-sp-remediator": "rotate"}
OPT_OUT = {"aks-sp-remediator": "off"}
HEALTH = {**FAST, "REMEDIATOR_PROPAGATION_SUCCESSES": "2", "REMEDIATOR_PROPAGATION_INTERVAL_SECONDS": "1"}
UNTOUCHED = ("aks-not-opted-in", "aks-opted-out", "aks-fine", "aks-msi")


def node_os_window(start: datetime, hours: int = 4) -> dict[str, Any]:
    """An aksManagedNodeOSUpgradeSchedule opening every day at `start`'s minute (UTC) for `hours`."""
    return {"aksManagedNodeOSUpgradeSchedule": {"maintenanceWindow": {
        "schedule": {"daily": {"intervalDays": 1}}, "durationHours": hours, "utcOffset": "+00:00",
        "startDate": (start - timedelta(days=1)).date().isoformat(), "startTime": start.strftime("%H:%M")}}}


def health_document(now: datetime) -> dict[str, Any]:
    """The fleet; aks-later's window is set by the platform team just before the check (`set_window`), so that it
    opens after the check however long the set-up took."""
    open_now = node_os_window(now - timedelta(hours=1))

    def app(name: str, days: float) -> dict[str, Any]:
        return {"displayName": name, "ownedByRemediator": True,
                "passwords": [{"displayName": "rbac", "startDaysAgo": 360, "endInDays": days}]}

    def cluster(name: str, application: str | None, tags: dict[str, str] | None = None,
                windows: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"subscriptionId": SUBSCRIPTION, "resourceGroup": "rg-fleet", "name": name,
                                "kubernetesVersion": "1.30.3", "tags": tags or {}}
        if application is None:
            body["managedIdentity"] = True
        else:
            body["application"] = application
        if windows:
            body["maintenanceConfigurations"] = windows
        return body

    return {"format": SCENARIO_FORMAT, "description": "benchmarks/health.py check",
            "subscriptions": [{"subscriptionId": SUBSCRIPTION, "displayName": "health"}],
            "resourceGroups": [{"subscriptionId": SUBSCRIPTION, "name": "rg-fleet", "tags": {}}],
            "applications": [app("sp-expired", -3), app("sp-window", 10), app("sp-later", 10), app("sp-not-in", 10),
                             app("sp-opted-out", -3), app("sp-fine", 300)],
            "clusters": [cluster("aks-expired-1", "sp-expired"), cluster("aks-expired-2", "sp-expired"),
                         cluster("aks-window", "sp-window", ROTATE, open_now),
                         cluster("aks-later", "sp-later", ROTATE),
                         cluster("aks-not-opted-in", "sp-not-in", {}, open_now),
                         cluster("aks-opted-out", "sp-opted-out", OPT_OUT),
                         cluster("aks-fine", "sp-fine", ROTATE, open_now), cluster("aks-msi", None)]}


class World(Fleet):
    def cluster(self, name: str) -> dict[str, Any]:
        return next(c for c in self.clusters() if c["name"] == name)

    def run_timer(self, function: str) -> None:
        status, payload = _call("POST", f"{self.worker.url}/admin/functions/{function}", {},
                                headers={"x-functions-key": self.worker.function_key})
        if status != 202:
            raise RuntimeError(f"timer {function}: {status} {payload[:200]!r}")

    def set_window(self, name: str, start: datetime) -> None:
        """The platform team sets the cluster's node OS window (ARM's PUT, as `az aks maintenanceconfiguration add`)."""
        cluster = self.cluster(name)
        (config, properties), = node_os_window(start).items()
        token = self.sandbox.credential(self.sandbox.operator).get_token("https://management.azure.com/.default").token
        status, payload = _call("PUT", f"{self.sandbox.endpoints['arm']}{cluster['id']}/maintenanceConfigurations/"
                                       f"{config}?api-version=2024-09-01", {"properties": properties},
                                headers={"Authorization": f"Bearer {token}"}, ca=self.sandbox.ca_path)
        if status >= 300:
            raise RuntimeError(f"setting {name}'s window: {status} {payload[:300]!r}")

    def resets(self, name: str) -> int:
        return self.cluster(name)["writes"]["reset"]

    def started_for(self, name: str) -> dict[str, Any] | None:
        return next((r for r in self.remediations()
                     if any(t["clusterResourceId"].endswith(f"/{name}") for t in r.get("clusters", []))), None)


@contextlib.contextmanager
def health_world(document: dict[str, Any] | None = None, *, scenario: str = "expired-secret",
                 **settings: str) -> Iterator[World]:
    with Azurite() as azurite, Sandbox(scenario=scenario, fleet=document) as sandbox, \
            served(sandbox, azurite, {**HEALTH, **settings}, kind=World) as world:
        yield world


def check(*, timeout: float = 240) -> dict[str, Any]:
    now = datetime.now(UTC)
    with health_world(health_document(now)) as world:
        # A window opening at the first whole minute at least 20 s from now: after the check has decided.
        opens = (datetime.now(UTC) + timedelta(seconds=80)).replace(second=0, microsecond=0)
        world.set_window("aks-later", opens)
        started = time.monotonic()
        world.run_timer("check_fleet_health")
        world.wait(lambda: all(world.cluster(n)["secretValidNow"] for n in ("aks-expired-1", "aks-expired-2"))
                   and world.resets("aks-window") == 1 and world.quiet(), timeout,
                   "the expired and open-window repairs")
        first = round(time.monotonic() - started, 1)
        later_before_window = sum(1 for at in resets_of(world, "aks-later") if at < opens)
        world.wait(lambda: world.resets("aks-later") == 1 and world.quiet(), timeout, "aks-later's rotation")
        snapshot = world.snapshot()
        return {
            "secondsToRepairExpiredAndOpenWindow": first,
            "failedActivityLogEntries": _failed_entries(world),
            "resets": {c["name"]: c["writes"]["reset"] for c in snapshot["clusters"]},
            "writesToUntouched": sum(c["writes"]["reset"] + c["writes"]["put"] for c in snapshot["clusters"]
                                     if c["name"] in UNTOUCHED),
            "secretValid": {c["name"]: c["secretValidNow"] for c in snapshot["clusters"]},
            "laterResetsBeforeItsWindow": later_before_window,
            "laterWindowOpened": opens.isoformat(),
            "laterResetStarted": min(resets_of(world, "aks-later")).isoformat(),
            "remediations": sorted((r["source"], r["status"], r["causeKind"]) for r in world.remediations()),
            "decisions": sorted({(d["clusterResourceId"].rsplit("/", 1)[-1], d["code"])
                                 for d in (world.api("GET", "decisions?limit=200")[1] or {}).get("value", [])}),
            "addPassword": snapshot["requests"].get("graph", {}).get("POST /applications/{id}/addPassword", 0),
        }


def fastpath(*, ingestion_seconds: float = 300, timeout: float = 120) -> dict[str, Any]:
    with health_world() as world:
        world.admin("POST", "faults", {"kind": "ingestion_delay", "seconds": ingestion_seconds})
        failed_at = time.monotonic()
        attempt = world.admin("POST", f"{world.cluster('aks-payments')['id']}/operate", {"kubernetesVersion": "1.30.4"})
        assert not attempt["succeeded"], "the upgrade was expected to fail"
        world.wait(lambda: bool(world.remediations()), timeout, "a remediation to start")
        to_start = time.monotonic() - failed_at
        world.wait(lambda: world.cluster("aks-payments")["secretValidNow"] and world.quiet(), timeout,
                   "the cluster to be repaired")
        to_repair = time.monotonic() - failed_at
        decisions = (world.api("GET", "decisions?limit=50")[1] or {}).get("value", [])
        (remediation,) = world.remediations()
        return {
            "activityLogDelaySeconds": ingestion_seconds,
            "secondsFromFailureToRemediationStarted": round(to_start, 1),
            "secondsFromFailureToRepaired": round(to_repair, 1),
            "activityLogEntriesVisibleWhenRepaired": _visible_entries(world),
            "decision": [d["code"] for d in decisions if d["remediationId"] == remediation["id"]],
            "status": remediation["status"], "resets": world.resets("aks-payments"),
        }


def resets_of(world: World, name: str) -> list[datetime]:
    """When each reset of the cluster started, by the sandbox's ARM."""
    state = world.sandbox.state
    with state.lock:
        return [op.started for op in state.operations.values()
                if op.kind == "reset" and op.cluster.rsplit("/", 1)[-1] == name]


def _failed_entries(world: World) -> int:
    """Failed operations the Activity Log holds (or will show): a write that broke on the secret would be one."""
    state = world.sandbox.state
    with state.lock:
        return sum(1 for entry in state.activity_log if entry["status"]["value"] == "Failed")


def _visible_entries(world: World) -> int:
    """Activity Log entries the list API would show now (those past their submissionTimestamp)."""
    state = world.sandbox.state
    with state.lock:
        now = state.now()
        return sum(1 for entry in state.activity_log if parse_time(entry["submissionTimestamp"]) <= now)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", default=["check", "fastpath"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {name: {"check": check, "fastpath": fastpath}[name]() for name in args.scenarios}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, figures in results.items():
        print(f"{name}: {json.dumps(figures)}")


if __name__ == "__main__":
    main()

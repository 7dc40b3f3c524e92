"""What `python -m remediation preflight` costs the deployer before every `azd up`: a fresh process, as the
preprovision hook starts it, against the sandbox with 50 ms on every ARM, Graph and Entra ID request (median of 3).

Two tenants: a fresh one, and one where another environment's remediator already acts on the subscription (the
preflight then also reads that function app's settings). Printed: wall time, the requests by API, and the verdict.

    python benchmarks/preflight.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox import Sandbox  # noqa: E402
from sandbox.state import Fault  # noqa: E402
from tests.support.wire import sandbox_info_file  # noqa: E402

LATENCY = 0.05
RUNS = 3
FOREVER = 10**9


def preflight_once(sandbox: Sandbox, info: Path) -> tuple[float, dict[str, Any], dict[str, int]]:
    before = sandbox.snapshot()["requests"]
    env = {**os.environ, "AZURE_ENV_NAME": "second", "AZURE_LOCATION": "westeurope",
           "AZURE_SUBSCRIPTION_ID": sandbox.subscription_id}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "remediation", "preflight", "--sandbox", str(info), "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = sandbox.snapshot()["requests"]
    calls = {api: sum(routes.values()) - sum(before.get(api, {}).values()) for api, routes in after.items()}
    return seconds, json.loads(done.stdout), {api: n for api, n in calls.items() if n}


def measure(plant_another: bool) -> dict[str, Any]:
    with Sandbox(scenario="healthy") as sandbox, tempfile.TemporaryDirectory() as directory:
        if plant_another:
            from tests.support.wire import Wire

            Wire(sandbox).admin("remediators", {
                "resourceGroup": "rg-first", "name": "func-remediator-first",
                "tags": {"aks-sp-remediator-environment": "first"},
                "appSettings": {"REMEDIATOR_SUBSCRIPTION_IDS": sandbox.subscription_id}})
        for api in ("arm", "graph", "login"):
            sandbox.state.add_fault(Fault(kind="latency", api=api, remaining=FOREVER, seconds=LATENCY))
        info = sandbox_info_file(sandbox, Path(directory))
        runs = [preflight_once(sandbox, info) for _ in range(RUNS)]
    seconds = [s for s, _, _ in runs]
    _, report, calls = runs[-1]
    return {"median": statistics.median(seconds), "runs": seconds, "calls": calls,
            "failed": [f["code"] for f in report["findings"] if f["status"] == "failed"]}


def main() -> None:
    for name, plant in (("fresh tenant", False), ("another remediator on the subscription", True)):
        figures = measure(plant)
        print(f"preflight, {name}, {LATENCY * 1000:.0f} ms per request: median {figures['median']:.2f} s "
              f"(runs: {', '.join(f'{s:.2f}' for s in figures['runs'])} s); requests {json.dumps(figures['calls'])}; "
              f"failed checks: {figures['failed'] or 'none'}")


if __name__ == "__main__":
    main()

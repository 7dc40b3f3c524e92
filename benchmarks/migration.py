"""Execute mode of the move to managed identity (issue 22), timed: the fleet of tests/test_migration_execute.py (12
service-principal clusters of four shapes, 3 opted in with windows opening now, in 3 h and in 27 h) against the
sandbox and Azurite, through the function app's own triggers, in this process.

Prints, for the three daily checks: the seconds of work until each migration ended, the remediator's calls per
migration by API and route (against the sandbox's request log), the writes that reached the 9 clusters not opted in,
and what a plan of all 12 costs read by the remediator. `python benchmarks/migration.py`.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402

import function_app  # noqa: E402
from sandbox.azurite import Azurite  # noqa: E402
from tests.test_function_app import call, timer  # noqa: E402
from tests.test_migration_execute import clusters, finished, migrations, run_work, writes_to  # noqa: E402
from tests.test_migration_execute import moving as moving_fixture  # noqa: E402


def remediator_calls(sandbox) -> dict[str, dict[str, int]]:  # noqa: ANN001 - a Sandbox
    return {api: dict(routes) for api, routes in
            sandbox.snapshot()["requestsByCaller"].get("aks-sp-remediator", {}).items()}


def minus(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {api: {route: n - before.get(api, {}).get(route, 0) for route, n in routes.items()
                  if n - before.get(api, {}).get(route, 0)} for api, routes in after.items()}


def main() -> None:
    with Azurite() as azurite, pytest.MonkeyPatch.context() as patch:
        start = moving_fixture.__wrapped__(azurite, patch)  # the fixture's generator, driven by hand
        world = next(start)
        sandbox, offset, store, opted = world()
        before = clusters(sandbox)
        seconds, calls = [], []
        for shift, count in ((timedelta(0), 1), (timedelta(hours=3, minutes=10), 2),
                             (timedelta(hours=27, minutes=10), 3)):
            offset[0] = shift
            seen = remediator_calls(sandbox)
            began = time.monotonic()
            call("check_fleet_health", timer())
            run_work(azurite, finished(store, count))
            seconds.append(time.monotonic() - began)
            calls.append(minus(remediator_calls(sandbox), seen))
        after = clusters(sandbox)
        done = migrations(store)
        others = sum(writes_to(after[n]) - writes_to(before[n]) for n in after if n not in opted)
        began = time.monotonic()
        plans = function_app.services().migrations.plan_fleet(set())
        plan_seconds = time.monotonic() - began
        print(f"migrate: 3 daily checks over 12 clusters, 3 opted in: {len(done)} migrated "
              f"({', '.join(sorted(r.status.value for r in done))}), check + migration seconds "
              f"{', '.join(f'{s:.1f}' for s in seconds)} (median {statistics.median(seconds):.1f}); "
              f"writes to the 9 not opted in: {others}")
        for index, spent in enumerate(calls):
            print(f"  check {index + 1}, the remediator's calls: {json.dumps(spent)}")
        print(f"migrate plans: the fleet's {len(plans.view()['value'])} plans read by the remediator in "
              f"{plan_seconds:.2f} s, writes {plans.view()['writes']}")
        next(start, None)


if __name__ == "__main__":
    main()

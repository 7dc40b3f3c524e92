"""Scale-out is the normal case: Flex Consumption runs several instances of the app at once. The
scenarios of benchmarks/scenarios.py and benchmarks/fleet.py with four worker processes on one Azurite and one
sandbox: they compete for the queues' messages, the front end spreads requests and Event Grid deliveries over them,
and a kill_worker fault kills the worker that made the request. The same outcomes as with one: one password per
application (and one more only when the worker holding the first was killed before storing it), one reset per
cluster, every cluster repaired, no failed remediation. `python benchmarks/scenarios.py storm --workers 4` (and
`crashes`, and `benchmarks/fleet.py rotate --workers 4`) run them full size."""

from __future__ import annotations

import pytest

from benchmarks.fleet import rotate
from benchmarks.scenarios import ADD_PASSWORD, RESET, crash_at, crash_mid_reset, live_world, storm
from tests.test_fleet_scenarios import SMALL

# Minutes of worker processes over HTTP: out of the inner loop (`pytest -m "not slow"`), in `make test`.
pytestmark = pytest.mark.slow

WORKERS = 4


def test_a_storm_over_four_workers_mints_one_password_and_resets_once() -> None:
    with live_world(workers=WORKERS) as live:
        figures = storm(live, deliveries=40, requests=12, sweeps=3)
    assert figures["passwordsMinted"] == 1 and figures["resetsStarted"] == 1, figures
    assert figures["failed"] == 0, figures
    assert not any(status.split()[-1].startswith("5") for status in figures["statuses"]), figures["statuses"]
    assert all(figures["connectionsPerWorker"]), figures  # every worker took its share of the storm


@pytest.mark.parametrize(("api", "route", "when"), [("graph", ADD_PASSWORD, "after"), ("arm", RESET, "after")],
                         ids=["after-addPassword", "after-reset-POST"])
def test_the_worker_killed_at_a_write_is_the_one_that_made_it_and_the_others_converge(api: str, route: str,
                                                                                      when: str) -> None:
    with live_world(workers=WORKERS) as live:
        figures = crash_at(live, api, route, when)
    assert [kill["attributed"] for kill in figures["killed"]] == [True], figures
    assert figures["workerRestarted"] and figures["resetsStarted"] == 1 and figures["failed"] == 0, figures
    # Killed after addPassword, the worker took the secret with it: that password is removed and one more minted.
    assert figures["passwordsMinted"] == (2 if route == ADD_PASSWORD else 1), figures
    assert figures["liveUnstoredPasswords"] == 0, figures


def test_every_worker_killed_during_a_long_reset_never_starts_a_second_one() -> None:
    with live_world(workers=WORKERS) as live:
        figures = crash_mid_reset(live, reset_seconds=12)
    assert figures["resetsStarted"] == 1 and figures["passwordsMinted"] == 1 and figures["failed"] == 0, figures


def test_a_fleet_over_four_workers_rotates_each_application_once() -> None:
    figures = rotate(SMALL, propagation_seconds=4, retire_after_hours=0.003, timeout=240, workers=WORKERS,
                     REMEDIATOR_PROPAGATION_SUCCESSES="2", REMEDIATOR_PROPAGATION_INTERVAL_SECONDS="2")
    assert figures["repaired"] == figures["toRepair"] > 0, figures
    assert figures["resetsPerRepairedCluster"] == [(1, figures["toRepair"])], figures
    assert figures["failedResets"] == 0 and figures["writesToOthers"] == 0, figures
    assert figures["addPassword"] == figures["applicationsToRepair"], figures  # one password per application
    assert figures["remediations"] == {"Succeeded": figures["applicationsToRepair"]}, figures
    assert all(figures["connectionsPerWorker"]), figures


def test_a_fleet_over_four_workers_killed_at_its_writes_still_rotates_each_application_once() -> None:
    """Workers killed after an addPassword, before a vault write and after a reset's POST, while others work on the
    fleet's other applications: each kill hits the worker that made the request, and every secret lost with a
    worker is removed again."""
    kills = ({"api": "graph", "route": ADD_PASSWORD, "kind": "kill_worker", "when": "after", "count": 1},
             {"api": "vault", "route": "PUT /secrets/{name}", "kind": "kill_worker", "when": "before", "count": 1},
             {"api": "arm", "route": RESET, "kind": "kill_worker", "when": "after", "count": 1})
    figures = rotate(SMALL, propagation_seconds=4, retire_after_hours=0.003, timeout=240, workers=WORKERS,
                     faults=kills, REMEDIATOR_PROPAGATION_SUCCESSES="2", REMEDIATOR_PROPAGATION_INTERVAL_SECONDS="2",
                     REMEDIATOR_LEASE_SECONDS="5")  # a dead worker's rotation is taken over sooner
    assert [kill["attributed"] for kill in figures["killed"]] == [True] * 3, figures
    assert figures["repaired"] == figures["toRepair"] > 0, figures
    assert figures["resetsPerRepairedCluster"] == [(1, figures["toRepair"])] and figures["failedResets"] == 0, figures
    # Two secrets went down with their workers (after addPassword, before the vault write): two more passwords.
    assert figures["addPassword"] == figures["applicationsToRepair"] + 2, figures
    assert figures["remediations"] == {"Succeeded": figures["applicationsToRepair"]}, figures

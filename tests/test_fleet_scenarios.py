"""The fleet scenarios of benchmarks/fleet.py, smaller: over HTTP against a sandbox fleet, with the function app
in its own worker process. `make bench` runs them on fleet-50 with a 120 s propagation delay."""

from __future__ import annotations

import pytest

from benchmarks.fleet import breaker, cap, observe, rotate
from sandbox.fleets import fleet

# Minutes of worker processes over HTTP: out of the inner loop (`pytest -m "not slow"`), in `make test`.
pytestmark = pytest.mark.slow

# Two subscriptions of three in scope; shared applications, all expired; a managed identity cluster, one
# cluster opted out by its own tag and one resource group by the group's.
SMALL = fleet(clusters=10, subscriptions=3, applications=3, managed_identity=1, opted_out_clusters=1,
              opted_out_groups=1, seed=3)


def test_each_application_is_rotated_once_for_every_cluster_in_scope_with_no_failed_reset() -> None:
    figures = rotate(SMALL, propagation_seconds=4, retire_after_hours=0.003, timeout=240,
                     REMEDIATOR_PROPAGATION_SUCCESSES="2", REMEDIATOR_PROPAGATION_INTERVAL_SECONDS="2")
    assert figures["repaired"] == figures["toRepair"] > 0, figures
    assert figures["resetsPerRepairedCluster"] == [(1, figures["toRepair"])], figures  # one reset each
    assert figures["resetsStarted"] == figures["toRepair"] and figures["failedResets"] == 0, figures
    assert figures["addPassword"] == figures["remediations"]["Succeeded"], figures  # one password per application
    assert figures["writesToOthers"] == 0, figures  # opted out, out of scope, managed identity
    assert figures["removedPasswords"] >= figures["addPassword"], figures  # the expired ones, after the grace


def test_observe_mode_writes_nothing() -> None:
    figures = observe(SMALL)
    assert figures["addPassword"] == 0 and figures["resetsStarted"] == 0 and figures["writesToOthers"] == 0
    assert figures["remediations"] and set(figures["remediations"]) == {"Planned"}, figures
    # One current plan per application a rotation would move, not one per failed cluster.
    assert figures["remediations"]["Planned"] == figures["applicationsToRepair"], figures


def test_the_reset_cap_holds() -> None:
    figures = cap(SMALL, per_hour=2)
    assert figures["resetsStarted"] == 2 and figures["repaired"] == 2 < figures["toRepair"], figures


def test_the_breaker_refuses_after_repeated_failures() -> None:
    figures = breaker(failures=2, cause="propagation")
    assert figures["decisions"] == ["Confirmed", "Confirmed", "CircuitOpen"], figures
    assert figures["resetsStarted"] == 0, figures

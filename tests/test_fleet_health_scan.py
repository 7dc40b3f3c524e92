"""The fleet health scan of benchmarks/fleet_health.py at a size CI can afford: the remediator's own adapters, in a
process of their own, against the sandbox with 50 ms on every call; and with the services throttling it."""

from __future__ import annotations

import math

import pytest

from benchmarks.fleet_health import health_fleet, scan
from sandbox import Sandbox

# Minutes of worker processes over HTTP: out of the inner loop (`pytest -m "not slow"`), in `make test`.
pytestmark = pytest.mark.slow

def test_a_scan_costs_one_resource_graph_call_per_page_and_one_graph_call_per_20_applications() -> None:
    with Sandbox(fleet=health_fleet(1200, subscriptions=20)) as sandbox:
        figures = scan(sandbox)
    assert figures["clusters"] == 1200 and figures["applications"] == 1150
    assert figures["resourceGraphCalls"] == figures["resourceGraphPages"] == 2
    assert figures["graphBatchCalls"] == math.ceil(1150 / 20)
    assert figures["counts"]["managedIdentity"] == 50
    assert figures["counts"]["expired"] > 0 and figures["counts"]["expiring"] > 0
    assert figures["throttledAnswers"] == 0


def test_throttled_requests_inside_batches_are_waited_out_and_asked_again() -> None:
    with Sandbox(fleet=health_fleet(400, subscriptions=4)) as sandbox:
        quiet = scan(sandbox, latency=0)
        throttled = scan(sandbox, latency=0, throttle_rate=0.2)
    assert throttled["answers"]["graph GET /applications(appId=)"]["429"] > 0
    assert throttled["counts"] == quiet["counts"]  # every application was read in the end
    assert throttled["graphBatchCalls"] > quiet["graphBatchCalls"]  # only the throttled ones went again


def test_resource_graphs_quota_is_waited_for_instead_of_spent_on_a_429() -> None:
    with Sandbox(fleet=health_fleet(3500, subscriptions=5)) as sandbox:
        sandbox.state.resource_graph_quota = 2  # two queries per 5 s window: the fourth page must wait
        figures = scan(sandbox, latency=0)
    assert figures["resourceGraphCalls"] == 4 and figures["clusters"] == 3500
    # Two queries a window and four pages, yet not one 429: it waited for the window to reset before the third.
    assert figures["answers"]["arm POST Microsoft.ResourceGraph/resources"] == {"200": 4}

"""The health scan's pipeline against the sandbox (issue 21): Graph's reads start while Resource Graph's later pages
are still to come, Resource Graph's quota is waited out no longer than its window, and a scan signs in once per
audience after one tenant discovery."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from azure.identity import ClientSecretCredential

from benchmarks.fleet_health import health_fleet, scan
from remediation.adapters.graph import BATCH_SIZE, GraphDirectory
from remediation.adapters.resourcegraph import ResourceGraphClusters
from sandbox import Sandbox
from sandbox.fleets import fleet
from sandbox.state import Fault


def credential(sandbox: Sandbox) -> ClientSecretCredential:
    return ClientSecretCredential(sandbox.tenant_id, sandbox.remediator.client_id, sandbox.remediator.client_secret,
                                  authority=sandbox.endpoints["login"], disable_instance_discovery=True,
                                  connection_verify=sandbox.ca_path)


def batch_calls(sandbox: Sandbox) -> int:
    with sandbox.state.lock:
        return sandbox.state.requests["graph"]["POST /$batch"]


def test_batches_go_out_while_the_ids_after_them_are_still_awaited() -> None:
    with Sandbox(fleet=fleet(clusters=30, subscriptions=1, applications=30, managed_identity=0)) as sandbox:
        app_ids = [a["appId"] for a in sandbox.snapshot()["applications"]][:30]
        graph = GraphDirectory(credential(sandbox), endpoint=sandbox.endpoints["graph"], ca_bundle=sandbox.ca_path)
        answered_before_the_rest = threading.Event()

        def as_pages_arrive() -> Iterator[str]:
            yield from app_ids[:BATCH_SIZE]
            deadline = time.monotonic() + 10  # the next "page" comes only once the first batch was answered
            while batch_calls(sandbox) < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            if batch_calls(sandbox) >= 1:
                answered_before_the_rest.set()
            yield from app_ids[BATCH_SIZE:]

        found = graph.get_applications_by_app_ids(as_pages_arrive())
    assert answered_before_the_rest.is_set()
    assert set(found) == {a.lower() for a in app_ids} and all(found.values())
    assert graph.batch_calls == 2  # 20, then the 10 that came later


@pytest.mark.slow  # waits out a 5 s quota window
def test_the_quota_wait_ends_with_the_window_not_a_rounded_second_later() -> None:
    with Sandbox(fleet=fleet(clusters=2100, subscriptions=3, applications=10, managed_identity=0)) as sandbox:
        sandbox.state.resource_graph_quota = 2  # two queries a window: the third page waits
        sandbox.state.add_fault(Fault(kind="latency", api="arm", remaining=10**6, seconds=0.3))
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            time.sleep(seconds)

        inventory = ResourceGraphClusters(credential(sandbox), endpoint=sandbox.endpoints["arm"],
                                          connection_verify=sandbox.ca_path, sleep=sleep)
        listed = list(inventory.list_clusters(sandbox.subscription_ids))
        with sandbox.state.lock:
            answers = dict(sandbox.state.responses["arm"]["POST Microsoft.ResourceGraph/resources"])
    assert len(listed) == 2100 and inventory.calls == 3
    assert answers == {"200": 3}  # not one 429: it never asked early
    # The window began with the first query; the second's answer (0.3 s later) says 00:00:05, rounded up.
    assert len(slept) == 1 and slept[0] < 4.85


@pytest.mark.slow  # a scan in a process of its own
def test_a_scan_makes_one_tenant_discovery_and_one_token_request_per_audience() -> None:
    with Sandbox(fleet=health_fleet(200, subscriptions=2)) as sandbox:
        figures = scan(sandbox, latency=0)
    assert figures["loginRequests"] == {"GET openid-configuration": 1, "POST token": 2}  # Resource Manager, Graph
    assert figures["clusters"] == 200

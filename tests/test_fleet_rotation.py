"""One rotation per application, applied to every cluster it serves, inside the operators' guardrails.

Over stateful fakes, in the order platform teams meet it: a shared service principal expires, one
cluster's upgrade fails, the rotation moves every cluster of that application in scope; another
breaks meanwhile and joins; the grace period passes and the replaced passwords go. And the limits:
scope, opt-out tags, observe mode, the fleet's reset cap, the circuit breaker.
"""

from __future__ import annotations

from datetime import timedelta

from remediation.ids import ClusterId
from remediation.intake.requests import RemediationRequest
from remediation.model import ClusterInfo, Status
from remediation.record import TargetStatus
from tests.conftest import APP_ID, CLUSTER, MSI_CLUSTER, SUB, World, make_world

OTHER_SUB = "6f1c2d3e-0000-4000-8000-000000000002"
SHARED = [ClusterId(SUB, "rg-payments", "aks-payments-2"), ClusterId(SUB, "rg-orders", "aks-orders")]
OPTED_OUT = ClusterId(SUB, "rg-orders", "aks-legacy")
OPTED_OUT_GROUP = ClusterId(SUB, "rg-frozen", "aks-frozen")
DENIED_GROUP = ClusterId(SUB, "rg-prod-core", "aks-core")
ELSEWHERE = ClusterId(OTHER_SUB, "rg-payments", "aks-payments-eu")  # a subscription the remediator does not manage


def fleet(**settings: str) -> World:
    """Seven clusters on one expired application (and one with a managed identity), spread over the limits."""
    world = make_world({"REMEDIATOR_DENY_RESOURCE_GROUPS": "rg-prod-core", **settings})
    for cluster in (*SHARED, OPTED_OUT, OPTED_OUT_GROUP, DENIED_GROUP, ELSEWHERE):
        world.clusters.add(cluster, APP_ID, "old-secret")
    world.clusters.clusters[OPTED_OUT.key].tags = {"aks-sp-remediator": "off"}
    world.resource_groups.tags[(SUB, "rg-frozen")] = {"Aks-SP-Remediator": "Off"}
    return world


def rotations(world: World) -> list:
    return world.store.all()


def test_one_expired_application_is_rotated_once_for_every_cluster_it_serves_in_scope() -> None:
    world = fleet()
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    [rotation] = rotations(world)
    assert rotation.status is Status.SUCCEEDED
    assert len(world.directory.added) == 1  # one password serves all of them
    outcome = {t.cluster.name: (t.status, t.code) for t in rotation.targets}
    assert outcome == {
        "aks-payments": (TargetStatus.VERIFIED, "Verified"),
        "aks-payments-2": (TargetStatus.VERIFIED, "Verified"),
        "aks-orders": (TargetStatus.VERIFIED, "Verified"),
        "aks-legacy": (TargetStatus.SKIPPED, "OptedOut"),
        "aks-frozen": (TargetStatus.SKIPPED, "OptedOut"),
        "aks-core": (TargetStatus.SKIPPED, "DeniedResourceGroup"),
    }
    assert world.clusters.resets_by_cluster == {"aks-payments": 1, "aks-payments-2": 1, "aks-orders": 1}
    assert all(world.clusters.secret_valid(c) for c in (CLUSTER, *SHARED))
    for untouched in (OPTED_OUT, OPTED_OUT_GROUP, DENIED_GROUP, ELSEWHERE, MSI_CLUSTER):
        assert untouched.name not in world.clusters.resets_by_cluster
    assert world.clusters.failed_resets == 0
    view = rotation.view()
    assert {c["clusterResourceId"] for c in view["clusters"]} == {str(t.cluster) for t in rotation.targets}


def test_a_co_tenant_whose_name_the_remediator_refuses_is_named_for_a_person_and_the_rest_are_rotated() -> None:
    # ARM allows Unicode letters in resource group names; the remediator acts only on ASCII names (remediation/ids.py),
    # so such a cluster is listed for a person, never reset, and does not stop the rotation of the others.
    world = fleet()
    odd = (f"/subscriptions/{SUB}/resourceGroups/rg-paiement-\u00e9/providers/Microsoft.ContainerService/"
           "managedClusters/aks")
    world.clusters.also_listed.append(ClusterInfo(odd, "aks", "westeurope", APP_ID, "Succeeded"))
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    [rotation] = rotations(world)
    assert rotation.status is Status.SUCCEEDED, rotation.reason
    assert world.clusters.resets_by_cluster == {"aks-payments": 1, "aks-payments-2": 1, "aks-orders": 1}
    discovered = rotation.steps["discover_clusters"].detail
    assert "1 more left to a person" in discovered and "rg-paiement-\\xe9" in discovered, discovered


def test_the_other_clusters_own_failures_join_the_running_rotation_instead_of_minting_again() -> None:
    world = fleet()
    events = [world.operate(c) for c in (CLUSTER, *SHARED)]
    for event in events:
        world.detector.accept_event(event)
    world.drain()
    assert len(rotations(world)) == 1 and len(world.directory.added) == 1
    assert world.clusters.resets_by_cluster == {"aks-payments": 1, "aks-payments-2": 1, "aks-orders": 1}
    assert world.store.claims == {}


def test_a_cluster_that_breaks_while_the_rotation_runs_joins_it() -> None:
    # Not every password expired (someone rotated one cluster's secret elsewhere): only clusters with their own
    # failure are moved, so a co-tenant that breaks meanwhile joins the rotation that is running.
    world = fleet()
    world.directory.add_password_by_hand(APP_ID, expires_in=timedelta(days=90))
    world.clusters.reset_seconds = 600
    world.detector.accept_event(world.operate(CLUSTER))
    for _ in range(4):
        world.deliver_visible()
        world.clock.advance(seconds=30)
    [rotation] = rotations(world)
    assert not rotation.application_expired and [t.cluster.name for t in rotation.targets] == ["aks-payments"]
    world.detector.accept_event(world.operate(SHARED[0]))
    world.drain()
    [rotation] = rotations(world)
    assert [t.cluster.name for t in rotation.targets] == ["aks-payments", "aks-payments-2"]
    assert all(t.status is TargetStatus.VERIFIED for t in rotation.targets)
    assert len(world.directory.added) == 1 and world.clusters.resets_by_cluster == {"aks-payments": 1,
                                                                                    "aks-payments-2": 1}


def test_an_operators_request_that_joins_a_running_rotation_is_recorded_as_asked_for() -> None:
    # A healthy cluster may be reset only because a person asked: the record must say who brought each in.
    world = fleet()
    world.directory.add_password_by_hand(APP_ID, expires_in=timedelta(days=90))
    world.clusters.reset_seconds = 600
    world.detector.accept_event(world.operate(CLUSTER))
    world.deliver_visible()
    decision = world.remediations.request(RemediationRequest(SHARED[1], reason="move it too"))
    assert decision.code == "JoinedRunning"
    world.drain()
    [rotation] = rotations(world)
    assert {t.cluster.name: t.joined_by for t in rotation.targets} == {"aks-payments": "hint", "aks-orders": "request"}
    assert [c["joinedBy"] for c in rotation.view()["clusters"]] == ["hint", "request"]


def test_replaced_passwords_are_retired_after_the_grace_period_and_others_stay() -> None:
    world = fleet(REMEDIATOR_RETIRE_AFTER_HOURS="24")
    app = world.directory.apps[APP_ID]
    # An earlier rotation's password (still valid, held by nobody now) and one someone else added.
    earlier = world.directory.add_password_by_hand(APP_ID, expires_in=timedelta(days=-1))
    foreign_text = world.directory.add_password_by_hand(APP_ID, expires_in=timedelta(days=100))
    app.passwords[-1].display_name = "ci pipeline"
    ours_before = next(p for p in app.passwords if p.text == earlier)
    ours_before.display_name = "aks-sp-remediator 0123456789abcdef0123456789abcdef"
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    [rotation] = rotations(world)
    # Not every password had expired: only the clusters with their own failure moved, so only expired ones go.
    removed = {r.key_id: r.why for r in rotation.retired}
    assert all(why == "expired" for why in removed.values())
    assert world.directory.text_of(next(p.key_id for p in app.passwords if p.text == foreign_text))  # kept
    assert {"keyId", "hint", "endDateTime", "removedAt"} <= set(rotation.retired[0].view())
    assert rotation.status is Status.SUCCEEDED and rotation.secret.key_id in world.directory.live_key_ids()


def test_when_every_cluster_moved_the_remediators_earlier_passwords_go_too() -> None:
    world = fleet(REMEDIATOR_RETIRE_AFTER_HOURS="24")
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    first = world.directory.added[0]
    world.clock.advance(days=200)  # the first rotation's password has expired too: a new rotation
    world.detector.accept_event(world.operate(CLUSTER))
    verified_at = world.clock()
    world.drain()
    second = sorted(rotations(world), key=lambda r: r.created_at)[-1]
    assert second.status is Status.SUCCEEDED and first in {r.key_id for r in second.retired}
    assert world.clock() >= verified_at + timedelta(hours=24)  # not before the grace period
    assert world.directory.live_key_ids() == {second.secret.key_id}


def test_a_grace_period_of_zero_keeps_every_password() -> None:
    world = fleet(REMEDIATOR_RETIRE_AFTER_HOURS="0")
    before = set(world.directory.live_key_ids())
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    [rotation] = rotations(world)
    assert rotation.steps["retire_old_passwords"].code == "Kept" and rotation.retired == []
    assert before < world.directory.live_key_ids()


def test_observe_mode_decides_and_plans_but_writes_nothing() -> None:
    world = fleet(REMEDIATOR_MODE="observe")
    world.detector.accept_event(world.operate(CLUSTER))
    world.remediations.request(RemediationRequest(SHARED[0], force=True))
    world.drain()
    assert world.directory.writes == 0 and world.vault.secrets == {} and world.clusters.resets_started == 0
    plans = rotations(world)
    assert plans and all(r.status is Status.PLANNED and r.mode == "observe" for r in plans)
    assert any("az aks update-credentials" in line and "aks-orders" in line for line in plans[0].plan)
    assert world.store.claims == {}
    assert "observe mode" in world.incidents.decisions[0]["message"]


def test_the_reset_cap_holds_across_the_fleet() -> None:
    world = fleet(REMEDIATOR_MAX_RESETS_PER_HOUR="2")
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    starts = sorted(world.incidents.reset_starts)
    assert len(starts) == 3 and world.clusters.resets_started == 3
    for index, start in enumerate(starts):
        in_window = [s for s in starts if start <= s < start + timedelta(hours=1)]
        assert len(in_window) <= 2, (index, starts)
    [rotation] = rotations(world)
    assert rotation.status is Status.SUCCEEDED


def test_the_circuit_breaker_stops_a_cluster_that_keeps_failing_until_a_person_looks() -> None:
    world = make_world({"REMEDIATOR_BREAKER_FAILURES": "2"})
    world.clusters.fail_resets = 10**6  # every reset fails inside AKS
    for _ in range(2):
        world.remediations.request(RemediationRequest(CLUSTER, force=True))
        world.drain()
    assert [r.status for r in rotations(world)] == [Status.FAILED, Status.FAILED]
    refused = world.remediations.request(RemediationRequest(CLUSTER, force=True))
    assert refused.code == "CircuitOpen" and "a person must look" in refused.verdict.message
    event = world.operate(CLUSTER)
    world.detector.accept_event(event)
    world.drain()
    assert world.incidents.decisions[-1]["code"] == "CircuitOpen"
    world.clock.advance(hours=25)  # the window passes: it may be tried again
    assert world.remediations.request(RemediationRequest(CLUSTER, force=True)).code == "Requested"


def test_every_refusal_is_a_recorded_decision_with_its_reason_code() -> None:
    world = fleet()
    for cluster in (OPTED_OUT, OPTED_OUT_GROUP, DENIED_GROUP, ELSEWHERE, MSI_CLUSTER):
        world.remediations.request(RemediationRequest(cluster))
    assert [d["code"] for d in world.incidents.decisions] == ["OptedOut", "OptedOut", "DeniedResourceGroup",
                                                              "OutOfScope", "ManagedIdentityCluster"]
    assert world.clusters.resets_started == 0 and world.directory.writes == 0

"""Remediations over stateful fakes, in the order users meet them: end state, not call sequences.

A request, the repair, the next request, a restart in the middle, a crash at every adapter call,
a lost or duplicated work message, an outage of Entra ID. What each step of a rotation guarantees on
its own (storing the secret first, propagation, each reset, retiring passwords) is tests/test_rotation.py's.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from remediation.decide.hints import Decision
from remediation.errors import AuthenticationUnavailableError, InvalidInputError
from remediation.ids import ClusterId
from remediation.intake.requests import RemediationRequest
from remediation.model import Status
from remediation.run.chain import WorkItem
from remediation.run.procedures import ROTATION
from remediation.run.runner import LEASE, STALLED_AFTER
from remediation.run.step import vault_secret_name
from tests.support.world import (
    APP_ID,
    CLUSTER,
    CRASH_POINTS,
    MSI_CLUSTER,
    SUB,
    World,
    assert_repaired_once,
    remediation_of,
    request,
)


@pytest.mark.parametrize("after", [False, True], ids=["before-the-first-write", "after-the-first-write"])
def test_two_workers_admitting_one_application_at_once_start_one_rotation(world: World, after: bool) -> None:
    # A second request, on another worker with the same storage, arrives while the first is writing its admission.
    # Before the claim and its record were one write, a worker that found a claim whose record was still to come took
    # the claim over, and both started a rotation: two passwords, two resets.
    second: list[Decision] = []
    world.faults.meanwhile("store.create_claimed", lambda: second.append(request(world)), after=after)
    first = request(world)
    assert second and first.remediation and second[0].remediation
    assert first.remediation.id == second[0].remediation.id
    assert sorted([first.created, second[0].created]) == [False, True]
    world.drain()
    assert len(world.store.rows) == 1
    assert_repaired_once(world)


def test_an_expired_secret_is_replaced_stored_applied_and_verified(world: World) -> None:
    assert not world.clusters.secret_valid(CLUSTER)
    decision = request(world)
    assert decision.code == "Requested" and decision.created
    world.drain()

    remediation = remediation_of(world, decision)
    assert remediation.status is Status.SUCCEEDED
    assert list(remediation.steps) == [spec.name for spec in ROTATION]
    assert [s.code for s in remediation.steps.values()] == ["Discovered", "SecretStored", "SecretPropagated",
                                                            "Applied", "Kept"]
    [target] = remediation.targets
    assert (target.cluster_id, target.status.value, target.code, target.reset_attempts) == (
        str(CLUSTER), "Verified", "Verified", 1)
    assert_repaired_once(world)
    version = world.vault.list_versions(vault_secret_name(APP_ID))[-1]
    assert version.tags == {"appId": APP_ID, "keyId": remediation.secret.key_id, "remediationId": remediation.id}
    held = world.clusters.clusters[CLUSTER.key].held_secret
    assert held not in json.dumps(world.store.rows[remediation.id][0])
    assert held not in json.dumps(remediation.view())
    assert held not in json.dumps(world.incidents.decisions)


def test_unknown_and_managed_identity_clusters_are_refused_before_any_write(world: World) -> None:
    assert request(world, cluster=ClusterId(SUB, "rg-payments", "aks-missing")).code == "ClusterNotFound"
    refused = request(world, cluster=MSI_CLUSTER)
    assert refused.code == "ManagedIdentityCluster" and "managed identity" in refused.verdict.message
    outside = request(world, cluster=ClusterId("00000000-0000-4000-8000-000000000000", "rg", "aks"))
    assert outside.code == "OutOfScope"
    assert world.store.rows == {} and world.queue.messages == [] and world.directory.writes == 0
    assert [d["code"] for d in world.incidents.decisions] == ["ClusterNotFound", "ManagedIdentityCluster",
                                                              "OutOfScope"]


def test_requests_join_the_running_remediation_and_a_repaired_cluster_is_left_alone(world: World) -> None:
    first = request(world)
    second = request(world)
    assert second.code == "JoinedRunning" and not second.created
    assert second.remediation.id == first.remediation.id
    world.drain()
    # The cluster holds the secret the remediator stored, and it signs in: nothing to do, unless forced.
    again = request(world)
    assert again.code == "CredentialValid" and again.remediation is None
    assert world.clusters.resets_started == 1
    forced = request(world, force=True)
    assert forced.code == "Requested" and forced.created
    world.drain()
    assert world.clusters.resets_started == 2 and world.clusters.secret_valid(CLUSTER)


def test_dry_run_records_a_plan_and_writes_nothing(world: World) -> None:
    decision = request(world, dry_run=True)
    world.drain()
    remediation = remediation_of(world, decision)
    assert remediation.status is Status.PLANNED
    assert any("az aks update-credentials" in line for line in remediation.plan)
    assert world.directory.writes == 0 and world.vault.secrets == {} and world.clusters.resets_started == 0
    assert not world.clusters.secret_valid(CLUSTER)


@pytest.mark.parametrize(("call", "after"), CRASH_POINTS, ids=[f"{c}-{'after' if a else 'before'}"
                                                               for c, a in CRASH_POINTS])
def test_a_worker_killed_at_any_call_converges_to_one_reset(world: World, call: str, after: bool) -> None:
    decision = request(world)
    world.faults.die_at(call, after=after)
    world.drain()
    world.clock.advance(seconds=STALLED_AFTER.total_seconds())
    world.remediations.resume_stalled()  # the timer's safety net, for a crash that lost the work message
    world.drain()
    assert world.faults.crashes == 1
    assert remediation_of(world, decision).status is Status.SUCCEEDED
    assert_repaired_once(world)
    # Every password the remediator added is in Key Vault and in use, or was removed again.
    for key_id in world.directory.added:
        assert key_id in world.vault.stored_key_ids() or key_id not in world.directory.live_key_ids()


def test_duplicate_and_stale_work_messages_are_dropped_and_the_chain_never_forks(world: World) -> None:
    decision = request(world)
    first = dict(world.queue.messages[0].body)
    for _ in range(3):
        world.queue.send(first)  # the same message, delivered again
    world.drain()
    world.queue.send(first)  # a very late copy of a finished chain
    world.drain()
    assert remediation_of(world, decision).status is Status.SUCCEEDED
    assert_repaired_once(world)
    assert len(world.directory.added) == 1


def test_a_lost_work_message_is_taken_over_once_the_remediation_stalls(world: World) -> None:
    decision = request(world)
    world.queue.messages.clear()  # lost
    world.drain()
    assert remediation_of(world, decision).status is Status.ACCEPTED
    world.clock.advance(seconds=STALLED_AFTER.total_seconds() - 60)
    assert world.remediations.resume_stalled() == []  # not yet: a live chain may be waiting this long
    world.clock.advance(seconds=120)
    [resumed] = world.remediations.resume_stalled()
    assert resumed.id == decision.remediation.id
    world.drain()
    assert_repaired_once(world)


def test_a_hint_for_a_stalled_remediation_resumes_it(world: World) -> None:
    decision = request(world)
    world.queue.messages.clear()
    world.clock.advance(seconds=STALLED_AFTER.total_seconds() + 1)
    again = request(world)
    assert again.code == "ResumedStalled" and again.remediation.id == decision.remediation.id
    world.drain()
    assert_repaired_once(world)


def test_a_message_that_keeps_crashing_ends_in_the_poison_queue_and_fails_the_remediation(world: World) -> None:
    decision = request(world)
    world.vault.fail_set = RuntimeError("a bug")  # not an error the runner knows: the host retries it
    world.drain()
    remediation = remediation_of(world, decision)
    assert remediation.status is Status.FAILED and remediation.error["code"] == "PoisonMessage"
    assert remediation.lease_until is None and world.store.claims == {}
    assert world.remediator_passwords() == []  # each try took its unstored password back


def test_an_entra_outage_is_transient_releases_the_lease_and_is_retried(world: World) -> None:
    world.directory.fail_add_password = AuthenticationUnavailableError("token endpoint down", retry_after=30)
    decision = request(world)
    world.deliver_visible()
    remediation = remediation_of(world, decision)
    assert remediation.status is Status.WAITING and remediation.lease_until is None
    assert remediation.reason.startswith("AuthenticationUnavailable")
    assert world.queue.next_visible_at() == world.clock() + timedelta(seconds=30)
    world.directory.fail_add_password = None
    world.drain()
    assert_repaired_once(world)


def test_a_lease_held_by_a_dead_worker_is_taken_once_it_runs_out(world: World) -> None:
    decision = request(world)
    world.faults.die_at("directory.add_password")  # dies holding the lease
    died_at = world.clock()
    world.deliver_visible()
    assert remediation_of(world, decision).lease_until is not None
    world.drain()
    remediation = remediation_of(world, decision)
    # The message came back within seconds, found the lease held, and looked again when it ran out.
    assert remediation.steps["mint_secret"].at >= (died_at + LEASE).isoformat()
    assert_repaired_once(world)


@pytest.mark.parametrize(("body", "code"), [
    (b"{oops", "InvalidJson"),
    (b"[" * 5000 + b"]" * 5000, "InvalidJson"),
    (b"[]", "InvalidJson"),
    (b"{}", "MissingClusterResourceId"),
    (json.dumps({"clusterResourceId": str(CLUSTER), "dryRun": "yes"}).encode(), "InvalidDryRun"),
    (json.dumps({"clusterResourceId": str(CLUSTER), "force": 1}).encode(), "InvalidForce"),
    (json.dumps({"clusterResourceId": str(CLUSTER), "extra": 1}).encode(), "UnknownField"),
    (json.dumps({"clusterResourceId": str(CLUSTER) + "/"}).encode(), "InvalidClusterResourceId"),
    (json.dumps({"clusterResourceId": str(CLUSTER).replace("/resourceGroups/", "//resourceGroups/")}).encode(),
     "InvalidClusterResourceId"),
    (json.dumps({"clusterResourceId": " " + str(CLUSTER)}).encode(), "InvalidClusterResourceId"),
    (b"x" * 70_000, "BodyTooLarge"),
])
def test_malformed_requests_are_rejected_with_a_specific_code(body: bytes, code: str) -> None:
    with pytest.raises(InvalidInputError) as rejected:
        RemediationRequest.from_json(body)
    assert rejected.value.code == code


def test_cluster_ids_are_parsed_case_insensitively() -> None:
    upper = ClusterId.parse(str(CLUSTER).upper().replace("/SUBSCRIPTIONS/", "/subscriptions/"))
    assert upper.key == CLUSTER.key and upper.subscription_id == SUB


@pytest.mark.parametrize("body", [b"", b"{}", b'{"remediationId": 7}', b'{"remediationId": "nothex"}',
                                  b'{"remediationId": "' + b"a" * 32 + b'", "generation": -1}',
                                  b'{"remediationId": "' + b"a" * 32 + b'", "generation": true}',
                                  b"[" * 3000, b"\xff\xfe"])
def test_malformed_work_messages_are_rejected(body: bytes) -> None:
    with pytest.raises(InvalidInputError):
        WorkItem.from_message(body)


def _with_group(group: str, name: str = CLUSTER.name) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.ContainerService/managedClusters/{name}"


# ARM's rules (Microsoft Learn, "Naming rules and restrictions for Azure resources"): a resource group is 1-90
# letters, digits, underscores, parentheses, hyphens and periods, not ending in a period (ASCII only, by choice);
# an AKS cluster 1-63 letters, digits, underscores and hyphens, starting and ending with a letter or digit.
@pytest.mark.parametrize("cluster_id", [
    _with_group("."), _with_group(".."), _with_group("rg-payments."), _with_group("rg-pay\u00e9"),
    _with_group("rg\uff0dpayments"), _with_group("r" * 91), _with_group("rg payments"), _with_group("rg%2e%2e"),
    _with_group("rg-payments", "aks\n") + "/agentPools/np1", _with_group("rg-payments", "aks\u0661"),
    _with_group("rg-payments", "-aks"), _with_group("rg-payments", "a" * 64), _with_group("rg\x1b[31m"),
])
def test_names_outside_arms_rules_are_refused_so_no_client_can_rewrite_the_path(cluster_id: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        ClusterId.parse(cluster_id, allow_child=True)
    assert refused.value.code == "InvalidClusterResourceId"
    with pytest.raises(InvalidInputError):
        RemediationRequest.from_json(json.dumps({"clusterResourceId": cluster_id}).encode())


@pytest.mark.parametrize("group", ["rg.payments", "(rg)_1-a", "r" * 90, "a", "rg.-_()"[:-1] + "x"])
def test_names_inside_arms_rules_are_taken(group: str) -> None:
    assert ClusterId.parse(_with_group(group)).resource_group == group



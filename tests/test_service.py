"""The remediation use cases over stateful fakes: end state, not call sequences."""

from __future__ import annotations

import json

import pytest

from remediation.errors import ConflictError, InvalidInputError, NotFoundError, TransientError
from remediation.ids import ClusterId
from remediation.model import Status
from remediation.service import MAX_RESET_ATTEMPTS, RemediationRequest, WorkItem
from tests.conftest import APP_ID, CLUSTER, MSI_CLUSTER, SUB, World


def submit(world: World, *, dry_run: bool = False, cluster: ClusterId = CLUSTER):
    return world.remediator.submit(RemediationRequest(cluster, dry_run=dry_run))


def test_expired_secret_is_replaced_stored_and_applied(world: World) -> None:
    assert not world.clusters.secret_valid(CLUSTER)
    submission = submit(world)
    world.drain()

    remediation = world.store.get(submission.remediation.id)
    assert remediation.status is Status.SUCCEEDED
    assert list(remediation.steps) == ["inspect_cluster", "find_application", "mint_and_store_secret",
                                       "start_reset", "verify_cluster"]
    assert world.clusters.secret_valid(CLUSTER)
    assert len(world.remediator_passwords()) == 1
    held = world.clusters.clusters[str(CLUSTER).lower()].held_secret
    assert world.vault.current_value(CLUSTER.vault_secret_name) == held
    version = world.vault.list_versions(CLUSTER.vault_secret_name)[-1]
    assert version.tags == {"clusterResourceId": str(CLUSTER), "appId": APP_ID, "keyId": remediation.new_key_id,
                            "remediationId": remediation.id}
    assert held not in json.dumps(world.store.rows[remediation.id][0])
    assert held not in json.dumps(remediation.view())
    assert world.store.claims == {}


def test_unknown_and_managed_identity_clusters_are_refused_before_any_write(world: World) -> None:
    with pytest.raises(NotFoundError):
        submit(world, cluster=ClusterId(SUB, "rg-payments", "aks-missing"))
    with pytest.raises(ConflictError) as refused:
        submit(world, cluster=MSI_CLUSTER)
    assert refused.value.code == "ManagedIdentityCluster"
    assert "managed identity" in str(refused.value)
    assert world.store.rows == {} and world.queue.messages == [] and world.directory.writes == 0


def test_a_second_request_for_the_same_cluster_joins_the_active_remediation(world: World) -> None:
    first = submit(world)
    second = submit(world)
    assert second.created is False
    assert second.remediation.id == first.remediation.id
    assert list(world.store.rows) == [first.remediation.id]
    world.drain()
    third = submit(world)  # the first is finished: a new request starts a new remediation
    assert third.created and third.remediation.id != first.remediation.id


def test_dry_run_records_a_plan_and_writes_nothing(world: World) -> None:
    remediation_id = submit(world, dry_run=True).remediation.id
    world.drain()
    remediation = world.store.get(remediation_id)
    assert remediation.status is Status.PLANNED
    assert any("reset the service principal profile of aks-payments" in line for line in remediation.plan)
    assert world.directory.writes == 0 and world.vault.secrets == {} and world.clusters.resets_started == 0
    assert not world.clusters.secret_valid(CLUSTER)


def test_a_secret_that_cannot_be_stored_is_taken_back_then_retried(world: World) -> None:
    world.vault.fail_set = TransientError("vault throttled", retry_after=10)
    remediation_id = submit(world).remediation.id
    world.deliver_visible()
    remediation = world.store.get(remediation_id)
    assert remediation.status is Status.WAITING
    assert world.remediator_passwords() == []  # minted, not stored, so removed again
    world.vault.fail_set = None
    world.drain()
    assert world.store.get(remediation_id).status is Status.SUCCEEDED
    assert len(world.remediator_passwords()) == 1


def test_death_after_storing_but_before_recording_adopts_the_stored_secret(world: World) -> None:
    remediation_id = submit(world).remediation.id
    saves = world.store.save

    def die_when_recording_the_mint(remediation):
        if remediation.done("mint_and_store_secret"):
            raise RuntimeError("process died")
        return saves(remediation)

    world.store.save = die_when_recording_the_mint
    with pytest.raises(RuntimeError):
        world.drain()
    world.store.save = saves
    world.store.rows[remediation_id][0]["lease_until"] = None  # the dead worker's lease has run out
    world.remediator.advance(WorkItem(remediation_id))
    world.drain()
    assert world.store.get(remediation_id).status is Status.SUCCEEDED
    assert len(world.remediator_passwords()) == 1
    assert len(world.vault.list_versions(CLUSTER.vault_secret_name)) == 1


def test_death_between_minting_and_storing_removes_the_lost_password(world: World) -> None:
    remediation_id = submit(world).remediation.id
    world.vault.fail_set = RuntimeError("process died")
    with pytest.raises(RuntimeError):
        world.drain()
    assert len(world.remediator_passwords()) == 1  # its text is gone with the process
    lost = world.remediator_passwords()[0]
    world.vault.fail_set = None
    world.store.rows[remediation_id][0]["lease_until"] = None
    world.remediator.advance(WorkItem(remediation_id))
    world.drain()
    assert world.store.get(remediation_id).status is Status.SUCCEEDED
    assert world.remediator_passwords() != [lost] and len(world.remediator_passwords()) == 1
    assert world.clusters.secret_valid(CLUSTER)


def test_a_long_reset_is_verified_from_later_messages_and_never_started_twice(world: World) -> None:
    world.clusters.reset_finishes_within_wait = False
    remediation_id = submit(world).remediation.id
    for _ in range(3):
        world.deliver_visible()
        world.clock.advance(seconds=30)
    remediation = world.store.get(remediation_id)
    assert remediation.status is Status.WAITING and remediation.next_step == "verify_cluster"
    world.remediator.advance(WorkItem(remediation_id))  # a duplicate delivery changes nothing
    assert world.clusters.resets_started == 1
    world.clusters.finish_resets()
    world.drain()
    assert world.store.get(remediation_id).status is Status.SUCCEEDED
    assert world.clusters.resets_started == 1


def test_a_reset_that_keeps_failing_gives_up_after_bounded_attempts(world: World) -> None:
    world.directory.accepts = lambda app_id, secret: False  # the new secret never propagates
    remediation_id = submit(world).remediation.id
    world.drain()
    remediation = world.store.get(remediation_id)
    assert remediation.status is Status.FAILED
    assert remediation.error["code"] == "ResetFailed"
    assert world.clusters.resets_started == MAX_RESET_ATTEMPTS
    assert world.store.claims == {}


def test_a_reset_that_never_finishes_times_out(world: World) -> None:
    world.clusters.reset_finishes_within_wait = False
    remediation_id = submit(world).remediation.id
    world.drain(max_rounds=1000)
    remediation = world.store.get(remediation_id)
    assert remediation.status is Status.FAILED and remediation.error["code"] == "ResetTimedOut"


def test_a_deleted_application_fails_with_a_reason_and_writes_nothing(world: World) -> None:
    del world.directory.apps[APP_ID]
    remediation_id = submit(world).remediation.id
    world.drain()
    remediation = world.store.get(remediation_id)
    assert remediation.status is Status.FAILED
    assert remediation.error["code"] == "ApplicationNotFound"
    assert world.directory.writes == 0 and world.clusters.resets_started == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "InvalidJson"),
        (b"[1, 2]", "InvalidJson"),
        (b"{}", "MissingClusterResourceId"),
        (json.dumps({"clusterResourceId": 42}).encode(), "InvalidClusterResourceId"),
        (json.dumps({"clusterResourceId": "/subscriptions/nope"}).encode(), "InvalidClusterResourceId"),
        (json.dumps({"clusterResourceId": f"/subscriptions/{SUB}/resourceGroups/rg/providers/"
                     "Microsoft.Storage/storageAccounts/sa"}).encode(), "NotAManagedCluster"),
        (json.dumps({"clusterResourceId": f"{CLUSTER}/agentPools/np1"}).encode(), "NotAManagedCluster"),
        (json.dumps({"clusterResourceId": str(CLUSTER), "dryRun": "yes"}).encode(), "InvalidDryRun"),
        (json.dumps({"clusterResourceId": str(CLUSTER), "force": True}).encode(), "UnknownField"),
        (b" " * 70_000, "BodyTooLarge"),
    ],
)
def test_malformed_requests_are_rejected_with_a_specific_code(body: bytes, code: str) -> None:
    with pytest.raises(InvalidInputError) as rejected:
        RemediationRequest.from_json(body)
    assert rejected.value.code == code


def test_cluster_ids_are_parsed_case_insensitively() -> None:
    request = RemediationRequest.from_json(json.dumps({
        "clusterResourceId": str(CLUSTER).replace("resourceGroups", "resourcegroups").replace(
            "Microsoft.ContainerService", "microsoft.containerservice"), "dryRun": True}).encode())
    assert request.cluster == CLUSTER and request.dry_run is True
    assert request.cluster.key == ClusterId(SUB.upper(), "RG-PAYMENTS", "aks-payments").key


@pytest.mark.parametrize("body", [b"", b"nope", b"{}", b'{"remediationId": 5}', b'{"remediationId": "../x"}'])
def test_malformed_work_messages_are_rejected(body: bytes) -> None:
    with pytest.raises(InvalidInputError):
        WorkItem.from_message(body)

"""The steps of a rotation (remediation/run/rotation.py), each over stateful fakes in the module's order: which
clusters it moves (`discover_clusters`, the fan-out), the new secret (`mint_secret`), Entra ID accepting it
(`await_propagation`), each cluster's reset (`apply_to_clusters`) and the replaced passwords (`retire_old_passwords`),
then the `az` command a plan shows for a reset. End state, not call sequences; a whole remediation through the use
cases (request, join, crash, lease, lost message) is tests/test_service.py's.
"""

from __future__ import annotations

from datetime import timedelta

from remediation.errors import TransientError
from remediation.intake.requests import RemediationRequest
from remediation.model import ClusterInfo, Credential, Status
from remediation.record import Remediation, TargetStatus
from remediation.run.procedures import MAX_RESET_ATTEMPTS
from remediation.run.rotation import reset_command
from tests.support.world import (
    APP_ID,
    CLUSTER,
    DENIED_GROUP,
    ELSEWHERE,
    MSI_CLUSTER,
    OPTED_OUT,
    OPTED_OUT_GROUP,
    SHARED,
    SUB,
    World,
    assert_repaired_once,
    fleet,
    make_world,
    remediation_of,
    request,
    rotations,
)

# ------------------------------------ discover_clusters: every cluster the application serves in scope


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
    # The fan-out asks Resource Graph once for every managed subscription, not ARM once per subscription.
    assert world.inventory.queries == 1
    view = rotation.view()
    assert {c["clusterResourceId"] for c in view["clusters"]} == {str(t.cluster) for t in rotation.targets}


def test_a_co_tenant_whose_name_the_remediator_refuses_is_named_for_a_person_and_the_rest_are_rotated() -> None:
    # ARM allows Unicode letters in resource group names; the remediator acts only on ASCII names (remediation/ids.py),
    # so such a cluster is listed for a person, never reset, and does not stop the rotation of the others.
    world = fleet()
    odd = (f"/subscriptions/{SUB}/resourceGroups/rg-paiement-\u00e9/providers/Microsoft.ContainerService/"
           "managedClusters/aks")
    world.inventory.also_listed.append(ClusterInfo(odd, "aks", "westeurope", APP_ID, "Succeeded"))
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


# ------------------------------------ mint_secret: stored in Key Vault before anything else


def test_a_secret_that_cannot_be_stored_is_taken_back_then_retried(world: World) -> None:
    world.vault.fail_set = TransientError("vault throttled", retry_after=10)
    decision = request(world)
    world.deliver_visible()
    assert remediation_of(world, decision).status is Status.WAITING
    assert world.remediator_passwords() == []  # minted, not stored, so removed again
    world.vault.fail_set = None
    world.drain()
    assert remediation_of(world, decision).status is Status.SUCCEEDED
    assert_repaired_once(world)


def test_a_password_stored_by_a_run_that_died_before_recording_it_is_adopted_not_minted_again(world: World) -> None:
    # The worker died right after Key Vault took the secret: the next run finds the password by its name (the
    # remediation's) and the stored version by its tags, and keeps both.
    decision = request(world)
    world.faults.die_at("vault.set_secret", after=True)
    world.drain()
    remediation = remediation_of(world, decision)
    assert remediation.steps["mint_secret"].code == "SecretRecovered"
    assert len(world.directory.added) == 1 and remediation.secret.key_id == world.directory.added[0]
    assert_repaired_once(world)


def test_a_password_a_run_added_but_never_stored_is_removed_and_another_minted(world: World) -> None:
    # Graph shows a secret's text once: a password whose text never reached Key Vault can never be used, so it goes.
    decision = request(world)
    world.faults.die_at("directory.add_password", after=True)
    world.drain()
    remediation = remediation_of(world, decision)
    unstored, kept = world.directory.added
    assert remediation.steps["mint_secret"].code == "SecretStored" and remediation.secret.key_id == kept
    assert unstored not in world.directory.live_key_ids() and unstored not in world.vault.stored_key_ids()
    assert_repaired_once(world)


# ------------------------------------ await_propagation: no reset with a secret Entra ID does not accept yet


def test_a_new_secret_is_tested_until_it_signs_in_before_any_reset(world: World) -> None:
    world.directory.propagation = timedelta(minutes=3)  # Entra ID accepts it only after three minutes
    decision = request(world)
    world.drain()
    remediation = remediation_of(world, decision)
    assert remediation.status is Status.SUCCEEDED
    assert remediation.steps["await_propagation"].code == "SecretPropagated"
    assert world.clusters.failed_resets == 0 and remediation.targets[0].reset_attempts == 1
    assert world.sign_in.sign_ins > 1  # it tried, and was refused, before


def test_the_new_secret_is_read_back_from_key_vault_only_in_a_later_invocation() -> None:
    for propagation in (timedelta(0), timedelta(minutes=3)):
        world = make_world()
        world.directory.propagation = propagation
        decision = request(world)
        world.drain()
        assert remediation_of(world, decision).status is Status.SUCCEEDED
        # The invocation that stored it keeps it (the write's answer names the version); each later sign-in runs in
        # an invocation of its own, and the secret is kept nowhere but Key Vault; the reset shares the last one's.
        assert world.vault.reads == world.sign_in.sign_ins - 1
    assert world.sign_in.sign_ins > 1


def test_a_secret_entra_id_never_accepts_fails_the_rotation_before_any_reset(world: World) -> None:
    world.directory.propagation = timedelta(days=30)
    decision = request(world)
    world.drain()
    remediation = remediation_of(world, decision)
    assert remediation.status is Status.FAILED and remediation.error["code"] == "SecretNotAccepted"
    assert world.clusters.resets_started == 0 and world.store.claims == {}


# ------------------------------------ apply_to_clusters: one reset per cluster, looked at before, retried, bounded


def test_a_worker_restarted_during_a_long_reset_waits_for_it_instead_of_starting_another(world: World) -> None:
    world.clusters.reset_seconds = 40 * 60
    decision = request(world)
    world.faults.die_at("clusters.begin_reset", after=True)  # the reset started; its URL was never saved
    world.drain()
    remediation = remediation_of(world, decision)
    assert remediation.status is Status.SUCCEEDED
    assert remediation.targets[0].reset_attempts == 1
    assert_repaired_once(world)


def test_a_worker_restarted_after_a_short_reset_ended_does_not_reset_again(world: World) -> None:
    world.clusters.reset_seconds = 5  # over before the message comes back
    decision = request(world)
    world.faults.die_at("clusters.begin_reset", after=True)
    world.drain()
    assert remediation_of(world, decision).targets[0].reset_attempts == 1
    assert_repaired_once(world)


def test_someone_elses_operation_delays_the_reset_without_counting_as_an_attempt(world: World) -> None:
    found = world.clusters.clusters[CLUSTER.key]
    found.operation, found.provisioning_state = "theirs", "Upgrading"
    decision = request(world)
    world.deliver_visible()
    target = remediation_of(world, decision).targets[0]
    assert target.code == "ClusterBusy" and target.reset_attempts == 0
    found.operation, found.provisioning_state = None, "Succeeded"
    world.drain()
    assert remediation_of(world, decision).targets[0].reset_attempts == 1
    assert_repaired_once(world)


def test_a_running_reset_is_looked_at_when_arms_retry_after_says_and_without_one_after_the_setting() -> None:
    looks = {}
    for retry_after in (None, 20.0):  # REMEDIATOR_RESET_POLL_SECONDS is 30 in this world
        world = make_world()
        world.clusters.reset_seconds, world.clusters.retry_after = 60, retry_after
        decision = request(world)
        world.drain()
        assert remediation_of(world, decision).status is Status.SUCCEEDED
        assert_repaired_once(world)
        looks[retry_after] = world.clusters.operation_looks
    assert looks == {None: 2, 20.0: 3}  # at 30 and 60 s; at 20, 40 and 60 s


def test_a_reset_that_fails_once_is_retried_with_backoff(world: World) -> None:
    world.clusters.fail_resets = 1
    decision = request(world)
    world.drain()
    remediation = remediation_of(world, decision)
    assert remediation.status is Status.SUCCEEDED and remediation.targets[0].reset_attempts == 2
    assert world.clusters.secret_valid(CLUSTER)


def test_a_reset_that_keeps_failing_gives_up_after_bounded_attempts(world: World) -> None:
    world.clusters.fail_resets = 100  # AKS's own reset keeps failing
    decision = request(world)
    world.drain()
    remediation = remediation_of(world, decision)
    assert remediation.status is Status.FAILED and remediation.error["code"] == "ResetFailed"
    assert remediation.targets[0].code == "ResetFailed"
    assert world.clusters.resets_started == MAX_RESET_ATTEMPTS
    assert world.store.claims == {}


def test_a_reset_that_never_finishes_times_out(world: World) -> None:
    world.clusters.reset_seconds = 10 * 3600
    decision = request(world)
    world.drain()
    remediation = remediation_of(world, decision)
    assert remediation.status is Status.FAILED and remediation.targets[0].code == "ResetTimedOut"
    assert world.clusters.resets_started == 1


def test_a_cluster_repaired_by_hand_while_the_worker_lay_dead_before_its_reset_is_not_reset(world: World) -> None:
    # Found by the property model (tests/test_properties.py): the worker counted its reset attempt and died before
    # calling AKS; a person fixed the cluster by hand at that very moment; the resumed rotation must look again
    # (the cluster changed successfully after the decision) instead of re-imaging a working cluster.
    world.detector.accept_event(world.operate(CLUSTER))
    world.faults.die_at("clusters.begin_reset")
    while not world.faults.crashes:
        assert world.deliver_visible(), "the worker never reached the reset"
    world.clusters.fix_by_hand(CLUSTER)
    world.drain()
    [remediation] = world.store.all()
    assert world.clusters.resets_started == 0 and world.clusters.healthy_resets == []
    assert (remediation.targets[0].status, remediation.targets[0].code) == (TargetStatus.SKIPPED, "FixedMeanwhile")


def test_a_cluster_deleted_or_moved_to_another_application_after_the_decision_is_skipped_not_reset() -> None:
    # The last look before a reset (a disruptive write) decides from the cluster as it is now, not as it was.
    world = fleet()
    gone, moved = SHARED

    def meanwhile() -> None:
        del world.clusters.clusters[gone.key]
        world.clusters.clusters[moved.key].client_id = "99999999-0000-4000-8000-000000000009"
    world.faults.meanwhile("vault.set_secret", meanwhile)  # after the fan-out, before any reset
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    [rotation] = rotations(world)
    outcome = {t.cluster.name: (t.status, t.code) for t in rotation.targets}
    assert outcome[gone.name] == (TargetStatus.SKIPPED, "ClusterGone")
    assert outcome[moved.name] == (TargetStatus.SKIPPED, "ServicePrincipalChanged")
    assert outcome[CLUSTER.name] == (TargetStatus.VERIFIED, "Verified") and rotation.status is Status.SUCCEEDED
    assert world.clusters.resets_by_cluster == {CLUSTER.name: 1}


# ------------------------------------ retire_old_passwords: after the grace period, only what no cluster may hold


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


# ------------------------------------ the az command a plan shows for a reset

# `az aks update-credentials` (Azure CLI reference): --reset-service-principal with --service-principal and
# --client-secret; --reset-aad with --aad-server-app-id, --aad-server-app-secret, --aad-client-app-id, --aad-tenant-id.

def planned(**changes) -> Remediation:
    return Remediation(**{"id": "a" * 32, "cluster_id": str(CLUSTER), "dry_run": True, "source": "manual",
                          "status": Status.PLANNED, "created_at": "2026-01-01T00:00:00+00:00",
                          "updated_at": "2026-01-01T00:00:00+00:00", "client_id": APP_ID, **changes})


def test_the_reset_command_names_the_cluster_and_the_application_and_never_a_secret() -> None:
    head = f"az aks update-credentials -g rg-payments -n aks-payments --subscription {SUB}"
    assert reset_command(planned(), CLUSTER) == (f"{head} --reset-service-principal --service-principal {APP_ID}"
                                                 " --client-secret <the new secret>")
    replacing = reset_command(planned(replace=True), CLUSTER)  # the new application is not made yet
    assert "--service-principal <the new application's appId> " in replacing


def test_the_reset_command_of_a_legacy_aad_server_secret_resets_the_aad_profile() -> None:
    aad = planned(credential=Credential.AAD_SERVER.value)
    info = ClusterInfo(str(CLUSTER), CLUSTER.name, "westeurope", "msi", "Succeeded", aad_server_app_id=APP_ID,
                       aad_client_app_id="client-app", aad_tenant_id="tenant")
    head = f"az aks update-credentials -g rg-payments -n aks-payments --subscription {SUB} --reset-aad"
    assert reset_command(aad, CLUSTER, info) == (f"{head} --aad-server-app-id {APP_ID} --aad-server-app-secret"
                                                 " <the new secret> --aad-client-app-id client-app"
                                                 " --aad-tenant-id tenant")
    assert reset_command(aad, CLUSTER).endswith("--aad-client-app-id <its client application id>")

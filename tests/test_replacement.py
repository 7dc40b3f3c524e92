"""A deleted application, a legacy Azure AD server secret, and what is left behind: over stateful fakes, in the
order a platform team meets them.

Someone deletes the application two clusters use; the next upgrade fails with AADSTS700016. With the default
setting the remediator records a plan (the steps and the az commands) and writes nothing; set to replace, it
creates one new application and service principal, gives it the roles the old principal held, and moves both
clusters to it, once, through duplicates, crashes and ARM's replication delay.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from remediation.ids import ClusterId
from remediation.intake.requests import RemediationRequest
from remediation.model import Credential, Status
from remediation.record import TargetStatus
from remediation.run.replacement import application_name
from remediation.run.step import vault_secret_name
from tests.support.fakes import REMEDIATOR_PRINCIPAL_ID
from tests.support.world import APP_ID, CLUSTER, SUB, World, make_world

SHARED = ClusterId(SUB, "rg-orders", "aks-orders")
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
SUBNET = f"/subscriptions/{SUB}/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/aks"
REGISTRY = f"/subscriptions/{SUB}/resourceGroups/rg-acr/providers/Microsoft.ContainerRegistry/registries/acr"
NODE_GROUP = f"/subscriptions/{SUB}/resourceGroups/MC_rg-payments_aks-payments_westeurope"


def deleted_world(**settings: str) -> tuple[World, str]:
    """Two clusters on one application that someone deleted; its principal held three roles. The old
    principal's object id is returned."""
    world = make_world({"REMEDIATOR_ASSIGNABLE_ROLE_IDS": f"{NETWORK_CONTRIBUTOR},{ACR_PULL}", **settings})
    world.directory.apps[APP_ID].passwords[0].end = world.clock() + timedelta(days=200)  # valid, but the app goes
    world.clusters.add(SHARED, APP_ID, "old-secret")
    old = world.directory.apps[APP_ID].sp_object_id
    for scope, role in ((SUBNET, NETWORK_CONTRIBUTOR), (REGISTRY, ACR_PULL), (NODE_GROUP, NETWORK_CONTRIBUTOR)):
        world.roles.plant(scope, role, old)
    world.directory.delete_app(APP_ID)
    return world, old


def replacements(world: World) -> list:
    return [r for r in world.store.all() if r.replace]


def test_by_default_a_deleted_application_gets_a_plan_and_nothing_is_written() -> None:
    world, old = deleted_world()
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    [plan] = replacements(world)
    assert plan.status is Status.PLANNED and plan.dry_run
    assert plan.cause.startswith("ApplicationDeleted") and plan.replacement.old_principal_id == old
    assert world.directory.writes == 0 and world.roles.writes == 0 and world.clusters.resets_started == 0
    assert world.vault.secrets == {}
    text = "\n".join(plan.plan)
    assert f"az ad app create --display-name '{application_name(plan)}'" in text
    assert "az ad sp create --id" in text and "--append" in text
    for scope, role in ((SUBNET, NETWORK_CONTRIBUTOR), (REGISTRY, ACR_PULL), (NODE_GROUP, NETWORK_CONTRIBUTOR)):
        assert f"--role {role} --scope {scope}" in text
    assert text.count("--reset-service-principal") == 2  # both clusters used the deleted application


def test_set_to_replace_one_new_principal_with_the_old_roles_repairs_every_cluster_once() -> None:
    world, old = deleted_world(REMEDIATOR_REPLACE_DELETED="replace")
    world.roles.replication = timedelta(minutes=3)  # ARM sees the new principal only after a while
    events = [world.operate(CLUSTER), world.operate(SHARED), world.operate(CLUSTER)]
    for event in events + events:  # every event delivered twice
        world.detector.accept_event(event)
    world.drain()
    [replacement] = replacements(world)
    assert replacement.status is Status.SUCCEEDED, replacement.error
    assert len(world.directory.created) == 1 and replacement.replacement.new_client_id == world.directory.created[0]
    new = world.directory.apps[replacement.replacement.new_client_id]
    assert REMEDIATOR_PRINCIPAL_ID in new.owners and new.display_name == application_name(replacement)
    assert world.roles.of(new.sp_object_id) == world.roles.of(old)  # the roles carried over, exactly
    for cluster in (CLUSTER, SHARED):
        found = world.clusters.clusters[cluster.key]
        assert found.client_id == replacement.replacement.new_client_id and world.clusters.secret_valid(cluster)
    assert world.clusters.resets_by_cluster == {"aks-payments": 1, "aks-orders": 1}
    assert world.clusters.failed_resets == 0
    # The secret was stored before anything used it, under the new application's name.
    stored = world.vault.current_value(vault_secret_name(replacement.replacement.new_client_id))
    assert stored == world.clusters.clusters[CLUSTER.key].held_secret
    assert stored not in json.dumps(replacement.view()) and stored not in json.dumps(world.incidents.decisions)
    assert {t.status for t in replacement.targets} == {TargetStatus.VERIFIED}
    assert any(c.detail.startswith("assignment") for c in replacement.replacement.roles)
    # The next sweep and a late duplicate find healthy clusters on the new application: nothing more happens.
    world.detector.accept_event(events[0])
    world.drain()
    assert len(world.directory.created) == 1 and len(replacements(world)) == 1


def test_arms_replication_wait_is_timed_from_the_first_role_assignment_not_from_the_secrets_propagation() -> None:
    # Entra ID accepts the new secret after 12 minutes; ARM sees the new principal 25 minutes after it was made.
    # The role step has waited 13 minutes of its 20 when it succeeds: the two waits are separate budgets.
    world, old = deleted_world(REMEDIATOR_REPLACE_DELETED="replace", REMEDIATOR_PROPAGATION_TIMEOUT_MINUTES="20")
    world.directory.propagation = timedelta(minutes=12)
    world.roles.replication = timedelta(minutes=25)
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    [replacement] = replacements(world)
    assert replacement.status is Status.SUCCEEDED, replacement.error
    new = world.directory.apps[replacement.replacement.new_client_id]
    assert world.roles.of(new.sp_object_id) == world.roles.of(old)
    assert world.clusters.resets_by_cluster == {"aks-payments": 1, "aks-orders": 1}


@pytest.mark.parametrize("call", ["directory.create_application", "directory.create_service_principal",
                                  "roles.create", "directory.add_password", "vault.set_secret"])
def test_a_worker_killed_after_each_write_of_a_replacement_creates_one_application(call: str) -> None:
    world, old = deleted_world(REMEDIATOR_REPLACE_DELETED="replace")
    world.faults.die_at(call, after=True)
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    [replacement] = replacements(world)
    assert world.faults.crashes == 1
    assert replacement.status is Status.SUCCEEDED, replacement.error
    assert len(world.directory.created) == 1
    new = world.directory.apps[replacement.replacement.new_client_id]
    assert world.roles.of(new.sp_object_id) == world.roles.of(old)
    assert len([p for p in new.passwords]) == 1  # a password minted but not stored was removed again
    assert world.clusters.resets_by_cluster == {"aks-payments": 1, "aks-orders": 1}


def test_a_role_the_remediator_may_not_give_stops_the_replacement_before_any_write() -> None:
    world, old = deleted_world(REMEDIATOR_REPLACE_DELETED="replace")
    world.roles.plant(NODE_GROUP, CONTRIBUTOR, old)  # not among the assignable roles
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    [replacement] = replacements(world)
    assert replacement.status is Status.FAILED and replacement.error["code"] == "RoleNotAssignable"
    assert CONTRIBUTOR in replacement.error["message"]
    assert world.directory.writes == 0 and world.roles.writes == 0 and world.clusters.resets_started == 0


def test_azures_condition_refusing_a_role_fails_the_replacement_before_any_reset() -> None:
    # The setting allows every role, but Azure's condition on the remediator's rights does not.
    world, old = deleted_world(REMEDIATOR_REPLACE_DELETED="replace", REMEDIATOR_ASSIGNABLE_ROLE_IDS="")
    world.roles.assignable = frozenset({NETWORK_CONTRIBUTOR})
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    [replacement] = replacements(world)
    assert replacement.status is Status.FAILED and replacement.error["code"] == "AuthorizationFailed"
    assert world.clusters.resets_started == 0
    assert world.clusters.clusters[CLUSTER.key].client_id == APP_ID  # left as it was, for a person


def test_a_principal_gone_from_deleted_items_is_not_replaced_blindly() -> None:
    world, _ = deleted_world(REMEDIATOR_REPLACE_DELETED="replace")
    world.clock.advance(days=31)  # Entra ID purged the deleted principal
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    [replacement] = replacements(world)
    assert replacement.status is Status.FAILED and replacement.error["code"] == "OldPrincipalNotFound"
    assert world.directory.writes == 0 and world.clusters.resets_started == 0


def test_an_application_graph_shows_but_the_remediator_does_not_own_is_left_alone() -> None:
    world = make_world()
    world.directory.apps[APP_ID].owners = set()
    decision = world.remediations.request(RemediationRequest(CLUSTER))
    assert decision.code == "ApplicationNotOwned" and REMEDIATOR_PRINCIPAL_ID in decision.verdict.message
    assert "az ad app owner add" in decision.verdict.message
    assert world.directory.writes == 0 and world.store.rows == {}


def test_a_legacy_azure_ad_server_secret_is_rotated_and_the_aad_profile_reset() -> None:
    world = make_world()
    server = "99999999-2222-4333-8444-555555555555"
    world.directory.create_app(server, secret="server-old", expires_in=timedelta(days=-1))
    found = world.clusters.clusters[CLUSTER.key]
    found.aad_server_app_id, found.aad_client_app_id, found.aad_secret = server, "client-app", "server-old"
    found.held_secret = world.directory.add_password_by_hand(APP_ID, expires_in=timedelta(days=90))  # SP is fine
    sp_secret = found.held_secret
    decision = world.remediations.request(RemediationRequest(CLUSTER, credential=Credential.AAD_SERVER))
    assert decision.code == "Requested", decision.verdict.message
    world.drain()
    rotation = world.store.get(decision.remediation.id)
    assert rotation.status is Status.SUCCEEDED and rotation.credential == "aadServer" and rotation.client_id == server
    assert world.directory.accepts(server, found.aad_secret) and found.aad_secret != "server-old"
    assert found.held_secret == sp_secret and found.client_id == APP_ID  # the service principal was not touched
    assert world.vault.current_value(vault_secret_name(server)) == found.aad_secret
    assert world.clusters.resets_by_cluster == {"aks-payments": 1}


def test_orphans_are_the_remediators_applications_no_cluster_uses() -> None:
    world = make_world()
    world.directory.create_app("22222222-0000-4000-8000-000000000001", secret="s", expires_in=timedelta(days=9),
                               display_name="left behind")
    world.directory.create_app("22222222-0000-4000-8000-000000000002", secret="s", expires_in=timedelta(days=9),
                               display_name="someone else's", owned=False)
    in_use = world.remediations.orphans()
    assert [o.application.display_name for o in in_use] == ["left behind"]
    view = in_use[0].view(world.clock())
    assert view["deleteCommand"] == "az ad app delete --id 22222222-0000-4000-8000-000000000001"
    assert view["passwords"][0]["expired"] is False and view["usedByClustersIn"] == [SUB]
    assert world.directory.writes == 0


# ---------------------------------------------------------------- what an attacker can choose: a name, co-ownership

ATTACKER = "0b0b0b0b-0000-4000-8000-00000000bad0"  # another identity of the tenant, owner of its own applications


def _running_replacement(world: World):
    [replacement] = replacements(world)
    return replacement


def _plant(world: World, display_name: str, *, notes: str = "", owners: set[str] | None = None,
           with_password: bool = False, federated: int = 0):
    """An application someone else registered: their own, with the remediator added as a co-owner (any owner may)."""
    app = world.directory.create_app(f"{len(world.directory.apps):08d}-aaaa-4aaa-8aaa-aaaaaaaaaaaa", secret="theirs",
                                     expires_in=timedelta(days=365), display_name=display_name)
    if not with_password:
        app.passwords.clear()
    app.owners, app.notes, app.federated = owners or {ATTACKER, REMEDIATOR_PRINCIPAL_ID}, notes, federated
    return app


def _assert_nothing_given_to(world: World, app) -> None:
    assert not world.roles.of(app.sp_object_id) if app.sp_object_id else True
    assert all(c.client_id != app.app_id for c in world.clusters.clusters.values())


@pytest.mark.parametrize("committed", [True, False], ids=["create-committed-answer-lost", "create-never-made"])
def test_an_application_named_as_the_remediator_would_and_co_owned_by_it_is_never_adopted(committed: bool) -> None:
    # The name `<old name> (aks-sp-remediator <id[:12]>)` is predictable from the remediation id, which any
    # Remediations.Read caller sees; the attacker registers it and adds the remediator as co-owner while the
    # remediator's worker is down.
    world, old = deleted_world(REMEDIATOR_REPLACE_DELETED="replace")
    planted: list = []
    world.faults.die_at("directory.create_application", after=committed)
    world.faults.meanwhile("directory.create_application", lambda: planted.append(
        _plant(world, application_name(_running_replacement(world)))), after=committed)
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    replacement = _running_replacement(world)
    assert replacement.status is Status.SUCCEEDED, replacement.error
    [attackers] = planted
    new_client_id = replacement.replacement.new_client_id
    assert new_client_id != attackers.app_id and new_client_id in world.directory.created
    assert len(world.directory.created) == 1
    _assert_nothing_given_to(world, attackers)
    assert world.roles.of(world.directory.apps[new_client_id].sp_object_id) == world.roles.of(old)


def test_two_applications_carrying_the_creation_nonce_stop_the_replacement_for_a_person() -> None:
    # The remediator's own create committed and its answer was lost; an attacker read the new application's notes
    # and registered a copy, co-owned by the remediator. Graph promises no order: nothing breaks the tie.
    world, old = deleted_world(REMEDIATOR_REPLACE_DELETED="replace")
    world.faults.die_at("directory.create_application", after=True)

    def copy_ours() -> None:
        ours = world.directory.apps[world.directory.created[0]]
        _plant(world, ours.display_name, notes=ours.notes)

    world.faults.meanwhile("directory.create_application", copy_ours, after=True)
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    replacement = _running_replacement(world)
    assert replacement.status is Status.FAILED and replacement.error["code"] == "AmbiguousReplacement"
    assert "a person must look" in replacement.error["message"]
    assert world.roles.writes == 0 and world.clusters.resets_started == 0 and world.vault.secrets == {}
    assert replacement.replacement.app_nonce and replacement.replacement.app_nonce not in json.dumps(replacement.view())


@pytest.mark.parametrize("tampering", ["co-owner", "password", "federated"])
def test_the_one_application_carrying_the_nonce_is_adopted_only_if_it_is_the_remediators_alone(
        tampering: str) -> None:
    world, _ = deleted_world(REMEDIATOR_REPLACE_DELETED="replace")
    world.faults.die_at("directory.create_application", after=True)

    def tamper() -> None:
        ours = world.directory.apps[world.directory.created[0]]
        if tampering == "co-owner":
            ours.owners.add(ATTACKER)
        elif tampering == "password":
            world.directory.add_password_by_hand(ours.app_id, expires_in=timedelta(days=30))
        else:
            ours.federated = 1

    world.faults.meanwhile("directory.create_application", tamper, after=True)
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    replacement = _running_replacement(world)
    assert replacement.status is Status.FAILED and replacement.error["code"] == "ReplacementNotAdoptable"
    assert world.roles.writes == 0 and world.clusters.resets_started == 0


def test_a_service_principal_someone_else_made_and_holds_a_credential_of_is_not_used() -> None:
    world, _ = deleted_world(REMEDIATOR_REPLACE_DELETED="replace")

    def preempt() -> None:  # the new application's principal, made by another owner, with a secret of its own
        ours = world.directory.apps[world.directory.created[0]]
        ours.sp_object_id, ours.sp_owners, ours.sp_credentials = "0c0c0c0c-0000-4000-8000-00000000bad1", {ATTACKER}, 1

    world.faults.meanwhile("directory.create_application", preempt, after=True)
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    replacement = _running_replacement(world)
    assert replacement.status is Status.FAILED and replacement.error["code"] == "ReplacementNotAdoptable"
    assert world.roles.writes == 0 and world.clusters.resets_started == 0


def test_a_role_in_a_denied_resource_group_refuses_the_replacement_before_any_write() -> None:
    # The scope guardrails apply to every write, role assignments included.
    world, _ = deleted_world(REMEDIATOR_REPLACE_DELETED="replace", REMEDIATOR_DENY_RESOURCE_GROUPS="rg-net")
    world.detector.accept_event(world.operate(CLUSTER))
    world.drain()
    replacement = _running_replacement(world)
    assert replacement.status is Status.FAILED and replacement.error["code"] == "RoleNotAssignable"
    assert "DeniedResourceGroup" in replacement.error["message"] and "rg-net" in replacement.error["message"]
    assert world.directory.writes == 0 and world.roles.writes == 0 and world.clusters.resets_started == 0
    # The plan shows it too.
    planned, _ = deleted_world(REMEDIATOR_DENY_RESOURCE_GROUPS="rg-net")
    planned.detector.accept_event(planned.operate(CLUSTER))
    planned.drain()
    text = "\n".join(_running_replacement(planned).plan)
    assert f"--scope {SUBNET}" in text and "not possible for the remediator: DeniedResourceGroup" in text

"""The gate of execute mode (remediation/decide/migration_gate.py): pure checks, each case decided by the first that
answers; and what carries a migration between invocations (its record, its queued check, its settings)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from remediation.app.settings import Settings
from remediation.decide.guardrails import ControlTag, Guardrails, MigrateMode, Migration, Mode
from remediation.decide.hints import Act
from remediation.decide.migration import BLOCKED, READY, MigrationPlan
from remediation.decide.migration_gate import MigrationFacts, decide
from remediation.errors import ConfigurationError, InvalidInputError
from remediation.ids import ClusterId
from remediation.intake.health import MIGRATION, CredentialCheck
from remediation.model import ClusterInfo, Status
from remediation.record import IdentityMade, MigrationState, Operation, Remediation
from tests.test_settings import MINIMAL

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
CLUSTER = ClusterId("00000000-0000-0000-0000-0000000000aa", "rg-apps", "aks-net")
APP = "11111111-2222-4333-8444-555555555555"
ON = Guardrails(migration=Migration(mode=MigrateMode.EXECUTE, identity_group="rg-aks-identities"))
OPEN = {"source": "aksManagedNodeOSUpgradeSchedule", "description": "weekly", "openNow": True,
        "closes": (NOW + timedelta(hours=3)).isoformat(), "nextOpening": (NOW - timedelta(hours=1)).isoformat()}


def info(tags: dict[str, str] | None = None, client_id: str = APP) -> ClusterInfo:
    return ClusterInfo(str(CLUSTER), CLUSTER.name, "westeurope", client_id, "Succeeded",
                       tags={"aks-sp-remediator": "migrate"} if tags is None else tags)


def plan(status: str = READY, window: dict | None = None) -> MigrationPlan:
    return MigrationPlan(str(CLUSTER), status, "2 role(s) to grant before the switch" if status == READY
                         else "1 role(s) cannot be carried: ManagementGroupScope", window=OPEN if window is None
                         else window)


def facts(**changes) -> MigrationFacts:
    return replace(MigrationFacts(info(), {}, None, 0, plan()), **changes)


def running(*, migrate: bool) -> Remediation:
    return Remediation(id="r1", cluster_id=str(CLUSTER), dry_run=False, source="event", status=Status.RUNNING,
                       created_at=NOW.isoformat(), updated_at=NOW.isoformat(), migrate=migrate, client_id=APP)


@pytest.mark.parametrize(("case", "guardrails", "code", "act"), [
    (facts(), ON, "MigrationReady", Act.START),
    (facts(), Guardrails(), "MigrationDisabled", Act.NONE),  # off by default, whatever the tag says
    (facts(cluster=None), ON, "ClusterNotFound", Act.NONE),
    (facts(cluster=info(client_id="msi")), ON, "ManagedIdentityCluster", Act.NONE),
    (facts(cluster=info({"aks-sp-remediator": "migrate", "AKS-SP-Remediator": "off"})), ON, "OptedOut", Act.NONE),
    (facts(group_tags={"aks-sp-remediator": "off"}), ON, "OptedOut", Act.NONE),
    # A resource group's opt-in does not move its clusters: only the cluster's own tag does.
    (facts(cluster=info({}), group_tags={"aks-sp-remediator": "migrate"}), ON, "NotOptedIn", Act.NONE),
    (facts(active=running(migrate=False)), ON, "ApplicationBusy", Act.NONE),  # a repair goes first
    (facts(active=running(migrate=True)), ON, "MigrationUnderWay", Act.NONE),  # never a second migration
    (facts(failed_migrations=3), ON, "CircuitOpen", Act.NONE),
    (facts(plan=plan(BLOCKED)), ON, "MigrationBlocked", Act.NONE),
    (facts(), replace(ON, mode=Mode.OBSERVE), "ObserveMode", Act.NONE),
    (facts(plan=plan(window={"source": None, "description": "no maintenance window"})), ON, "NoMaintenanceWindow",
     Act.NONE),
])
def test_each_guardrail_answers_in_its_turn(case: MigrationFacts, guardrails: Guardrails, code: str, act: Act) -> None:
    verdict = decide(case, guardrails, NOW)
    assert (verdict.code, verdict.act) == (code, act), verdict.message


def test_a_role_in_a_subscription_the_remediator_does_not_manage_blocks_the_move_before_any_write() -> None:
    from remediation.decide.guardrails import Scope
    from remediation.decide.migration import CONTROL_PLANE, NETWORK_CONTRIBUTOR, CarriedRole

    hub = "/subscriptions/99999999-0000-0000-0000-000000000001/resourceGroups/rg-hub/providers/Microsoft.Network/" \
          "virtualNetworks/hub/subnets/aks"
    reaching = replace(plan(), roles=(CarriedRole(CONTROL_PLANE, hub, "", NETWORK_CONTRIBUTOR, "its subnet"),))
    managed = replace(ON, scope=Scope(subscriptions=frozenset({CLUSTER.subscription_id})))
    verdict = decide(facts(plan=reaching), managed, NOW)
    assert verdict.code == "MigrationBlocked" and "rg-hub" in verdict.message
    assert decide(facts(plan=reaching), ON, NOW).act is Act.START  # no managed list: every subscription is in reach


def test_outside_its_window_the_cluster_is_asked_again_when_the_window_opens() -> None:
    opens = NOW + timedelta(hours=3)
    later = {"source": "default", "description": "weekly", "openNow": False, "nextOpening": opens.isoformat()}
    verdict = decide(facts(plan=plan(window=later)), ON, NOW)
    assert verdict.code == "OutsideMaintenanceWindow" and verdict.next_chance == opens


def test_a_blocked_plan_wins_over_observe_mode_and_the_window() -> None:
    # Observe mode records why a move would not happen; a blocker is that reason, with or without a window.
    verdict = decide(facts(plan=plan(BLOCKED, window={"source": None})), replace(ON, mode=Mode.OBSERVE), NOW)
    assert verdict.code == "MigrationBlocked" and "ManagementGroupScope" in verdict.message


def test_the_opt_in_tag_is_the_operators_and_matches_without_case() -> None:
    custom = replace(ON, migration=replace(ON.migration, opt_in=ControlTag("platform/msi", "yes")))
    assert decide(facts(cluster=info({"Platform/MSI": "YES"})), custom, NOW).act is Act.START
    assert decide(facts(), custom, NOW).code == "NotOptedIn"


def test_a_migrations_state_survives_the_table_round_trip() -> None:
    record = running(migrate=True)
    record.migration = MigrationState(
        identity_group="rg-aks-identities", location="westeurope", names={"controlPlane": "id-a-1-control-plane"},
        roles=[{"identity": "controlPlane", "scope": "/subscriptions/x/rg", "role": "4d97", "status": "Assigned",
                "detail": ""}], made={"controlPlane": IdentityMade("/id", "p", "c")},
        window_end=NOW.isoformat(), switch=Operation(started_at=NOW.isoformat(), status_url="https://arm/op"),
        pools={"nodepool1": Operation(finished_at=NOW.isoformat())})
    again = Remediation.from_entity(record.to_entity())
    assert again.migrate and again.migration == record.migration
    assert again.view()["migration"]["identities"]["controlPlane"]["principalId"] == "p"
    rotation = Remediation.from_entity(running(migrate=False).to_entity())
    assert "migration" not in rotation.to_entity() and "migration" not in rotation.view()


def test_a_queued_migration_check_names_its_kind_and_refuses_others() -> None:
    check = CredentialCheck(CLUSTER, NOW, None, MIGRATION)
    assert CredentialCheck.from_message(json.dumps(check.to_message())) == check
    plain = CredentialCheck(CLUSTER, NOW)
    assert "kind" not in plain.to_message()  # a rotation's check reads as before the move existed
    with pytest.raises(InvalidInputError):
        CredentialCheck.from_message(json.dumps({**plain.to_message(), "kind": "delete"}))


def test_execute_mode_needs_the_identity_group() -> None:
    env = {**MINIMAL, "REMEDIATOR_MIGRATE": "execute"}
    with pytest.raises(ConfigurationError, match="REMEDIATOR_MIGRATION_IDENTITY_GROUP"):
        Settings.from_env(env)
    settings = Settings.from_env({**env, "REMEDIATOR_MIGRATION_IDENTITY_GROUP": "rg-aks-identities"})
    assert settings.guardrails.migration.enabled and settings.guardrails.migration.identity_group == "rg-aks-identities"
    assert not Settings.from_env(MINIMAL).guardrails.migration.enabled  # off unless asked


def test_a_failure_while_a_migration_holds_the_application_waits_for_it() -> None:
    # The migration holds the application's claim: a failure of one of its clusters neither joins it (it moves one
    # cluster and takes in none) nor starts a rotation beside it; the next hint or sweep after it decides again.
    from tests.support.world import APP_ID, make_world
    from tests.support.world import CLUSTER as WORLD_CLUSTER

    world = make_world()
    moving = Remediation(id="m1", cluster_id=str(WORLD_CLUSTER), dry_run=False, source="migration",
                         status=Status.RUNNING, created_at=world.clock.now.isoformat(),
                         updated_at=world.clock.now.isoformat(), migrate=True, client_id=APP_ID,
                         targets=[], migration=MigrationState())
    world.store.create_claimed(moving, moving.claim_key, replacing=None)
    world.detector.accept_event(world.operate(WORLD_CLUSTER))
    world.drain()
    assert [r.id for r in world.store.list_for_application(APP_ID, limit=10)] == ["m1"]
    assert not world.store.get("m1").rejoin(WORLD_CLUSTER, joined_by="hint", not_after=None, order=())
    codes = [d["code"] for d in world.incidents.list_decisions(limit=10)]
    assert "MigrationUnderWay" in codes, codes


def test_after_the_grace_a_migrated_applications_passwords_go_once_no_cluster_uses_it() -> None:
    # The move replaces every password of the application (no cluster holds one any more): the remediator's own go
    # after REMEDIATOR_RETIRE_AFTER_HOURS, like any replaced password; a person's only with
    # REMEDIATOR_RETIRE_FOREIGN_PASSWORDS; the application stays. While a cluster in scope still uses it, none go.
    from remediation.run.migration import retire_old_secret
    from remediation.run.step import StepConfig, StepContext, Wait
    from tests.support.fakes import FakePassword
    from tests.support.world import APP_ID, SUB, make_world
    from tests.support.world import CLUSTER as WORLD_CLUSTER

    world = make_world()
    app = world.directory.apps[APP_ID]
    ours = FakePassword("k-ours", "aks-sp-remediator 0123", world.clock() + timedelta(days=90), "ours")
    app.passwords.append(ours)
    world.directory.add_password_by_hand(APP_ID, expires_in=timedelta(days=90))
    by_hand = app.passwords[-1].key_id
    stamp = world.clock().isoformat()
    moved = Remediation(id="m2", cluster_id=str(WORLD_CLUSTER), dry_run=False, source="migration",
                        status=Status.RUNNING, created_at=stamp, updated_at=stamp,
                        migrate=True, client_id=APP_ID, app_object_id=app.object_id, targets=[],
                        verified_at=(world.clock() - timedelta(hours=1)).isoformat())
    ctx = StepContext(world.clusters, world.directory, world.vault, world.sign_in, world.resource_groups,
                      world.incidents, StepConfig(retire_after=timedelta(hours=24), subscriptions=(SUB,)), world.clock,
                      checkpoint=lambda r: r, inventory=world.inventory)

    assert isinstance(retire_old_secret(ctx, moved), Wait)  # inside the grace: nothing goes
    moved.verified_at = (world.clock() - timedelta(hours=25)).isoformat()
    assert retire_old_secret(ctx, moved).code == "StillInUse"  # aks-payments still holds the application's secret
    assert {"k-ours", by_hand} <= {p.key_id for p in app.passwords}
    world.clusters.clusters[WORLD_CLUSTER.key].client_id = "msi"  # it moved too
    outcome = retire_old_secret(ctx, moved)
    assert outcome.code == "Retired", outcome
    left = {p.key_id for p in app.passwords}
    assert "k-ours" not in left and by_hand in left and APP_ID in world.directory.apps
    assert {p.key_id for p in moved.retired} >= {"k-ours"} and "original" not in {p.display_name for p in app.passwords}

"""The remediation record's own rules (remediation/record.py): what takes the application's claim, when a
rotation has stalled, how a cluster rejoins it, what it verified, and that records written before the typed state
(before the record owned its rules) still load, so a remediation in flight during an upgrade carries on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from remediation.ids import ClusterId
from remediation.model import Status
from remediation.record import CarriedRole, Remediation, Target, TargetStatus
from remediation.run.procedures import ROTATION
from tests.support.world import APP_ID, CLUSTER, SUB

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
OTHER = ClusterId(SUB, "rg-payments", "aks-payments-2")
ORDER = tuple(spec.name for spec in ROTATION)


def rotation(**changes) -> Remediation:
    return Remediation(**{"id": "a" * 32, "cluster_id": str(CLUSTER), "dry_run": False, "source": "event",
                          "status": Status.WAITING, "created_at": NOW.isoformat(), "updated_at": NOW.isoformat(),
                          "client_id": APP_ID, "targets": [Target(str(CLUSTER))], **changes})


def test_only_a_remediation_that_writes_takes_the_applications_claim() -> None:
    assert rotation().takes_claim and rotation().claim_key == f"app-{APP_ID}"
    assert not rotation(dry_run=True).takes_claim and not rotation(mode="observe").takes_claim


def test_a_rotation_has_stalled_only_when_unfinished_and_untouched_for_longer_than_any_live_chain_waits() -> None:
    after = timedelta(minutes=21)
    assert not rotation().stalled(NOW + after, after)
    assert rotation().stalled(NOW + after + timedelta(seconds=1), after)
    assert not rotation(status=Status.SUCCEEDED).stalled(NOW + timedelta(days=1), after)


def test_a_cluster_that_breaks_again_rejoins_and_the_fan_out_runs_again() -> None:
    r = rotation()
    for name in ORDER:
        r.mark(name, "Done", "", NOW)
    r.targets[0].set(TargetStatus.VERIFIED, "Verified", "", NOW)
    r.targets[0].reset_attempts = 2
    assert r.verified(CLUSTER) and r.cluster_verified_at(CLUSTER) == NOW.isoformat()
    assert r.rejoin(CLUSTER, joined_by="hint", not_after=None, order=ORDER)
    target = r.target(CLUSTER)
    assert (target.status, target.code, target.reset_attempts) == (TargetStatus.PENDING, "Rejoined", 0)
    assert [n for n in ORDER if r.done(n)] == ["discover_clusters", "mint_secret", "await_propagation"]
    assert not r.rejoin(CLUSTER, joined_by="hint", not_after=None, order=ORDER)  # already pending: nothing to do
    assert r.rejoin(OTHER, joined_by="request", not_after="2026-11-23T13:00:00+00:00", order=ORDER)
    assert r.target(OTHER).joined_by == "request" and r.target(OTHER).not_after is not None
    assert not rotation(status=Status.SUCCEEDED).rejoin(OTHER, joined_by="hint", not_after=None, order=ORDER)


def test_a_record_round_trips_through_storage_with_its_typed_state_and_never_shows_the_nonce() -> None:
    r = rotation(replace=True)
    r.progress("mint_secret").attempts = 2
    r.secret.key_id, r.secret.vault_name, r.secret.vault_version = "k", "aks-sp-app-x", "v1"
    r.replacement.app_nonce, r.replacement.new_client_id = "f" * 32, "new-app"
    r.replacement.roles = [CarriedRole("/subscriptions/s/resourceGroups/rg", "/x/roleDefinitions/r", "r")]
    loaded = Remediation.from_entity(r.to_entity())
    assert loaded == r
    assert "f" * 32 not in json.dumps(loaded.view())
    assert loaded.view()["replacement"]["roleAssignments"][0]["status"] == "Pending"


def test_a_record_written_before_the_typed_state_loads_into_it() -> None:
    # The columns of an older record: a rotation that had minted, stored and was waiting on propagation,
    # with a replacement's fields, as Table storage returned them.
    legacy = {
        "id": "b" * 32, "cluster_id": str(CLUSTER), "dry_run": False, "source": "event", "status": "Waiting",
        "created_at": NOW.isoformat(), "updated_at": NOW.isoformat(), "client_id": APP_ID, "replace": True,
        "steps": json.dumps({"discover_clusters": {"at": NOW.isoformat(), "code": "Discovered", "detail": "1"},
                             "mint_secret": {"at": NOW.isoformat(), "code": "SecretStored", "detail": "k"}}),
        "targets": json.dumps([{"cluster_id": str(CLUSTER), "status": "Pending"}]),
        "mint_started_at": NOW.isoformat(), "new_key_id": "k1", "vault_secret_name": "aks-sp-app-x",
        "vault_secret_version": "v1", "propagation_started_at": NOW.isoformat(), "propagation_successes": 2,
        "old_principal_id": "old", "new_client_id": "new", "app_nonce": "n",
        "role_assignments": json.dumps([{"scope": "/s", "roleDefinitionId": "/d", "role": "r", "status": "Assigned",
                                         "detail": "assignment x"}]),
        "retired": json.dumps([]), "old_key_ids": json.dumps(["k0"]), "plan": json.dumps([]),
    }
    r = Remediation.from_entity(legacy)
    assert (r.secret.key_id, r.secret.vault_name, r.secret.vault_version, r.secret.accepted_in_a_row) == (
        "k1", "aks-sp-app-x", "v1", 2)
    assert (r.replacement.old_principal_id, r.replacement.new_client_id, r.replacement.app_nonce) == ("old", "new", "n")
    assert r.replacement.roles == [CarriedRole("/s", "/d", "r", "Assigned", "assignment x")]
    assert r.done("mint_secret") and not r.done("await_propagation")
    waiting = r.steps["await_propagation"]  # started and not finished: the runner's timeout counts from then
    assert (waiting.started_at, waiting.attempts) == (NOW.isoformat(), 1)
    assert Remediation.from_entity(r.to_entity()) == r  # and it is written in the new form from then on

"""Detection over stateful fakes, in the order users live it: a failure, its event, the repair,
the next sweep (whose overlap sees the old entry again), late duplicates, a person's own fix,
a new breakage later. Each hint is decided from the cluster's present state.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest

from remediation.errors import InvalidInputError
from remediation.ids import ClusterId
from remediation.intake.detection import MAX_NEW_LOOKUPS, NEW_LOOKUP_WINDOW, SWEEP_OVERLAP
from remediation.intake.events import FailureEvent
from remediation.model import ActivityLogEntry, Status
from tests.support.otel import install_for_tests
from tests.support.world import APP_ID, CLUSTER, SUB, World

AADSTS_INVALID = (
    "The credentials in ServicePrincipalProfile were invalid. Please see https://aka.ms/aks-sp-help for more details."
    " (Details: adal: Refresh request failed. Status Code = '401'. Response body: {\"error\":\"invalid_client\","
    "\"error_description\":\"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the"
    " request is the client secret value, not the client secret ID.\",\"error_codes\":[7000215]})")
QUOTA = ("Operation could not be completed as it results in exceeding approved standardDSv3Family Cores quota."
         " Additional details - Deployment Model: Resource Manager, Location: westeurope, Current Limit: 10")
CALLER_AUTH = ("The client 'ops@contoso.com' with object id '0d0d' does not have authorization to perform action"
               " 'Microsoft.ContainerService/managedClusters/write' over scope '/subscriptions/x'")


def status_message(code: str, message: str) -> str:
    """The JSON string AKS writes to properties.statusMessage, with the cause in error.details."""
    return json.dumps({"status": "Failed", "error": {
        "code": "ResourceOperationFailure",
        "message": "The resource operation completed with terminal provisioning state 'Failed'.",
        "details": [{"code": code, "message": message}]}})


def failed_write(world: World, message: str, *, code: str = "ServicePrincipalValidationClientError",
                 resource: str | None = None) -> ActivityLogEntry:
    entry = ActivityLogEntry(
        correlation_id=str(uuid.uuid4()), resource_id=resource or str(CLUSTER).lower(),
        operation_name="Microsoft.ContainerService/managedClusters/write", event_name="EndRequest", status="Failed",
        event_timestamp=world.clock() - timedelta(seconds=5), status_message=status_message(code, message))
    world.activity_log.entries.append(entry)
    return entry


def event_for(entry: ActivityLogEntry, world: World) -> FailureEvent:
    return FailureEvent(event_id=str(uuid.uuid4()), event_type="Microsoft.Resources.ResourceWriteFailure",
                        cluster=ClusterId.parse(entry.resource_id, allow_child=True), resource_uri=entry.resource_id,
                        operation_name=entry.operation_name, correlation_id=entry.correlation_id,
                        event_time=world.clock())


def remediations(world: World) -> list:
    return world.store.all()


def decisions(world: World) -> list[str]:
    return [d["code"] for d in world.incidents.decisions]


def test_a_failure_event_repairs_the_cluster_with_no_manual_call(world: World) -> None:
    event = world.operate()
    assert event is not None  # the operator's upgrade failed on the expired secret
    world.detector.accept_event(event)
    world.drain()
    [remediation] = remediations(world)
    assert remediation.status is Status.SUCCEEDED and remediation.source == "event"
    assert remediation.correlation_id == event.correlation_id
    assert world.operate() is None  # the operator's next upgrade succeeds
    assert decisions(world) == ["Confirmed"]


def test_after_a_repair_duplicates_late_deliveries_and_sweeps_change_nothing(world: World) -> None:
    # The sequence a tester reproduced: event, repair, then the same event again and the next sweeps,
    # whose overlap sees the old entry. Before, each of these minted a password and reset the cluster again.
    event = world.operate()
    world.detector.sweep(SUB)  # the checkpoint of an earlier sweep
    world.detector.accept_event(event)
    world.drain()
    assert world.clusters.resets_started == 1
    world.detector.accept_event(event)  # Event Grid delivers at least once
    world.clock.advance(minutes=10)
    world.detector.sweep(SUB)  # the entry is inside the sweep's overlap
    world.drain()
    world.clock.advance(minutes=15)
    world.detector.sweep(SUB)
    world.detector.accept_event(event)  # a very late delivery
    world.drain()
    assert world.clusters.resets_started == 1 and len(world.directory.added) == 1
    assert [r.status for r in remediations(world)] == [Status.SUCCEEDED]
    assert decisions(world)[0] == "Confirmed"
    assert set(decisions(world)[1:]) <= {"DuplicateIncident", "StaleBeforeRepair"}, decisions(world)


def test_a_storm_of_duplicates_while_the_repair_runs_joins_it(world: World) -> None:
    event = world.operate()
    world.detector.accept_event(event)
    world.deliver_visible()  # decided and started: the repair is running
    for _ in range(20):
        world.detector.accept_event(event)
    world.detector.sweep(SUB)
    world.drain()
    assert world.clusters.resets_started == 1 and len(world.directory.added) == 1
    assert len(remediations(world)) == 1


def test_a_person_who_fixed_the_cluster_first_leaves_the_remediator_nothing_to_do(world: World) -> None:
    event = world.operate()
    world.clock.advance(minutes=2)
    world.clusters.fix_by_hand(CLUSTER)  # before the Activity Log entry was even looked up
    world.clock.advance(minutes=1)
    world.detector.accept_event(event)
    world.drain()
    assert decisions(world) == ["StaleBeforeSuccess"]
    assert remediations(world) == [] and world.clusters.resets_started == 0 and world.directory.writes == 0


def test_a_person_who_fixes_the_cluster_while_the_remediation_starts_is_not_overridden(world: World) -> None:
    world.detector.accept_event(world.operate())
    world.deliver_visible(only=("lookups",))  # decided: a remediation is queued
    world.clock.advance(seconds=20)
    world.clusters.fix_by_hand(CLUSTER)  # meanwhile, by hand
    world.clock.advance(seconds=20)
    world.drain()
    [remediation] = remediations(world)
    assert remediation.status is Status.SUCCEEDED and remediation.targets[0].code == "FixedMeanwhile"
    assert remediation.reason == "0 cluster(s) reset and verified, 1 skipped (FixedMeanwhile)"
    assert world.clusters.resets_started == 0  # the nodes were not re-imaged for nothing
    assert world.clusters.secret_valid(CLUSTER)


def test_a_new_breakage_after_the_repair_is_repaired_again(world: World) -> None:
    world.detector.accept_event(world.operate())
    world.drain()
    world.clock.advance(days=200)  # the minted secret (180 days) has expired: a new, real breakage
    second = world.operate()
    assert second is not None
    world.detector.accept_event(second)
    world.drain()
    assert [r.status for r in remediations(world)] == [Status.SUCCEEDED, Status.SUCCEEDED]
    assert world.clusters.resets_started == 2 and world.clusters.secret_valid(CLUSTER)


def test_a_crash_between_recording_the_incident_and_starting_is_finished_by_the_retry(world: World) -> None:
    event = world.operate()
    world.faults.die_at("store.create_claimed")  # recorded the incident, then died: the host retries the lookup
    world.detector.accept_event(event)
    world.drain()
    world.detector.accept_event(event)  # and Event Grid delivers again
    world.drain()
    [remediation] = remediations(world)
    assert remediation.id == next(iter(world.incidents.incidents.values()))["remediation_id"]
    assert remediation.status is Status.SUCCEEDED and world.clusters.resets_started == 1


@pytest.mark.parametrize(("code", "message"), [("QuotaExceeded", QUOTA), ("AuthorizationFailed", CALLER_AUTH)])
def test_failures_that_are_not_a_bad_secret_change_nothing(world: World, code: str, message: str) -> None:
    world.detector.accept_event(event_for(failed_write(world, message, code=code), world))
    world.drain()
    assert remediations(world) == [] and decisions(world) == ["NotServicePrincipal"]
    assert world.incidents.decisions[0]["kind"] == "not_sp"
    assert world.directory.writes == 0 and world.clusters.resets_started == 0


def test_a_deleted_application_is_planned_for_replacement_not_rotated(world: World) -> None:
    # Whatever the text says, Graph and Entra ID (AADSTS700016) agree the application is gone: by default the
    # replacement is only planned (tests/test_replacement.py has the rest).
    world.directory.delete_app(APP_ID)
    world.detector.accept_event(event_for(failed_write(world, AADSTS_INVALID), world))
    world.drain()
    assert decisions(world) == ["ApplicationDeleted"] and world.incidents.decisions[0]["kind"] == "sp_not_found"
    [plan] = remediations(world)
    assert plan.status is Status.PLANNED and plan.replace and plan.dry_run
    assert world.directory.writes == 0 and world.clusters.resets_started == 0


def test_an_application_graph_does_not_show_but_entra_id_knows_is_left_alone(world: World) -> None:
    # Graph and Entra ID replicate apart: "not found" from one alone is no reason to replace anything.
    world.directory.unreplicated.add(APP_ID)
    world.detector.accept_event(event_for(failed_write(world, AADSTS_INVALID), world))
    world.drain()
    assert decisions(world) == ["ApplicationNotFound"] and "AADSTS7000215" in world.incidents.decisions[0]["message"]
    assert remediations(world) == [] and world.clusters.resets_started == 0


def test_a_bad_secret_of_another_app_is_not_rotated(world: World) -> None:
    other_app = "99999999-8888-4777-8666-555555555555"
    message = AADSTS_INVALID.replace("client secret ID.", f"client secret ID, for a secret added to app '{other_app}'.")
    world.detector.accept_event(event_for(failed_write(world, message), world))
    world.drain()
    [decision] = world.incidents.decisions
    assert decision["code"] == "OtherApplication" and other_app in decision["message"]
    assert remediations(world) == [] and world.directory.writes == 0


def test_a_bad_secret_naming_the_clusters_own_app_is_rotated(world: World) -> None:
    message = AADSTS_INVALID.replace("client secret ID.", f"client secret ID, for a secret added to app '{APP_ID}'.")
    world.detector.accept_event(event_for(failed_write(world, message), world))
    world.drain()
    assert [r.status for r in remediations(world)] == [Status.SUCCEEDED]


def _rotated_elsewhere(world: World) -> None:
    """The application has a valid password, but not the one the cluster holds: Graph alone cannot tell it broke,
    so the lookup waits for the Activity Log entry (an expired application takes the fast path instead)."""
    world.directory.apps[APP_ID].passwords[0].end = world.clock() + timedelta(days=100)
    world.clusters.clusters[CLUSTER.key].held_secret = "rotated-elsewhere"


def test_a_late_activity_log_entry_is_looked_up_again_then_decided(world: World) -> None:
    _rotated_elsewhere(world)
    entry = failed_write(world, AADSTS_INVALID)
    world.activity_log.entries.clear()
    world.detector.accept_event(event_for(entry, world))
    world.deliver_visible()
    assert world.incidents.decisions == [] and len(world.lookups.messages) == 1
    world.activity_log.entries.append(entry)
    world.drain()
    assert [r.status for r in remediations(world)] == [Status.SUCCEEDED]


def test_an_entry_that_never_appears_is_given_up_with_a_reason(world: World) -> None:
    _rotated_elsewhere(world)
    entry = failed_write(world, AADSTS_INVALID)
    world.activity_log.entries.clear()
    world.detector.accept_event(event_for(entry, world))
    world.drain(max_rounds=200)
    [decision] = world.incidents.decisions
    assert decision["code"] == "GaveUp" and "0:30:00" in decision["message"]
    assert remediations(world) == []


def test_sweeps_move_a_checkpoint_and_catch_what_events_missed(world: World) -> None:
    first = world.detector.sweep(SUB)
    assert first.entries == 0 and world.incidents.checkpoints[SUB] == world.clock()
    world.clock.advance(minutes=15)
    failed_write(world, AADSTS_INVALID)
    second = world.detector.sweep(SUB)
    assert [d.code for d in second.decisions] == ["Confirmed"]
    assert second.since == (world.clock() - timedelta(minutes=15) - SWEEP_OVERLAP).isoformat()
    world.drain()
    assert world.clusters.secret_valid(CLUSTER)


def test_events_outside_the_managed_subscriptions_are_acknowledged_without_a_lookup(world: World) -> None:
    other = ClusterId("00000000-0000-4000-8000-00000000beef", "rg", "aks")
    event = FailureEvent("1", "Microsoft.Resources.ResourceWriteFailure", other, str(other),
                         "Microsoft.ContainerService/managedClusters/write", str(uuid.uuid4()), world.clock())
    assert world.detector.accept_event(event) is None
    assert world.lookups.messages == [] and world.activity_log.reads == 0


@pytest.mark.parametrize("offset", [timedelta(days=-3650), timedelta(days=-8), timedelta(hours=2),
                                    timedelta(days=3650)])
def test_an_event_time_far_from_now_is_refused(world: World, offset: timedelta) -> None:
    event = FailureEvent("1", "Microsoft.Resources.ResourceWriteFailure", CLUSTER, str(CLUSTER),
                         "Microsoft.ContainerService/managedClusters/write", str(uuid.uuid4()), world.clock() + offset)
    with pytest.raises(InvalidInputError) as refused:
        world.detector.accept_event(event)
    assert refused.value.code == "InvalidEventTime"
    assert world.lookups.messages == []


@pytest.mark.parametrize("body", [
    b"{}", b"[" * 3000, b'{"clusterResourceId": 1}',
    json.dumps({"clusterResourceId": str(CLUSTER), "correlationId": "c", "firstSeen": "0001-01-01T00:00:00",
                "attempt": 0}).encode(),
    json.dumps({"clusterResourceId": str(CLUSTER), "correlationId": "c", "firstSeen": "2026-01-01T00:00:00+00:00",
                "attempt": 10**9}).encode(),
    b"x" * 10_000,
    # The correlation id reaches the Activity Log's $filter: a GUID, nothing else.
    json.dumps({"clusterResourceId": str(CLUSTER), "correlationId": "x' or correlationId ne 'y",
                "firstSeen": "2026-01-01T00:00:00+00:00", "attempt": 0}).encode(),
    json.dumps({"clusterResourceId": str(CLUSTER), "correlationId": "c", "firstSeen": "2026-01-01T00:00:00+00:00",
                "attempt": 0}).encode(),
    # A resource group named '..': the HTTP client would send ARM another path than the one scope-checked.
    json.dumps({"clusterResourceId": str(CLUSTER).replace("/rg-payments/", "/../"),
                "correlationId": "0b1e2c3d-0000-4000-8000-000000000001", "firstSeen": "2026-01-01T00:00:00+00:00",
                "attempt": 0}).encode(),
])
def test_malformed_lookup_messages_are_refused(body: bytes) -> None:
    from remediation.intake.detection import IncidentLookup

    with pytest.raises(InvalidInputError):
        IncidentLookup.from_message(body)


# ----- a flood of failure events: one pending lookup per cluster, a bound on new ones ----------------------------

def forged(world: World, cluster: ClusterId = CLUSTER, *, ago: timedelta = timedelta(0)) -> FailureEvent:
    """A failure event with a correlation id of its own, that no Activity Log entry explains."""
    return FailureEvent(str(uuid.uuid4()), "Microsoft.Resources.ResourceWriteFailure", cluster, str(cluster),
                        "Microsoft.ContainerService/managedClusters/write", str(uuid.uuid4()), world.clock() - ago)


def event_outcomes(otel) -> dict[str, int]:
    return {p.attributes["outcome"]: p.value for p in otel.points("remediator.failure_events")}


def test_a_delivery_of_1400_events_for_one_healthy_cluster_is_one_lookup(world: World) -> None:
    _rotated_elsewhere(world)  # healthy as far as Graph can tell: no fast path
    with install_for_tests() as otel:
        for _ in range(1400):
            world.detector.accept_event(forged(world))
        assert len(world.lookups.messages) == 1
        assert event_outcomes(otel) == {"queued": 1, "coalesced": 1399}
    world.drain(max_rounds=200)
    # One lookup chain for the whole lookup window (30 minutes, a look a minute), where there were 1,400.
    assert world.activity_log.reads <= 32 and [d["code"] for d in world.incidents.decisions] == ["GaveUp"]
    assert remediations(world) == [] and world.directory.writes == 0
    world.detector.accept_event(forged(world))  # once that lookup ended, a new failure gets a new one
    assert len(world.lookups.messages) == 1


def test_a_coalesced_lookup_looks_up_the_newest_failure(world: World) -> None:
    _rotated_elsewhere(world)
    for _ in range(5):
        world.detector.accept_event(forged(world, ago=timedelta(minutes=2)))
    real = failed_write(world, AADSTS_INVALID)  # the operator's upgrade fails on the bad secret, later
    world.detector.accept_event(event_for(real, world))
    world.detector.accept_event(forged(world, ago=timedelta(minutes=3)))  # an older one arriving late changes nothing
    assert len(world.lookups.messages) == 1
    world.drain()
    [decision] = world.incidents.decisions
    assert decision["code"] == "Confirmed" and decision["correlationId"] == real.correlation_id
    [remediation] = remediations(world)
    assert remediation.status is Status.SUCCEEDED and remediation.correlation_id == real.correlation_id


def test_a_failure_joining_while_its_lookup_decides_is_looked_up_next(world: World) -> None:
    _rotated_elsewhere(world)
    first = failed_write(world, AADSTS_INVALID)
    world.detector.accept_event(event_for(first, world))
    world.clock.advance(seconds=30)
    later = forged(world)
    world.faults.meanwhile("incidents.close_lookup", lambda: world.detector.accept_event(later))
    world.deliver_visible()  # decides the first failure; the later one joined meanwhile
    assert [d["code"] for d in world.incidents.decisions] == ["Confirmed"]
    [next_look] = world.lookups.messages
    assert world.incidents.lookups[CLUSTER.key]["correlationId"] == later.correlation_id
    assert next_look.body["attempt"] == 1


def test_workers_racing_to_open_a_clusters_lookup_open_one(world: World) -> None:
    second_worker = world.second_worker()  # another instance of the app, on the same storage
    world.faults.meanwhile("incidents.open_lookup", lambda: second_worker.detector.accept_event(forged(world)))
    world.detector.accept_event(forged(world))  # found none, and lost the race to open it: joined
    assert len(world.lookups.messages) == 1 and len(world.incidents.lookups) == 1


def test_new_lookups_from_one_burst_are_bounded_and_what_was_dropped_is_counted(world: World) -> None:
    clusters = [ClusterId(SUB, "rg-fleet", f"aks-{n:03d}") for n in range(300)]
    with install_for_tests() as otel:
        for cluster in clusters:
            world.detector.accept_event(forged(world, cluster))
        assert len(world.lookups.messages) == MAX_NEW_LOOKUPS
        assert event_outcomes(otel) == {"queued": MAX_NEW_LOOKUPS, "dropped": 300 - MAX_NEW_LOOKUPS}
        world.clock.advance(seconds=NEW_LOOKUP_WINDOW.total_seconds() + 1)
        world.detector.accept_event(forged(world, clusters[-1]))  # the next minute's failures are looked up again
        assert len(world.lookups.messages) == MAX_NEW_LOOKUPS + 1


def test_a_lookup_whose_messages_were_lost_is_opened_again_by_the_next_failure(world: World) -> None:
    _rotated_elsewhere(world)
    world.detector.accept_event(forged(world))
    world.lookups.messages.clear()  # its message was lost (or went to the poison queue)
    world.clock.advance(minutes=5)
    world.detector.accept_event(forged(world))
    assert world.lookups.messages == []  # it may still be running somewhere: joined
    world.clock.advance(minutes=60)  # far past its timeout: nobody runs it
    world.detector.accept_event(forged(world))
    assert len(world.lookups.messages) == 1

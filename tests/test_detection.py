"""Detection over stateful fakes: events, lookups, sweeps, and one remediation per incident."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest

from remediation.errors import InvalidInputError
from remediation.events import FailureEvent, IgnoredEvent, parse_failure_event
from remediation.model import ActivityLogEntry, Status
from tests.conftest import APP_ID, CLUSTER, SUB, World

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
    parsed = parse_failure_event(event_id=str(uuid.uuid4()), event_type="Microsoft.Resources.ResourceWriteFailure",
                                 data={"resourceUri": entry.resource_id, "operationName": entry.operation_name,
                                       "correlationId": entry.correlation_id, "status": "Failed"},
                                 event_time=world.clock())
    assert isinstance(parsed, FailureEvent)
    return parsed


def remediations(world: World) -> list:
    return [world.store.get(i) for i in world.store.rows]


def test_a_bad_secret_event_repairs_the_cluster_with_no_manual_call(world: World) -> None:
    world.detector.accept_event(event_for(failed_write(world, AADSTS_INVALID), world))
    world.drain()
    [remediation] = remediations(world)
    assert remediation.source == "event" and remediation.status is Status.SUCCEEDED
    assert remediation.cause.startswith("expired_secret")  # Graph confirmed: the app's only password had ended
    assert world.clusters.secret_valid(CLUSTER)


def test_repeated_events_and_a_sweep_of_one_incident_end_in_one_remediation(world: World) -> None:
    event = event_for(failed_write(world, AADSTS_INVALID), world)
    world.detector.accept_event(event)
    world.detector.accept_event(event)  # Event Grid delivers at least once
    world.deliver_visible()
    sweep = world.detector.sweep(SUB)
    assert [o.decision for o in sweep.outcomes] == ["duplicate"]
    world.drain()
    assert len(remediations(world)) == 1
    assert len(world.remediator_passwords()) == 1


def test_two_incidents_of_one_cluster_join_the_running_remediation(world: World) -> None:
    world.detector.accept_event(event_for(failed_write(world, AADSTS_INVALID), world))
    world.detector.accept_event(event_for(failed_write(world, AADSTS_INVALID), world))
    world.deliver_visible()
    decisions = sorted(i["decision"] for i in world.incidents.incidents.values())
    assert decisions == ["joined_remediation", "remediation_started"]
    world.drain()
    assert len(remediations(world)) == 1


@pytest.mark.parametrize(("code", "message"), [("QuotaExceeded", QUOTA), ("AuthorizationFailed", CALLER_AUTH)])
def test_failures_that_are_not_a_bad_secret_change_nothing(world: World, code: str, message: str) -> None:
    world.detector.accept_event(event_for(failed_write(world, message, code=code), world))
    world.drain()
    assert remediations(world) == []
    [incident] = world.incidents.incidents.values()
    assert incident["decision"] == "ignored" and incident["kind"] == "not_sp"
    assert world.directory.writes == 0 and world.clusters.resets_started == 0


def test_a_deleted_application_is_reported_not_rotated(world: World) -> None:
    del world.directory.apps[APP_ID]
    world.detector.accept_event(event_for(failed_write(world, AADSTS_INVALID), world))
    world.drain()
    [incident] = world.incidents.incidents.values()
    assert incident["decision"] == "needs_new_service_principal"
    assert remediations(world) == [] and world.clusters.resets_started == 0


def test_a_bad_secret_of_another_app_is_not_rotated(world: World) -> None:
    other_app = "99999999-8888-4777-8666-555555555555"
    message = AADSTS_INVALID.replace("client secret ID.", f"client secret ID, for a secret added to app '{other_app}'.")
    world.detector.accept_event(event_for(failed_write(world, message), world))
    world.drain()
    [incident] = world.incidents.incidents.values()
    assert incident["decision"] == "ignored" and incident["kind"] == "sp_other" and other_app in incident["reason"]
    assert remediations(world) == [] and world.directory.writes == 0


def test_a_bad_secret_naming_the_clusters_own_app_is_rotated(world: World) -> None:
    message = AADSTS_INVALID.replace("client secret ID.", f"client secret ID, for a secret added to app '{APP_ID}'.")
    world.detector.accept_event(event_for(failed_write(world, message), world))
    world.drain()
    assert [r.status for r in remediations(world)] == [Status.SUCCEEDED]


def test_a_late_activity_log_entry_is_looked_up_again_then_decided(world: World) -> None:
    entry = failed_write(world, AADSTS_INVALID)
    world.activity_log.entries.clear()
    world.detector.accept_event(event_for(entry, world))
    world.deliver_visible()
    assert world.incidents.incidents == {} and len(world.lookups.messages) == 1
    world.activity_log.entries.append(entry)
    world.drain()
    assert [r.status for r in remediations(world)] == [Status.SUCCEEDED]


def test_an_entry_that_never_appears_is_given_up_with_a_reason(world: World) -> None:
    entry = failed_write(world, AADSTS_INVALID)
    world.activity_log.entries.clear()
    world.detector.accept_event(event_for(entry, world))
    world.drain(max_rounds=200)
    [incident] = world.incidents.incidents.values()
    assert incident["decision"] == "gave_up" and "0:30:00" in incident["reason"]
    assert remediations(world) == []


def test_sweeps_move_a_checkpoint_and_catch_what_events_missed(world: World) -> None:
    first = world.detector.sweep(SUB)
    assert first.entries == 0 and world.incidents.checkpoints[SUB] == world.clock()
    world.clock.advance(minutes=15)
    failed_write(world, AADSTS_INVALID)
    second = world.detector.sweep(SUB)
    assert [o.decision for o in second.outcomes] == ["remediation_started"]
    assert second.since == (world.clock() - timedelta(minutes=30)).isoformat()  # checkpoint minus overlap
    world.drain()
    assert world.clusters.secret_valid(CLUSTER)


def test_an_agent_pool_failure_names_its_cluster() -> None:
    parsed = parse_failure_event(
        event_id="1", event_type="Microsoft.Resources.ResourceWriteFailure", event_time=None,
        data={"resourceUri": f"{CLUSTER}/agentPools/nodepool1",
              "operationName": "Microsoft.ContainerService/managedClusters/agentPools/write",
              "correlationId": str(uuid.uuid4())})
    assert isinstance(parsed, FailureEvent) and parsed.cluster == CLUSTER


@pytest.mark.parametrize(("event_type", "data"), [
    ("Microsoft.Resources.ResourceWriteSuccess", {}),
    ("Microsoft.Storage.BlobCreated", None),
    ("Microsoft.Resources.ResourceWriteFailure", {"resourceUri": "/subscriptions/x/resourceGroups/r/providers/"
     "Microsoft.Storage/storageAccounts/s", "operationName": "Microsoft.Storage/storageAccounts/write",
     "correlationId": "c"}),
])
def test_other_events_are_ignored(event_type: str, data: object) -> None:
    assert isinstance(parse_failure_event(event_id="1", event_type=event_type, data=data, event_time=None),
                      IgnoredEvent)


@pytest.mark.parametrize("data", [
    None, [], "text", {}, {"resourceUri": 5, "operationName": "Microsoft.ContainerService/managedClusters/write",
                           "correlationId": "c"},
    {"resourceUri": "not-an-id", "operationName": "Microsoft.ContainerService/managedClusters/write",
     "correlationId": "c"},
    {"resourceUri": str(CLUSTER), "operationName": "Microsoft.ContainerService/managedClusters/write",
     "correlationId": "'; drop"},
    {"resourceUri": "x" * 5000, "operationName": "Microsoft.ContainerService/managedClusters/write",
     "correlationId": "c"},
])
def test_malformed_failure_events_are_rejected(data: object) -> None:
    with pytest.raises(InvalidInputError):
        parse_failure_event(event_id="1", event_type="Microsoft.Resources.ResourceWriteFailure", data=data,
                            event_time=None)

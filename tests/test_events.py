"""Failure events parsed at the edge (remediation/intake/events.py): what the trigger is handed, in the Event Grid
schema or CloudEvents 1.0, as the library's object or as raw JSON, becomes a FailureEvent for a failed write or action
on a managed cluster, an IgnoredEvent (with its reason) for any other event, or one InvalidInputError with the code
InvalidEvent for an event that is malformed. Pure: no sandbox, no host (the trigger itself: tests/test_function_app.py).

The shapes follow the official examples in tests/reference/: the subscription system topic's event
(eventgrid_subscription_ResourceWriteSuccess_egschema.json: "The same schema is used for ResourceWriteFailure"), the
data's fields (eventgrid_ResourceWriteFailureData_schema_excerpt_2018-01-01.json) and a CloudEvents 1.0 event
(eventgrid_cloud_event_schema_blob_created_docs.json).
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from remediation.errors import InvalidInputError
from remediation.intake.events import (
    FAILURE_EVENT_TYPES,
    MAX_FIELD,
    DeliveredEvent,
    FailureEvent,
    IgnoredEvent,
    parse_event,
    parse_failure_event,
)
from tests.support.events import FAILURE, as_cloud, cloud_event, event_grid_event, failure
from tests.support.world import CLUSTER, SUB

REFERENCE = Path(__file__).parent / "reference"
CORRELATION = "0b1e2c3d-0000-4000-8000-000000000001"
WRITE = "Microsoft.ContainerService/managedClusters/write"


def reference(name: str) -> Any:
    return json.loads((REFERENCE / name).read_text("utf-8"))


def cluster_failure(**data: Any) -> dict[str, Any]:
    """The data of a failed write on the test cluster, as the system topic sends it."""
    return {"resourceUri": str(CLUSTER), "operationName": WRITE, "correlationId": CORRELATION, "status": "Failed",
            "subscriptionId": SUB, "resourceProvider": "Microsoft.ContainerService", **data}


def official_failure() -> dict[str, Any]:
    """The docs' ResourceWriteSuccess example turned into the failure it says shares its schema, about our cluster."""
    [event] = copy.deepcopy(reference("eventgrid_subscription_ResourceWriteSuccess_egschema.json"))
    event["eventType"] = FAILURE
    event["subject"] = str(CLUSTER)
    event["data"].update(resourceUri=str(CLUSTER), operationName=WRITE, correlationId=CORRELATION,
                         resourceProvider="Microsoft.ContainerService", status="Failed")
    return event


# Each way the trigger may be handed one Event Grid schema event.
DELIVERIES = {
    "event-grid-schema": event_grid_event,
    "cloud-events": lambda event: cloud_event(as_cloud(event)),
    "event-grid-schema-json": lambda event: event,
    "cloud-events-json": as_cloud,
}


# ---------------------------------------------------------------- a failed write or action on a cluster


@pytest.mark.parametrize("delivery", DELIVERIES)
def test_the_official_example_as_a_failure_on_a_cluster_becomes_a_failure_event_in_either_schema(delivery: str):
    event = official_failure()
    parsed = parse_event(DELIVERIES[delivery](event))
    assert parsed == FailureEvent(event_id=event["id"], event_type=FAILURE, cluster=CLUSTER,
                                  resource_uri=str(CLUSTER), operation_name=WRITE, correlation_id=CORRELATION,
                                  event_time=parsed.event_time)
    # The example's time has 7 fractional digits, as Event Grid writes them; Python reads 6.
    assert parsed.event_time == datetime(2018, 7, 19, 18, 38, 4, 611735, tzinfo=UTC)


@pytest.mark.parametrize("event_type", sorted(FAILURE_EVENT_TYPES))
def test_a_failed_action_on_an_agent_pool_is_about_its_cluster(event_type: str):
    # An action (resetServicePrincipalProfile/action, an agent pool's write) fails on the cluster or a child of it.
    pool = f"{CLUSTER}/agentPools/np1"
    parsed = parse_failure_event(event_id="e", event_type=event_type, event_time=None, data=cluster_failure(
        resourceUri=pool, operationName="Microsoft.ContainerService/managedClusters/agentPools/write"))
    assert isinstance(parsed, FailureEvent)
    assert (parsed.cluster, parsed.resource_uri, parsed.event_time) == (CLUSTER, pool, None)


def test_the_operation_and_the_resource_id_are_read_case_insensitively_as_arm_does():
    parsed = parse_failure_event(event_id="e", event_type=FAILURE, event_time=None, data=cluster_failure(
        resourceUri=str(CLUSTER).replace("/resourceGroups/", "/resourcegroups/").replace(SUB, SUB.upper()),
        operationName=WRITE.upper()))
    assert isinstance(parsed, FailureEvent) and parsed.cluster.key == CLUSTER.key


# ---------------------------------------------------------------- other events: ignored, with the reason


def test_the_official_examples_of_other_events_are_ignored_in_either_schema():
    [written] = reference("eventgrid_subscription_ResourceWriteSuccess_egschema.json")
    [action] = reference("eventgrid_subscription_ResourceActionSuccess_egschema.json")
    blob = reference("eventgrid_cloud_event_schema_blob_created_docs.json")
    for event, event_type in ((written, "Microsoft.Resources.ResourceWriteSuccess"),
                              (action, "Microsoft.Resources.ResourceActionSuccess"),
                              (blob, "Microsoft.Storage.BlobCreated")):
        assert parse_event(event) == IgnoredEvent(event_type, "not a resource write or action failure")


@pytest.mark.parametrize("data", [None, "x" * 1_000_000, [], {}], ids=["no-data", "huge-data", "list", "empty"])
def test_an_event_of_another_type_is_ignored_before_its_data_is_read(data: Any):
    ignored = parse_event(failure(data, event_type="Microsoft.Resources.ResourceWriteSuccess"))
    assert ignored == IgnoredEvent("Microsoft.Resources.ResourceWriteSuccess", "not a resource write or action failure")


def test_a_failure_of_another_resource_is_ignored_and_the_reason_names_its_operation_in_200_characters():
    web = parse_failure_event(event_id="e", event_type=FAILURE, event_time=None, data={
        "resourceUri": "/subscriptions/x/resourceGroups/r/providers/Microsoft.Web/sites/s",
        "operationName": "Microsoft.Web/sites/write", "correlationId": "c"})  # not a GUID: never read, ignored first
    assert web == IgnoredEvent(FAILURE, "operation Microsoft.Web/sites/write is not about a managed cluster")
    long = parse_failure_event(event_id="e", event_type=FAILURE, event_time=None,
                               data=cluster_failure(operationName="Microsoft.Web/" + "w" * 500))
    assert isinstance(long, IgnoredEvent) and f"operation Microsoft.Web/{'w' * 186} is not" in long.reason


# ---------------------------------------------------------------- malformed: one error, code InvalidEvent


def _with(**data: Any) -> dict[str, Any]:
    return {k: v for k, v in cluster_failure(**data).items() if v is not None}


@pytest.mark.parametrize(("data", "says"), [
    (None, "data must be a JSON object"),
    ([cluster_failure()], "data must be a JSON object"),
    ("x" * 1_000_000, "data must be a JSON object"),
    (_with(resourceUri=None), "data.resourceUri must be a non-empty string"),
    (_with(operationName=[]), "data.operationName must be a non-empty string"),
    (_with(correlationId={}), "data.correlationId must be a non-empty string"),
    (_with(correlationId=""), "data.correlationId must be a non-empty string"),
    (_with(resourceUri=str(CLUSTER) + "/x" * MAX_FIELD), "data.resourceUri must be a non-empty string"),
    # ARM's correlation ids are GUIDs: anything else would reach the Activity Log's $filter or a log line.
    (_with(correlationId="x' or correlationId ne 'y"), "data.correlationId is not a GUID"),
    (_with(correlationId=CORRELATION + "\n"), "data.correlationId is not a GUID"),
    (_with(correlationId="{" + CORRELATION + "}"), "data.correlationId is not a GUID"),
    (_with(resourceUri="not an id"), "data.resourceUri: clusterResourceId is not an ARM resource id"),
    (_with(resourceUri="/subscriptions/x/resourceGroups/r/providers/Microsoft.Web/sites/s"),
     "data.resourceUri: clusterResourceId is not an ARM resource id"),
    (_with(resourceUri=f"/subscriptions/{SUB}/resourceGroups/r/providers/Microsoft.Compute/virtualMachines/vm"),
     "data.resourceUri: clusterResourceId names a Microsoft.Compute/virtualMachines resource"),
    # Names outside ARM's rules: a dot segment an HTTP client would collapse, a name ending in a period.
    (_with(resourceUri=str(CLUSTER).replace("rg-payments", "..")), "data.resourceUri:"),
    (_with(resourceUri=str(CLUSTER).replace("rg-payments", "rg-payments.")), "data.resourceUri:"),
], ids=["no-data", "a-list", "huge-data", "no-resource-uri", "operation-not-a-string", "correlation-not-a-string",
        "empty-correlation", "resource-uri-too-long", "odata-in-correlation-id", "newline-in-correlation-id",
        "braced-correlation-id", "resource-uri-not-an-id", "resource-uri-of-a-site", "resource-uri-of-a-vm",
        "dot-segment-resource-group", "resource-group-ending-in-a-period"])
def test_a_malformed_failure_event_is_one_invalid_event_error_naming_the_field(data: Any, says: str):
    for event in (failure(data), as_cloud(failure(data))):
        with pytest.raises(InvalidInputError) as refused:
            parse_event(event)
        assert refused.value.code == "InvalidEvent"
        assert f"event {event['id']!r}: {says}" in str(refused.value)


@pytest.mark.parametrize(("changes", "says"), [
    ({"id": None}, "it has no id"), ({"id": ""}, "it has no id"), ({"id": 7}, "it has no id"),
    ({"id": "i" * (MAX_FIELD + 1)}, "it has no id"),
    ({"eventType": None}, "it has no type"), ({"eventType": 42}, "it has no type"),
    ({"eventType": ""}, "it has no type"),
    ({"eventType": "T" * (MAX_FIELD + 1)}, "it has no type"),
])
def test_an_event_without_a_string_id_and_type_is_refused_in_either_schema(changes: dict[str, Any], says: str):
    event = {**failure(cluster_failure()), **changes}
    cloud = as_cloud(event) | ({"id": changes["id"]} if "id" in changes else {}) \
        | ({"type": changes["eventType"]} if "eventType" in changes else {})
    for delivered in (event, cloud):
        with pytest.raises(InvalidInputError) as refused:
            DeliveredEvent.of(delivered)
        assert refused.value.code == "InvalidEvent" and says in str(refused.value)
        assert len(str(refused.value)) < 200  # a huge id is cut, not logged whole


# ---------------------------------------------------------------- what is read of a delivery


@pytest.mark.parametrize("delivery", DELIVERIES)
def test_a_delivery_says_its_schema_and_carries_its_data_as_sent(delivery: str):
    event = failure(cluster_failure())
    delivered = DeliveredEvent.of(DELIVERIES[delivery](event))
    assert (delivered.event_id, delivered.event_type, delivered.data) == (event["id"], FAILURE, cluster_failure())
    assert delivered.schema == ("CloudEventSchemaV1_0" if delivery.startswith("cloud") else "EventGridSchema")
    assert delivered.event_time is not None and delivered.event_time.tzinfo is not None


@pytest.mark.parametrize(("written", "read"), [
    ("2026-04-14T10:00:00.1234567Z", datetime(2026, 4, 14, 10, 0, 0, 123456, tzinfo=UTC)),
    ("2026-04-14T10:00:00Z", datetime(2026, 4, 14, 10, 0, tzinfo=UTC)),
    ("2026-04-14t10:00:00.5z", datetime(2026, 4, 14, 10, 0, 0, 500000, tzinfo=UTC)),  # RFC 3339 allows lower case
    ("2026-04-14T12:00:00.1234567+02:00", datetime(2026, 4, 14, 10, 0, 0, 123456, tzinfo=UTC)),
    ("yesterday", None), ("", None), (1713088800, None), ("2026-04-14T10:00:00Z" + " " * 64, None),
])
def test_the_event_time_is_read_as_rfc_3339_or_left_out(written: Any, read: datetime | None):
    # RFC 3339 section 5.6; Event Grid writes up to 7 fractional digits, and a time it cannot read is no reason to
    # drop a failure: the event is still parsed, without a time.
    event = failure(cluster_failure(), eventTime=written)
    assert DeliveredEvent.of(event).event_time == read
    parsed = parse_event(event)
    assert isinstance(parsed, FailureEvent) and parsed.event_time == read
    assert parsed.event_id == event["id"] and uuid.UUID(parsed.correlation_id)

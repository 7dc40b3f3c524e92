"""Event Grid deliveries as the Functions host hands them to the trigger: events of the subscription's system topic in
the Event Grid schema or CloudEvents 1.0, decoded by the azure-functions library's own converter
(`sandbox.functions_host.event_grid_input`), so no test builds an EventGridEvent or CloudEvent by hand."""

from __future__ import annotations

import time
import uuid
from typing import Any

import azure.functions as func

from sandbox.functions_host import event_grid_input

FAILURE = "Microsoft.Resources.ResourceWriteFailure"


def failure(data: Any, event_type: str | None = FAILURE, **fields: Any) -> dict[str, Any]:
    """An event of the subscription's system topic, in the Event Grid schema."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.1234567Z", time.gmtime())  # Event Grid writes 7 fractional digits
    event = {"id": str(uuid.uuid4()), "topic": "/subscriptions/x", "subject": "s", "eventType": event_type,
             "eventTime": now, "data": data, "dataVersion": "2", "metadataVersion": "1", **fields}
    return {k: v for k, v in event.items() if v is not None}


def as_cloud(event: dict[str, Any]) -> dict[str, Any]:
    """The same event as Event Grid delivers it in the CloudEvents 1.0 schema."""
    cloud = {"specversion": "1.0", "id": event.get("id"), "type": event.get("eventType"),
             "source": event.get("topic"), "subject": event.get("subject"), "time": event.get("eventTime"),
             "datacontenttype": "application/json", "data": event.get("data")}
    return {k: v for k, v in cloud.items() if v is not None}


def event_grid_event(event: dict[str, Any]) -> func.EventGridEvent:
    decoded = event_grid_input(event).decode()
    assert isinstance(decoded, func.EventGridEvent)
    return decoded


def cloud_event(event: dict[str, Any]) -> func.CloudEvent:
    decoded = event_grid_input(event).decode()
    assert isinstance(decoded, func.CloudEvent)  # what the library hands the trigger, despite its annotation
    return decoded


# An Event Grid schema event, as the trigger is handed it in either schema.
SCHEMAS = {"event-grid-schema": event_grid_event, "cloud-events": lambda event: cloud_event(as_cloud(event))}

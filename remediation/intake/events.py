"""Failure events from the subscription's Event Grid system topic, parsed at the edge.

Event Grid delivers at least once, in the Event Grid schema or CloudEvents 1.0. The
Functions Python library (azure-functions 1.26, `eventgrid.EventGridEventInConverter`)
hands the trigger an event that carries `specversion` as a `func.CloudEvent` (`type`,
`time`, `source`) and any other as a `func.EventGridEvent` (`event_type`, `event_time`,
`topic`), whatever the parameter's annotation says. `parse_event` reads both, and the raw
JSON of either schema, in one place. The data carries no error text, only where and what
failed and the correlationId of the Activity Log entry that explains it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from remediation.errors import InvalidInputError
from remediation.ids import ClusterId, is_guid

FAILURE_EVENT_TYPES = frozenset({"Microsoft.Resources.ResourceWriteFailure",
                                 "Microsoft.Resources.ResourceActionFailure"})
CLUSTER_OPERATION_PREFIX = "microsoft.containerservice/managedclusters"
MAX_FIELD = 2048


@dataclass(frozen=True)
class FailureEvent:
    event_id: str
    event_type: str
    cluster: ClusterId
    resource_uri: str
    operation_name: str
    correlation_id: str
    event_time: datetime | None


@dataclass(frozen=True)
class IgnoredEvent:
    event_type: str
    reason: str


@dataclass(frozen=True)
class DeliveredEvent:
    """What the remediator reads of one delivered event, in either schema."""

    event_id: str
    event_type: str
    event_time: datetime | None
    data: Any
    schema: str  # "EventGridSchema" or "CloudEventSchemaV1_0", as Event Grid names them

    @classmethod
    def of(cls, event: Any) -> DeliveredEvent:
        """From what the library hands the trigger (`func.EventGridEvent`, `func.CloudEvent`) or one event's JSON
        object in either schema. Raises InvalidInputError for anything without a string id and type."""
        if isinstance(event, Mapping):
            cloud = "specversion" in event
            event_id, event_type = event.get("id"), event.get("type" if cloud else "eventType")
            when: Any = _time(event.get("time" if cloud else "eventTime"))
            data = event.get("data")
        else:
            cloud = getattr(event, "specversion", None) is not None
            event_id = getattr(event, "id", None)
            event_type = getattr(event, "type" if cloud else "event_type", None)
            when = getattr(event, "time" if cloud else "event_time", None)
            get_json = getattr(event, "get_json", None)
            data = get_json() if callable(get_json) else None
        shown = repr(event_id)[:80]
        if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_FIELD:
            raise InvalidInputError(f"event {shown}: it has no id", code="InvalidEvent")
        if not isinstance(event_type, str) or not event_type or len(event_type) > MAX_FIELD:
            raise InvalidInputError(f"event {shown}: it has no type", code="InvalidEvent")
        return cls(event_id=event_id, event_type=event_type,
                   event_time=when if isinstance(when, datetime) else None, data=data,
                   schema="CloudEventSchemaV1_0" if cloud else "EventGridSchema")


def parse_event(event: Any) -> FailureEvent | IgnoredEvent:
    """`parse_failure_event` of a delivered event in either schema (see `DeliveredEvent.of`).

    Raises InvalidInputError for an event without an id or a type, or a failure event that is malformed.
    """
    delivered = DeliveredEvent.of(event)
    return parse_failure_event(event_id=delivered.event_id, event_type=delivered.event_type, data=delivered.data,
                               event_time=delivered.event_time)


def parse_failure_event(*, event_id: str, event_type: str, data: Any,
                        event_time: datetime | None) -> FailureEvent | IgnoredEvent:
    """A FailureEvent for a failed AKS write or action; IgnoredEvent for any other event.

    Raises InvalidInputError for an event that claims to be a failure but is malformed.
    """
    if event_type not in FAILURE_EVENT_TYPES:
        return IgnoredEvent(event_type, "not a resource write or action failure")
    if not isinstance(data, dict):
        raise InvalidInputError(f"event {event_id!r}: data must be a JSON object", code="InvalidEvent")
    fields = {}
    for name in ("resourceUri", "operationName", "correlationId"):
        value = data.get(name)
        if not isinstance(value, str) or not value or len(value) > MAX_FIELD:
            raise InvalidInputError(f"event {event_id!r}: data.{name} must be a non-empty string", code="InvalidEvent")
        fields[name] = value
    if not fields["operationName"].lower().startswith(CLUSTER_OPERATION_PREFIX):
        return IgnoredEvent(event_type, f"operation {fields['operationName'][:200]} is not about a managed cluster")
    if not is_guid(fields["correlationId"]):  # ARM's correlation ids are GUIDs; it reaches an OData $filter
        raise InvalidInputError(f"event {event_id!r}: data.correlationId is not a GUID", code="InvalidEvent")
    try:
        cluster = ClusterId.parse(fields["resourceUri"], allow_child=True)
    except InvalidInputError as err:
        raise InvalidInputError(f"event {event_id!r}: data.resourceUri: {err}", code="InvalidEvent") from err
    return FailureEvent(event_id=event_id, event_type=event_type, cluster=cluster,
                        resource_uri=fields["resourceUri"], operation_name=fields["operationName"],
                        correlation_id=fields["correlationId"], event_time=event_time)


def _time(value: Any) -> datetime | None:
    """An RFC 3339 time as Event Grid writes it (up to 7 fractional digits, `Z`); None if it is not one."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00").replace("z", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None

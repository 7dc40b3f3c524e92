"""Failure events from the subscription's Event Grid system topic, parsed at the edge.

Event Grid delivers at least once, in the Event Grid schema or CloudEvents 1.0; the
trigger gets either as one `func.EventGridEvent`. The data carries no error text, only
where and what failed and the correlationId of the Activity Log entry that explains it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from remediation.errors import InvalidInputError
from remediation.ids import ClusterId

FAILURE_EVENT_TYPES = frozenset({"Microsoft.Resources.ResourceWriteFailure",
                                 "Microsoft.Resources.ResourceActionFailure"})
CLUSTER_OPERATION_PREFIX = "microsoft.containerservice/managedclusters"
_CORRELATION_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")
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
    if not _CORRELATION_ID.match(fields["correlationId"]):
        raise InvalidInputError(f"event {event_id!r}: data.correlationId is not an id", code="InvalidEvent")
    try:
        cluster = ClusterId.parse(fields["resourceUri"], allow_child=True)
    except InvalidInputError as err:
        raise InvalidInputError(f"event {event_id!r}: data.resourceUri: {err}", code="InvalidEvent") from err
    return FailureEvent(event_id=event_id, event_type=event_type, cluster=cluster,
                        resource_uri=fields["resourceUri"], operation_name=fields["operationName"],
                        correlation_id=fields["correlationId"], event_time=event_time)

"""An Event Grid custom topic (Event Grid Basic) whose input schema is CloudEvents 1.0, as a publisher sees it.

`POST /api/events?api-version=2018-01-01` takes a batch (`application/cloudevents-batch+json; charset=utf-8`, a JSON
array: what azure-eventgrid's `EventGridPublisherClient` sends) or one event (`application/cloudevents+json`), with a
Microsoft Entra bearer token for `https://eventgrid.azure.net` whose principal holds "EventGrid Data Sender" on the
topic (in the sandbox: the identities in `senders`, the remediator), and answers 200 with an empty body. The events
it accepts are kept on the state (`SandboxState.topic_events`, read by `GET /_sandbox/topics/events`), each with who
published it, when and with which content type; they are delivered nowhere and not persisted.

What it follows:
- The data-plane swagger (azure-rest-api-specs `specification/eventgrid/data-plane/EventGrid/stable/2018-01-01/
  EventGrid.json`, `PublishCloudEventEvents`): consumes `application/cloudevents-batch+json; charset=utf-8`; a
  CloudEvent requires `id`, `source`, `type`, `specversion`; `data` or `data_base64`; `time` is RFC 3339.
- Errors (azure-docs `event-grid/post-to-custom-topic.md`): `{"error": {"code", "message", "details": [{"code",
  "message"}]}}`; the message ends with Event Grid's "Report '<id>:<n>:<time> (UTC)' to our forums for assistance or
  raise a support ticket." (azure-sdk-for-js eventgrid recordings); 400 bad event data, 401 bad credentials, 413 a
  request or event over 1 MB.
- A principal without the role gets **401** `Unauthorized`, not 403: "The principal associated with access token
  presented with the incoming request does not have permission to send data to <topic id>." (azure-sdk-for-net#22831).
  Event Grid answers 403 only for its network rules (IP filtering, private endpoints), which the sandbox does not have.
- A body that is not what the CloudEvents schema wants: 400 `BadRequest` "This resource is configured to receive event
  in 'CloudEventV10' schema. The JSON received does not conform to the expected schema. Token Expected: ..., Actual
  Token Received: ..." (azure-sdk-for-python#15941).

Assumed (no public sample found): the wording of the 400s for a missing attribute, a bad api-version or content
type and an empty batch, of the 401 without a token, of 429/503, and every `details[].code` but `Unauthorized`
(`InputJsonInvalid`, `InvalidContentType`, `PayloadTooLarge` are the names third-party emulators use).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from typing import Any

from sandbox.server import Api, Request, Response
from sandbox.state import ApiError, SandboxState, parse_time, utc_iso

API_VERSION = "2018-01-01"
TOPIC_RESOURCE_GROUP = "rg-remediator"
TOPIC_NAME = "evgt-remediator-outcomes"
DATA_SENDER_ROLE = "EventGrid Data Sender"  # d5a91429-5739-47e2-a06b-3470a27159e7
MAX_REQUEST_BYTES = 1024 * 1024  # a request, and each event in it
BATCH = "application/cloudevents-batch+json"
SINGLE = "application/cloudevents+json"
REQUIRED = ("id", "source", "type", "specversion")
# CloudEvents 1.0: attribute names are lower-case ASCII letters and digits.
_ATTRIBUTE = re.compile(r"^[a-z0-9]{1,20}$")
_ATTRIBUTE_EXCEPTIONS = frozenset({"data_base64"})  # the JSON format's own member for binary data


class TopicApi(Api):
    """One custom topic on its own port (in Azure, `<topic>.<region>-1.eventgrid.azure.net`)."""

    name = "topic"

    def __init__(self, state: SandboxState, *, senders: Iterable[str]) -> None:
        """`senders`: appIds holding EventGrid Data Sender on this topic."""
        super().__init__(state)
        self.senders = {s.lower() for s in senders}
        self.topic_id = (f"/subscriptions/{state.subscription_id}/resourceGroups/{TOPIC_RESOURCE_GROUP}"
                         f"/providers/Microsoft.EventGrid/topics/{TOPIC_NAME}")
        self.route("POST", r"/api/events", "POST /api/events", self.publish)

    # ------------------------------------------------------------------ Event Grid's error shape

    def error_body(self, err: ApiError) -> Any:
        message = f"{err.message} {self._report()}"
        detail = (err.details or [{"code": err.code}])[0]["code"]
        return {"error": {"code": err.code, "message": message, "details": [{"code": detail, "message": message}]}}

    def _report(self) -> str:
        now = self.state.now()
        stamp = f"{now.month}/{now.day}/{now.year} {now.strftime('%I:%M:%S %p').lstrip('0')}"
        return f"Report '{uuid.uuid4()}:1:{stamp} (UTC)' to our forums for assistance or raise a support ticket."

    def fault_response(self, kind: str, status: int, retry_after: float) -> ApiError:
        if kind == "throttle":
            return ApiError(429, "TooManyRequests", "The request was throttled: too many requests. Retry after the "
                            "time given in the Retry-After header.", {"Retry-After": f"{retry_after:g}"})
        code = {500: "InternalServerError", 503: "ServiceUnavailable"}.get(status, "InternalServerError")
        headers = {"Retry-After": f"{retry_after:g}"} if status in (429, 503) else {}
        return ApiError(status, code, "The service is temporarily unavailable. Please retry.", headers)

    # ------------------------------------------------------------------ publishing

    def publish(self, request: Request) -> Response:
        version = request.query.get("api-version")
        if version is None:
            raise ApiError(400, "BadRequest", "The request is missing the required query parameter 'api-version'.")
        if version != API_VERSION:
            raise ApiError(400, "BadRequest", f"The api-version '{version}' is not supported. The supported "
                           f"api-version for publishing to a topic is '{API_VERSION}'.")
        caller = self._caller(request)
        events, content_type = self._events(request)
        now = utc_iso(self.state.now())
        with self.state.lock:
            self.state.topic_events.extend({"receivedAt": now, "publisherAppId": caller, "contentType": content_type,
                                            "event": event} for event in events)
        return Response(200)

    def _caller(self, request: Request) -> str:
        """The appId of a caller holding EventGrid Data Sender; 401 otherwise, as Event Grid answers."""
        if any(h in request.headers for h in ("aeg-sas-key", "aeg-sas-token")):
            raise ApiError(401, "Unauthorized", "Publishing with an access key or a shared access signature is "
                           "disabled for this topic (disableLocalAuth). Use a Microsoft Entra token.")
        if "authorization" not in request.headers:
            raise ApiError(401, "Unauthorized", "The request did not carry a Microsoft Entra token (Authorization: "
                           "Bearer) or an 'aeg-sas-key' or 'aeg-sas-token' header.")
        app = self.state.caller(request.headers["authorization"], self.name)
        if app is None:
            raise ApiError(401, "Unauthorized", "The access token presented with the incoming request is invalid, "
                           "expired, or was not issued for the audience 'https://eventgrid.azure.net'.")
        if app.app_id.lower() not in self.senders:
            raise ApiError(401, "Unauthorized", "The principal associated with access token presented with the "
                           f"incoming request does not have permission to send data to {self.topic_id}.")
        return app.app_id

    def _events(self, request: Request) -> tuple[list[dict[str, Any]], str]:
        content_type = request.headers.get("content-type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in (BATCH, SINGLE):
            raise ApiError(400, "BadRequest", f"The Content-Type '{content_type}' is not supported: this topic's "
                           f"input schema is CloudEventSchemaV1_0; send '{BATCH}; charset=utf-8' (a JSON array) or "
                           f"'{SINGLE}; charset=utf-8' (one event).", details=[{"code": "InvalidContentType"}])
        if len(request.body) > MAX_REQUEST_BYTES:
            raise ApiError(413, "RequestEntityTooLarge", f"The request size {len(request.body)} bytes exceeds the "
                           f"maximum of {MAX_REQUEST_BYTES} bytes.", details=[{"code": "PayloadTooLarge"}])
        try:
            body = json.loads(request.body)
        except (ValueError, RecursionError) as err:
            raise _invalid(f"The request body is not valid JSON: {err}.") from err
        if (media == BATCH and not isinstance(body, list)) or (media == SINGLE and not isinstance(body, dict)):
            expected = "StartArray" if media == BATCH else "StartObject"
            raise _invalid("This resource is configured to receive event in 'CloudEventV10' schema. The JSON received "
                           f"does not conform to the expected schema. Token Expected: {expected}, Actual Token "
                           f"Received: {_token(body)}.")
        events = body if media == BATCH else [body]
        if not events:
            raise _invalid("The request contained no events.")
        for index, event in enumerate(events):
            _check_event(event, index)
        return events, content_type


def _check_event(event: Any, index: int) -> None:
    where = f"events[{index}]"
    if not isinstance(event, dict):
        raise _invalid("This resource is configured to receive event in 'CloudEventV10' schema. The JSON received "
                       f"does not conform to the expected schema. Token Expected: StartObject, Actual Token Received: "
                       f"{_token(event)}.")
    if len(json.dumps(event).encode()) > MAX_REQUEST_BYTES:
        raise ApiError(413, "RequestEntityTooLarge", f"{where}: an event may be at most {MAX_REQUEST_BYTES} bytes.",
                       details=[{"code": "PayloadTooLarge"}])
    for name in REQUIRED:
        if not isinstance(event.get(name), str) or not event[name]:
            raise _invalid(f"{where}: required property '{name}' was not set or is not a non-empty string.")
    if event["specversion"] != "1.0":
        raise _invalid(f"{where}: specversion '{event['specversion']}' is not supported; it must be '1.0'.")
    if "data" in event and "data_base64" in event:
        raise _invalid(f"{where}: an event carries 'data' or 'data_base64', not both.")
    if "time" in event:
        try:
            parse_time(str(event["time"]))
        except ValueError as err:
            raise _invalid(f"{where}: 'time' {event['time']!r} is not an RFC 3339 timestamp.") from err
    for name in event:
        if name not in _ATTRIBUTE_EXCEPTIONS and name != "data" and not _ATTRIBUTE.match(name):
            raise _invalid(f"{where}: '{name}' is not a valid CloudEvents attribute name (lower-case letters and "
                           "digits, at most 20).")


def _invalid(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message, details=[{"code": "InputJsonInvalid"}])


def _token(value: Any) -> str:
    """What Json.NET calls the first token of `value`."""
    if isinstance(value, list):
        return "StartArray"
    if isinstance(value, dict):
        return "StartObject"
    if isinstance(value, str):
        return "String"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    return "Null"

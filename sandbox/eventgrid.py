"""Event Grid's subscription system topic, as far as a webhook subscriber can tell.

Subscribing runs the validation handshake (a `SubscriptionValidationEvent` whose code the
endpoint must echo; for CloudEvents, the OPTIONS abuse-protection request). Afterwards each
failed cluster operation in the Activity Log becomes one `Microsoft.Resources.ResourceWriteFailure`
or `ResourceActionFailure` event, delivered on a background thread at least once, with
retries and backoff when the endpoint fails, like Event Grid's retry policy (shortened).
Event data carries no error text, as in Azure (see the ResourceWriteFailureData schema).

Deliveries carry the headers Event Grid sends a webhook, in both schemas ("events delivered in the
CloudEvents schema still use the aeg headers; the only value that is different is content-type",
MicrosoftDocs/azure-docs#11287; the header list is Event Grid's "message headers" table):
`aeg-event-type` (`SubscriptionValidation` for the handshake, else `Notification`), `aeg-subscription-name`,
`aeg-delivery-count` (0 on the first attempt), `aeg-data-version` (the event's dataVersion; empty for
CloudEvents, which have none) and `aeg-metadata-version` ("1"; the specversion for CloudEvents).
Content-Type: `application/json` for the Event Grid schema (always an array), and for CloudEvents
`application/cloudevents+json; charset=utf-8` for one event, as here (Event Grid's default, maxEventsPerBatch
1; a batch goes as `application/cloudevents-batch+json; charset=utf-8`).
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sandbox.state import ApiError, SandboxState

log = logging.getLogger("sandbox.eventgrid")
SCHEMAS = ("EventGridSchema", "CloudEventSchemaV1_0")
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)  # Event Grid's are 10 s, 30 s, 1 min, ...; shortened for local runs


@dataclass
class Subscription:
    id: str
    endpoint_url: str
    schema: str
    name: str = ""
    delivered: int = 0
    failed_attempts: int = 0
    dead_lettered: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)  # every event delivered, for redelivery


class EventGridTopic:
    def __init__(self, state: SandboxState) -> None:
        self._state = state
        self.subscriptions: list[Subscription] = []
        self._outbox: queue.Queue[tuple[Subscription, dict[str, Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._deliver_forever, name="sandbox-eventgrid", daemon=True)
        self._thread.start()
        state.on_failed_operation = self.publish_failure

    def subscribe(self, endpoint_url: str, schema: str, name: str | None = None) -> Subscription:
        if schema not in SCHEMAS:
            raise ApiError(400, "InvalidRequest", f"schema must be one of {', '.join(SCHEMAS)}")
        if not endpoint_url.startswith(("http://", "https://")):
            raise ApiError(400, "InvalidRequest", "endpointUrl must be an http(s) URL")
        subscription_id = str(uuid.uuid4())
        subscription = Subscription(id=subscription_id, endpoint_url=endpoint_url, schema=schema,
                                    name=name or f"remediator-{subscription_id[:8]}")
        self._validate(subscription)
        self.subscriptions.append(subscription)
        return subscription

    def _validate(self, subscription: Subscription) -> None:
        if subscription.schema == "CloudEventSchemaV1_0":
            status, headers, _ = _send("OPTIONS", subscription.endpoint_url, None,
                                       {"WebHook-Request-Origin": "eventgrid.azure.net"})
            if status != 200 or headers.get("webhook-allowed-origin") not in ("eventgrid.azure.net", "*"):
                raise ApiError(400, "WebhookValidationFailed", f"Webhook validation handshake failed for "
                               f"{subscription.endpoint_url}: status {status}")
            return
        code = str(uuid.uuid4()).upper()
        event = {"id": str(uuid.uuid4()), "topic": f"/subscriptions/{self._state.subscription_id}",
                 "subject": "", "data": {"validationCode": code,
                                         "validationUrl": "https://rp-westeurope.eventgrid.azure.net/validate"},
                 "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                 "eventTime": _now_iso(self._state), "metadataVersion": "1", "dataVersion": "1"}
        status, _, body = _send("POST", subscription.endpoint_url, [event],
                                _headers(subscription, event, "SubscriptionValidation", 0))
        try:
            answered = json.loads(body or b"{}").get("validationResponse")
        except ValueError:
            answered = None
        if status != 200 or answered != code:
            raise ApiError(400, "WebhookValidationFailed", f"Webhook validation handshake failed for "
                           f"{subscription.endpoint_url}: status {status}, the validation code was not echoed")

    def publish_failure(self, entry: dict[str, Any]) -> None:
        """Queue the failure event of a failed Activity Log entry for every subscription."""
        operation = entry["operationName"]["value"]
        event_type = ("Microsoft.Resources.ResourceWriteFailure" if operation.lower().endswith("/write")
                      else "Microsoft.Resources.ResourceDeleteFailure" if operation.lower().endswith("/delete")
                      else "Microsoft.Resources.ResourceActionFailure")
        data = {
            "authorization": entry["authorization"] | {"evidence": {"role": "Contributor"}},
            "claims": entry["claims"], "correlationId": entry["correlationId"],
            "httpRequest": entry["httpRequest"], "resourceProvider": "Microsoft.ContainerService",
            "resourceUri": entry["resourceId"], "operationName": operation, "status": "Failed",
            "subscriptionId": entry["subscriptionId"], "tenantId": self._state.tenant_id,
            "resourceGroup": entry["resourceGroupName"],
        }
        for subscription in list(self.subscriptions):
            self._outbox.put((subscription, self._envelope(subscription.schema, event_type, data, entry)))

    def _envelope(self, schema: str, event_type: str, data: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
        topic = f"/subscriptions/{entry['subscriptionId']}"  # each subscription's own system topic
        if schema == "CloudEventSchemaV1_0":
            return {"specversion": "1.0", "type": event_type, "source": topic, "subject": data["resourceUri"],
                    "id": str(uuid.uuid4()), "time": entry["eventTimestamp"], "datacontenttype": "application/json",
                    "data": data}
        return {"subject": data["resourceUri"], "eventType": event_type, "eventTime": entry["eventTimestamp"],
                "id": str(uuid.uuid4()), "data": data, "dataVersion": "2", "metadataVersion": "1", "topic": topic}

    def _deliver_forever(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            subscription, event = item
            self._deliver(subscription, event)

    def _deliver(self, subscription: Subscription, event: dict[str, Any]) -> None:
        cloud = subscription.schema == "CloudEventSchemaV1_0"
        body: Any = event if cloud else [event]
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS)):
            time.sleep(delay)
            status, _, _ = _send("POST", subscription.endpoint_url, body,
                                 _headers(subscription, event, "Notification", attempt))
            if 200 <= status < 300:
                subscription.delivered += 1
                subscription.sent.append(event)
                return
            subscription.failed_attempts += 1
            log.info("event %s to %s: attempt %s got %s", event["id"], subscription.id, attempt + 1, status)
        subscription.dead_lettered.append(event["id"])

    def redeliver(self, times: int, *, concurrency: int = 16) -> dict[str, int]:
        """Deliver every event delivered so far `times` more times to its subscription, `concurrency` at once:
        Event Grid delivers at least once, and under load duplicates arrive together. Answers by status."""
        jobs = [(subscription, event, attempt) for subscription in list(self.subscriptions)
                for event in list(subscription.sent) for attempt in range(1, times + 1)]

        def one(job: tuple[Subscription, dict[str, Any], int]) -> int:
            subscription, event, attempt = job
            body: Any = event if subscription.schema == "CloudEventSchemaV1_0" else [event]
            return _send("POST", subscription.endpoint_url, body,
                         _headers(subscription, event, "Notification", attempt))[0]

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            statuses = list(pool.map(one, jobs))
        return {str(status): statuses.count(status) for status in sorted(set(statuses))}

    def close(self) -> None:
        self._outbox.put(None)
        self._thread.join(timeout=5)


def _headers(subscription: Subscription, event: dict[str, Any], kind: str, attempt: int) -> dict[str, str]:
    """What Event Grid sends with a delivery of `event` (see the module's docstring)."""
    cloud = "specversion" in event
    return {"aeg-event-type": kind, "aeg-subscription-name": subscription.name, "aeg-delivery-count": str(attempt),
            "aeg-data-version": "" if cloud else str(event.get("dataVersion", "")),
            "aeg-metadata-version": str(event["specversion"] if cloud else event.get("metadataVersion", "1")),
            "Content-Type": "application/cloudevents+json; charset=utf-8" if cloud else "application/json"}


def _now_iso(state: SandboxState) -> str:
    return state.now().isoformat().replace("+00:00", "Z")


def _send(method: str, url: str, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30, context=ssl.create_default_context()) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()
    except (urllib.error.URLError, OSError) as err:
        log.info("%s %s failed: %s", method, url.split("?")[0], err)
        return 0, {}, b""

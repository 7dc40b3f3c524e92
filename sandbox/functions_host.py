"""A local stand-in for the Azure Functions host, for machines without Core Tools.

It serves `function_app.py`'s own functions the way the host and the Python worker do: every
trigger's payload is turned into the `azure.functions.meta.Datum`s the worker builds from the
host's RPC data, with the trigger metadata the host supplies, and decoded by the library's own
converters (`meta.get_binding_registry()`), so a function gets exactly the object it would get
in Azure (a `func.CloudEvent` for a CloudEvents event, whatever its annotation says). Sources:
- the worker: azure_functions_worker/bindings/datumdef.py (`Datum.from_typed_data`: how RPC
  `TypedData`, and an RPC HTTP request's method/url/headers/body/params/query, become Datums),
  bindings/meta.py (`from_incoming_proto`: `binding.decode(datum, trigger_metadata=...)`),
  functions.py (the annotation checks at indexing), dispatcher.py (capabilities RawHttpBodyBytes and
  RpcHttpTriggerMetadataRemoved: an HTTP body arrives as bytes, without trigger metadata; root logger
  at INFO) - Azure/azure-functions-python-worker;
- the host: RpcMessageConversionExtensions.cs (`ToRpc`: strings as `string`, bytes as `bytes`, every
  other value - numbers, times - as `json`; HTTP headers lower-cased, empty query values dropped) -
  Azure/azure-functions-host;
- the extensions: Storage.Queues QueueTriggerBinding.cs (queue trigger metadata: Id, DequeueCount,
  InsertionTime, ExpirationTime, NextVisibleTime, PopReceipt, QueueTrigger), QueueListener.cs (receive
  with a 10-minute visibility, renewed while the function runs), QueueProcessor (delete on success; on
  failure back to the queue after host.json's visibilityTimeout, or to `<queue>-poison` once the dequeue
  count reaches maxDequeueCount, and before running one already dequeued more often), QueueListenerFactory.cs
  (a queue named `*-poison` has no poison queue: its messages are retried for ever); EventGrid
  HttpRequestProcessor.cs and EventGridExtensionConfigProvider.cs (the webhook) - Azure/azure-sdk-for-net;
- the library's converters and their tests (tests/test_queue.py, test_eventgrid.py, test_timer.py) -
  Azure/azure-functions-python-library.

What it serves:
- HTTP triggers at `/api/<route>`, with function-level keys (`x-functions-key` or `?code=`);
- queue triggers by polling their Azure Storage queue (base64 messages);
- Event Grid triggers at `/runtime/webhooks/eventgrid?functionName=<name>`: the `aeg-event-type`
  header decides (SubscriptionValidation, Notification, Unsubscribe; none: 400), both schemas, and
  the CloudEvents OPTIONS handshake;
- timer and other non-HTTP functions on `POST /admin/functions/<name>` (202, run in the background,
  as the host's admin API).

`%NAME%` in any binding property is resolved from the app settings; a missing one, a missing
storage connection, a bad schedule or an annotation the worker would refuse stops the runner at
start with `StartupError` naming it. (The real host starts and marks that one function "in error";
refusing to start makes the mistake impossible to miss.)

Limits, so a client's mistake never crashes or hangs it: a socket timeout on every read
(`read_timeout`, 408 when a body stops arriving); request bodies up to 100 MB (the host's limit,
413 above) and Event Grid deliveries up to 1 MB (Event Grid's own maximum for an event and for a
delivered batch, 413 above); a malformed Content-Length or webhook body is a 400 (the host's extension
lets a webhook body that is not a JSON object or array throw: a 500). A function that raises gets a 500
for that invocation only, and the error is logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import sys
import threading
import time
import typing
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.functions import meta
from azure.storage.queue import QueueClient

log = logging.getLogger("sandbox.functions_host")
ROOT = Path(__file__).resolve().parent.parent

MAX_REQUEST_BODY = 100 * 1024 * 1024  # the Functions host's HTTP request limit: 100 MB
MAX_EVENT_GRID_BODY = 1024 * 1024  # Event Grid: an event is at most 1 MB, a delivered batch at most 1,024 KB
HOST_STORAGE_LOG = logging.getLogger("sandbox.host.storage")
HOST_STORAGE_LOG.setLevel(logging.WARNING)
HOST_VISIBILITY_TIMEOUT = 600  # QueueListener: received messages stay invisible 10 minutes, renewed while running
READ_TIMEOUT = 10.0  # seconds a connection may stay silent while the runner waits for a request or its body
# The host's Event Grid extension answers the CloudEvents handshake with the origin if it is one of these.
EVENT_GRID_ORIGINS = ("eventgrid.azure.net", "eventgrid.azure.us", "eventgrid.azure.eaglex.ic.gov",
                      "eventgrid.azure.microsoft.scloud", "eventgrid.azure.cn")


class StartupError(RuntimeError):
    """The function app cannot be served as configured: a setting is missing, a binding or annotation is wrong."""


# ----- what the host sends the worker for each trigger, as the worker turns it into Datums ------------

Metadata = dict[str, meta.Datum | None]


@dataclass(frozen=True)
class TriggerInput:
    """A trigger's payload and metadata as the Python worker hands them to the library's converter."""

    binding: str  # httpTrigger, queueTrigger, eventGridTrigger, timerTrigger
    data: meta.Datum
    metadata: Metadata = field(default_factory=dict)

    def decode(self) -> Any:
        """What the function's parameter receives: the converter's `decode`, as the worker calls it."""
        return _converter(self.binding).decode(self.data, trigger_metadata=self.metadata)


def http_input(method: str, url: str, *, headers: Mapping[str, str] | None = None, body: bytes = b"",
               route_params: Mapping[str, str] | None = None) -> TriggerInput:
    """An HTTP trigger's RPC request: lower-case header names, the query from the URL (empty values dropped,
    repeated ones joined with commas), the body as bytes (absent when empty), no trigger metadata."""
    query: dict[str, str] = {}
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if value:
            query[name] = f"{query[name]},{value}" if name in query else value
    value = {
        "method": meta.Datum(method.upper(), "string"),
        "url": meta.Datum(url, "string"),
        "headers": {k.lower(): meta.Datum(v, "string") for k, v in (headers or {}).items()},
        "body": meta.Datum(bytes(body), "bytes"),
        "params": {k: meta.Datum(v, "string") for k, v in (route_params or {}).items() if v is not None},
        "query": {k: meta.Datum(v, "string") for k, v in query.items()},
    }
    return TriggerInput("httpTrigger", meta.Datum(value, "http"))


def queue_input(body: str | bytes, *, message_id: str | None = None, dequeue_count: int = 1,
                inserted_on: datetime | None = None, expires_on: datetime | None = None,
                next_visible_on: datetime | None = None, pop_receipt: str | None = None) -> TriggerInput:
    """A queue trigger's message (decoded from base64; `string` if it is UTF-8 text, else `bytes`) and the
    metadata the Storage extension binds (QueueTriggerBinding.CreateBindingData)."""
    now = datetime.now(UTC)
    text = body if isinstance(body, str) else _utf8(body)
    metadata: Metadata = {
        "DequeueCount": _json(dequeue_count),
        "ExpirationTime": _json_time(expires_on or now + timedelta(days=7)),
        "Id": meta.Datum(message_id or str(uuid.uuid4()), "string"),
        "InsertionTime": _json_time(inserted_on or now),
        "NextVisibleTime": _json_time(next_visible_on or now + timedelta(seconds=HOST_VISIBILITY_TIMEOUT)),
        "PopReceipt": meta.Datum(pop_receipt or base64.b64encode(os.urandom(12)).decode(), "string"),
    }
    if text is not None:
        metadata["QueueTrigger"] = meta.Datum(text, "string")
    data = meta.Datum(text, "string") if text is not None else meta.Datum(bytes(body), "bytes")
    return TriggerInput("queueTrigger", data, metadata)


def event_grid_input(event: Mapping[str, Any] | str) -> TriggerInput:
    """One event of a delivery (the extension dispatches each event of the array on its own), as JSON."""
    text = event if isinstance(event, str) else json.dumps(event)
    try:
        data = json.loads(text).get("data")
    except (ValueError, AttributeError, RecursionError):
        data = None
    return TriggerInput("eventGridTrigger", meta.Datum(text, "json"),
                        {"data": None if data is None else _json(data)})


def timer_input(*, past_due: bool = False, schedule_status: Mapping[str, str] | None = None) -> TriggerInput:
    """A timer's TimerInfo JSON; ScheduleStatus is null for a run started through the admin API."""
    info = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": dict(schedule_status) if schedule_status else None,
            "IsPastDue": past_due}
    return TriggerInput("timerTrigger", meta.Datum(json.dumps(info), "json"))


def _json(value: Any) -> meta.Datum:
    return meta.Datum(json.dumps(value), "json")


def _json_time(value: datetime) -> meta.Datum:
    # What Json.NET writes for a DateTimeOffset; the library parses it with its '+00:00' formats.
    return _json(value.astimezone(UTC).isoformat())


def _utf8(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _converter(binding: str) -> Any:
    converter = meta.get_binding_registry().get(binding)
    if converter is None:
        raise StartupError(f"azure-functions has no converter for {binding!r} bindings")
    return converter


# ----- indexing: what the host and worker check before serving a function ----------------------------

@dataclass(frozen=True)
class IndexedFunction:
    name: str
    binding: str  # the trigger's type
    trigger: dict[str, Any]  # the trigger binding, with %NAME% resolved
    param: str
    call: Callable[..., Any]
    output: str | None  # the `$return` binding's type (http), if any


_INDEXED: weakref.WeakKeyDictionary[func.FunctionApp, list[Any]] = weakref.WeakKeyDictionary()


def functions_of(app: func.FunctionApp) -> list[Any]:
    """`app.get_functions()`, once per app: a second call raises (it re-validates the names it recorded),
    and the host, too, indexes an app once."""
    if app not in _INDEXED:
        _INDEXED[app] = list(app.get_functions())
    return _INDEXED[app]


def index(app: func.FunctionApp, settings: Mapping[str, str]) -> dict[str, IndexedFunction]:
    """Every function of the app, checked as the host and worker check it at start. Raises StartupError."""
    lookup = {k.upper(): v for k, v in settings.items()}  # the host's configuration is case-insensitive
    indexed = {}
    for function in functions_of(app):
        name = function.get_function_name()
        bindings = [_resolve(name, json.loads(raw), lookup) for raw in function.get_raw_bindings()]
        trigger = next((b for b in bindings if str(b.get("type", "")).endswith("Trigger")), None)
        if trigger is None:
            raise StartupError(f"The '{name}' function is in error: it has no trigger binding.")
        call = function.get_user_function()
        _check_annotation(name, call, trigger)
        if trigger["type"] == "timerTrigger" and not _valid_schedule(str(trigger.get("schedule", ""))):
            raise StartupError(f"The '{name}' function is in error: The schedule expression "
                               f"'{trigger.get('schedule')}' was not recognized as a valid cron expression or "
                               f"timespan string.")
        output = next((b["type"] for b in bindings if b.get("name") == "$return"), None)
        indexed[name] = IndexedFunction(name, trigger["type"], trigger, trigger["name"], call, output)
    return indexed


def _resolve(function: str, binding: dict[str, Any], settings: Mapping[str, str]) -> dict[str, Any]:
    def setting(match: re.Match[str]) -> str:
        value = settings.get(match.group(1).upper())
        if value is None:
            raise StartupError(f"The '{function}' function is in error: '%{match.group(1)}%' does not resolve to "
                               f"a value. Add the app setting {match.group(1)}.")
        return value

    return {key: re.sub(r"%([^%]+)%", setting, value) if isinstance(value, str) and key not in ("name", "type")
            else value for key, value in binding.items()}


def _check_annotation(function: str, call: Callable[..., Any], trigger: Mapping[str, Any]) -> None:
    """The worker's checks of the trigger parameter (functions.py, Registry.add_function)."""
    try:
        hints = typing.get_type_hints(call)
    except Exception as err:  # noqa: BLE001 - any error here is the worker's indexing error
        raise StartupError(f"cannot load the {function} function: its annotations do not evaluate: {err}") from err
    param = trigger["name"]
    if param not in hints:
        return
    annotation = hints[param]
    if annotation in (str, bytes):
        raise StartupError(f"cannot load the {function} function: the runner decodes only through the library's "
                           f"typed converters; a str/bytes parameter uses the worker's generic binding")
    if not isinstance(annotation, type):
        raise StartupError(f"cannot load the {function} function: binding {param} has invalid non-type annotation "
                           f"{annotation!r}")
    if not _converter(trigger["type"]).check_input_type_annotation(annotation):
        raise StartupError(f'cannot load the {function} function: type of {param} binding in function.json '
                           f'"{trigger["type"]}" does not match its Python annotation "{annotation.__name__}"')


def _valid_schedule(schedule: str) -> bool:
    # NCRONTAB with seconds (six fields) or a TimeSpan such as 00:05:00.
    return len(schedule.split()) == 6 or re.fullmatch(r"(\d+\.)?\d{1,2}:\d{2}(:\d{2})?", schedule) is not None


def _route_pattern(route: str) -> re.Pattern[str]:
    # `remediations/{remediation_id}` -> named groups, one path segment each ({name?} optional).
    parts = re.split(r"(\{[^}]+\})", route.strip("/"))
    regex = "".join(
        f"(?P<{p[1:-1].split(':')[0].rstrip('?')}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^/api/{regex}/?$", re.IGNORECASE)


@dataclass(frozen=True)
class HttpRoute:
    function: IndexedFunction
    pattern: re.Pattern[str]
    methods: frozenset[str]
    needs_key: bool


class HttpError(Exception):
    """A request the runner answers itself, without invoking a function."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message)
        self.status = status


Answer = tuple[int, dict[str, str], bytes]


def _text(status: int, message: str) -> Answer:
    return status, {"Content-Type": "text/plain; charset=utf-8"}, message.encode()


# ----- the runner ---------------------------------------------------------------------------------------

class FunctionRunner:
    """Serve a `func.FunctionApp` on 127.0.0.1. Use as a context manager, or start()/stop().

    `settings` are the app settings (default: this process's environment, as the host reads them);
    `storage_connection`, if given, is the connection string of every queue trigger's `connection`.
    `visibility_timeout` is how long a received message stays invisible (renewed at half of it while its
    function runs); `retry_delay` overrides host.json's visibilityTimeout (how long a failed message waits),
    `queues` any other of host.json's `extensions.queues` settings. `log_level`, if given, is set on the root
    logger as the Python worker does (INFO; DEBUG with PYTHON_ENABLE_DEBUG_LOGGING): leave it None when
    embedding the runner in a process that configures its own logging.
    """

    def __init__(self, app: func.FunctionApp, *, function_key: str, settings: Mapping[str, str] | None = None,
                 storage_connection: str | None = None, port: int = 0, poll_interval: float = 0.1,
                 visibility_timeout: int = HOST_VISIBILITY_TIMEOUT, retry_delay: float | None = None,
                 queues: Mapping[str, Any] | None = None, read_timeout: float = READ_TIMEOUT,
                 log_level: int | None = None) -> None:
        if visibility_timeout < 1:
            raise ValueError("visibility_timeout must be at least 1 second (Azure Storage counts whole seconds)")
        self.function_key = function_key
        self.settings = dict(os.environ if settings is None else settings)
        self.functions = index(app, self.settings)
        queue_settings = {**json.loads((ROOT / "host.json").read_text()).get("extensions", {}).get("queues", {}),
                          **(queues or {})}
        self._max_dequeue = int(queue_settings.get("maxDequeueCount", 5))
        self._batch_size = int(queue_settings.get("batchSize", 16))
        self._retry_delay = int(retry_delay if retry_delay is not None
                                else _seconds(str(queue_settings.get("visibilityTimeout", "00:00:00"))))
        self.visibility_timeout = int(visibility_timeout)
        self._poll_interval = poll_interval
        self._log_level = log_level
        self._connections: dict[str, str] = {}
        lookup = {k.upper(): v for k, v in self.settings.items()}
        self.routes: list[HttpRoute] = []
        for function in self.functions.values():
            trigger = function.trigger
            if function.binding == "httpTrigger":
                self.routes.append(HttpRoute(
                    function, _route_pattern(trigger.get("route") or function.name),
                    frozenset(m.upper() for m in trigger.get("methods") or ("GET", "POST")),
                    str(trigger.get("authLevel", "FUNCTION")).upper() != "ANONYMOUS"))
            elif function.binding == "queueTrigger":
                connection = str(trigger.get("connection") or "AzureWebJobsStorage")
                value = storage_connection or lookup.get(connection.upper())
                if not value:
                    raise StartupError(f"The '{function.name}' function is in error: Storage account connection "
                                       f"string '{connection}' does not exist. Make sure that it is a defined App "
                                       f"Setting.")
                self._connections[function.name] = value
        self.invocations: deque[dict[str, Any]] = deque(maxlen=10_000)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._background: list[threading.Thread] = []
        self._started = False
        self._server = _Server(("127.0.0.1", port), self._handler_class(read_timeout))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ----- lifecycle -------------------------------------------------------------------------

    def start(self) -> FunctionRunner:
        self._started = True
        if self._log_level is not None:
            logging.getLogger().setLevel(self._log_level)
        for function in self.functions.values():
            if function.binding == "queueTrigger":
                self._ensure_queue(function.name, function.trigger["queueName"])
                self._threads.append(threading.Thread(target=self._poll_queue, args=(function,), daemon=True,
                                                      name=f"queue-{function.name}"))
        self._threads.append(threading.Thread(target=self._server.serve_forever, daemon=True, name="http"))
        for thread in self._threads:
            thread.start()
        log.info("function runner on %s: %s", self.url, ", ".join(self.functions))
        return self

    def stop(self, drain_timeout: float = 30.0) -> None:
        """Stop taking work, let invocations in flight finish (up to `drain_timeout`), then close."""
        self._stop.set()
        if self._started:
            self._server.shutdown()
        self._server.server_close()
        deadline = time.monotonic() + drain_timeout
        for thread in self._threads + self._background:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FunctionRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def idle(self) -> bool:
        """True when no queue this runner serves holds a message, visible or not."""
        return all(self._queue_client(f.name, f.trigger["queueName"]).get_queue_properties()
                   .approximate_message_count == 0 for f in self.functions.values() if f.binding == "queueTrigger")

    # ----- invocation ------------------------------------------------------------------------

    def invoke(self, function: IndexedFunction, reason: str, trigger: TriggerInput,
               details: str | None = None) -> tuple[bool, Any]:
        """Decode the trigger with the library's converter, call the function, encode its `$return`.

        (True, output) on success; (False, None) when any of it raised: logged, as the host logs a failed
        invocation, and never raised to the caller."""
        invocation_id = str(uuid.uuid4())
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", function.name, reason, invocation_id)
        if details:
            log.info("Trigger Details: %s", details)
        started = time.perf_counter()
        record: dict[str, Any] = {"function": function.name, "id": invocation_id, "reason": reason,
                                  "at": datetime.now(UTC).isoformat()}
        metadata = {**trigger.metadata, "sys": _json({"MethodName": function.name,
                                                      "UtcNow": record["at"], "RandGuid": str(uuid.uuid4())})}
        try:
            value = _converter(trigger.binding).decode(trigger.data, trigger_metadata=metadata)
            record["argument"] = type(value).__name__
            result = function.call(**{function.param: value})
            output = (_converter(function.output).encode(result, expected_type=None)
                      if function.output and function.output != "generic" else result)
        except Exception as err:  # noqa: BLE001 - a failed invocation is reported, not raised, as the host does
            record.update(status="Failed", durationMs=_ms(started))
            self.invocations.append(record)
            log.error("Executed 'Functions.%s' (Failed, Id=%s, Duration=%sms)", function.name, invocation_id,
                      record["durationMs"], exc_info=err)
            return False, None
        record.update(status="Succeeded", durationMs=_ms(started))
        self.invocations.append(record)
        log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%sms)", function.name, invocation_id,
                 record["durationMs"])
        return True, output

    # ----- queues ----------------------------------------------------------------------------

    def _poll_queue(self, function: IndexedFunction) -> None:
        client = self._queue_client(function.name, function.trigger["queueName"])
        with ThreadPoolExecutor(max_workers=self._batch_size, thread_name_prefix=f"run-{function.name}") as pool:
            while not self._stop.is_set():
                try:
                    messages = list(client.receive_messages(max_messages=self._batch_size,
                                                            visibility_timeout=self.visibility_timeout))
                except Exception as err:  # noqa: BLE001 - storage unreachable: back off, as the listener does
                    log.warning("receiving from %s failed: %s", function.trigger["queueName"], err)
                    self._stop.wait(max(self._poll_interval, 1.0))
                    continue
                # The batch runs in parallel; the next receive waits for it (the host's newBatchThreshold, simplified).
                wait([pool.submit(self._process, function, client, message) for message in messages])
                if not messages:
                    self._stop.wait(self._poll_interval)

    def _process(self, function: IndexedFunction, client: QueueClient, message: Any) -> None:
        queue_name = function.trigger["queueName"]
        poison = _poison_queue(queue_name)
        try:
            if poison and message.dequeue_count > self._max_dequeue:  # its invocations died (killed) too often
                self._poison(function, client, message.id, message.pop_receipt, message.content)
                return
            try:
                body = base64.b64decode(message.content, validate=True)
            except (binascii.Error, ValueError, TypeError):
                log.warning("message %s on %s is not base64 (host.json messageEncoding)", message.id, queue_name)
                if poison:
                    self._poison(function, client, message.id, message.pop_receipt, message.content)
                else:
                    client.update_message(message.id, message.pop_receipt, visibility_timeout=self._retry_delay)
                return
            trigger = queue_input(body, message_id=message.id, dequeue_count=message.dequeue_count,
                                  inserted_on=message.inserted_on, expires_on=message.expires_on,
                                  next_visible_on=message.next_visible_on, pop_receipt=message.pop_receipt)
            renewal = _Renewal(client, message.id, message.pop_receipt, self.visibility_timeout)
            with renewal:
                ok, _ = self.invoke(function, f"New queue message detected on '{queue_name}'.", trigger,
                                    f"MessageId: {message.id}, DequeueCount: {message.dequeue_count}, "
                                    f"InsertedOn: {message.inserted_on.isoformat() if message.inserted_on else ''}")
            if ok:
                client.delete_message(message.id, renewal.pop_receipt)
            elif poison and message.dequeue_count >= self._max_dequeue:
                self._poison(function, client, message.id, renewal.pop_receipt, message.content)
            else:
                client.update_message(message.id, renewal.pop_receipt, visibility_timeout=self._retry_delay)
        except Exception as err:  # noqa: BLE001 - e.g. the pop receipt expired: the message comes back by itself
            log.warning("completing message %s on %s failed: %s", message.id, queue_name, err)

    def _poison(self, function: IndexedFunction, client: QueueClient, message_id: str, pop_receipt: str,
                content: str) -> None:
        poison = f"{function.trigger['queueName']}-poison"
        # The host's words (QueueProcessor.CopyMessageToPoisonQueueAsync); alert rules search for them.
        log.warning("Message has reached MaxDequeueCount of %s. Moving message to queue '%s'.", self._max_dequeue,
                    poison)
        self._ensure_queue(function.name, poison).send_message(content)  # still base64, as received
        client.delete_message(message_id, pop_receipt)

    def _queue_client(self, function: str, queue_name: str) -> QueueClient:
        # No encode/decode policy: the runner base64-decodes itself, so a message that is not base64 is poisoned
        # instead of failing the whole receive, and poisoned messages keep their text exactly.
        # The host's own storage calls log through the host, not the app's Python loggers: keep them off "azure",
        # where the app's quieting (REMEDIATOR_SDK_LOG_LEVEL) must be what decides.
        return QueueClient.from_connection_string(self._connections[function], queue_name, logger=HOST_STORAGE_LOG)

    def _ensure_queue(self, function: str, queue_name: str) -> QueueClient:
        client = self._queue_client(function, queue_name)
        try:
            client.create_queue()
        except ResourceExistsError:
            pass
        return client

    # ----- HTTP ------------------------------------------------------------------------------

    def _handler_class(self, read_timeout: float) -> type[BaseHTTPRequestHandler]:
        runner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            timeout = read_timeout  # every read of the connection: an idle or stalled client cannot hold it

            def do_GET(self) -> None:  # noqa: N802 (http.server's names)
                runner._handle(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("%s %s", getattr(self, "command", "?"), getattr(self, "path", "?").split("?", 1)[0])

        return Handler

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        path = split.path
        webhook = path.lower() == "/runtime/webhooks/eventgrid"
        try:
            body = _read_body(handler, MAX_EVENT_GRID_BODY if webhook else MAX_REQUEST_BODY)
        except HttpError as err:
            _respond(handler, *_text(err.status, str(err)), close=True)
            return
        except TimeoutError:
            _respond(handler, *_text(408, "the request body did not arrive in time"), close=True)
            return
        except OSError:  # the client went away
            handler.close_connection = True
            return
        params = dict(parse_qsl(split.query))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        key = headers.get("x-functions-key") or params.get("code")
        try:
            if webhook:
                answer = self._event_grid(handler.command, params, headers, body, key)
            elif path.lower().startswith("/admin/functions/"):
                answer = self._admin(handler.command, path.rsplit("/", 1)[-1], body, key)
            else:
                answer = self._http(handler, path, headers, body, key)
        except HttpError as err:
            answer = _text(err.status, str(err))
        except Exception:  # a bug of the runner's, not of a function (those are caught in invoke)
            log.exception("the runner failed on %s %s", handler.command, path)
            answer = (500, {}, b"")
        _respond(handler, *answer)

    def _http(self, handler: BaseHTTPRequestHandler, path: str, headers: dict[str, str], body: bytes,
              key: str | None) -> Answer:
        method = handler.command
        matching = [(route, match) for route in self.routes if (match := route.pattern.match(path))]
        if matching and not any(method in route.methods for route, _ in matching):
            return 405, {}, b""
        for route, match in matching:
            if method not in route.methods:
                continue
            if route.needs_key and key != self.function_key:
                return 401, {}, b""  # the host answers a missing or wrong key with an empty 401
            url = f"http://{headers.get('host') or urlsplit(self.url).netloc}{handler.path}"
            trigger = http_input(method, url, headers=_joined(handler), body=body, route_params=match.groupdict())
            ok, output = self.invoke(route.function, "This function was programmatically called via the host APIs.",
                                     trigger)
            if not ok:
                return 500, {}, b""
            return _http_answer(output)
        return 404, {}, b""

    def _admin(self, method: str, name: str, body: bytes, key: str | None) -> Answer:
        if method != "POST":
            return 405, {}, b""
        if key != self.function_key:  # the host wants the master key here
            return 401, {}, b""
        function = self.functions.get(name)
        if function is None:
            return 404, {}, b""
        try:
            request = json.loads(body) if body.strip() else {}
        except (ValueError, RecursionError) as err:
            raise HttpError(400, "the body must be JSON: {\"input\": \"...\"}") from err
        if not isinstance(request, dict):
            raise HttpError(400, "the body must be a JSON object: {\"input\": \"...\"}")
        given = request.get("input")
        if function.binding == "timerTrigger":
            trigger = timer_input()
        elif function.binding == "queueTrigger":
            trigger = queue_input(given if isinstance(given, str) else json.dumps(given))
        elif function.binding == "eventGridTrigger" and isinstance(given, (str, dict)):
            trigger = event_grid_input(given)
        else:
            raise HttpError(400, f"{function.binding} functions cannot be run through the admin API with this input")
        thread = threading.Thread(target=self.invoke, args=(function, "This function was programmatically called "
                                                            "via the host APIs.", trigger), daemon=True,
                                  name=f"admin-{name}")
        self._background = [t for t in self._background if t.is_alive()] + [thread]
        thread.start()
        return 202, {}, b""

    def _event_grid(self, method: str, params: dict[str, str], headers: dict[str, str], body: bytes,
                    key: str | None) -> Answer:
        """The Event Grid extension's webhook (EventGridExtensionConfigProvider, HttpRequestProcessor)."""
        if key != self.function_key:  # the host wants the eventgrid_extension system key
            return 401, {}, b""
        name = params.get("functionName", "")
        function = self.functions.get(name)
        if function is None or function.binding != "eventGridTrigger":
            return _text(404, f"cannot find function: '{name}'")
        if method == "OPTIONS":  # the CloudEvents abuse-protection handshake
            origin = headers.get("webhook-request-origin", "")
            allowed = origin if origin in EVENT_GRID_ORIGINS else EVENT_GRID_ORIGINS[0]
            return 200, {"Webhook-Allowed-Origin": allowed}, b""
        kind = headers.get("aeg-event-type", "").lower()
        if kind == "unsubscribe":
            return 202, {}, b""
        if kind not in ("subscriptionvalidation", "notification"):
            # The extension's answer to a delivery without aeg-event-type (or an unknown one): 400, empty.
            log.warning("Event Grid webhook: refused a %s without the aeg-event-type header", method)
            return 400, {}, b""
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            raise HttpError(400, "The request content should be JSON") from err
        if not isinstance(payload, (dict, list)):
            raise HttpError(400, f"The request content should be parseable into a JSON object or array, but was "
                                 f"{type(payload).__name__}.")
        if kind == "subscriptionvalidation":
            code = _validation_code(payload)
            if code is None:
                raise HttpError(400, "a SubscriptionValidation delivery must carry data.validationCode")
            log.info("perform handshake with eventGrid for function: %s", name)
            return 200, {"Content-Type": "text/plain; charset=utf-8"}, json.dumps({"validationResponse": code}).encode()
        events = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(event, dict) for event in events):
            raise HttpError(400, "every event of a delivery must be a JSON object")
        failed = [event for event in events
                  if not self.invoke(function, "EventGrid trigger fired", event_grid_input(event))[0]]
        if failed:  # Event Grid retries the whole delivery
            return _text(500, f"Exception while executing function: Functions.{name}")
        return 202, {}, b""


def _poison_queue(queue_name: str) -> str | None:
    """The queue's poison queue; None for a poison queue itself, or when the name would be too long
    (QueueListenerFactory.CreatePoisonQueueReference). Without one, a message is retried for ever."""
    poison = f"{queue_name}-poison"
    return None if queue_name.endswith("-poison") or len(poison) > 63 else poison


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Renewal:
    """Keeps a received message invisible while its function runs (UpdateQueueMessageVisibilityCommand):
    every half visibility timeout, the visibility is set to the full timeout again."""

    def __init__(self, client: QueueClient, message_id: str, pop_receipt: str, visibility_timeout: int) -> None:
        self._client, self._id, self._timeout = client, message_id, visibility_timeout
        self.pop_receipt = pop_receipt
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True, name=f"renew-{message_id[:8]}")

    def __enter__(self) -> _Renewal:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _renew(self) -> None:
        while not self._done.wait(self._timeout / 2):
            try:
                updated = self._client.update_message(self._id, self.pop_receipt, visibility_timeout=self._timeout)
                self.pop_receipt = updated.pop_receipt
            except Exception as err:  # noqa: BLE001 - storage hiccup: try again at the next tick
                log.warning("renewing the visibility of message %s failed: %s", self._id, err)


def _read_body(handler: BaseHTTPRequestHandler, limit: int) -> bytes:
    """The request body, at most `limit` bytes. HttpError for a malformed or oversized one (the connection is
    then closed); TimeoutError when the client stops sending before the body is complete."""
    lengths = handler.headers.get_all("Content-Length") or []
    chunked = "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower()
    if chunked and lengths:
        raise HttpError(400, "a request cannot have both Content-Length and Transfer-Encoding: chunked")
    if chunked:
        return _read_chunked(handler.rfile, limit)
    if not lengths:
        return b""
    if len({value.strip() for value in lengths}) > 1 or not lengths[0].strip().isdigit():
        raise HttpError(400, "Content-Length must be one non-negative integer")
    length = int(lengths[0])
    if length > limit:
        raise HttpError(413, f"the request body is larger than {limit} bytes")
    return _read_exactly(handler.rfile, length)


def _read_exactly(stream: Any, length: int) -> bytes:
    data = stream.read(length) if length else b""
    if len(data) < length:
        raise HttpError(400, "the connection ended before the body did")
    return data


def _read_chunked(stream: Any, limit: int) -> bytes:
    parts, total = [], 0
    while True:
        line = stream.readline(1026)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as err:
            raise HttpError(400, "malformed chunked body") from err
        if size == 0:
            while stream.readline(1026) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        total += size
        if size < 0 or total > limit:
            raise HttpError(413, f"the request body is larger than {limit} bytes")
        parts.append(_read_exactly(stream, size))
        stream.readline(3)


def _respond(handler: BaseHTTPRequestHandler, status: int, headers: Mapping[str, str], body: bytes, *,
             close: bool = False) -> None:
    try:
        handler.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        if close:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
    except OSError:
        handler.close_connection = True


def _joined(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    # Repeated headers reach the worker joined with commas (ASP.NET's StringValues.ToString()).
    joined: dict[str, str] = {}
    for name, value in handler.headers.items():
        joined[name.lower()] = f"{joined[name.lower()]},{value}" if name.lower() in joined else value
    return joined


def _http_answer(output: Any) -> Answer:
    """Status, headers and body from the `$return` Datum the library's HttpResponseConverter encoded."""
    if isinstance(output, meta.Datum) and output.type == "http":
        value = output.value
        body = value["body"].value if value.get("body") is not None else b""
        return (int(value["status_code"].value), {k: v.value for k, v in value["headers"].items()},
                body.encode() if isinstance(body, str) else bytes(body or b""))
    if isinstance(output, meta.Datum) and output.type in ("string", "bytes"):
        body = output.value.encode() if isinstance(output.value, str) else output.value
        return 200, {"Content-Type": "text/plain; charset=utf-8"}, body
    return 204, {}, b""


def _validation_code(payload: Any) -> str | None:
    first = payload[0] if isinstance(payload, list) and payload else payload
    data = first.get("data") if isinstance(first, dict) else None
    if isinstance(data, str):  # double-encoded in a CloudEvents validation event
        try:
            data = json.loads(data)
        except ValueError:
            return None
    code = data.get("validationCode") if isinstance(data, dict) else None
    return code if isinstance(code, str) else None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _seconds(timespan: str) -> float:
    hours, minutes, seconds = (float(part) for part in timespan.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def configure_worker_logging(stream: Any = None) -> None:
    """Logging as the Python worker sets it up (dispatcher.py): the root logger at INFO (DEBUG when
    PYTHON_ENABLE_DEBUG_LOGGING is true), every record forwarded to the host (here: to stderr)."""
    debug = os.environ.get("PYTHON_ENABLE_DEBUG_LOGGING", "").lower() in ("1", "true")
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)


__all__ = ["FunctionRunner", "HttpError", "IndexedFunction", "StartupError", "TriggerInput", "configure_worker_logging",
           "event_grid_input", "functions_of", "http_input", "index", "queue_input", "timer_input"]

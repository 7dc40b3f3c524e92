"""A local stand-in for the Azure Functions host, for machines without Core Tools.

It serves `function_app.py`'s own functions the way the host does, by calling the
decorated functions with real `azure.functions` objects:
- HTTP triggers at `/api/<route>`, with function-level keys (`x-functions-key` or `?code=`);
- queue triggers by polling their Azure Storage queue (base64 messages, visibility
  timeout, `maxDequeueCount` then `<queue>-poison`, as host.json says);
- Event Grid triggers at `/runtime/webhooks/eventgrid?functionName=<name>`, with the
  subscription validation handshake, in the Event Grid and CloudEvents schemas;
- timer and other non-HTTP functions on `POST /admin/functions/<name>`, as the host's admin API.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

log = logging.getLogger("sandbox.runner")
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class HttpRoute:
    name: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    needs_key: bool
    call: Callable[..., Any]


@dataclass(frozen=True)
class QueueFunction:
    name: str
    queue_name: str
    call: Callable[..., Any]


_INDEXED: dict[int, list[Any]] = {}


def functions_of(app: func.FunctionApp) -> list[Any]:
    """`app.get_functions()`, once per app: a second call raises (it re-validates the names it recorded),
    and the host, too, indexes an app once."""
    if id(app) not in _INDEXED:
        _INDEXED[id(app)] = list(app.get_functions())
    return _INDEXED[id(app)]


def _trigger(function: Any) -> dict[str, Any]:
    return json.loads(function.get_raw_bindings()[0])


def _route_pattern(route: str) -> re.Pattern[str]:
    # `remediations/{remediation_id}` -> named groups, one path segment each ({name?} optional).
    parts = re.split(r"(\{[^}]+\})", route.strip("/"))
    regex = "".join(
        f"(?P<{p[1:-1].split(':')[0].rstrip('?')}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^/api/{regex}/?$")


class FunctionRunner:
    """Serve a `func.FunctionApp` on 127.0.0.1. Use as a context manager, or start()/stop()."""

    def __init__(self, app: func.FunctionApp, *, storage_connection: str, function_key: str,
                 port: int = 0, poll_interval: float = 0.1) -> None:
        self.function_key = function_key
        self._storage_connection = storage_connection
        self._poll_interval = poll_interval
        queue_settings = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
        self._max_dequeue = int(queue_settings.get("maxDequeueCount", 5))
        self._retry_visibility = _seconds(queue_settings.get("visibilityTimeout", "00:00:00"))
        self.routes: list[HttpRoute] = []
        self.queues: list[QueueFunction] = []
        self.others: dict[str, tuple[str, Callable[..., Any]]] = {}
        for function in functions_of(app):
            trigger, call = _trigger(function), function.get_user_function()
            name = function.get_function_name()
            if trigger["type"] == "httpTrigger":
                self.routes.append(HttpRoute(
                    name, _route_pattern(trigger.get("route") or name),
                    frozenset(m.upper() for m in trigger.get("methods") or ("GET", "POST")),
                    str(trigger.get("authLevel", "FUNCTION")).upper() != "ANONYMOUS", call))
            elif trigger["type"] == "queueTrigger":
                self.queues.append(QueueFunction(name, trigger["queueName"], call))
            else:
                self.others[name] = (trigger["type"], call)
        self.invocations: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ----- lifecycle -------------------------------------------------------------------------

    def start(self) -> FunctionRunner:
        for queue_function in self.queues:
            self._ensure_queue(queue_function.queue_name)
            thread = threading.Thread(target=self._poll_queue, args=(queue_function,), daemon=True,
                                      name=f"queue-{queue_function.name}")
            self._threads.append(thread)
        self._threads.append(threading.Thread(target=self._server.serve_forever, daemon=True, name="http"))
        for thread in self._threads:
            thread.start()
        log.info("function runner on %s: %s", self.url, ", ".join(
            [r.name for r in self.routes] + [q.name for q in self.queues] + list(self.others)))
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)

    def __enter__(self) -> FunctionRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def idle(self) -> bool:
        """True when no queue this runner serves holds a message, visible or not."""
        return all(self._queue_client(q.queue_name).get_queue_properties().approximate_message_count == 0
                   for q in self.queues)

    # ----- invocation ------------------------------------------------------------------------

    def invoke(self, name: str, reason: str, call: Callable[..., Any], *args: Any) -> Any:
        invocation_id = str(uuid.uuid4())
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", name, reason, invocation_id)
        started = time.perf_counter()
        record = {"function": name, "id": invocation_id, "reason": reason, "at": datetime.now().isoformat()}
        try:
            result = call(*args)
        except Exception:
            record["status"] = "Failed"
            log.exception("Executed 'Functions.%s' (Failed, Id=%s)", name, invocation_id)
            raise
        finally:
            record["durationMs"] = round((time.perf_counter() - started) * 1000, 1)
            self.invocations.append(record)
        record["status"] = "Succeeded"
        log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%sms)", name, invocation_id,
                 record["durationMs"])
        return result

    def _poll_queue(self, queue_function: QueueFunction) -> None:
        client = self._queue_client(queue_function.queue_name)
        while not self._stop.is_set():
            try:
                messages = list(client.receive_messages(max_messages=4, visibility_timeout=600))
            except Exception:  # the emulator went away while stopping
                if self._stop.wait(self._poll_interval):
                    return
                continue
            for message in messages:
                self._deliver(client, queue_function, message)
            if not messages:
                self._stop.wait(self._poll_interval)

    def _deliver(self, client: QueueClient, queue_function: QueueFunction, message: Any) -> None:
        body = message.content.encode() if isinstance(message.content, str) else message.content
        request = func.QueueMessage(id=message.id, body=body, pop_receipt=message.pop_receipt)
        try:
            self.invoke(queue_function.name, f"New queue message detected on '{queue_function.queue_name}'.",
                        queue_function.call, request)
        except Exception:
            if message.dequeue_count >= self._max_dequeue:
                poison = self._ensure_queue(f"{queue_function.queue_name}-poison")
                poison.send_message(message.content)
                client.delete_message(message)
                log.error("message %s moved to %s-poison after %s attempts", message.id,
                          queue_function.queue_name, message.dequeue_count)
            else:
                client.update_message(message, visibility_timeout=self._retry_visibility)
            return
        client.delete_message(message)

    def _queue_client(self, name: str) -> QueueClient:
        return QueueClient.from_connection_string(
            self._storage_connection, name, message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy())

    def _ensure_queue(self, queue_name: str) -> QueueClient:
        client = self._queue_client(queue_name)
        try:
            client.create_queue()
        except ResourceExistsError:
            pass
        return client

    # ----- HTTP ------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        runner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 (http.server's names)
                runner._handle(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("%s %s", self.command, self.path.split("?", 1)[0])

        return Handler

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        split = urlsplit(handler.path)
        params = dict(parse_qsl(split.query))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        key = headers.get("x-functions-key") or params.get("code")
        try:
            if split.path == "/runtime/webhooks/eventgrid":
                status, out_headers, out = self._event_grid(handler.command, params, headers, body, key)
            elif split.path.startswith("/admin/functions/"):
                status, out_headers, out = self._admin_invoke(split.path.rsplit("/", 1)[-1], body, key)
            else:
                status, out_headers, out = self._http(handler.command, split.path, params, headers, body, key,
                                                      f"http://{handler.headers.get('Host')}{handler.path}")
        except Exception:
            status, out_headers, out = 500, {"Content-Type": "application/json"}, b""
        handler.send_response(status)
        for name, value in out_headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(out)))
        handler.end_headers()
        handler.wfile.write(out)

    def _http(self, method: str, path: str, params: dict[str, str], headers: dict[str, str], body: bytes,
              key: str | None, url: str) -> tuple[int, dict[str, str], bytes]:
        matching = [(route, match) for route in self.routes if (match := route.pattern.match(path))]
        if matching and not any(method in route.methods for route, _ in matching):
            return 405, {}, b""
        for route, match in matching:
            if method not in route.methods:
                continue
            if route.needs_key and key != self.function_key:
                return 401, {}, b""  # the host answers a missing or wrong key with an empty 401
            request = func.HttpRequest(method, url, headers=headers, params=params,
                                       route_params=match.groupdict(), body=body)
            response: func.HttpResponse = self.invoke(route.name, "This function was programmatically called via"
                                                      " the host APIs.", route.call, request)
            out_headers = dict(response.headers)
            out_headers.setdefault("Content-Type", response.mimetype or "text/plain")
            return response.status_code, out_headers, response.get_body() or b""
        return 404, {}, b""

    def _admin_invoke(self, name: str, body: bytes, key: str | None) -> tuple[int, dict[str, str], bytes]:
        if key != self.function_key:
            return 401, {}, b""
        if name not in self.others:
            return 404, {}, b""
        kind, call = self.others[name]
        if kind != "timerTrigger":
            return 400, {}, b""
        self.invoke(name, "Timer fired (admin API)", call, _TimerInfo())
        return 202, {}, b""

    def _event_grid(self, method: str, params: dict[str, str], headers: dict[str, str], body: bytes,
                    key: str | None) -> tuple[int, dict[str, str], bytes]:
        name = params.get("functionName", "")
        if name not in self.others or self.others[name][0] != "eventGridTrigger":
            return 404, {}, b""
        if key != self.function_key:  # the host wants the system key of the eventgrid extension
            return 401, {}, b""
        if method == "OPTIONS":  # CloudEvents abuse-protection handshake
            origin = headers.get("webhook-request-origin", "")
            return 200, {"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"}, b""
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, {}, b""
        events = payload if isinstance(payload, list) else [payload]
        call = self.others[name][1]
        for event in events:
            if not isinstance(event, dict):
                return 400, {}, b""
            if event.get("eventType") == "Microsoft.EventGrid.SubscriptionValidationEvent":
                code = (event.get("data") or {}).get("validationCode")
                return 200, {"Content-Type": "application/json"}, json.dumps({"validationResponse": code}).encode()
            self.invoke(name, "EventGrid trigger fired", call, _event(event))
        return 200, {}, b""


class _TimerInfo:
    """What the host passes a timer function: `past_due` only matters to us."""

    past_due = False


def _event(event: dict[str, Any]) -> func.EventGridEvent:
    # CloudEvents (specversion) and Event Grid schema events both arrive as EventGridEvent, as in the host.
    if "specversion" in event:
        return func.EventGridEvent(
            id=str(event.get("id", "")), data=event.get("data"), topic=str(event.get("source", "")),
            subject=str(event.get("subject", "")), event_type=str(event.get("type", "")),
            event_time=_time(event.get("time")), data_version=str(event.get("dataversion", "")))
    return func.EventGridEvent(
        id=str(event.get("id", "")), data=event.get("data"), topic=str(event.get("topic", "")),
        subject=str(event.get("subject", "")), event_type=str(event.get("eventType", "")),
        event_time=_time(event.get("eventTime")), data_version=str(event.get("dataVersion", "")))


def _time(value: Any) -> datetime | None:
    # Event Grid sends up to 7 fractional digits; fromisoformat in 3.11 takes at most 6.
    text = re.sub(r"(\.\d{6})\d+", r"\1", str(value or "")).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _seconds(timespan: str) -> int:
    hours, minutes, seconds = (float(part) for part in timespan.split(":"))
    return int(hours * 3600 + minutes * 60 + seconds)

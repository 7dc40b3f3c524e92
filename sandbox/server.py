"""HTTPS plumbing shared by the sandbox's APIs: routing, TLS, faults, request counts, write-through.

Each API (ARM, Graph, Entra ID, Key Vault, admin) is an `Api` with a table of routes and
its own error shape; each runs on its own `ThreadingHTTPServer` port, so the SDK clients
see one host per service, as in Azure. After every request the state is committed to its
store (if it has one) before the answer leaves: what a client was told is on disk.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sandbox.state import ApiError, SandboxState

log = logging.getLogger("sandbox")
MAX_BODY = 2 * 1024 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    params: dict[str, str]  # from the route's named groups

    def json(self, *, code: str = "InvalidRequestContent") -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as err:
            raise ApiError(400, code, f"The request content was invalid and could not be deserialized: {err}.") \
                from err


@dataclass
class Response:
    status: int
    body: Any = None  # dict/list -> JSON; bytes as is; None -> empty
    headers: dict[str, str] | None = None


# Not an answer: the server closes the connection without one (a lose_answer or kill_worker fault).
NO_ANSWER = Response(0)

Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    label: str  # what request counts are keyed by, e.g. "GET managedClusters/{name}"
    handler: Handler


class Api:
    """One Azure service. Subclasses fill `routes` and say how errors look."""

    name = "api"
    counted = True  # the admin API is not part of what the remediator calls

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.routes: list[Route] = []
        self.base_url = ""

    def route(self, method: str, pattern: str, label: str, handler: Handler) -> None:
        self.routes.append(Route(method, re.compile(f"^{pattern}$", re.IGNORECASE), label, handler))

    def error_body(self, err: ApiError) -> Any:
        return {"error": {"code": err.code, "message": err.message}}

    def no_route(self, method: str, path: str) -> ApiError:
        """What the service answers for a path it does not serve; each API says it in its service's words."""
        return ApiError(404, "NotFound", f"No route for {method} {path}.")

    def no_method(self, method: str, path: str) -> ApiError:
        """What the service answers for a method a path it serves does not take."""
        return ApiError(405, "MethodNotAllowed", f"The method {method} is not allowed here.")

    def fault_response(self, kind: str, status: int, retry_after: float) -> ApiError:
        if kind == "throttle":
            return ApiError(429, "TooManyRequests", "Too many requests. Please retry after the time given in the "
                            "Retry-After header.", headers={"Retry-After": f"{retry_after:g}"})
        return ApiError(status, "ServiceUnavailable" if status == 503 else "InternalServerError",
                        "The service is temporarily unavailable. Please retry.", _retry_header(status, retry_after))

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        response, kill = self.dispatch(method, target, headers, body)
        # On disk before the client (or a worker about to die) hears anything: an answered write survives a kill.
        self.state.commit(changed=method != "GET")
        if kill:
            self.state.kill_worker()
        return response

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes, *,
                 skip_faults: tuple[str, ...] = ()) -> tuple[Response, bool]:
        """Route one request, count it under its route's label, answer it with the faults that hit it applied (but
        none of the kinds in `skip_faults`), record the status; True if the worker must be killed. Nothing is
        committed: `handle` does that once per HTTP call (a JSON batch dispatches each of its requests here)."""
        split = urlsplit(target)
        request_path = split.path
        for route in self.routes:
            match = route.pattern.match(request_path)
            if match and route.method == method:
                break
        else:
            if any(r.pattern.match(request_path) for r in self.routes):
                refusal = self.no_method(method, request_path)
            else:
                refusal = self.no_route(method, request_path)
            return self._error(refusal), False
        if self.counted:
            self.state.count(self.name, route.label, headers.get("authorization"))
        request = Request(method, request_path, dict(parse_qsl(split.query, keep_blank_values=True)), headers, body,
                          {k: v for k, v in match.groupdict().items() if v is not None})
        response, kill = self._answer(route, request, skip_faults)
        if self.counted:
            self.state.record_response(self.name, route.label, response.status)
        return response, kill

    def _answer(self, route: Route, request: Request, skip_faults: tuple[str, ...] = ()) -> tuple[Response, bool]:
        """The response, with the faults that hit this request applied; True if the worker must be killed."""
        fault = self.state.take_fault(self.name, route.label, after_commit=False, skip_kinds=skip_faults)
        if fault and fault.kind == "latency":
            time.sleep(fault.seconds)
        elif fault and fault.kind == "kill_worker":  # when "before": the write never happens
            return NO_ANSWER, True
        elif fault:
            return self._error(self.fault_response(fault.kind, fault.status, fault.retry_after)), False
        try:
            response = route.handler(request)
        except ApiError as err:
            return self._error(err), False
        if not 200 <= response.status < 300:
            return response, False  # nothing committed: an after-commit fault waits for a write that is
        fault = self.state.take_fault(self.name, route.label, after_commit=True)
        if fault is None:
            return response, False
        if fault.kind == "error_after_commit":
            return self._error(self.fault_response("error", fault.status, fault.retry_after)), False
        return NO_ANSWER, fault.kind == "kill_worker"

    def _error(self, err: ApiError) -> Response:
        return Response(err.status, self.error_body(err), dict(err.headers))


def _retry_header(status: int, retry_after: float) -> dict[str, str]:
    """Services send Retry-After with 503s as with 429s; the SDKs' retry policies honour it."""
    return {"Retry-After": f"{retry_after:g}"} if status in (429, 503) else {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: Api  # set per server class

    def _serve(self) -> None:
        self.api.state.answering(self.client_address)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            response = self.api.handle(self.command, self.path, headers, body)
        except Exception:  # noqa: BLE001 - a sandbox bug must show as a 500, as a service's would
            log.exception("%s %s failed in the sandbox", self.command, self.path)
            response = Response(500, {"error": {"code": "InternalServerError", "message": "sandbox error"}})
        if response.status == 0:  # NO_ANSWER: the connection closes with nothing sent
            self.close_connection = True
            return
        payload = response.body
        extra = dict(response.headers or {})
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
            extra.setdefault("Content-Type", "application/json; charset=utf-8")
        payload = payload or b""
        self.send_response(response.status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("x-ms-request-id", headers.get("x-ms-client-request-id") or "sandbox")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve  # noqa: N815 (http.server's names)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    """Remembers its open connections, so that stopping also ends the keep-alive ones: else their threads
    would go on serving a stopped sandbox's state to clients that pooled them.

    The listening socket is plain TCP with a deep backlog, and each connection's TLS handshake runs on that
    connection's own thread: with Python's default backlog of 5 and the handshake on the accept thread, a client
    opening a few connections at once (an SDK's pool) had one dropped by the kernel and retried a second later,
    which Azure's front ends never do."""

    request_queue_size = 1024  # listen(2)'s backlog; the kernel caps it at net.core.somaxconn

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 tls: ssl.SSLContext) -> None:
        self.connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self.tls = tls
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        with self._connections_lock:
            self.connections.add(connection)
        return connection, address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # Wrapping without the handshake does no I/O: under the lock, the secure socket replaces the plain one among
        # the open connections at once, so a stop at any point, the handshake included, still ends the connection.
        with self._connections_lock:
            try:
                secure = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
            except OSError:
                self.connections.discard(request)
                request.close()
                return
            self.connections.discard(request)
            self.connections.add(secure)
        try:
            secure.do_handshake()
        except OSError:  # ssl.SSLError included: a client that gave up, or spoke something else
            log.debug("TLS handshake with %s failed", client_address, exc_info=True)
            self.shutdown_request(secure)
            return
        super().process_request_thread(secure, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            open_now = list(self.connections)
        for connection in open_now:
            try:  # on a duplicate of the descriptor: the TLS object stays the handler thread's alone
                with socket.socket(fileno=os.dup(connection.fileno())) as raw:
                    raw.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class ApiServer:
    """One API on 127.0.0.1 over TLS, on a port of its own (`port` 0: any free one)."""

    def __init__(self, api: Api, context: ssl.SSLContext, port: int = 0) -> None:
        handler = type(f"{api.name.capitalize()}Handler", (_Handler,), {"api": api})
        self.server = _Server(("127.0.0.1", port), handler, context)
        self.server.daemon_threads = True
        # Without this, each keep-alive request waits ~40 ms for delayed ACKs.
        handler.disable_nagle_algorithm = True
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        api.base_url = self.url
        # A short poll interval: stop() waits up to one interval per server.
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name=f"sandbox-{api.name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.server.close_connections()

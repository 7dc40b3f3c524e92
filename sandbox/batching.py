"""Microsoft Graph JSON batching: `POST /v1.0/$batch` with up to 20 requests, each answered by the route that answers
it when called alone.

As Graph documents it (concepts/json-batching.md, copy in tests/reference/graph_json_batching_v1.0.json):

- The body is `{"requests": [{"id", "method", "url", "headers"?, "body"?, "dependsOn"?}]}`; `url` is relative to
  the version (`/applications(appId='…')?$select=…`, with or without the leading `/`). Ids are unique, not
  case-sensitive. A body needs a Content-Type header, and a write (POST, PATCH, PUT) needs both.
- The answer is 200 `{"responses": [{"id", "status", "headers", "body"?}]}` whenever the batch parses, whatever its
  requests answered; "Individual responses might appear in a different order than the requests": here they come in
  an order of their own (by a hash of the id), the same every time, so a client that matches by position fails here
  as it would in Azure. A malformed batch is 400 for the whole call.
- Every request is answered as if called alone, with the batch's token: the same permissions, errors
  (`404 Request_ResourceNotFound`, ...), request counts under its own route label (the batch itself counts under
  `POST /$batch`) and request faults, matched by its own label: a throttle fault on `GET /applications(appId=)` gives
  that request its own 429 with `Retry-After` while the others succeed ("Requests in a batch are evaluated
  individually against the applicable throttling limits"). A latency fault delays the batch's HTTP call once, not
  each request in it. A fault that loses an inner write's answer (lose_answer, kill_worker) loses the whole batch's.
- `dependsOn` names requests earlier in the batch; they run in order, and one whose dependency failed answers 424.

Assumed (no public text found): the messages of the 400s other than the batch size; the code and message of the
424; that an absolute `url` or a nested `$batch` fails the whole batch. The limit's message is the one field reports
quote ("Number of requests inside batch exceed the limit", verified against a live tenant by a public lab module).
The older throttling page said a batch with a throttled request answers 424 as a whole; the current json-batching
page (2025) says 200, which the sandbox follows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sandbox.server import NO_ANSWER, Request, Response
from sandbox.state import ApiError

if TYPE_CHECKING:
    from sandbox.graph import GraphApi

MAX_REQUESTS = 20
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
WRITES = ("POST", "PATCH", "PUT")
ROUTE_LABEL = "POST /$batch"
JSON_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"


@dataclass(frozen=True)
class Step:
    """One request of a batch, checked."""

    id: str
    method: str
    url: str  # relative to /v1.0, with a leading '/'
    headers: dict[str, str]  # lower-case names
    body: bytes
    depends_on: tuple[str, ...]  # ids, lower case

    @property
    def key(self) -> str:
        return self.id.lower()


class JsonBatch:
    """The `$batch` route of the Graph API (registered on it: the requests inside go through its routes)."""

    def __init__(self, graph: GraphApi) -> None:
        self.graph, self.state = graph, graph.state
        graph.route("POST", r"/v1\.0/\$batch", ROUTE_LABEL, self.batch)

    def batch(self, request: Request) -> Response:
        """Answer every request of the batch; 200 with their answers, whatever they are."""
        if self.state.caller(request.headers.get("authorization"), "graph") is None:
            raise ApiError(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        steps = parse_batch(request.json(code="BadRequest"))
        answers: dict[str, tuple[Step, Response]] = {}
        kill = False
        for step in steps:
            failed = next((d for d in step.depends_on if not 200 <= answers[d][1].status < 300), None)
            if failed is not None:
                answers[step.key] = (step, self._failed_dependency(failed))
                continue
            response, killed = self.graph.dispatch(step.method, f"/v1.0{step.url}", self._headers(step, request),
                                                   step.body, skip_faults=("latency",))
            answers[step.key] = (step, response)
            kill = kill or killed
        if kill:  # as a direct call's: the write is kept before the worker dies
            self.state.commit()
            self.state.kill_worker()
        if kill or any(response.status == 0 for _, response in answers.values()):
            return NO_ANSWER
        entries = [_entry(step, response) for step, response in answers.values()]
        entries.sort(key=lambda entry: hashlib.sha256(entry["id"].lower().encode()).hexdigest())
        return Response(200, {"responses": entries})

    def _headers(self, step: Step, request: Request) -> dict[str, str]:
        """The request's own headers, with the batch's token: Graph runs every request as the batch's caller."""
        headers = {**step.headers, "authorization": request.headers["authorization"]}
        if "x-ms-client-request-id" in request.headers:
            headers.setdefault("x-ms-client-request-id", request.headers["x-ms-client-request-id"])
        return headers

    def _failed_dependency(self, failed: str) -> Response:
        err = ApiError(424, "FailedDependency", f"The request depends on request '{failed}', which failed.")
        return Response(424, self.graph.error_body(err))


def _entry(step: Step, response: Response) -> dict[str, Any]:
    """One element of `responses`: id, status, headers, and the body if there is one (JSON as JSON, else base64)."""
    headers = {"Cache-Control": "no-cache", **(response.headers or {})}
    entry: dict[str, Any] = {"id": step.id, "status": response.status, "headers": headers}
    if isinstance(response.body, (dict, list)):  # Graph's OData type on data, plain JSON on errors (the docs' example)
        headers.setdefault("Content-Type", JSON_TYPE if 200 <= response.status < 300 else "application/json")
        entry["body"] = response.body
    elif response.body:
        entry["body"] = base64.b64encode(response.body).decode()
    return entry


def parse_batch(body: Any) -> list[Step]:
    """The batch's requests, checked; ApiError 400 (the whole batch fails) for a malformed one."""
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        raise _bad("Invalid batch payload format.")
    if len(requests) > MAX_REQUESTS:
        raise _bad("Number of requests inside batch exceed the limit.")
    steps: list[Step] = []
    for item in requests:
        step = _step(item)
        if any(s.key == step.key for s in steps):
            raise _bad(f"Request Id '{step.id}' is not unique in the batch: ids must be unique (not case-sensitive).")
        unknown = next((d for d in step.depends_on if d not in {s.key for s in steps}), None)
        if unknown is not None:
            raise _bad(f"Request id '{step.id}' depends on '{unknown}', which is not a request before it in the "
                       "batch.")
        steps.append(step)
    return steps


def _step(item: Any) -> Step:
    if not isinstance(item, dict):
        raise _bad("Invalid batch payload format.")
    step_id, method, url = item.get("id"), item.get("method"), item.get("url")
    if not isinstance(step_id, str) or not step_id or not isinstance(url, str) or not url:
        raise _bad("Invalid batch payload format.")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise _bad(f"Invalid method '{method}' in request id : {step_id}.")
    if url.lower().startswith(("http://", "https://")):
        raise _bad(f"Invalid request URL '{url}' in request id : {step_id}: it must be relative, such as "
                   "'/applications'.")
    if url.lstrip("/").lower().startswith("$batch"):
        raise _bad(f"Request id : {step_id} is a batch: batches do not nest.")
    headers = item.get("headers") or {}
    depends_on = item.get("dependsOn") or []
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise _bad(f"Invalid headers in request id : {step_id}.")
    if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
        raise _bad(f"Invalid dependsOn in request id : {step_id}.")
    headers = {k.lower(): v for k, v in headers.items()}
    body = _body(step_id, item.get("body"), headers)
    if method.upper() in WRITES and (item.get("body") is None or "content-type" not in headers):
        raise _bad(f"Write request id : {step_id} does not contain Content-Type header or body.")
    return Step(step_id, method.upper(), url if url.startswith("/") else f"/{url}", headers, body,
                tuple(d.lower() for d in depends_on))


def _body(step_id: str, body: Any, headers: dict[str, str]) -> bytes:
    """A JSON body as JSON, a string as the base64 the docs allow for other content."""
    if body is None:
        return b""
    if "content-type" not in headers:
        raise _bad(f"Request id : {step_id} has a body without a Content-Type header.")
    if isinstance(body, str):
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error as err:
            raise _bad(f"The body of request id : {step_id} is neither JSON nor base64.") from err
    return json.dumps(body).encode()


def _bad(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)

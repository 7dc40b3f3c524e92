"""The triggers, called as the host calls them (app.get_functions()), over the sandbox and Azurite.

Every trigger's input is decoded by the azure-functions library's own converters, from the data and
metadata the host sends (`sandbox.functions_host`'s `*_input` helpers): no test builds an EventGridEvent,
CloudEvent, QueueMessage, HttpRequest or TimerRequest by hand, so each gets what the Python worker
would give it in Azure.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.functions as func
import pytest
import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

import function_app
from remediation.app.settings import CHECK_QUEUE, INCIDENT_QUEUE, WORK_QUEUE
from remediation.ids import ClusterId
from sandbox import Sandbox
from sandbox.azurite import Azurite
from sandbox.functions_host import functions_of, http_input, queue_input, timer_input
from sandbox.wiring import remediator_settings
from tests.support.events import FAILURE, SCHEMAS, as_cloud, cloud_event, event_grid_event, failure
from tests.support.otel import install_for_tests

FUNCTIONS = {f.get_function_name(): f for f in functions_of(function_app.app)}


def call(name: str, *args):
    return FUNCTIONS[name].get_user_function()(*args)


# ----- trigger inputs, through the library's converters (events: tests/support/events.py) ----------------

def http_request(method: str, url: str, *, body: bytes = b"", headers: dict[str, str] | None = None,
                 route_params: dict[str, str] | None = None) -> func.HttpRequest:
    return http_input(method, url, headers=headers, body=body, route_params=route_params).decode()


def queue_message(body: str | bytes, **metadata: Any) -> func.QueueMessage:
    return queue_input(body, **metadata).decode()


def timer() -> func.TimerRequest:
    return timer_input().decode()


# ----- fixtures and helpers --------------------------------------------------------------------------

@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(scenario="expired-secret") as running:
        yield running


@pytest.fixture
def app_settings(sandbox: Sandbox, azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    # Fresh queue names are not possible (the bindings name them), so each test drains what it sent.
    settings = remediator_settings(sandbox, azurite.connection_string)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    function_app.built_services.cache_clear()
    for queue in (WORK_QUEUE, INCIDENT_QUEUE, CHECK_QUEUE):
        client = QueueClient.from_connection_string(azurite.connection_string, queue)
        try:  # as the host does on start: a test that looks at a queue before any trigger ran finds it empty
            client.create_queue()
        except ResourceExistsError:
            client.clear_messages()
    yield settings
    function_app.built_services.cache_clear()


@pytest.fixture
def admin(sandbox: Sandbox):
    """POST to the sandbox's admin API."""
    def post(path: str, body: dict) -> dict:
        response = requests.post(f"{sandbox.endpoints['admin']}/_sandbox/{path}", json=body, verify=sandbox.ca_path)
        response.raise_for_status()
        return response.json()
    return post


def cluster_id(sandbox: Sandbox, name: str = "aks-payments", group: str = "rg-payments") -> str:
    return (f"/subscriptions/{sandbox.subscription_id}/resourceGroups/{group}"
            f"/providers/Microsoft.ContainerService/managedClusters/{name}")


@pytest.fixture
def bearer(sandbox: Sandbox) -> dict[str, str]:
    """The operator's Entra token for the remediator's API, from the sandbox's token endpoint."""
    return {"Authorization": f"Bearer {sandbox.api_token()}"}


def post(body: bytes, headers: dict[str, str]) -> func.HttpResponse:
    return call("start_remediation", http_request("POST", "http://localhost:7071/api/remediations?code=k", body=body,
                                                  headers={"Content-Type": "application/json", **headers}))


# POSTs that only read: a Resource Graph query, a Graph JSON batch (of GETs), a token.
READ_POSTS = frozenset({"POST Microsoft.ResourceGraph/resources", "POST /$batch", "POST token"})


def writes(sandbox: Sandbox) -> int:
    """Writes to Azure's resources (an outcome event to the topic is a notice, not a change)."""
    counts = sandbox.snapshot()["requests"]
    return sum(n for name, api in counts.items() if name != "topic" for route, n in api.items()
               if not route.startswith("GET") and route not in READ_POSTS)


def queued(azurite: Azurite, queue: str) -> list[dict]:
    client = QueueClient.from_connection_string(azurite.connection_string, queue)
    return [json.loads(base64.b64decode(m.content)) for m in client.peek_messages(max_messages=32)]


def deliver(azurite: Azurite, queue: str, function: str, *, until: Callable[[], bool], timeout: float = 30) -> None:
    """Deliver the queue's messages to the function as the host does, through the converter with the message's
    own metadata, deleting each once the function returned, until `until()` holds."""
    client = QueueClient.from_connection_string(azurite.connection_string, queue)
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"{function} did not get there within {timeout}s"
        for m in client.receive_messages(max_messages=4, visibility_timeout=30):
            call(function, queue_message(base64.b64decode(m.content), message_id=m.id, dequeue_count=m.dequeue_count,
                                         inserted_on=m.inserted_on, expires_on=m.expires_on,
                                         next_visible_on=m.next_visible_on, pop_receipt=m.pop_receipt))
            client.delete_message(m.id, m.pop_receipt)
        time.sleep(0.1)


# ----- tests -------------------------------------------------------------------------------------------

def test_bindings_are_what_the_host_expects() -> None:
    bindings = {name: json.loads(f.get_raw_bindings()[0]) for name, f in FUNCTIONS.items()}
    assert bindings["start_remediation"]["authLevel"] == "FUNCTION"
    assert bindings["get_remediation"]["route"] == "remediations/{remediation_id}"
    assert bindings["advance_remediation"] == {"direction": "IN", "type": "queueTrigger", "name": "message",
                                               "queueName": WORK_QUEUE, "connection": "AzureWebJobsStorage"}
    assert bindings["on_resource_failure"]["type"] == "eventGridTrigger"
    assert bindings["sweep_activity_log"]["schedule"] == "%REMEDIATOR_SWEEP_SCHEDULE%"
    assert bindings["check_fleet_health"]["schedule"] == "%REMEDIATOR_HEALTH_SCHEDULE%"
    assert bindings["fleet_health"]["route"] == "health" and bindings["fleet_health"]["methods"] == ["GET"]
    assert bindings["recheck_credential"]["queueName"] == CHECK_QUEUE


def test_the_library_decodes_what_the_host_sends() -> None:
    message = queue_message('{"a": 1}', message_id="m-1", dequeue_count=3)
    assert (message.id, message.dequeue_count, message.get_json()) == ("m-1", 3, {"a": 1})
    assert message.insertion_time and message.expiration_time and message.pop_receipt
    request = http_request("GET", "http://h/api/remediations?clusterResourceId=x&empty=", headers={"X-A": "1"},
                           route_params={"remediation_id": "r"})
    assert (request.params.get("clusterResourceId"), "empty" in request.params, request.headers["x-a"],
            request.route_params["remediation_id"], request.get_body()) == ("x", False, "1", "r", b"")
    event = cloud_event(as_cloud(failure({"k": "v"})))
    assert (event.type, event.get_json(), event.time.tzinfo is not None) == (FAILURE, {"k": "v"}, True)
    assert not hasattr(event, "event_type")  # what made the trigger raise on every CloudEvents delivery
    assert timer().past_due is False


def test_a_request_is_accepted_recorded_and_queued(app_settings, sandbox: Sandbox, azurite: Azurite,
                                                   bearer: dict[str, str]) -> None:
    response = post(json.dumps({"clusterResourceId": cluster_id(sandbox)}).encode(), bearer)
    assert response.status_code == 202
    body = json.loads(response.get_body())
    assert response.headers["Location"] == f"http://localhost:7071/api/remediations/{body['id']}"
    assert body["status"] == "Accepted" and body["dryRun"] is False
    assert [m["remediationId"] for m in queued(azurite, WORK_QUEUE)] == [body["id"]]
    shown = call("get_remediation", http_request("GET", response.headers["Location"], headers=bearer,
                                                 route_params={"remediation_id": body["id"]}))
    assert shown.status_code == 200 and json.loads(shown.get_body())["id"] == body["id"]
    # The caller is on the record: the operator's service principal and client app.
    operator = next(a for a in sandbox.state.applications.values() if a.app_id == sandbox.operator.client_id)
    assert json.loads(shown.get_body())["requestedBy"] == {"objectId": operator.sp_object_id,
                                                           "appId": sandbox.operator.client_id}
    assert writes(sandbox) == 0  # accepting writes nothing to Azure


@pytest.mark.parametrize(("make_body", "status", "code"), [
    (lambda sb: b"{oops", 400, "InvalidJson"),
    (lambda sb: json.dumps({"clusterResourceId": "/subscriptions/abc"}).encode(), 400, "InvalidClusterResourceId"),
    (lambda sb: json.dumps({"clusterResourceId": cluster_id(sb).replace(
        "Microsoft.ContainerService/managedClusters", "Microsoft.Compute/virtualMachines")}).encode(),
     400, "NotAManagedCluster"),
    (lambda sb: json.dumps({"clusterResourceId": cluster_id(sb, "aks-nope")}).encode(), 404, "ClusterNotFound"),
    (lambda sb: json.dumps({"clusterResourceId": cluster_id(sb, "aks-msi")}).encode(), 409, "ManagedIdentityCluster"),
])
def test_bad_requests_get_a_specific_error_and_change_nothing(
        app_settings, sandbox: Sandbox, azurite: Azurite, caplog: pytest.LogCaptureFixture, bearer: dict[str, str],
        make_body, status: int, code: str) -> None:
    caplog.set_level(logging.WARNING, logger="remediator")
    response = post(make_body(sandbox), bearer)
    assert response.status_code == status
    error = json.loads(response.get_body())["error"]
    assert error["code"] == code and error["message"]
    assert any(code in r.getMessage() for r in caplog.records)  # logged, with its code
    assert writes(sandbox) == 0
    assert queued(azurite, WORK_QUEUE) == []


def test_unknown_and_malformed_remediation_ids(app_settings, bearer: dict[str, str]) -> None:
    for remediation_id, status in ((uuid.uuid4().hex, 404), ("../etc", 400)):
        response = call("get_remediation", http_request("GET", "http://h/api/remediations/x", headers=bearer,
                                                        route_params={"remediation_id": remediation_id}))
        assert response.status_code == status
        assert set(json.loads(response.get_body())["error"]) == {"code", "message"}


def test_the_queue_trigger_runs_the_remediation_to_success(app_settings, sandbox: Sandbox, azurite: Azurite,
                                                           bearer: dict[str, str]) -> None:
    remediation_id = json.loads(post(json.dumps({"clusterResourceId": cluster_id(sandbox)}).encode(), bearer)
                                .get_body())["id"]
    deliver(azurite, WORK_QUEUE, "advance_remediation",
            until=lambda: function_app.services().remediations.get(remediation_id).status.terminal)
    assert function_app.services().remediations.get(remediation_id).status.value == "Succeeded"
    cluster = next(c for c in sandbox.snapshot()["clusters"] if c["name"] == "aks-payments")
    assert cluster["provisioningState"] == "Succeeded" and cluster["secretValidNow"] is True


def test_a_malformed_queue_message_is_dropped_without_writes(app_settings, sandbox: Sandbox) -> None:
    assert call("advance_remediation", queue_message(b"\xff not json")) is None
    assert call("look_up_incident", queue_message(b'{"clusterResourceId": 1}')) is None
    assert writes(sandbox) == 0


@pytest.mark.parametrize("schema", SCHEMAS)
def test_a_cluster_failure_event_only_enqueues_a_lookup(app_settings, sandbox: Sandbox, azurite: Azurite,
                                                        schema: str) -> None:
    correlation_id = str(uuid.uuid4())
    call("on_resource_failure", SCHEMAS[schema](failure({
        "resourceUri": cluster_id(sandbox), "operationName": "Microsoft.ContainerService/managedClusters/write",
        "correlationId": correlation_id, "status": "Failed"})))
    [lookup] = queued(azurite, INCIDENT_QUEUE)
    assert lookup["correlationId"] == correlation_id and lookup["attempt"] == 0
    assert sum(sum(api.values()) for api in sandbox.snapshot()["requests"].values()) == 0  # no Azure call at all


OTHER_AND_MALFORMED = {
    "other-resource": failure({"resourceUri": "/subscriptions/x/resourceGroups/r/providers/Microsoft.Web/sites/s",
                               "operationName": "Microsoft.Web/sites/write", "correlationId": "c"}),
    "other-type": failure({}, event_type="Microsoft.Resources.ResourceWriteSuccess"),
    "no-data": failure(None),
    "huge-data": failure("x" * 1_000_000),
    "bad-resource-uri": failure({"resourceUri": "not an id", "correlationId": "c",
                                 "operationName": "Microsoft.ContainerService/managedClusters/write"}),
    "wrong-types": failure({"resourceUri": 7, "operationName": [], "correlationId": {}}),
    "no-type": failure({"resourceUri": "x"}, event_type=None),
    "non-string-type": failure({}, event_type=42),
    "no-id": {k: v for k, v in failure({}).items() if k != "id"},
    "from-the-far-past": failure({"operationName": "Microsoft.ContainerService/managedClusters/write",
                                  "correlationId": str(uuid.uuid4()),
                                  "resourceUri": "/subscriptions/6f1c2d3e-0000-4000-8000-000000000001/resourceGroups/rg"
                                                 "/providers/Microsoft.ContainerService/managedClusters/aks"},
                                 eventTime="2001-01-01T00:00:00Z"),
    # Correlation ids are GUIDs: anything else would reach the Activity Log's $filter or a log line.
    "odata-in-correlation-id": failure({"resourceUri": "/subscriptions/6f1c2d3e-0000-4000-8000-000000000001/"
                                        "resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks",
                                        "operationName": "Microsoft.ContainerService/managedClusters/write",
                                        "correlationId": "x' or correlationId ne 'y"}),
    "newline-in-correlation-id": failure({"resourceUri": "/subscriptions/6f1c2d3e-0000-4000-8000-000000000001/"
                                          "resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/"
                                          "aks", "operationName": "Microsoft.ContainerService/managedClusters/write",
                                          "correlationId": "0b1e2c3d-0000-4000-8000-000000000001\n"}),
    # Names outside ARM's rules: a dot segment an HTTP client would collapse, a name ending in a period.
    "dot-segment-resource-group": failure({"resourceUri": "/subscriptions/6f1c2d3e-0000-4000-8000-000000000001/"
                                           "resourceGroups/../providers/Microsoft.ContainerService/managedClusters/"
                                           "aks", "operationName": "Microsoft.ContainerService/managedClusters/write",
                                           "correlationId": "0b1e2c3d-0000-4000-8000-000000000001"}),
    "resource-group-ending-in-a-period": failure({
        "resourceUri": "/subscriptions/6f1c2d3e-0000-4000-8000-000000000001/resourceGroups/rg-payments./providers/"
                       "Microsoft.ContainerService/managedClusters/aks",
        "operationName": "Microsoft.ContainerService/managedClusters/write",
        "correlationId": "0b1e2c3d-0000-4000-8000-000000000001"}),
}


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("name", OTHER_AND_MALFORMED)
def test_other_and_malformed_events_are_acknowledged_without_work(
        app_settings, sandbox: Sandbox, azurite: Azurite, caplog: pytest.LogCaptureFixture, schema: str,
        name: str) -> None:
    caplog.set_level(logging.INFO, logger="remediator")
    before = sum(function_app.ignored_events.values())
    assert call("on_resource_failure", SCHEMAS[schema](OTHER_AND_MALFORMED[name])) is None  # no raise: no retries
    assert sum(function_app.ignored_events.values()) == before + 1
    assert any("acknowledged" in r.getMessage() for r in caplog.records)  # with the reason
    assert queued(azurite, INCIDENT_QUEUE) == [] and writes(sandbox) == 0


def test_the_timer_sweep_catches_a_failure_no_event_reported(app_settings, sandbox: Sandbox, azurite: Azurite,
                                                              admin) -> None:
    healthy_write = admin("clusters/aks-healthy/operate", {})
    failed_write = admin("clusters/aks-payments/operate", {"kubernetesVersion": "1.30.4"})
    assert healthy_write["succeeded"] and not failed_write["succeeded"]
    call("sweep_activity_log", timer())
    [work] = queued(azurite, WORK_QUEUE)
    remediation = function_app.services().remediations.get(work["remediationId"])
    assert remediation.source == "sweep" and remediation.cause.startswith("Confirmed: ")
    decisions = function_app.services().remediations.list_decisions(ClusterId.parse(remediation.cluster_id))
    assert [d["code"] for d in decisions] == ["Confirmed"] and decisions[0]["kind"] == "expired_secret"
    assert ClusterId.parse(remediation.cluster_id).name == "aks-payments"
    call("sweep_activity_log", timer())  # the same incident again: decided once
    assert len(queued(azurite, WORK_QUEUE)) == 1
    assert writes(sandbox) == 0  # deciding writes nothing to Azure; the queue does the work


# ----- fleet health -----------------------------------------------------------------------------------------


def health(headers: dict[str, str], query: str = "") -> func.HttpResponse:
    return call("fleet_health", http_request("GET", f"http://localhost:7071/api/health{query}", headers=headers))


def test_the_health_report_only_reads_and_the_daily_check_acts_on_it(
        app_settings, sandbox: Sandbox, azurite: Azurite, bearer: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    response = health(bearer)
    assert response.status_code == 200
    report = json.loads(response.get_body())
    by_name = {c["name"]: c for c in report["value"]}
    assert by_name["aks-payments"]["health"] == "expired" and by_name["aks-msi"]["health"] == "managedIdentity"
    assert report["counts"]["expired"] == 1 and by_name["aks-payments"]["action"] is None
    only = json.loads(health(bearer, "?health=managedIdentity").get_body())["value"]
    assert [c["name"] for c in only] == ["aks-msi"]
    assert writes(sandbox) == 0 and queued(azurite, WORK_QUEUE) == []

    caplog.set_level(logging.INFO, logger="remediator")
    call("check_fleet_health", timer())  # no write failed: the secret simply ended
    [work] = queued(azurite, WORK_QUEUE)
    remediation = function_app.services().remediations.get(work["remediationId"])
    assert remediation.source == "scan" and remediation.cause.startswith("ExpiredNow: ")
    assert any(r.getMessage() == "1 clusters expired now" and r.levelno == logging.WARNING for r in caplog.records)
    call("check_fleet_health", timer())  # the next check while it runs: joined, not started again
    assert len(queued(azurite, WORK_QUEUE)) == 1


def test_a_bad_health_filter_is_a_400_and_a_reader_role_is_needed(app_settings, sandbox: Sandbox) -> None:
    response = health({"Authorization": f"Bearer {sandbox.api_token()}"}, "?health=broken")
    assert response.status_code == 400
    assert json.loads(response.get_body())["error"]["code"] == "InvalidHealthFilter"
    assert health({}).status_code == 401


def test_a_malformed_credential_check_is_dropped_without_reads_or_writes(app_settings, sandbox: Sandbox,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    before = sandbox.snapshot()["requests"]
    for body in (b"{", b'{"clusterResourceId": "/subscriptions/x", "due": "2026-01-01T00:00:00+00:00"}',
                 json.dumps({"clusterResourceId": cluster_id(sandbox), "due": "2026-01-01T00:00:00"}).encode()):
        assert call("recheck_credential", queue_message(body)) is None
    assert sandbox.snapshot()["requests"] == before
    assert sum("dropping queue message" in r.getMessage() for r in caplog.records) == 3


def test_one_incident_is_one_trace_across_the_queue_hops(app_settings, sandbox: Sandbox, azurite: Azurite) -> None:
    """The failure event, its lookup (the fast path: the application's passwords all ended) and every step of the
    remediation it starts, through two queues, are spans of one trace, each the child of the hop before."""
    with install_for_tests() as otel:
        call("on_resource_failure", event_grid_event(failure({
            "resourceUri": cluster_id(sandbox), "operationName": "Microsoft.ContainerService/managedClusters/write",
            "correlationId": str(uuid.uuid4()), "status": "Failed"})))
        [lookup] = queued(azurite, INCIDENT_QUEUE)
        assert len(lookup["traceparent"].split("-")) == 4
        deliver(azurite, INCIDENT_QUEUE, "look_up_incident", until=lambda: bool(queued(azurite, WORK_QUEUE)))
        [work] = queued(azurite, WORK_QUEUE)
        remediation_id = work["remediationId"]
        deliver(azurite, WORK_QUEUE, "advance_remediation", timeout=60,
                until=lambda: function_app.services().remediations.get(remediation_id).status.terminal)
        spans = otel.spans()
        names = [s.name for s in spans]
        assert names[:2] == ["remediator.failure_event", "remediator.look_up_incident"]
        assert names.count("remediator.advance") >= 2
        assert len({s.context.trace_id for s in spans}) == 1  # one trace
        by_id = {s.context.span_id: s for s in spans}
        assert all(s.parent is not None and s.parent.span_id in by_id for s in spans[1:])
        [finished] = [p for p in otel.points("remediator.remediations") if p.attributes["outcome"] == "succeeded"]
        assert finished.value == 1 and finished.attributes["kind"] == "expired_secret"
    published = [e["event"] for e in sandbox.state.topic_events]
    assert [e["type"] for e in published] == ["Remediator.Remediation.Succeeded"]
    assert published[0]["subject"].lower() == cluster_id(sandbox).lower()
    assert published[0]["data"]["remediationId"] == remediation_id


def test_control_characters_from_a_request_or_an_event_reach_the_log_as_one_escaped_line(
        app_settings, sandbox: Sandbox, bearer: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    forged = "x\x1b[2J\r\nERROR remediator: forged line\x85"
    response = post(json.dumps({"clusterResourceId": cluster_id(sandbox), forged: 1}).encode(), bearer)
    assert json.loads(response.get_body())["error"]["code"] == "UnknownField"
    call("on_resource_failure", event_grid_event(failure({
        "resourceUri": "/subscriptions/x/resourceGroups/r/providers/Microsoft.Web/sites/s",
        "operationName": "Microsoft.Web/sites/write" + forged, "correlationId": str(uuid.uuid4())})))
    ours = [r for r in caplog.records if r.name.split(".")[0] in ("remediator", "remediation")]
    rejected = [r.getMessage() for r in ours if "UnknownField" in r.getMessage()]
    acknowledged = [r.getMessage() for r in ours if "acknowledged event" in r.getMessage()]
    assert len(rejected) == 1 and len(acknowledged) == 1
    for line in rejected + acknowledged:
        assert r"x\x1b[2J\r\nERROR remediator: forged line\x85" in line
        assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in line), line


def test_the_count_of_ignored_event_types_stays_bounded_however_many_types_arrive(app_settings) -> None:
    before = sum(function_app.ignored_events.values())
    for number in range(300):
        call("on_resource_failure", event_grid_event(failure({}, event_type=f"Contoso.Made.Up{number}")))
    assert sum(function_app.ignored_events.values()) == before + 300  # each is counted
    assert len(function_app.ignored_events) <= function_app.MAX_IGNORED_KINDS + 1  # the rest under "other"


def test_concurrent_health_reads_share_one_scan_and_the_report_says_how_old_it_is(
        app_settings, sandbox: Sandbox, bearer: dict[str, str], admin) -> None:
    function_app.services()
    # A slow Resource Graph, so that the six requests overlap.
    admin("faults", {"api": "arm", "kind": "latency", "seconds": 0.5, "count": 10,
                     "route": "POST Microsoft.ResourceGraph/resources"})
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda _: health(bearer), range(6)))
    assert [r.status_code for r in responses] == [200] * 6
    spent = sandbox.snapshot()["requests"]
    assert spent["arm"]["POST Microsoft.ResourceGraph/resources"] == 1 and spent["graph"]["POST /$batch"] == 1
    bodies = [json.loads(r.get_body()) for r in responses]
    assert len({b["generatedAt"] for b in bodies}) == 1
    later = health(bearer, "?health=expired")  # moments later: the same report, not another scan
    body = json.loads(later.get_body())
    assert body["generatedAt"] == bodies[0]["generatedAt"] and [c["name"] for c in body["value"]] == ["aks-payments"]
    assert body["ageSeconds"] >= 0 and later.headers["Age"] == str(int(body["ageSeconds"]))
    assert sandbox.snapshot()["requests"] == spent

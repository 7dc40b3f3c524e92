"""The triggers, called as the host calls them (app.get_functions()), over the sandbox and Azurite."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterator

import azure.functions as func
import pytest
import requests
from azure.storage.queue import QueueClient

import function_app
from remediation.ids import ClusterId
from remediation.settings import INCIDENT_QUEUE, WORK_QUEUE
from sandbox import Sandbox
from sandbox.azurite import Azurite
from sandbox.runner import functions_of
from sandbox.wiring import remediator_settings

FUNCTIONS = {f.get_function_name(): f for f in functions_of(function_app.app)}


def call(name: str, *args):
    return FUNCTIONS[name].get_user_function()(*args)


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
    function_app.services.cache_clear()
    for queue in (WORK_QUEUE, INCIDENT_QUEUE):
        client = QueueClient.from_connection_string(azurite.connection_string, queue)
        try:
            client.clear_messages()
        except Exception:  # noqa: BLE001 - the queue does not exist yet
            pass
    yield settings
    function_app.services.cache_clear()


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
    return call("start_remediation", func.HttpRequest("POST", "http://localhost:7071/api/remediations?code=k",
                                                      body=body, headers={"Content-Type": "application/json",
                                                                          **headers}))


def writes(sandbox: Sandbox) -> int:
    counts = sandbox.snapshot()["requests"]
    return sum(n for api in counts.values() for route, n in api.items() if not route.startswith("GET"))


def queued(azurite: Azurite, queue: str) -> list[dict]:
    client = QueueClient.from_connection_string(azurite.connection_string, queue)
    return [json.loads(base64.b64decode(m.content)) for m in client.peek_messages(max_messages=32)]


def test_bindings_are_what_the_host_expects() -> None:
    bindings = {name: json.loads(f.get_raw_bindings()[0]) for name, f in FUNCTIONS.items()}
    assert bindings["start_remediation"]["authLevel"] == "FUNCTION"
    assert bindings["get_remediation"]["route"] == "remediations/{remediation_id}"
    assert bindings["advance_remediation"] == {"direction": "IN", "type": "queueTrigger", "name": "message",
                                               "queueName": WORK_QUEUE, "connection": "AzureWebJobsStorage"}
    assert bindings["on_resource_failure"]["type"] == "eventGridTrigger"
    assert bindings["sweep_activity_log"]["schedule"] == "%REMEDIATOR_SWEEP_SCHEDULE%"


def test_a_request_is_accepted_recorded_and_queued(app_settings, sandbox: Sandbox, azurite: Azurite,
                                                   bearer: dict[str, str]) -> None:
    response = post(json.dumps({"clusterResourceId": cluster_id(sandbox)}).encode(), bearer)
    assert response.status_code == 202
    body = json.loads(response.get_body())
    assert response.headers["Location"] == f"http://localhost:7071/api/remediations/{body['id']}"
    assert body["status"] == "Accepted" and body["dryRun"] is False
    assert {"remediationId": body["id"]} in queued(azurite, WORK_QUEUE)
    shown = call("get_remediation", func.HttpRequest(
        "GET", response.headers["Location"], body=b"", route_params={"remediation_id": body["id"]}, headers=bearer))
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
    (lambda sb: json.dumps({"clusterResourceId": cluster_id(sb, "aks-nope")}).encode(), 404, "ResourceNotFound"),
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
        response = call("get_remediation", func.HttpRequest("GET", "http://h/api/remediations/x", body=b"",
                                                            route_params={"remediation_id": remediation_id},
                                                            headers=bearer))
        assert response.status_code == status
        assert set(json.loads(response.get_body())["error"]) == {"code", "message"}


def test_the_queue_trigger_runs_the_remediation_to_success(app_settings, sandbox: Sandbox, azurite: Azurite,
                                                           bearer: dict[str, str]) -> None:
    remediation_id = json.loads(post(json.dumps({"clusterResourceId": cluster_id(sandbox)}).encode(), bearer)
                                .get_body())["id"]
    for _ in range(20):
        if function_app.services().remediator.get(remediation_id).status.terminal:
            break
        call("advance_remediation", func.QueueMessage(id="m", body=json.dumps({"remediationId": remediation_id})))
    assert function_app.services().remediator.get(remediation_id).status.value == "Succeeded"
    cluster = next(c for c in sandbox.snapshot()["clusters"] if c["name"] == "aks-payments")
    assert cluster["provisioningState"] == "Succeeded" and cluster["secretValidNow"] is True


def test_a_malformed_queue_message_is_dropped_without_writes(app_settings, sandbox: Sandbox) -> None:
    assert call("advance_remediation", func.QueueMessage(id="m", body=b"\xff not json")) is None
    assert call("look_up_incident", func.QueueMessage(id="m", body=b'{"clusterResourceId": 1}')) is None
    assert writes(sandbox) == 0


def event_grid_event(data: object, event_type: str = "Microsoft.Resources.ResourceWriteFailure") -> func.EventGridEvent:
    return func.EventGridEvent(id=str(uuid.uuid4()), data=data, topic="/subscriptions/x", subject="s",
                               event_type=event_type, event_time=None, data_version="2")


def test_a_cluster_failure_event_only_enqueues_a_lookup(app_settings, sandbox: Sandbox, azurite: Azurite) -> None:
    correlation_id = str(uuid.uuid4())
    call("on_resource_failure", event_grid_event({
        "resourceUri": cluster_id(sandbox), "operationName": "Microsoft.ContainerService/managedClusters/write",
        "correlationId": correlation_id, "status": "Failed"}))
    [lookup] = queued(azurite, INCIDENT_QUEUE)
    assert lookup["correlationId"] == correlation_id and lookup["attempt"] == 0
    assert sum(sum(api.values()) for api in sandbox.snapshot()["requests"].values()) == 0  # no Azure call at all


@pytest.mark.parametrize("event", [
    event_grid_event({"resourceUri": "/subscriptions/x/resourceGroups/r/providers/Microsoft.Web/sites/s",
                      "operationName": "Microsoft.Web/sites/write", "correlationId": "c"}),
    event_grid_event({}, event_type="Microsoft.Resources.ResourceWriteSuccess"),
    event_grid_event(None),
    event_grid_event("x" * 1_000_000),
    event_grid_event({"resourceUri": "not an id", "operationName": "Microsoft.ContainerService/managedClusters/write",
                      "correlationId": "c"}),
    event_grid_event({"resourceUri": 7, "operationName": [], "correlationId": {}}),
])
def test_other_and_malformed_events_are_acknowledged_without_work(
        app_settings, sandbox: Sandbox, azurite: Azurite, event: func.EventGridEvent) -> None:
    before = sum(function_app.ignored_events.values())
    assert call("on_resource_failure", event) is None
    assert sum(function_app.ignored_events.values()) == before + 1
    assert queued(azurite, INCIDENT_QUEUE) == [] and writes(sandbox) == 0


def test_the_timer_sweep_catches_a_failure_no_event_reported(app_settings, sandbox: Sandbox, azurite: Azurite,
                                                              admin) -> None:
    healthy_write = admin("clusters/aks-healthy/operate", {})
    failed_write = admin("clusters/aks-payments/operate", {"kubernetesVersion": "1.30.4"})
    assert healthy_write["succeeded"] and not failed_write["succeeded"]
    call("sweep_activity_log", None)
    [work] = queued(azurite, WORK_QUEUE)
    remediation = function_app.services().remediator.get(work["remediationId"])
    assert remediation.source == "sweep" and remediation.cause.startswith("expired_secret")
    assert ClusterId.parse(remediation.cluster_id).name == "aks-payments"
    call("sweep_activity_log", None)  # the same incident again: decided once
    assert len(queued(azurite, WORK_QUEUE)) == 1
    assert writes(sandbox) == 0  # deciding writes nothing to Azure; the queue does the work

"""The local Functions host (sandbox/functions_host.py) and the worker process (sandbox/worker.py).

A small app of its own exercises the host's side: indexing (settings, annotations), the library's
converters for every trigger, the Event Grid webhook in both schemas, requests a client got wrong,
queue visibility, retries and the poison queue. The worker process serves function_app.py itself
over the sandbox and Azurite, and is killed and restarted mid-invocation.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Union
from urllib.parse import urlsplit

import azure.functions as func
import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

import function_app
from remediation.alerts import POISON_MESSAGE
from remediation.app.settings import INCIDENT_QUEUE, WORK_QUEUE
from sandbox import Sandbox
from sandbox.azurite import Azurite
from sandbox.functions_host import FunctionRunner, StartupError, event_grid_input, index
from sandbox.wiring import remediator_settings
from sandbox.worker import WorkerProcess

KEY = "test-function-key"
SEEN: list[tuple[str, Any]] = []

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="echo/{name}", methods=["GET", "POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({
        "type": type(req).__name__, "method": req.method, "url": req.url, "params": dict(req.params),
        "route": dict(req.route_params), "header": req.headers.get("x-test"), "body": req.get_body().decode()}),
        mimetype="application/json")


@app.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("an unexpected failure")


@app.event_grid_trigger(arg_name="event")
def on_event(event: func.EventGridEvent) -> None:
    SEEN.append(("event", event))
    if event.get_json() == "fail":
        raise RuntimeError("cannot handle this event")


@app.queue_trigger(arg_name="message", queue_name="%TEST_QUEUE%", connection="TEST_STORAGE")
def work(message: func.QueueMessage) -> None:
    SEEN.append(("message", message))
    body = message.get_body().decode(errors="replace")
    if body.startswith("fail"):
        raise RuntimeError("cannot handle this message")
    if body.startswith("sleep:"):
        time.sleep(float(body.split(":")[1]))


@app.timer_trigger(arg_name="timer", schedule="%TEST_SCHEDULE%")
def tick(timer: func.TimerRequest) -> None:
    SEEN.append(("timer", timer))


def wait_for(probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := probe():
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s")


@pytest.fixture(scope="module")
def queue_name() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def runner(azurite: Azurite, queue_name: str) -> Iterator[FunctionRunner]:
    settings = {"TEST_QUEUE": queue_name, "TEST_SCHEDULE": "0 */5 * * * *", "TEST_STORAGE": azurite.connection_string}
    with FunctionRunner(app, function_key=KEY, settings=settings, read_timeout=0.5, visibility_timeout=1,
                        retry_delay=0, queues={"maxDequeueCount": 2}, poll_interval=0.05) as running:
        yield running


def seen(kind: str, match: Callable[[Any], bool] = lambda _: True) -> list[Any]:
    return [value for k, value in list(SEEN) if k == kind and match(value)]


def peek(client: QueueClient) -> list[Any]:
    try:
        return list(client.peek_messages(max_messages=32))
    except ResourceNotFoundError:  # not created yet
        return []


def send(azurite: Azurite, queue: str, body: str | bytes, *, encode: bool = True) -> str:
    raw = base64.b64encode(body.encode() if isinstance(body, str) else body).decode() if encode else body
    return QueueClient.from_connection_string(azurite.connection_string, queue).send_message(raw).id


# ----- indexing --------------------------------------------------------------------------------------------

def test_a_missing_setting_stops_the_start_and_names_it(azurite: Azurite) -> None:
    with Sandbox() as sandbox:
        settings = remediator_settings(sandbox, azurite.connection_string)
    assert "sweep_activity_log" in index(function_app.app, settings)  # the wiring names the schedule now
    without = {k: v for k, v in settings.items() if k != "REMEDIATOR_SWEEP_SCHEDULE"}
    with pytest.raises(StartupError, match=r"'sweep_activity_log' .*'%REMEDIATOR_SWEEP_SCHEDULE%' does not resolve"):
        FunctionRunner(function_app.app, function_key=KEY, settings=without)
    with pytest.raises(StartupError, match="Storage account connection string 'AzureWebJobsStorage' does not exist"):
        FunctionRunner(function_app.app, function_key=KEY,
                       settings={k: v for k, v in settings.items() if k != "AzureWebJobsStorage"})
    with pytest.raises(StartupError, match="schedule expression 'every minute' was not recognized"):
        FunctionRunner(function_app.app, function_key=KEY, settings={**settings,
                                                                     "REMEDIATOR_SWEEP_SCHEDULE": "every minute"})


def test_annotations_the_worker_refuses_stop_the_start() -> None:
    union_app = func.FunctionApp()

    @union_app.event_grid_trigger(arg_name="event")
    def either(event: Union[func.EventGridEvent, func.CloudEvent]) -> None:  # noqa: UP007 - the form people write
        pass

    with pytest.raises(StartupError, match="binding event has invalid non-type annotation"):
        index(union_app, {})
    wrong_app = func.FunctionApp()

    @wrong_app.event_grid_trigger(arg_name="event")
    def wrong(event: func.QueueMessage) -> None:
        pass

    with pytest.raises(StartupError, match='"eventGridTrigger" does not match its Python annotation "QueueMessage"'):
        index(wrong_app, {})


# ----- HTTP ------------------------------------------------------------------------------------------------

def test_http_triggers_get_what_the_library_decodes(runner: FunctionRunner) -> None:
    response = requests.post(f"{runner.url}/api/echo/n1?code={KEY}&a=1&a=2&empty=", data=b"hello",
                             headers={"X-Test": "yes"})
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert response.json() == {"type": "HttpRequest", "method": "POST", "url": f"{runner.url}/api/echo/n1?code={KEY}"
                               "&a=1&a=2&empty=", "params": {"code": KEY, "a": "1,2"}, "route": {"name": "n1"},
                               "header": "yes", "body": "hello"}
    assert requests.get(f"{runner.url}/api/echo/n1", headers={"x-functions-key": KEY}).status_code == 200
    assert requests.get(f"{runner.url}/api/echo/n1").status_code == 401
    assert requests.get(f"{runner.url}/api/echo/n1?code=wrong").status_code == 401
    assert requests.get(f"{runner.url}/api/nothing?code={KEY}").status_code == 404
    assert requests.get(f"{runner.url}/elsewhere").status_code == 404


def test_a_function_that_raises_gets_a_500_for_that_invocation_only(runner: FunctionRunner,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sandbox.functions_host")
    response = requests.get(f"{runner.url}/api/boom?code={KEY}")
    assert response.status_code == 500 and response.content == b""
    failed = [r for r in caplog.records if "Executed 'Functions.boom' (Failed" in r.getMessage()]
    assert failed and failed[0].exc_info and "an unexpected failure" in str(failed[0].exc_info[1])
    assert requests.get(f"{runner.url}/api/echo/n2?code={KEY}").status_code == 200  # the runner carries on


def raw_post(runner: FunctionRunner, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    """A request with exactly these headers (Content-Length included), as a broken client would send it."""
    split = urlsplit(runner.url)
    connection = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
    try:
        connection.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body or None)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(("path", "headers", "body", "status"), [
    (f"/api/echo/x?code={KEY}", {"Content-Length": "abc"}, b"", 400),
    (f"/api/echo/x?code={KEY}", {"Content-Length": "-5"}, b"", 400),
    (f"/api/echo/x?code={KEY}", {"Content-Length": "3", "content-length": "4"}, b"abc", 400),
    (f"/api/echo/x?code={KEY}", {"Content-Length": "100"}, b"only a part", 408),  # the rest never comes
    (f"/api/echo/x?code={KEY}", {"Content-Length": str(200 * 1024 * 1024)}, b"", 413),  # over the host's 100 MB
    (f"/runtime/webhooks/eventgrid?functionName=on_event&code={KEY}",
     {"Content-Length": str(2 * 1024 * 1024), "aeg-event-type": "Notification"}, b"", 413),  # over Event Grid's 1 MB
    (f"/api/echo/x?code={KEY}", {"Transfer-Encoding": "chunked"}, b"zz\r\nabc\r\n", 400),
], ids=["not-a-number", "negative", "two-lengths", "shorter-body", "too-large", "too-large-delivery", "bad-chunk"])
def test_a_broken_request_gets_a_4xx_and_never_hangs_the_runner(runner: FunctionRunner, path: str,
                                                                 headers: dict[str, str], body: bytes,
                                                                 status: int) -> None:
    started = time.monotonic()
    assert raw_post(runner, path, headers, body)[0] == status
    assert time.monotonic() - started < 5  # read_timeout is 0.5 s
    assert requests.post(f"{runner.url}/api/echo/x?code={KEY}", data=iter([b"ab", b"cd"])).json()["body"] == "abcd"


# ----- Event Grid ------------------------------------------------------------------------------------------

def webhook(runner: FunctionRunner, body: Any, kind: str | None = "Notification", *, function: str = "on_event",
            key: str = KEY, content_type: str = "application/json", method: str = "POST",
            headers: dict[str, str] | None = None) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": content_type, **({"aeg-event-type": kind} if kind else {}), **(headers or {})}
    return requests.request(method, f"{runner.url}/runtime/webhooks/eventgrid?functionName={function}&code={key}",
                            data=data, headers=sent)


def grid_event(data: Any = None) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "topic": "/subscriptions/x", "subject": "s", "eventType": "Some.Event",
            "eventTime": "2024-05-01T10:00:00.1234567Z", "data": data or {}, "dataVersion": "1",
            "metadataVersion": "1"}


def cloud(data: Any = None) -> dict[str, Any]:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "type": "Some.Event", "source": "/subscriptions/x",
            "subject": "s", "time": "2024-05-01T10:00:00.1234567Z", "datacontenttype": "application/json",
            "data": data or {}}


def test_the_webhook_delivers_both_schemas_as_the_library_decodes_them(runner: FunctionRunner) -> None:
    first, second = grid_event(), grid_event()
    assert webhook(runner, [first, second]).status_code == 202
    decoded = {e.id: e for e in seen("event")}
    assert isinstance(decoded[first["id"]], func.EventGridEvent) and decoded[second["id"]].event_type == "Some.Event"
    single = cloud({"n": 1})
    assert webhook(runner, single, content_type="application/cloudevents+json; charset=utf-8").status_code == 202
    batch = [cloud(), cloud()]
    assert webhook(runner, batch, content_type="application/cloudevents-batch+json; charset=utf-8").status_code == 202
    decoded = {e.id: e for e in seen("event")}
    for event in (single, *batch):
        assert isinstance(decoded[event["id"]], func.CloudEvent) and decoded[event["id"]].type == "Some.Event"
    assert decoded[single["id"]].get_json() == {"n": 1}


def test_the_webhook_handshakes_and_refuses_what_the_host_refuses(runner: FunctionRunner) -> None:
    validation = [{**grid_event({"validationCode": "CODE-1"}), "eventType": "Microsoft.EventGrid."
                   "SubscriptionValidationEvent"}]
    answer = webhook(runner, validation, "SubscriptionValidation")
    assert answer.status_code == 200 and json.loads(answer.content) == {"validationResponse": "CODE-1"}
    options = webhook(runner, b"", None, method="OPTIONS", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert options.status_code == 200 and options.headers["Webhook-Allowed-Origin"] == "eventgrid.azure.net"
    before = len(SEEN)
    no_type = webhook(runner, [grid_event()], None)
    assert (no_type.status_code, no_type.content) == (400, b"")  # the extension's answer without aeg-event-type
    assert webhook(runner, [grid_event()], key="wrong").status_code == 401
    unknown = webhook(runner, [grid_event()], function="nope")
    assert unknown.status_code == 404 and unknown.text == "cannot find function: 'nope'"
    assert webhook(runner, [grid_event()], function="echo").status_code == 404  # not an Event Grid function
    assert webhook(runner, [grid_event()], "Unsubscribe").status_code == 202
    for body in (b"{not json", b"42", b'"text"', b"[1, 2]", b'[{"id": "1"}, "x"]', b"\xff\xfe"):
        assert webhook(runner, body).status_code == 400, body
    assert webhook(runner, [{"data": {}}], "SubscriptionValidation").status_code == 400  # no validationCode
    assert len(SEEN) == before  # none of it reached the function


def test_a_failed_event_fails_the_delivery_so_event_grid_retries_it(runner: FunctionRunner) -> None:
    answer = webhook(runner, [grid_event(), grid_event("fail")])
    assert answer.status_code == 500 and answer.text == "Exception while executing function: Functions.on_event"
    # A time the library cannot parse fails in its converter, before any function code: Azure answers 500 too.
    with pytest.raises(ValueError):
        event_grid_input({**grid_event(), "eventTime": "yesterday"}).decode()
    assert webhook(runner, [{**grid_event(), "eventTime": "yesterday"}]).status_code == 500


# ----- admin API and timers --------------------------------------------------------------------------------

def test_the_admin_api_runs_a_timer_in_the_background(runner: FunctionRunner) -> None:
    before = len(seen("timer"))
    answer = requests.post(f"{runner.url}/admin/functions/tick", json={"input": ""}, headers={"x-functions-key": KEY})
    assert answer.status_code == 202
    timer = wait_for(lambda: seen("timer")[before:])[0]
    assert isinstance(timer, func.TimerRequest) and timer.past_due is False
    assert requests.post(f"{runner.url}/admin/functions/tick", json={}).status_code == 401
    assert requests.post(f"{runner.url}/admin/functions/nope", json={}, headers={"x-functions-key": KEY}) \
        .status_code == 404
    assert requests.post(f"{runner.url}/admin/functions/tick", data=b"{", headers={"x-functions-key": KEY}) \
        .status_code == 400


# ----- queues ----------------------------------------------------------------------------------------------

def test_a_queue_message_is_decoded_with_its_metadata_and_deleted(runner: FunctionRunner, azurite: Azurite,
                                                                  queue_name: str) -> None:
    message_id = send(azurite, queue_name, '{"hello": "world"}')
    message = wait_for(lambda: seen("message", lambda m: m.id == message_id))[0]
    assert isinstance(message, func.QueueMessage) and message.get_json() == {"hello": "world"}
    assert message.dequeue_count == 1 and message.pop_receipt
    assert message.insertion_time.tzinfo is not None and message.expiration_time > message.insertion_time
    wait_for(runner.idle)


def test_a_message_stays_invisible_while_its_function_runs_longer_than_the_visibility_timeout(
        runner: FunctionRunner, azurite: Azurite, queue_name: str) -> None:
    message_id = send(azurite, queue_name, "sleep:2.5")  # the visibility timeout is 1 s, renewed every 0.5 s
    wait_for(runner.idle, timeout=20)
    assert [m.dequeue_count for m in seen("message", lambda m: m.id == message_id)] == [1]  # never delivered twice


def test_a_failing_message_is_retried_then_poisoned_with_the_hosts_words(
        runner: FunctionRunner, azurite: Azurite, queue_name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sandbox.functions_host")
    message_id = send(azurite, queue_name, "fail: a message no function can handle")
    poison = QueueClient.from_connection_string(azurite.connection_string, f"{queue_name}-poison")
    [poisoned] = wait_for(lambda: peek(poison))
    assert base64.b64decode(poisoned.content) == b"fail: a message no function can handle"
    assert [m.dequeue_count for m in seen("message", lambda m: m.id == message_id)] == [1, 2]  # maxDequeueCount 2
    line = f"Message has reached MaxDequeueCount of 2. Moving message to queue '{queue_name}-poison'."
    assert line in [r.getMessage() for r in caplog.records] and POISON_MESSAGE in line
    garbage_id = send(azurite, queue_name, "%%% not base64 %%%", encode=False)
    wait_for(lambda: len(peek(poison)) == 2)
    assert not seen("message", lambda m: m.id == garbage_id)  # poisoned without an invocation
    poison.clear_messages()


# ----- the worker process ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_worker_process_survives_sigkill_and_redelivers_the_message_it_was_running(azurite: Azurite) -> None:
    with Sandbox(scenario="expired-secret") as sandbox:
        settings = remediator_settings(sandbox, azurite.connection_string)
        # The session's Azurite may hold other tests' leftover work, whose ARM calls would take the latency fault.
        for queue in (INCIDENT_QUEUE, WORK_QUEUE):
            with contextlib.suppress(ResourceNotFoundError):
                QueueClient.from_connection_string(azurite.connection_string, queue).clear_messages()
        # A random key may begin with "-" (one in 64): once, that stopped the worker's argument parsing.
        worker = WorkerProcess(visibility_timeout=2, function_key="-leading-dash-key").start(settings)
        try:
            api = {"x-functions-key": worker.function_key, "Authorization": f"Bearer {sandbox.api_token()}"}
            cluster = (f"/subscriptions/{sandbox.subscription_id}/resourceGroups/rg-payments/providers/"
                       "Microsoft.ContainerService/managedClusters/aks-payments")
            listed = requests.get(f"{worker.url}/api/remediations", params={"clusterResourceId": cluster}, headers=api)
            assert listed.status_code == 200 and "value" in listed.json()

            # The lookup's Activity Log read hangs (a slow ARM); the worker dies in the middle of it.
            requests.post(f"{sandbox.endpoints['admin']}/_sandbox/faults", verify=sandbox.ca_path,
                          json={"kind": "latency", "api": "arm", "seconds": 8, "count": 1}).raise_for_status()
            lookups = QueueClient.from_connection_string(azurite.connection_string, INCIDENT_QUEUE)
            body = json.dumps({"clusterResourceId": cluster, "correlationId": str(uuid.uuid4()),
                               "firstSeen": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), "attempt": 0})
            message_id = lookups.send_message(base64.b64encode(body.encode()).decode()).id
            wait_for(lambda: f"MessageId: {message_id}, DequeueCount: 1" in worker.log_text(), timeout=30)
            time.sleep(0.5)
            url, pid = worker.url, worker.pid
            worker.kill()
            assert not worker.running

            worker.restart()
            assert worker.url == url and worker.pid != pid  # the same port, a new process
            wait_for(lambda: f"MessageId: {message_id}, DequeueCount: 2" in worker.log_text(), timeout=30)
            assert requests.get(f"{worker.url}/api/remediations", params={"clusterResourceId": cluster},
                                headers=api).status_code == 200
            log = worker.log_text()
            # The root logger is at INFO, as in Azure.
            assert " INFO sandbox.functions_host: Executing 'Functions." in log
        finally:
            status = worker.stop()
    assert status == 0 and "sandbox.worker: stopped" in worker.log_text()  # SIGTERM: drained, exited cleanly

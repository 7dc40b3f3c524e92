"""Scenarios an outside tester runs: over HTTP, against the sandbox, with the function app in its own
worker process (as under the Functions host), counting what Azure saw.

    storm      a failed upgrade, then 200 deliveries of its event in each schema, 50 operators' requests and
               sweeps, all at once; then late deliveries and sweeps across the overlap window
    crashes    the worker killed (SIGKILL, by the sandbox) at every write the remediation makes, before and
               after the write takes effect, and in the middle of a 40 s reset; restarted each time
    hostile    2,000 malformed requests and events against the HTTP API and the Event Grid webhook
    amplify    one 1 MB delivery of 1,396 failure events (each its own correlation id) for one healthy cluster,
               then for 1,396 clusters' names: the lookups it queued and the Azure calls they made in 20 s

`python benchmarks/scenarios.py [storm|crashes|hostile ...] [--workers N]` prints the figures (`make bench` runs
all); tests/test_scenarios.py runs smaller versions and asserts the same outcomes. `--workers N` runs N worker
processes on the same storage, as Flex Consumption scales out: they compete for the queues' messages, requests and
deliveries are spread over them, and a kill_worker fault kills the one that made the request
(tests/test_scaleout_scenarios.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox import Sandbox  # noqa: E402
from sandbox.azurite import Azurite  # noqa: E402
from sandbox.wiring import FAST_PROPAGATION, remediator_settings  # noqa: E402
from sandbox.worker import WorkerPool, WorkerProcess  # noqa: E402

CLUSTER = ("rg-payments", "aks-payments")
RESET = "POST managedClusters/{name}/resetServicePrincipalProfile"
ADD_PASSWORD = "POST /applications/{id}/addPassword"
SET_SECRET = "PUT /secrets/{name}"
# Fast settings for a local world: a dead worker's lease runs out in seconds, not minutes; a reset found running
# without its status URL (the worker died before saving it) is looked at again after 1 s; the secret tested twice.
FAST = {"REMEDIATOR_LEASE_SECONDS": "6", "REMEDIATOR_RETRY_DELAY_SECONDS": "1", "REMEDIATOR_RESET_POLL_SECONDS": "1",
        **FAST_PROPAGATION}
VISIBILITY_SECONDS = 3  # a killed invocation's message comes back after this (the host: 10 minutes)


@dataclass
class Live:
    sandbox: Sandbox
    azurite: Azurite
    worker: WorkerProcess  # the first of `pool`'s workers
    token: str
    pool: WorkerPool

    @property
    def url(self) -> str:
        """The app's front end: requests spread over the pool's workers."""
        return self.pool.url

    @property
    def cluster_id(self) -> str:
        group, name = CLUSTER
        return (f"/subscriptions/{self.sandbox.subscription_id}/resourceGroups/{group}"
                f"/providers/Microsoft.ContainerService/managedClusters/{name}")

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        status, payload = _call(method, f"{self.sandbox.endpoints['admin']}/_sandbox/{path}", body,
                                ca=self.sandbox.ca_path)
        if status >= 400:
            raise RuntimeError(f"admin {path}: {status} {payload[:300]!r}")
        return json.loads(payload or b"null")

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, payload = _call(method, f"{self.url}/api/{path}", body, headers={
            "x-functions-key": self.pool.function_key, "Authorization": f"Bearer {self.token}"})
        try:
            return status, json.loads(payload or b"null")
        except ValueError:
            return status, payload

    def sweep(self) -> int:
        return _call("POST", f"{self.url}/admin/functions/sweep_activity_log", {},
                     headers={"x-functions-key": self.pool.function_key})[0]

    def cluster(self) -> dict[str, Any]:
        return next(c for c in self.sandbox.snapshot()["clusters"] if c["name"] == CLUSTER[1])

    def remediator_calls(self) -> dict[str, dict[str, int]]:
        return self.sandbox.snapshot()["requestsByCaller"].get("aks-sp-remediator", {})

    def responses(self, api: str, route: str) -> dict[str, int]:
        return self.sandbox.snapshot().get("responses", {}).get(api, {}).get(route, {})

    def settled(self) -> bool:
        """Repaired, every remediation finished, and no work left in the queues."""
        _, listed = self.api("GET", f"remediations?clusterResourceId={quote(self.cluster_id)}")
        finished = isinstance(listed, dict) and all(r["status"] in ("Succeeded", "Failed", "Planned")
                                                    for r in listed.get("value", []))
        return finished and self.cluster()["secretValidNow"] and self._queues_empty()

    def _queues_empty(self) -> bool:
        from azure.storage.queue import QueueClient

        for name in ("remediation-steps", "incident-lookups"):
            client = QueueClient.from_connection_string(self.azurite.connection_string, name)
            with contextlib.suppress(Exception):
                if client.get_queue_properties().approximate_message_count:
                    return False
        return True

    def wait(self, probe: Callable[[], bool], timeout: float, what: str) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if probe():
                return time.monotonic() - started
            time.sleep(0.25)
        raise TimeoutError(f"{what} did not happen within {timeout:.0f} s; worker log:\n{self.pool.log_text()}")


@contextlib.contextmanager
def live_world(*, workers: int = 1, **settings: str) -> Iterator[Live]:
    """Azurite, the sandbox, and the function app in `workers` worker processes on the same storage: a kill_worker
    fault kills the one that made the request, and each is restarted when it dies."""
    stop = threading.Event()
    with Azurite() as azurite, Sandbox(scenario="expired-secret") as sandbox:
        pool = WorkerPool(workers, visibility_timeout=VISIBILITY_SECONDS)
        pool.start(remediator_settings(sandbox, azurite.connection_string, **{**FAST, **settings}))
        sandbox.state.on_kill_worker = lambda: pool.kill_sender(sandbox.state.request_peer())
        pool.keep_alive(stop, delay=0.2)
        try:
            yield Live(sandbox, azurite, pool.workers[0], sandbox.api_token(sandbox.operator), pool)
        finally:
            stop.set()
            pool.stop()


# ------------------------------------------------------------------------------------------ the scenarios


def storm(live: Live, *, deliveries: int = 200, requests: int = 50, sweeps: int = 5) -> dict[str, Any]:
    """One breakage, a storm of hints about it, then late ones: exactly one password and one reset."""
    started = time.monotonic()
    webhook = f"{live.url}/runtime/webhooks/eventgrid?functionName=on_resource_failure&code={live.pool.function_key}"
    for schema in ("EventGridSchema", "CloudEventSchemaV1_0"):
        live.admin("POST", "eventgrid/subscriptions", {"endpointUrl": webhook, "schema": schema})
    failed = live.admin("POST", f"clusters/{CLUSTER[1]}/operate", {"kubernetesVersion": "1.30.4"})
    assert not failed["succeeded"]
    live.wait(lambda: sum(s["delivered"] for s in live.admin("GET", "eventgrid/subscriptions")["value"]) >= 2,
              30, "the first deliveries")
    statuses: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        storm_of_events = pool.submit(live.admin, "POST", "eventgrid/redeliver",
                                      {"times": deliveries - 1, "concurrency": 24})
        asked = [pool.submit(live.api, "POST", "remediations", {"clusterResourceId": live.cluster_id})
                 for _ in range(requests)]
        swept = [pool.submit(live.sweep) for _ in range(sweeps)]
        statuses.update(f"webhook {k}" for k, n in storm_of_events.result()["statuses"].items() for _ in range(n))
        statuses.update(f"request {f.result()[0]}" for f in asked)
        statuses.update(f"sweep {f.result()}" for f in swept)
    repaired_in = live.wait(live.settled, 120, "the repair")
    late = live.admin("POST", "eventgrid/redeliver", {"times": 25, "concurrency": 16})["statuses"]
    statuses.update(f"late webhook {k}" for k, n in late.items() for _ in range(n))
    for _ in range(sweeps):  # the sweep's overlap window still holds the failed entry
        statuses[f"late sweep {live.sweep()}"] += 1
        time.sleep(0.5)
    live.wait(live.settled, 60, "the late hints to be decided")
    _, decisions = live.api("GET", f"decisions?clusterResourceId={quote(live.cluster_id)}")
    return {"passwordsMinted": _passwords_minted(live), "resetsStarted": _resets_started(live), "failed": _failed(live),
            "addPasswordAnswers": live.responses("graph", ADD_PASSWORD), "resetAnswers": live.responses("arm", RESET),
            "statuses": dict(sorted(statuses.items())), "repairedInSeconds": round(repaired_in, 1),
            "seconds": round(time.monotonic() - started, 1),
            "decisions": dict(Counter(d["code"] for d in decisions["value"]).most_common()),
            "remediatorCalls": live.remediator_calls(), **_spread(live)}


CRASH_POINTS = [("graph", ADD_PASSWORD, "before"), ("graph", ADD_PASSWORD, "after"),
                ("vault", SET_SECRET, "before"), ("vault", SET_SECRET, "after"),
                ("arm", RESET, "before"), ("arm", RESET, "after")]


def crash_at(live: Live, api: str, route: str, when: str) -> dict[str, Any]:
    """The worker killed at one write, before or after it takes effect; restarted; the cluster repaired once."""
    started = time.monotonic()
    live.admin("POST", "faults", {"api": api, "kind": "kill_worker", "route": route, "when": when, "count": 1})
    status, _ = live.api("POST", "remediations", {"clusterResourceId": live.cluster_id})
    live.wait(live.settled, 180, f"convergence after a kill {when} {route}")
    return {"point": f"{when} {route}", "accepted": status, "workerRestarted": _restarted(live),
            "killed": live.pool.kills, "passwordsMinted": _passwords_minted(live),
            "resetsStarted": _resets_started(live), "resetAnswers": live.responses("arm", RESET),
            "liveUnstoredPasswords": _unstored_passwords(live), "failed": _failed(live),
            "seconds": round(time.monotonic() - started, 1), **_spread(live)}


def crash_mid_reset(live: Live, *, reset_seconds: float = 40) -> dict[str, Any]:
    """The worker killed as soon as its reset has started (the answer never saved), and again while it runs."""
    started = time.monotonic()
    live.admin("POST", "faults", {"kind": "slow_operations", "seconds": reset_seconds})
    live.admin("POST", "faults", {"api": "arm", "kind": "kill_worker", "route": RESET, "when": "after", "count": 1})
    live.api("POST", "remediations", {"clusterResourceId": live.cluster_id})
    live.wait(lambda: live.cluster()["provisioningState"] not in ("Succeeded", "Failed"), 60, "the reset to start")
    time.sleep(min(reset_seconds / 2, 10))
    # And once more in the middle of the reset: every worker, so that the one polling the reset dies whichever it is.
    live.pool.kill_all()
    live.wait(live.settled, reset_seconds + 120, "convergence after kills during a long reset")
    return {"point": f"during a {reset_seconds:.0f} s reset", "passwordsMinted": _passwords_minted(live),
            "resetsStarted": _resets_started(live), "resetAnswers": live.responses("arm", RESET),
            "liveUnstoredPasswords": _unstored_passwords(live), "failed": _failed(live),
            "killed": live.pool.kills, "seconds": round(time.monotonic() - started, 1), **_spread(live)}


def hostile(live: Live, *, count: int = 2000, seed: int = 8) -> dict[str, Any]:
    """Malformed requests and events: each gets a 4xx or is acknowledged; nothing is written, nothing queued."""
    rng = random.Random(seed)
    makers = _hostile_makers(live)
    statuses: Counter[int] = Counter()
    samples: dict[int, str] = {}
    before = _writes(live)

    def send(index: int) -> None:
        name, make = makers[index % len(makers)]
        status = make(rng.random())
        statuses[status] += 1
        samples.setdefault(status, name)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(send, range(count)))
    time.sleep(1)  # anything a function queued would be in the queues by now
    return {"requests": count, "statuses": dict(sorted(statuses.items())), "firstOfEachStatus": samples,
            "serverErrors": sum(n for s, n in statuses.items() if s >= 500),
            "writesToAzure": _writes(live) - before, "queuedWork": not live._queues_empty(),
            "seconds": round(time.monotonic() - started, 1)}


def amplify(live: Live, *, events: int | None = 1396, seconds: float = 20.0, clusters: int = 1) -> dict[str, Any]:
    """One delivery as large as Event Grid sends (1 MB; needs the system key, or a flood of real failures), every
    event a failed write of the healthy cluster rg-platform/aks-healthy (or, with `clusters` > 1, of that many
    clusters' names, the first the real one): the lookups it queued and the Azure calls made in `seconds`."""
    names = ["aks-healthy", *(f"aks-made-up-{n:04d}" for n in range(1, clusters))]
    uris = [f"/subscriptions/{live.sandbox.subscription_id}/resourceGroups/rg-platform"
            f"/providers/Microsoft.ContainerService/managedClusters/{name}" for name in names]
    delivery = _failure_delivery(uris, events)
    before, started = sum(sum(api.values()) for api in live.remediator_calls().values()), time.monotonic()
    hook = f"{live.url}/runtime/webhooks/eventgrid?functionName=on_resource_failure&code={live.pool.function_key}"
    status, _ = _call("POST", hook, json.dumps(delivery).encode(), raw=True,
                      headers={"aeg-event-type": "Notification", "Content-Type": "application/json"})
    answered = time.monotonic() - started
    time.sleep(max(seconds - answered, 0))
    log = "".join(worker.log_text() for worker in live.pool.workers)
    calls = live.remediator_calls()
    return {"events": len(delivery), "deliveryBytes": len(json.dumps(delivery)), "webhookStatus": status,
            "answeredInSeconds": round(answered, 1),
            "lookupsRun": log.count("Executing 'Functions.look_up_incident'"),
            "lookupsPending": _queued("incident-lookups", live),
            "azureCalls": sum(sum(api.values()) for api in calls.values()) - before,
            "activityLogReads": sum(n for api in calls.values() for route, n in api.items() if "eventtypes" in
                                    route.lower() or "activitylog" in route.lower()),
            "remediatorCalls": calls, "seconds": round(time.monotonic() - started, 1)}


def _failure_delivery(uris: list[str], events: int | None) -> list[dict[str, Any]]:
    """Failure events as the subscription's system topic writes them, `events` of them (or as many as fit in 1 MB),
    each with its own correlation id, for each of `uris` in turn."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime())
    delivery: list[dict[str, Any]] = []
    size = 2
    while events is None or len(delivery) < events:
        correlation, uri = str(uuid.uuid4()), uris[len(delivery) % len(uris)]
        # What the trigger reads of a system topic's event, and no more: as many as fit in a 1 MB delivery.
        event = {"id": str(uuid.uuid4()), "subject": uri, "eventType": "Microsoft.Resources.ResourceWriteFailure",
                 "eventTime": now, "dataVersion": "2",
                 "data": {"correlationId": correlation, "resourceUri": uri, "status": "Failed",
                          "operationName": "Microsoft.ContainerService/managedClusters/write"}}
        size += len(json.dumps(event)) + 2
        if size > 1024 * 1024:
            break
        delivery.append(event)
    return delivery


def _queued(queue: str, live: Live) -> int:
    from azure.storage.queue import QueueClient

    client = QueueClient.from_connection_string(live.azurite.connection_string, queue)
    return client.get_queue_properties().approximate_message_count


# ------------------------------------------------------------------------------------------ helpers


def _hostile_makers(live: Live) -> list[tuple[str, Callable[[float], int]]]:
    key = live.pool.function_key
    auth = {"x-functions-key": key, "Authorization": f"Bearer {live.token}"}
    hook = f"{live.url}/runtime/webhooks/eventgrid?functionName=on_resource_failure&code={key}"
    notification = {"aeg-event-type": "Notification", "Content-Type": "application/json"}
    cid = live.cluster_id

    def post_api(body: bytes, headers: dict[str, str] = auth) -> Callable[[float], int]:
        return lambda r: _call("POST", f"{live.url}/api/remediations", body, headers=headers, raw=True)[0]

    def event(data: Any, **fields: Any) -> bytes:
        return json.dumps([{"id": "e", "eventType": "Microsoft.Resources.ResourceWriteFailure", "subject": "s",
                            "eventTime": "2026-11-29T10:00:00Z", "dataVersion": "2", "data": data, **fields}]).encode()

    def post_hook(body: bytes, headers: dict[str, str] = notification) -> Callable[[float], int]:
        return lambda r: _call("POST", hook, body, headers=headers, raw=True)[0]

    operation = "Microsoft.ContainerService/managedClusters/write"
    return [
        ("not JSON", post_api(b"{oops")),
        ("nested 1,000 deep", post_api(b"[" * 1000 + b"]" * 1000)),
        ("nested 100,000 deep", post_api(b"{\"a\":" * 100_000 + b"1" + b"}" * 100_000)),
        ("an array", post_api(b"[]")),
        ("a trailing slash", post_api(json.dumps({"clusterResourceId": cid + "/"}).encode())),
        ("an empty segment", post_api(json.dumps({"clusterResourceId": cid.replace("/providers", "//providers")}
                                                 ).encode())),
        ("a virtual machine", post_api(json.dumps({"clusterResourceId": cid.replace(
            "Microsoft.ContainerService/managedClusters", "Microsoft.Compute/virtualMachines")}).encode())),
        ("a wrong type", post_api(json.dumps({"clusterResourceId": 7, "dryRun": "yes"}).encode())),
        ("an unknown field", post_api(json.dumps({"clusterResourceId": cid, "secret": "x"}).encode())),
        ("a huge body", post_api(b"{\"clusterResourceId\": \"" + b"x" * 200_000 + b"\"}")),
        ("binary garbage", post_api(bytes(range(256)) * 4)),
        ("no token", post_api(json.dumps({"clusterResourceId": cid}).encode(), {"x-functions-key": key})),
        ("a forged token", post_api(json.dumps({"clusterResourceId": cid}).encode(),
                                    {"x-functions-key": key, "Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."})),
        ("no function key", post_api(json.dumps({"clusterResourceId": cid}).encode(), {})),
        ("a bad remediation id", lambda r: _call("GET", f"{live.url}/api/remediations/..%2f..%2fetc",
                                                 None, headers=auth, raw=True)[0]),
        ("a bad query", lambda r: _call("GET", f"{live.url}/api/remediations?clusterResourceId=%00%ff",
                                        None, headers=auth, raw=True)[0]),
        ("an event, not JSON", post_hook(b"{oops")),
        ("an event without aeg-event-type", post_hook(event({}), {"Content-Type": "application/json"})),
        ("an event of another type", post_hook(json.dumps([{"id": "e", "eventType": "Microsoft.Storage.BlobCreated",
                                                            "subject": "s", "eventTime": "2026-11-29T10:00:00Z",
                                                            "dataVersion": "1", "data": {}}]).encode())),
        ("an event with no type", post_hook(json.dumps([{"id": "e", "data": {}}]).encode())),
        ("an event of year 9999", post_hook(event({"resourceUri": cid, "operationName": operation,
                                                   "correlationId": "c"}, eventTime="9999-12-31T23:59:59Z"))),
        ("an event of year 1", post_hook(event({"resourceUri": cid, "operationName": operation,
                                                "correlationId": "c"}, eventTime="0001-01-01T00:00:00Z"))),
        ("an event in another subscription", post_hook(event({
            "resourceUri": cid.replace(live.sandbox.subscription_id, "00000000-0000-4000-8000-000000000000"),
            "operationName": operation, "correlationId": "c"}))),
        ("an event with a bad resource id", post_hook(event({"resourceUri": cid + "//x", "operationName": operation,
                                                             "correlationId": "c"}))),
        ("an event with bad field types", post_hook(event({"resourceUri": [], "operationName": {},
                                                           "correlationId": 5}))),
        ("a CloudEvent without data", post_hook(json.dumps({"specversion": "1.0", "id": "x", "source": "s",
                                                            "type": "Microsoft.Resources.ResourceWriteFailure"}
                                                           ).encode(),
                                                {"aeg-event-type": "Notification",
                                                 "Content-Type": "application/cloudevents+json"})),
        ("a deeply nested event", post_hook(b"[" * 5000 + b"]" * 5000)),
        ("a bad Content-Length", lambda r: _raw_bad_length(live.url, r)),
    ]


def _raw_bad_length(base: str, r: float) -> int:
    """A request whose Content-Length lies (too long, negative or not a number): must not hang the server."""
    host, port = base.removeprefix("http://").split(":")
    length = ["99999", "-5", "ten"][int(r * 3)]
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(f"POST /api/remediations HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\n"
                     f"Content-Type: application/json\r\n\r\n{{}}".encode())
        answer = conn.recv(64)
    return int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/") else 0


def _call(method: str, url: str, body: Any, *, headers: dict[str, str] | None = None, ca: str | None = None,
          raw: bool = False) -> tuple[int, bytes]:
    data = body if raw or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    context = None
    if ca:
        import ssl

        context = ssl.create_default_context(cafile=ca)
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, ConnectionError):  # the worker is down (killed, restarting)
        return 0, b""


def _resets_started(live: Live) -> int:
    """Reset operations AKS actually began (whatever became of their answers)."""
    with live.sandbox.state.lock:
        return sum(1 for op in live.sandbox.state.operations.values() if op.kind == "reset")


def _passwords_minted(live: Live) -> int:
    """Passwords addPassword actually created (in use or removed since)."""
    return sum(1 for app in live.sandbox.snapshot()["applications"]
               for p in [*app["passwords"], *app.get("removedPasswords", [])]
               if (p.get("displayName") or "").startswith("aks-sp-remediator"))


def _restarted(live: Live) -> bool:
    """A kill_worker fault killed a worker, and every worker runs again (under a new pid)."""
    killed = {kill["pid"] for kill in live.pool.kills}
    return bool(killed) and all(w.running and w.pid not in killed for w in live.pool.workers)


def _failed(live: Live) -> int:
    """Remediations of the cluster that ended Failed."""
    _, listed = live.api("GET", f"remediations?clusterResourceId={quote(live.cluster_id)}")
    return sum(1 for r in (listed or {}).get("value", []) if r["status"] == "Failed")


def _spread(live: Live) -> dict[str, Any]:
    """With several workers: how many connections the front end gave each."""
    return {"workers": len(live.pool.workers), "connectionsPerWorker": live.pool.connections} \
        if len(live.pool.workers) > 1 else {}


def _writes(live: Live) -> int:
    """The remediator's writes to what it manages (an outcome event to the topic is a notice, not a change)."""
    return sum(n for name, api in live.remediator_calls().items() if name != "topic" for route, n in api.items()
               if not route.startswith("GET"))


def _unstored_passwords(live: Live) -> int:
    snapshot = live.sandbox.snapshot()
    stored = {v["tags"].get("keyId") for secret in snapshot["keyVault"].values() for v in secret["versions"]}
    return sum(1 for app in snapshot["applications"] for p in app["passwords"]
               if p["displayName"].startswith("aks-sp-remediator") and p["keyId"] not in stored)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", default=["storm", "crashes", "hostile"])
    parser.add_argument("--workers", type=int, default=1, help="worker processes on the same storage (default 1)")
    args = parser.parse_args(argv)
    if "storm" in args.which:
        with live_world(workers=args.workers) as live:
            print("storm:", json.dumps(storm(live)), flush=True)
    if "crashes" in args.which:
        for api, route, when in CRASH_POINTS:
            with live_world(workers=args.workers) as live:
                print("crash:", json.dumps(crash_at(live, api, route, when)), flush=True)
        with live_world(workers=args.workers) as live:
            print("crash:", json.dumps(crash_mid_reset(live)), flush=True)
    if "hostile" in args.which:
        with live_world(workers=args.workers) as live:
            print("hostile:", json.dumps(hostile(live)))
    if "amplify" in args.which:
        for clusters in (1, 1396):
            with live_world(workers=args.workers) as live:
                print(f"amplify ({clusters} cluster(s)):", json.dumps(amplify(live, clusters=clusters)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

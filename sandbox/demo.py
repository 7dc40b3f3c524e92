"""`make demo`: watch a broken AKS cluster get repaired, on this machine, with no Azure account.

Starts Azurite, the sandbox and the function runner; a cluster whose service principal
secret expired fails an upgrade the way AKS does; the failure event reaches the Event
Grid trigger, which looks up the Activity Log entry, classifies it and remediates; the
upgrade is repeated and succeeds. `--manual` starts the remediation through the HTTP
trigger instead, as an operator would. Exits 0 only if the cluster was repaired.
No secret text is printed: the timeline shows ids, key ids and times.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import ssl
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.mgmt.containerservice import ContainerServiceClient

from sandbox import Sandbox, configure_logging
from sandbox.azurite import Azurite
from sandbox.functions_host import FunctionRunner
from sandbox.wiring import remediator_settings

CLUSTER_GROUP, CLUSTER_NAME = "rg-payments", "aks-payments"
TERMINAL = {"Succeeded", "Failed", "Planned"}


class Timeline:
    def __init__(self, out: Callable[[str], None]) -> None:
        self._start = time.perf_counter()
        self._out = out

    def __call__(self, what: str, detail: str = "") -> None:
        self._out(f"  {time.perf_counter() - self._start:6.2f}s  {what:<34} {detail}".rstrip())


def run(*, manual: bool, out: Callable[[str], None] = print, timeout: float = 60.0,
        before_teardown: Callable[[Sandbox, Azurite], None] | None = None,
        schema: str = "EventGridSchema") -> dict[str, Any]:
    """Run the scenario; returns a summary (repaired, remediation, request counts).

    `before_teardown` sees the sandbox and Azurite before they stop (the end-to-end test reads state there).
    """
    with Azurite() as azurite, Sandbox(scenario="expired-secret") as sandbox:
        os.environ.update(remediator_settings(sandbox, azurite.connection_string))
        import function_app

        function_app.built_services.cache_clear()
        key = secrets.token_urlsafe(24)
        with FunctionRunner(function_app.app, storage_connection=azurite.connection_string,
                            function_key=key) as runner:
            summary = _scenario(sandbox, runner, key, manual=manual, out=out, timeout=timeout, schema=schema)
        if before_teardown:
            before_teardown(sandbox, azurite)
        return summary


def _scenario(sandbox: Sandbox, runner: FunctionRunner, key: str, *, manual: bool, out: Callable[[str], None],
              timeout: float, schema: str) -> dict[str, Any]:
    step = Timeline(out)
    cluster_id = (f"/subscriptions/{sandbox.subscription_id}/resourceGroups/{CLUSTER_GROUP}"
                  f"/providers/Microsoft.ContainerService/managedClusters/{CLUSTER_NAME}")
    if not manual:
        _post(f"{sandbox.endpoints['admin']}/_sandbox/eventgrid/subscriptions", sandbox.ca_path, {
            "endpointUrl": f"{runner.url}/runtime/webhooks/eventgrid?functionName=on_resource_failure&code={key}",
            "schema": schema})
        step("Event Grid subscription", f"{schema}, validated by the Event Grid trigger")
    operator = ContainerServiceClient(
        ClientSecretCredential(sandbox.tenant_id, sandbox.operator.client_id, sandbox.operator.client_secret,
                               authority=sandbox.endpoints["login"], disable_instance_discovery=True,
                               connection_verify=sandbox.ca_path),
        sandbox.subscription_id, base_url=sandbox.endpoints["arm"], connection_verify=sandbox.ca_path,
        polling_interval=0)
    state = _cluster_state(sandbox)
    step("cluster aks-payments", f"provisioningState {state['provisioningState']}, service principal secret "
         f"{'valid' if state['secretValidNow'] else 'EXPIRED'}")

    failed = _upgrade(operator, "1.30.4")
    step("upgrade to 1.30.4", f"FAILED: {failed}" if failed else "succeeded (unexpected)")

    # Callers of the HTTP API present an Entra token for it, as `az account get-access-token --resource
    # <app id uri>` gives one in Azure: here the operator's, from the sandbox's token endpoint.
    api = (key, sandbox.api_token(sandbox.operator))
    if manual:
        status, headers, body = _request("POST", f"{runner.url}/api/remediations", api,
                                         {"clusterResourceId": cluster_id, "dryRun": False})
        step("POST /api/remediations", f"{status}, remediation {body.get('id')}")
        location = headers["Location"]
    else:
        location = _wait_for(lambda: _first_remediation(runner.url, api, cluster_id), timeout)
        step("event -> lookup -> classification", "remediation started by the Event Grid trigger")
    remediation = _wait_for(lambda: _terminal(location, api), timeout)
    for entry in remediation["steps"]:
        step(f"  step {entry['name']}", entry["detail"])
    step("remediation " + remediation["id"], f"{remediation['status']}: {remediation['reason']}")

    failed = _upgrade(operator, "1.30.4")
    state = _cluster_state(sandbox)
    step("upgrade to 1.30.4 again", f"FAILED: {failed}" if failed else
         f"succeeded, provisioningState {state['provisioningState']}")
    snapshot = sandbox.snapshot()
    counts = snapshot["requests"]
    repaired = not failed and state["provisioningState"] == "Succeeded" and state["secretValidNow"]
    return {"repaired": repaired, "remediation": remediation, "requests": counts,
            "requestsByCaller": snapshot["requestsByCaller"], "tokens": snapshot["tokens"],
            "invocations": list(runner.invocations)}


def _cluster_state(sandbox: Sandbox) -> dict[str, Any]:
    return next(c for c in sandbox.snapshot()["clusters"] if c["name"] == CLUSTER_NAME)


def _upgrade(client: ContainerServiceClient, version: str) -> str | None:
    """Attempt an upgrade as a platform engineer would; the error's code and first words, or None."""
    cluster = client.managed_clusters.get(CLUSTER_GROUP, CLUSTER_NAME)
    cluster.kubernetes_version = version
    try:
        client.managed_clusters.begin_create_or_update(CLUSTER_GROUP, CLUSTER_NAME, cluster).result()
    except HttpResponseError as err:
        code = getattr(err.error, "code", None) or err.status_code
        return f"{code}: {(err.error.message if err.error else str(err))[:110]}..."
    return None


def _first_remediation(base: str, api: tuple[str, str], cluster_id: str) -> str | None:
    _, _, body = _request("GET", f"{base}/api/remediations?clusterResourceId={quote(cluster_id)}", api)
    found = body.get("value") or []
    return f"{base}/api/remediations/{found[0]['id']}" if found else None


def _terminal(location: str, api: tuple[str, str]) -> dict[str, Any] | None:
    _, _, body = _request("GET", location, api)
    return body if body.get("status") in TERMINAL else None


def _wait_for(probe: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise TimeoutError(f"nothing happened within {timeout}s")


def _request(method: str, url: str, api: tuple[str, str], body: Any = None) -> tuple[int, dict[str, str],
                                                                                     dict[str, Any]]:
    """Call the HTTP API with the function key and a bearer token, as an operator would with curl."""
    key, token = api
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "x-functions-key": key, "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, dict(response.headers), json.loads(response.read() or b"{}")


def _post(url: str, ca_path: str, body: Any) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30, context=ssl.create_default_context(cafile=ca_path)) as response:
        return json.loads(response.read() or b"{}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--manual", action="store_true", help="start the remediation with the HTTP trigger")
    parser.add_argument("--cloud-events", action="store_true", help="deliver events in the CloudEvents 1.0 schema")
    parser.add_argument("--verbose", action="store_true", help="also show the remediator's log")
    args = parser.parse_args(argv)
    configure_logging(logging.INFO if args.verbose else logging.WARNING)
    started = time.perf_counter()
    print(f"AKS service-principal remediator demo ({'HTTP trigger' if args.manual else 'event-driven'})")
    summary = run(manual=args.manual, schema="CloudEventSchemaV1_0" if args.cloud_events else "EventGridSchema")
    print("\nAPI calls seen by the sandbox:")
    for api, routes in summary["requests"].items():
        total = sum(routes.values()) if isinstance(routes, dict) else routes
        print(f"  {api:<6} {total:>3}  {json.dumps(routes) if isinstance(routes, dict) else ''}")
    by_caller = summary["requestsByCaller"]
    print("  by caller: " + "; ".join(
        f"{caller} {json.dumps({api: sum(routes.values()) for api, routes in apis.items()})}"
        for caller, apis in by_caller.items()))
    verdict = "REPAIRED" if summary["repaired"] else "NOT REPAIRED"
    print(f"\n{verdict} in {time.perf_counter() - started:.1f}s")
    return 0 if summary["repaired"] else 1


if __name__ == "__main__":
    sys.exit(main())

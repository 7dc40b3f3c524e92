"""The sandbox behaves like Azure: URLs, bodies, status codes, error shapes and the LRO protocol
of the official examples in shared/reference/azure-rest-samples/, checked on the wire."""

from __future__ import annotations

import json
import os
import signal
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ServiceResponseError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.containerservice import ContainerServiceClient

from sandbox import Sandbox
from tests.support.wire import AKS_API, ROOT, Wire, assert_arm_error, recent, sample


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(scenario="expired-secret") as running:
        yield running


@pytest.fixture
def wire(sandbox: Sandbox) -> Wire:
    return Wire(sandbox)


def app_of(sandbox: Sandbox, cluster: str = "aks-payments") -> dict[str, Any]:
    state = sandbox.snapshot()
    client_id = next(c["clientId"] for c in state["clusters"] if c["name"] == cluster)
    return next(a for a in state["applications"] if a["appId"] == client_id)


# ---------------------------------------------------------------- Entra ID


def test_the_token_endpoint_answers_with_entra_errors(sandbox: Sandbox, wire: Wire) -> None:
    payments = app_of(sandbox)
    wrong = wire.token_response(payments["appId"], "not-the-secret")
    expired = wire.token_response(payments["appId"], sandbox.state.secret_text_of_cluster("aks-payments"))
    unknown = wire.token_response("00000000-0000-4000-8000-000000000000", "x")
    for response, status, error, number in ((wrong, 401, "invalid_client", 7000215),
                                            (expired, 401, "invalid_client", 7000222),
                                            (unknown, 400, "unauthorized_client", 700016)):
        body = response.json()
        assert response.status_code == status and body["error"] == error
        assert body["error_codes"] == [number] and body["error_description"].startswith(f"AADSTS{number}:")
        assert {"timestamp", "trace_id", "correlation_id"} <= set(body)
    ok = wire.token_response(sandbox.remediator.client_id, sandbox.remediator.client_secret)
    assert ok.status_code == 200 and ok.json()["token_type"] == "Bearer" and ok.json()["expires_in"] > 0


def test_tokens_are_jwts_signed_with_the_published_keys(sandbox: Sandbox, wire: Wire) -> None:
    # The API audience: a v2.0 token (aud = the API's client id) carrying the caller's app roles.
    token = wire.token_response(sandbox.operator.client_id, sandbox.operator.client_secret,
                                f"{sandbox.api_app_id_uri}/.default").json()["access_token"]
    discovery = wire.http.get(f"{sandbox.endpoints['login']}/{sandbox.tenant_id}/v2.0/.well-known/openid-configuration")
    keys = jwt.PyJWKClient(discovery.json()["jwks_uri"], ssl_context=ssl.create_default_context(
        cafile=sandbox.ca_path)).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, keys.key, algorithms=["RS256"], audience=sandbox.api_client_id,
                        issuer=discovery.json()["issuer"])
    operator = sandbox.state.applications[sandbox.operator.client_id]
    assert claims["roles"] == ["Remediations.Read", "Remediations.Write"]
    assert (claims["tid"], claims["oid"], claims["azp"], claims["ver"]) == (
        sandbox.tenant_id, operator.sp_object_id, sandbox.operator.client_id, "2.0")
    assert claims["exp"] - claims["iat"] == 3600
    # Entra ID leaves `roles` out when the caller holds none on that API.
    bare = wire.token_response(sandbox.remediator.client_id, sandbox.remediator.client_secret,
                               f"{sandbox.api_client_id}/.default").json()["access_token"]
    assert "roles" not in jwt.decode(bare, keys.key, algorithms=["RS256"], audience=sandbox.api_client_id)
    unknown = wire.token_response(sandbox.operator.client_id, sandbox.operator.client_secret,
                                  "api://nobody/.default")
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_scope"


# ---------------------------------------------------------------- ARM: clusters and the reset LRO


def test_a_cluster_reads_like_the_managed_clusters_get_example(wire: Wire) -> None:
    reference = sample("aks_ManagedClustersGet_2024-09-01.json")["responses"]["200"]["body"]
    body = wire.arm("GET", wire.cluster_path()).json()
    assert set(reference) <= set(body)
    assert {"provisioningState", "kubernetesVersion", "agentPoolProfiles", "servicePrincipalProfile",
            "nodeResourceGroup", "networkProfile", "dnsPrefix", "fqdn"} <= set(body["properties"])
    assert set(body["properties"]["servicePrincipalProfile"]) == {"clientId"}  # the secret is never returned
    assert body["type"] == reference["type"]
    listed = wire.arm("GET", f"/subscriptions/{wire.sandbox.subscription_id}/providers/"
                             "Microsoft.ContainerService/managedClusters").json()
    in_group = wire.arm("GET", wire.cluster_path("").rstrip("/")).json()
    assert {c["name"] for c in listed["value"]} == {"aks-payments", "aks-msi", "aks-healthy"}
    assert {c["name"] for c in in_group["value"]} == {"aks-payments", "aks-msi"}
    assert "nextLink" not in listed and all(c["tags"] == {} for c in listed["value"])  # one page, no tags


def test_the_scenarios_keep_their_world_in_one_subscription(sandbox: Sandbox) -> None:
    state = sandbox.snapshot()
    assert state["subscriptions"] == [{"subscriptionId": sandbox.subscription_id, "displayName": "sandbox"}]
    assert sandbox.subscription_ids == (sandbox.subscription_id,)
    # Each cluster's node resource group exists too, under AKS's default name, as AKS makes it.
    assert [(g["name"], g["tags"]) for g in state["resourceGroups"]] == [
        ("rg-payments", {}), ("MC_rg-payments_aks-payments_westeurope", {}), ("MC_rg-payments_aks-msi_westeurope", {}),
        ("rg-platform", {}), ("MC_rg-platform_aks-healthy_westeurope", {})]
    clusters = [(c["subscriptionId"], c["resourceGroup"], c["name"], c["tags"], c["writes"]) for c in state["clusters"]]
    assert clusters == [
        (sandbox.subscription_id, "rg-payments", "aks-payments", {}, {"reset": 0, "put": 0}),
        (sandbox.subscription_id, "rg-payments", "aks-msi", {}, {"reset": 0, "put": 0}),
        (sandbox.subscription_id, "rg-platform", "aks-healthy", {}, {"reset": 0, "put": 0})]
    group = Wire(sandbox, sandbox.remediator).arm("GET", f"/subscriptions/{sandbox.subscription_id}/resourcegroups/"
                                                  "rg-payments", api_version="2024-03-01").json()
    assert group == {"id": f"/subscriptions/{sandbox.subscription_id}/resourceGroups/rg-payments",
                     "name": "rg-payments", "type": "Microsoft.Resources/resourceGroups", "location": "westeurope",
                     "tags": {}, "properties": {"provisioningState": "Succeeded"}}


def test_arm_refuses_like_arm(wire: Wire, sandbox: Sandbox) -> None:
    assert_arm_error(wire.arm("GET", wire.cluster_path(), api_version=None), 400, "MissingApiVersionParameter")
    assert_arm_error(wire.arm("GET", wire.cluster_path("aks-nope")), 404, "ResourceNotFound")
    assert_arm_error(wire.arm("GET", wire.cluster_path("aks-nope", "rg-nope")), 404, "ResourceGroupNotFound")
    assert_arm_error(wire.arm("GET", wire.cluster_path("", "rg-nope").rstrip("/")), 404, "ResourceGroupNotFound")
    assert_arm_error(wire.arm("GET", wire.cluster_path().replace(sandbox.subscription_id, "0" * 8 + "-0000-4000-8000-"
                                                                 + "0" * 12)), 404, "SubscriptionNotFound")
    anonymous = requests.get(f"{sandbox.endpoints['arm']}{wire.cluster_path()}", params={"api-version": AKS_API},
                             verify=sandbox.ca_path)
    assert_arm_error(anonymous, 401, "AuthenticationFailed")
    graph_token = Wire(sandbox).auth("https://graph.microsoft.com")  # a token for another audience
    wrong_audience = requests.get(f"{sandbox.endpoints['arm']}{wire.cluster_path()}",
                                  params={"api-version": AKS_API}, headers=graph_token, verify=sandbox.ca_path)
    assert_arm_error(wrong_audience, 401, "InvalidAuthenticationToken")
    # The remediator's role has no managedClusters/write: infra/ grants exactly what the code calls.
    remediator = Wire(sandbox, sandbox.remediator)
    cluster = remediator.arm("GET", wire.cluster_path()).json()
    forbidden = remediator.arm("PUT", wire.cluster_path(), json=cluster)
    assert_arm_error(forbidden, 403, "AuthorizationFailed")
    assert sandbox.remediator.client_id in forbidden.json()["error"]["message"]
    # Refused, but it reached the cluster: counted there, so a test can prove nobody tried.
    assert next(c for c in sandbox.snapshot()["clusters"] if c["name"] == "aks-payments")["writes"] == {
        "reset": 0, "put": 1}


def test_the_reset_is_a_long_running_operation_like_the_example(wire: Wire, sandbox: Sandbox) -> None:
    reference = sample("aks_ManagedClustersResetServicePrincipalProfile_2024-09-01.json")
    reference_location = reference["responses"]["202"]["headers"]["location"]
    app = app_of(sandbox)
    added = wire.graph("POST", f"/applications/{app['objectId']}/addPassword", json={"passwordCredential": {}})
    started = wire.arm("POST", wire.cluster_path() + "/resetServicePrincipalProfile",
                       json={"clientId": app["appId"], "secret": added.json()["secretText"]})
    assert started.status_code == 202 and started.content == b""
    location = started.headers["Location"]
    # {subscription}/providers/Microsoft.ContainerService/locations/{region}/operationresults/{id}?api-version=...
    ours = location.split("/subscriptions/")[1].split("/")
    theirs = reference_location.split("/subscriptions/")[1].split("/")
    assert ours[0] == sandbox.subscription_id and ours[1:4] == theirs[1:4] and ours[5] == theirs[5]
    assert location.endswith("?api-version=2017-08-31") and "/operations/" in started.headers["Azure-AsyncOperation"]
    assert float(started.headers["Retry-After"]) >= 1  # azure-core reads 0 as "use your own interval"
    assert wire.arm("GET", wire.cluster_path()).json()["properties"]["provisioningState"] == "Updating"
    status = wire.arm("GET", started.headers["Azure-AsyncOperation"], api_version=None).json()
    assert status["status"] == "InProgress" and status["name"] in location
    assert wire.arm("GET", location, api_version=None).status_code == 202
    busy = wire.arm("POST", wire.cluster_path() + "/resetServicePrincipalProfile",
                    json={"clientId": app["appId"], "secret": "x"})
    assert_arm_error(busy, 409, "OperationNotAllowed")
    # AKS's words (Azure/azure-cli-extensions#9855), naming the operation that runs.
    assert busy.json()["error"]["message"].startswith(
        "Operation is not allowed because there's an in progress reset service principal profile managed cluster "
        f"operation (operation ID: {status['name']}) on the managed cluster started on UTC ")
    assert_arm_error(wire.arm("PUT", wire.cluster_path(), json=wire.arm("GET", wire.cluster_path()).json()),
                     409, "OperationNotAllowed")  # any write, not only a second reset
    wire.admin("clock", {"advanceSeconds": 1})
    done = wire.arm("GET", started.headers["Azure-AsyncOperation"], api_version=None).json()
    assert done["status"] == "Succeeded" and "endTime" in done
    assert wire.arm("GET", location, api_version=None).status_code == 204
    cluster = next(c for c in sandbox.snapshot()["clusters"] if c["name"] == "aks-payments")
    assert cluster["provisioningState"] == "Succeeded" and cluster["heldKeyId"] == added.json()["keyId"]


@pytest.mark.parametrize(("body", "cluster", "status", "code"), [
    ({"clientId": "c"}, "aks-payments", 400, "InvalidParameter"),
    ({"clientId": "c", "secret": "s" * 191}, "aks-payments", 400, "InvalidParameter"),
    ([1], "aks-payments", 400, "InvalidRequestContent"),
    ({"clientId": "msi", "secret": "s"}, "aks-msi", 400, "BadRequest"),
])
def test_bad_resets_are_refused_and_start_nothing(wire: Wire, sandbox: Sandbox, body, cluster, status, code) -> None:
    assert_arm_error(wire.arm("POST", wire.cluster_path(cluster) + "/resetServicePrincipalProfile", json=body),
                     status, code)
    assert all(c["provisioningState"] == "Succeeded" for c in sandbox.snapshot()["clusters"])


def test_a_failed_upgrade_is_logged_the_way_aks_logs_it(wire: Wire, sandbox: Sandbox) -> None:
    reference = sample("activitylog_rest_GetActivityLogsFiltered.json")
    reference_entry = reference["responses"]["200"]["body"]["value"][0]
    attempt = wire.admin("clusters/aks-payments/operate", {"kubernetesVersion": "1.30.4"}).json()
    assert attempt["succeeded"] is False and attempt["provisioningState"] == "Failed"
    assert attempt["error"]["code"] == "ServicePrincipalValidationClientError"
    window = recent(sandbox)
    values = f"/subscriptions/{sandbox.subscription_id}/providers/microsoft.insights/eventtypes/management/values"
    found = wire.arm("GET", values, api_version="2015-04-01",
                     params={"$filter": f"{window} and correlationId eq '{attempt['correlationId']}'"}).json()["value"]
    assert [e["eventName"]["value"] for e in found] == ["EndRequest", "BeginRequest"]  # newest first
    end = found[0]
    assert set(reference_entry) - {"subStatus"} <= set(end)
    assert end["status"]["value"] == "Failed" and end["level"] == "Error"
    status_message = end["properties"]["statusMessage"]
    assert isinstance(status_message, str)  # a JSON-encoded string, as the REST API returns it
    detail = json.loads(status_message)["error"]["details"][0]
    assert detail["code"] == "ServicePrincipalValidationClientError" and "AADSTS7000222" in detail["message"]
    # Only the documented filter patterns (and the status and caller terms azure-cli adds) are accepted.
    assert_arm_error(wire.arm("GET", values, api_version="2015-04-01"), 400, "BadRequest")
    assert_arm_error(wire.arm("GET", values, api_version="2015-04-01", params={
        "$filter": f"{window} and correlationId eq '{attempt['correlationId']}' and resourceGroupName eq 'x'"}),
        400, "BadRequest")  # one narrowing term at most
    assert_arm_error(wire.arm("GET", values, api_version="2015-04-01", params={
        "$filter": "eventTimestamp ge '2026-01-01T00:00:00Z' and eventTimestamp le '2026-06-01T00:00:00Z'"}),
        400, "BadRequest")  # more than 90 days


def test_the_activity_log_pages_with_next_link(wire: Wire, sandbox: Sandbox) -> None:
    for _ in range(51):  # two entries each: 102, over one page of 100
        wire.admin("clusters/aks-healthy/operate", {})
    values = f"/subscriptions/{sandbox.subscription_id}/providers/microsoft.insights/eventtypes/management/values"
    window = f"{recent(sandbox)} and resourceGroupName eq 'rg-platform'"
    first = wire.arm("GET", values, api_version="2015-04-01", params={"$filter": window}).json()
    second = wire.arm("GET", first["nextLink"], api_version=None).json()
    assert len(first["value"]) == 100 and len(second["value"]) == 2 and "nextLink" not in second


# ---------------------------------------------------------------- Graph


def test_add_and_remove_password_match_the_graph_examples(wire: Wire, sandbox: Sandbox) -> None:
    add_reference = sample("graph_application_addPassword_v1.0.json")["response"]["body"]
    app = app_of(sandbox)
    added = wire.graph("POST", f"/applications/{app['objectId']}/addPassword",
                       json={"passwordCredential": {"displayName": "Password friendly name"}})
    assert added.status_code == 200
    body = added.json()
    assert set(add_reference) <= set(body) and body["displayName"] == "Password friendly name"
    assert body["hint"] == body["secretText"][:3]
    listed = wire.graph("GET", "/applications", params={"$filter": f"appId eq '{app['appId']}'",
                                                        "$select": "id,appId,passwordCredentials"}).json()
    [found] = listed["value"]
    assert set(found) == {"id", "appId", "passwordCredentials"}
    assert all(p["secretText"] is None for p in found["passwordCredentials"])  # shown once, at creation
    removed = wire.graph("POST", f"/applications/{app['objectId']}/removePassword", json={"keyId": body["keyId"]})
    assert removed.status_code == 204 and removed.content == b""
    again = wire.graph("POST", f"/applications/{app['objectId']}/removePassword", json={"keyId": body["keyId"]})
    assert again.status_code == 400 and "keyId" in again.json()["error"]["message"]
    assert set(again.json()["error"]) == {"code", "message", "innerError"}


def test_owned_by_reads_every_application_and_changes_only_owned_ones(sandbox: Sandbox) -> None:
    # Microsoft's permissions reference: Application.ReadWrite.OwnedBy (and Application.Read.All) read every
    # application in the tenant; only writes are limited to those the caller owns.
    remediator = Wire(sandbox, sandbox.remediator)
    visible = {a["appId"] for a in remediator.graph("GET", "/applications").json()["value"]}
    everyone = {a["appId"] for a in sandbox.snapshot()["applications"]}
    assert visible == everyone and sandbox.operator.client_id in visible
    operator_app = next(a for a in sandbox.snapshot()["applications"] if a["appId"] == sandbox.operator.client_id)
    response = remediator.graph("POST", f"/applications/{operator_app['objectId']}/addPassword", json={})
    assert response.status_code == 403 and response.json()["error"]["code"] == "Authorization_RequestDenied"
    assert all(a["passwords"] == operator_app["passwords"] for a in sandbox.snapshot()["applications"]
               if a["appId"] == sandbox.operator.client_id)
    unsupported = remediator.graph("GET", "/applications", params={"$filter": "endswith(displayName,'a')"})
    assert unsupported.status_code == 400 and unsupported.json()["error"]["code"] == "Request_UnsupportedQuery"
    principals = remediator.graph("GET", "/servicePrincipals",
                                  params={"$filter": f"appId eq '{app_of(sandbox)['appId']}'"}).json()["value"]
    assert [p["appId"] for p in principals] == [app_of(sandbox)["appId"]]


# ---------------------------------------------------------------- Key Vault


def test_key_vault_challenges_then_stores_like_the_example(wire: Wire, sandbox: Sandbox) -> None:
    reference = sample("keyvault_SetSecret_7.4.json")["responses"]["200"]["body"]
    url = f"{sandbox.endpoints['vault']}/secrets/crpsecret"
    challenge = requests.put(url, params={"api-version": "7.4"}, json={"value": "v"}, verify=sandbox.ca_path)
    assert challenge.status_code == 401
    assert challenge.headers["WWW-Authenticate"] == (
        f'Bearer authorization="{sandbox.endpoints["login"]}/{sandbox.tenant_id}", resource="https://vault.azure.net"')
    headers = wire.auth("https://vault.azure.net")
    stored = requests.put(url, params={"api-version": "7.4"}, json={"value": "mysecretvalue", "tags": {"k": "v"}},
                          headers=headers, verify=sandbox.ca_path).json()
    assert set(reference) <= set(stored) and set(reference["attributes"]) <= set(stored["attributes"])
    assert stored["id"].startswith(f"{sandbox.endpoints['vault']}/secrets/crpsecret/")
    missing = requests.get(f"{sandbox.endpoints['vault']}/secrets/nothing", params={"api-version": "7.4"},
                           headers=headers, verify=sandbox.ca_path)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "SecretNotFound"
    assert sandbox.snapshot()["keyVault"]["crpsecret"]["versions"][0]["tags"] == {"k": "v"}


def test_the_remediator_may_set_get_and_list_secrets_but_not_delete_them(sandbox: Sandbox) -> None:
    # Its custom data role on the vault (infra/): setSecret, getSecret, readMetadata; nothing else.
    client = SecretClient(sandbox.endpoints["vault"], sandbox.credential(sandbox.remediator),
                          verify_challenge_resource=False, connection_verify=sandbox.ca_path)
    client.set_secret("aks-sp-x", "value-1")
    assert client.get_secret("aks-sp-x").value == "value-1"
    assert len(list(client.list_properties_of_secret_versions("aks-sp-x"))) == 1
    with pytest.raises(HttpResponseError) as refused:
        client.begin_delete_secret("aks-sp-x")
    assert refused.value.status_code == 403 and "ForbiddenByRbac" in str(refused.value)
    assert "secrets/delete" in refused.value.error.message
    assert sandbox.state.vault_current_value("aks-sp-x") == "value-1"
    operator = SecretClient(sandbox.endpoints["vault"], sandbox.credential(sandbox.operator),
                            verify_challenge_resource=False, connection_verify=sandbox.ca_path)
    operator.begin_delete_secret("aks-sp-x").wait()
    assert sandbox.state.vault_current_value("aks-sp-x") is None


# ---------------------------------------------------------------- clock, faults, state


def test_the_clock_expires_secrets(wire: Wire, sandbox: Sandbox) -> None:
    assert wire.admin("clusters/aks-healthy/operate", {}).json()["succeeded"] is True
    wire.admin("clock", {"advanceSeconds": 400 * 86400})
    healthy = next(c for c in sandbox.snapshot()["clusters"] if c["name"] == "aks-healthy")
    assert healthy["secretValidNow"] is False
    assert wire.admin("clusters/aks-healthy/operate", {}).json()["succeeded"] is False


def test_a_new_password_signs_in_only_after_the_propagation_delay(wire: Wire, sandbox: Sandbox) -> None:
    wire.admin("faults", {"kind": "propagation_delay", "seconds": 60})
    app = app_of(sandbox)
    secret = wire.graph("POST", f"/applications/{app['objectId']}/addPassword", json={}).json()["secretText"]
    assert wire.token_response(app["appId"], secret).json()["error_codes"] == [7000215]
    wire.admin("clock", {"advanceSeconds": 61})
    assert wire.token_response(app["appId"], secret).status_code == 200


def test_request_faults_hit_their_api_only(wire: Wire, sandbox: Sandbox) -> None:
    wire.admin("faults", {"api": "arm", "kind": "throttle", "count": 2, "retryAfter": 7})
    throttled = wire.arm("GET", wire.cluster_path())
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert wire.graph("GET", "/applications").status_code == 200
    assert wire.arm("GET", wire.cluster_path()).status_code == 429
    assert wire.arm("GET", wire.cluster_path()).status_code == 200  # count used up
    wire.admin("faults", {"api": "graph", "kind": "error", "status": 502, "count": 1})
    assert wire.graph("GET", "/applications").status_code == 502
    for bad in ({"kind": "nope"}, {"api": "nowhere", "kind": "error"}, {"api": "arm", "kind": "error", "rate": 2},
                {"api": "arm", "kind": "error", "count": 0}, {"api": "arm", "kind": "error", "status": "x"},
                {"api": "arm", "kind": "latency", "seconds": -1}, {"kind": "propagation_delay", "seconds": "soon"}):
        refused = wire.admin("faults", bad)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "InvalidFault"


def test_a_failing_reset_fault_fails_the_operation(wire: Wire, sandbox: Sandbox) -> None:
    wire.admin("faults", {"kind": "reset_fails", "count": 1})
    app = app_of(sandbox)
    secret = wire.graph("POST", f"/applications/{app['objectId']}/addPassword", json={}).json()["secretText"]
    started = wire.arm("POST", wire.cluster_path() + "/resetServicePrincipalProfile",
                       json={"clientId": app["appId"], "secret": secret})
    wire.admin("clock", {"advanceSeconds": 1})
    status = wire.arm("GET", started.headers["Azure-AsyncOperation"], api_version=None).json()
    assert status["status"] == "Failed" and status["error"]["code"] == "InternalOperationError"


def test_the_state_never_holds_secret_text(wire: Wire, sandbox: Sandbox) -> None:
    app = app_of(sandbox)
    new_secret = wire.graph("POST", f"/applications/{app['objectId']}/addPassword", json={}).json()["secretText"]
    requests.put(f"{sandbox.endpoints['vault']}/secrets/s1", params={"api-version": "7.4"},
                 json={"value": new_secret}, headers=wire.auth("https://vault.azure.net"), verify=sandbox.ca_path)
    state = requests.get(f"{sandbox.endpoints['admin']}/_sandbox/state", verify=sandbox.ca_path).text
    secrets = [new_secret, sandbox.remediator.client_secret, sandbox.operator.client_secret,
               *(sandbox.state.secret_text_of_cluster(name) for name in ("aks-payments", "aks-healthy"))]
    assert all(secret and secret not in state for secret in secrets)
    assert json.loads(state)["requests"]["graph"]["POST /applications/{id}/addPassword"] == 1


# ---------------------------------------------------------------- Event Grid


class Receiver:
    """A webhook endpoint that records what Event Grid posts, echoing the validation code."""

    def __init__(self, echo: bool = True) -> None:
        received: list[tuple[str, dict[str, str], Any]] = []
        self.received = received
        self.arrived = threading.Event()

        arrived = self.arrived

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_OPTIONS(self) -> None:  # noqa: N802
                origin = self.headers.get("WebHook-Request-Origin", "")
                self._reply(200, headers={"WebHook-Allowed-Origin": origin} if echo else {})

            def do_POST(self) -> None:  # noqa: N802
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.append((self.command, {k.lower(): v for k, v in self.headers.items()}, payload))
                events = payload if isinstance(payload, list) else [payload]
                if events[0].get("eventType") == "Microsoft.EventGrid.SubscriptionValidationEvent":
                    code = events[0]["data"]["validationCode"] if echo else "wrong"
                    self._reply(200, json.dumps({"validationResponse": code}).encode())
                    return
                arrived.set()
                self._reply(200)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.parametrize("schema", ["EventGridSchema", "CloudEventSchemaV1_0"])
def test_failed_writes_are_delivered_as_events_without_error_text(wire: Wire, sandbox: Sandbox, schema: str) -> None:
    data_schema = sample("eventgrid_ResourceWriteFailureData_schema_excerpt_2018-01-01.json")
    fields = set(data_schema["ResourceWriteFailureData"]["properties"])
    receiver = Receiver()
    assert wire.admin("eventgrid/subscriptions", {"endpointUrl": receiver.url, "schema": schema}).status_code == 201
    attempt = wire.admin("clusters/aks-payments/operate", {"kubernetesVersion": "1.30.4"}).json()
    assert receiver.arrived.wait(10)
    _, headers, payload = receiver.received[-1]
    if schema == "EventGridSchema":
        [event] = payload
        assert headers["aeg-event-type"] == "Notification" and event["eventType"].endswith("ResourceWriteFailure")
        assert event["topic"] == f"/subscriptions/{sandbox.subscription_id}" and event["dataVersion"] == "2"
    else:
        event = payload
        assert headers["content-type"].startswith("application/cloudevents+json")
        assert event["specversion"] == "1.0" and event["type"].endswith("ResourceWriteFailure")
    data = event["data"]
    assert set(data) == fields and data["correlationId"] == attempt["correlationId"]
    assert "AADSTS" not in json.dumps(event) and "ServicePrincipal" not in json.dumps(event)
    receiver.server.shutdown()


def test_a_subscription_that_fails_the_handshake_is_refused(wire: Wire) -> None:
    for schema in ("EventGridSchema", "CloudEventSchemaV1_0"):
        receiver = Receiver(echo=False)
        refused = wire.admin("eventgrid/subscriptions", {"endpointUrl": receiver.url, "schema": schema})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "WebhookValidationFailed"
        receiver.server.shutdown()


# ---------------------------------------------------------------- python -m sandbox serve


@pytest.mark.slow
def test_serve_prints_one_line_of_endpoints_and_stops_on_sigterm() -> None:
    process = subprocess.Popen([sys.executable, "-m", "sandbox", "serve", "--scenario", "healthy"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(process.stdout.readline())
        assert {"arm", "graph", "login", "vault", "admin", "functions", "ca", "tenantId", "subscriptionId",
                "remediatorClientId", "operatorClientId", "auditorClientId", "apiClientId", "apiAppIdUri",
                "identitiesFile"} <= set(info)
        assert stat.S_IMODE(os.stat(info["identitiesFile"]).st_mode) == 0o600
        identities = json.loads(Path(info["identitiesFile"]).read_text())
        state = requests.get(f"{info['admin']}/_sandbox/state", verify=info["ca"]).json()
        assert all(c["secretValidNow"] for c in state["clusters"])  # the healthy scenario
        # An operator signs in as azure-identity would, with the printed ids and the file's secret.
        token = ClientSecretCredential(
            info["tenantId"], info["auditorClientId"], identities["auditorClientSecret"], authority=info["login"],
            disable_instance_discovery=True, connection_verify=info["ca"]).get_token(f"{info['apiAppIdUri']}/.default")
        listed = requests.get(f"{info['functions']}/api/remediations", params={"clusterResourceId": next(
            c["id"] for c in state["clusters"] if c["name"] == "aks-payments")},
            headers={"x-functions-key": info["functionKey"], "Authorization": f"Bearer {token.token}"})
        assert listed.status_code == 200 and listed.json()["value"] == []
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0
        assert identities["remediatorClientSecret"] not in out + err
    finally:
        process.kill()


# ---------------------------------------------------------------- faults that commit, then fail


RESET_ROUTE = "POST managedClusters/{name}/resetServicePrincipalProfile"
ADD_PASSWORD_ROUTE = "POST /applications/{id}/addPassword"
SET_SECRET_ROUTE = "PUT /secrets/{name}"


def _write(wire: Wire, api: str) -> requests.Response:
    """One of the three writes that matter, by the operator: addPassword, set secret, reset."""
    app = app_of(wire.sandbox)
    if api == "graph":
        return wire.graph("POST", f"/applications/{app['objectId']}/addPassword", json={})
    if api == "vault":
        return wire.http.put(f"{wire.sandbox.endpoints['vault']}/secrets/s1", params={"api-version": "7.4"},
                             json={"value": "v"}, headers=wire.auth("https://vault.azure.net"))
    # The app's current (expired) secret will do: the reset fails in the end, but it starts.
    secret = wire.sandbox.state.secret_text_of_cluster("aks-payments")
    return wire.arm("POST", wire.cluster_path() + "/resetServicePrincipalProfile",
                    json={"clientId": app["appId"], "secret": secret})


def _writes_committed(sandbox: Sandbox, api: str) -> int:
    state = sandbox.snapshot()
    if api == "graph":
        return len(app_of(sandbox)["passwords"])
    if api == "vault":
        return len(state["keyVault"].get("s1", {"versions": []})["versions"])
    return len(sandbox.state.operations)


@pytest.mark.parametrize(("api", "route"), [("graph", ADD_PASSWORD_ROUTE), ("vault", SET_SECRET_ROUTE),
                                           ("arm", RESET_ROUTE)])
@pytest.mark.parametrize("kind", ["error_after_commit", "lose_answer"])
def test_a_write_commits_once_then_its_answer_fails(wire: Wire, sandbox: Sandbox, api: str, route: str,
                                                    kind: str) -> None:
    wire.auth("https://vault.azure.net")  # tokens first: the fault is for the write, not the sign-in
    before = _writes_committed(sandbox, api)
    assert wire.admin("faults", {"api": api, "kind": kind, "route": route, "status": 500}).status_code == 200
    if kind == "lose_answer":
        with pytest.raises(requests.ConnectionError):
            _write(wire, api)
    else:
        failed = _write(wire, api)
        assert failed.status_code == 500 and "secretText" not in failed.text
    assert _writes_committed(sandbox, api) == before + 1  # the write happened, once
    assert wire.http.get(f"{sandbox.endpoints['admin']}/_sandbox/faults").json()["value"] == []  # used up
    expected = "lost" if kind == "lose_answer" else "500"
    assert sandbox.snapshot()["responses"][api][route] == {expected: 1}


def test_the_sdk_sees_a_lost_answer_of_a_secret_it_set(sandbox: Sandbox, wire: Wire) -> None:
    client = SecretClient(sandbox.endpoints["vault"], sandbox.credential(sandbox.remediator),
                          verify_challenge_resource=False, connection_verify=sandbox.ca_path, retry_total=0)
    client.set_secret("warm-up", "x")  # the bearer challenge and the token, before the fault
    wire.admin("faults", {"api": "vault", "kind": "lose_answer", "route": SET_SECRET_ROUTE})
    with pytest.raises(ServiceResponseError):
        client.set_secret("aks-sp-x", "value-1")
    assert sandbox.state.vault_current_value("aks-sp-x") == "value-1"  # stored, though the client never heard


def test_a_kill_worker_fault_kills_the_worker_after_or_instead_of_the_write(wire: Wire, sandbox: Sandbox) -> None:
    refused = wire.admin("faults", {"api": "graph", "kind": "kill_worker", "route": ADD_PASSWORD_ROUTE})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "NoWorker"  # nobody to kill yet
    for when, committed in (("after", 1), ("before", 0)):
        worker = subprocess.Popen(["sleep", "60"])
        sandbox.state.on_kill_worker = lambda worker=worker: (worker.kill(), worker.wait())
        before = len(app_of(sandbox)["passwords"])
        assert wire.admin("faults", {"api": "graph", "kind": "kill_worker", "route": ADD_PASSWORD_ROUTE,
                                     "when": when}).status_code == 200
        with pytest.raises(requests.ConnectionError):
            wire.graph("POST", f"/applications/{app_of(sandbox)['objectId']}/addPassword", json={})
        assert worker.returncode == -signal.SIGKILL
        assert len(app_of(sandbox)["passwords"]) == before + committed


def test_faults_are_route_scoped_listed_and_cleared(wire: Wire, sandbox: Sandbox) -> None:
    for fault in ({"api": "arm", "kind": "error", "status": 503, "count": 2, "route": "GET managedClusters"},
                  {"api": "graph", "kind": "error_after_commit", "route": ADD_PASSWORD_ROUTE, "count": 3},
                  {"kind": "propagation_delay", "seconds": 120}, {"kind": "slow_operations", "seconds": 30},
                  {"kind": "reset_fails", "count": 2}):
        assert wire.admin("faults", fault).status_code == 200
    subscription = f"/subscriptions/{sandbox.subscription_id}/providers/Microsoft.ContainerService/managedClusters"
    assert wire.arm("GET", wire.cluster_path()).status_code == 200  # another route of the same API
    assert wire.arm("GET", subscription).status_code == 503
    faults = wire.http.get(f"{sandbox.endpoints['admin']}/_sandbox/faults").json()["value"]
    assert [(f["kind"], f.get("route"), f.get("remaining"), f.get("seconds")) for f in faults] == [
        ("error", "GET managedClusters", 1, None), ("error_after_commit", ADD_PASSWORD_ROUTE, 3, None),
        ("propagation_delay", None, None, 120), ("reset_fails", None, 2, None), ("slow_operations", None, None, 30)]
    assert all(f["id"] for f in faults[:2])
    assert wire.http.delete(f"{sandbox.endpoints['admin']}/_sandbox/faults").status_code == 204
    assert wire.http.get(f"{sandbox.endpoints['admin']}/_sandbox/faults").json()["value"] == []
    assert wire.arm("GET", subscription).status_code == 200
    state = sandbox.state
    assert (state.propagation_seconds, state.reset_failures, state.operation_seconds) == (0, 0, 0.5)
    for bad in ({"api": "arm", "kind": "error", "route": "GET nowhere"},  # a typo would never fire
                {"api": "graph", "kind": "lose_answer"},  # needs a route
                {"api": "graph", "kind": "error_after_commit", "route": "GET /applications"}):  # not a write
        refused = wire.admin("faults", bad)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "InvalidFault", bad


def test_the_state_counts_status_codes_and_keeps_removed_passwords(wire: Wire, sandbox: Sandbox) -> None:
    assert _write(wire, "arm").status_code == 202
    assert _write(wire, "arm").status_code == 409
    assert _write(wire, "arm").status_code == 409
    app = app_of(sandbox)
    added = wire.graph("POST", f"/applications/{app['objectId']}/addPassword",
                       json={"passwordCredential": {"displayName": "rotated"}}).json()
    assert wire.graph("POST", f"/applications/{app['objectId']}/removePassword",
                      json={"keyId": added["keyId"]}).status_code == 204
    state = requests.get(f"{sandbox.endpoints['admin']}/_sandbox/state", verify=sandbox.ca_path)
    assert state.json()["responses"]["arm"][RESET_ROUTE] == {"202": 1, "409": 2}
    [removed] = next(a for a in state.json()["applications"] if a["appId"] == app["appId"])["removedPasswords"]
    assert removed == {"keyId": added["keyId"], "hint": added["hint"], "displayName": "rotated",
                       "endDateTime": removed["endDateTime"], "removedAt": removed["removedAt"]}
    assert added["secretText"] not in state.text


# ---------------------------------------------------------------- restart from a state directory


def test_a_restarted_sandbox_serves_the_same_world_to_the_same_sdk_clients(tmp_path: Path) -> None:
    first = Sandbox(state_dir=tmp_path).start()
    try:
        ids = (first.endpoints, first.ca_path, first.tenant_id, first.subscription_id, first.remediator,
               first.operator, first.api_client_id)
        aks = ContainerServiceClient(first.credential(first.remediator), first.subscription_id,
                                     base_url=first.endpoints["arm"], connection_verify=first.ca_path)
        vault = SecretClient(first.endpoints["vault"], first.credential(first.remediator),
                             verify_challenge_resource=False, connection_verify=first.ca_path)
        vault.set_secret("aks-sp-payments", "kept-value")
        wire = Wire(first)
        app = app_of(first)
        added = wire.graph("POST", f"/applications/{app['objectId']}/addPassword", json={}).json()
        wire.admin("faults", {"kind": "slow_operations", "seconds": 600})
        wire.admin("faults", {"api": "vault", "kind": "error", "route": "GET /secrets/{name}/versions"})
        wire.admin("clock", {"advanceSeconds": 300})  # not an hour: tokens expire by the sandbox clock
        poller = aks.managed_clusters.begin_reset_service_principal_profile(
            "rg-payments", "aks-payments", {"clientId": app["appId"], "secret": added["secretText"]})
        status_url = poller.polling_method()._operation.get_polling_url()
    finally:
        first.stop()

    second = Sandbox(state_dir=tmp_path).start()
    try:
        assert (second.endpoints, second.ca_path, second.tenant_id, second.subscription_id, second.remediator,
                second.operator, second.api_client_id) == ids
        assert second.state.clock_offset.total_seconds() >= 300  # the clock, kept
        # The same clients, with their cached tokens and the same CA file, carry on.
        assert vault.get_secret("aks-sp-payments").value == "kept-value"
        assert aks.managed_clusters.get("rg-payments", "aks-payments").provisioning_state == "Updating"
        with pytest.raises(ResourceExistsError, match="OperationNotAllowed"):
            aks.managed_clusters.begin_reset_service_principal_profile(
                "rg-payments", "aks-payments", {"clientId": app["appId"], "secret": added["secretText"]},
                polling=False)
        wire = Wire(second)
        assert wire.arm("GET", status_url, api_version=None).json()["status"] == "InProgress"
        faults = wire.http.get(f"{second.endpoints['admin']}/_sandbox/faults").json()["value"]
        assert {f["kind"] for f in faults} == {"error", "slow_operations"}
        wire.admin("clock", {"advanceSeconds": 601})
        poller.result(timeout=60)  # the poller started before the restart
        cluster = next(c for c in second.snapshot()["clusters"] if c["name"] == "aks-payments")
        assert cluster["heldKeyId"] == added["keyId"] and cluster["secretValidNow"]
    finally:
        second.stop()


def test_a_state_directory_serves_one_sandbox_and_drops_what_a_kill_cut_short(tmp_path: Path) -> None:
    from sandbox.persist import StateDirLocked

    with Sandbox(state_dir=tmp_path) as running:
        with pytest.raises(StateDirLocked):
            Sandbox(state_dir=tmp_path)
        entries = len(running.state.activity_log)
        Wire(running).admin("clusters/aks-healthy/operate", {})
    # What a SIGKILL mid-save leaves: a half-written line and a half-written generation.
    with (tmp_path / "activity.jsonl").open("ab") as log:
        log.write(b'{"half": ')
    (tmp_path / "state.999.json.tmp").write_text("{")
    with Sandbox(state_dir=tmp_path) as again:
        assert len(again.state.activity_log) == entries + 2
        assert not list(tmp_path.glob("*.tmp")) and len(list(tmp_path.glob("state.*.json"))) == 1
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in tmp_path.iterdir() if p.name != "sandbox-ca.pem")


def test_a_sigkilled_serve_restarts_from_its_state_dir(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "sandbox", "serve", "--no-functions", "--state-dir", str(tmp_path)]

    def serve() -> tuple[subprocess.Popen[str], dict[str, Any]]:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return process, json.loads(process.stdout.readline())

    process, info = serve()
    try:
        identities = json.loads(Path(info["identitiesFile"]).read_text())
        http = requests.Session()
        http.verify, http.trust_env = info["ca"], False
        token = http.post(f"{info['login']}/{info['tenantId']}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": info["operatorClientId"],
            "client_secret": identities["operatorClientSecret"], "scope": "https://graph.microsoft.com/.default"})
        graph = {"Authorization": f"Bearer {token.json()['access_token']}"}
        state = http.get(f"{info['admin']}/_sandbox/state").json()
        app = next(a for a in state["applications"] if a["displayName"] == "aks-payments-sp")
        added = http.post(f"{info['graph']}/v1.0/applications/{app['objectId']}/addPassword", json={},
                          headers=graph).json()
        http.post(f"{info['admin']}/_sandbox/faults", json={"kind": "slow_operations", "seconds": 600})
        arm = {"Authorization": "Bearer " + http.post(f"{info['login']}/{info['tenantId']}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": info["operatorClientId"],
            "client_secret": identities["operatorClientSecret"],
            "scope": "https://management.azure.com/.default"}).json()["access_token"]}
        cluster = (f"{info['arm']}/subscriptions/{info['subscriptionId']}/resourceGroups/rg-payments/providers/"
                   "Microsoft.ContainerService/managedClusters/aks-payments")
        reset = http.post(f"{cluster}/resetServicePrincipalProfile", params={"api-version": AKS_API}, headers=arm,
                          json={"clientId": app["appId"], "secret": added["secretText"]})
        assert reset.status_code == 202
        process.kill()  # SIGKILL: no clean-up, no last save
        out, err = process.communicate(timeout=30)

        process, again = serve()
        assert again == info  # same ports, ids, CA file, identities file
        state = http.get(f"{info['admin']}/_sandbox/state").json()
        kept = next(a for a in state["applications"] if a["appId"] == app["appId"])
        assert added["keyId"] in {p["keyId"] for p in kept["passwords"]}
        # The tokens issued before the kill still work; the restarted sandbox kept them (as hashes).
        assert http.get(f"{info['graph']}/v1.0/applications", headers=graph).status_code == 200
        # The reset runs on by the sandbox clock, and its status URL still answers.
        status_url = reset.headers["Azure-AsyncOperation"]
        assert http.get(status_url, headers=arm).json()["status"] == "InProgress"
        http.post(f"{info['admin']}/_sandbox/clock", json={"advanceSeconds": 601})
        assert http.get(status_url, headers=arm).json()["status"] == "Succeeded"
        assert stat.S_IMODE(os.stat(info["identitiesFile"]).st_mode) == 0o600
        process.send_signal(signal.SIGTERM)
        out2, err2 = process.communicate(timeout=30)
        assert added["secretText"] not in out + err + out2 + err2
        assert identities["operatorClientSecret"] not in out + err + out2 + err2
    finally:
        process.kill()

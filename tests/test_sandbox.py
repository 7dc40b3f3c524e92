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
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
# Copies of the official request/response examples, each with a .source.txt naming where it came from.
SAMPLES = Path(__file__).resolve().parent / "reference"
AKS_API = "2024-09-01"


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(scenario="expired-secret") as running:
        yield running


class Wire:
    """Raw HTTPS calls against one sandbox, signed in as one of its identities."""

    def __init__(self, sandbox: Sandbox, identity=None) -> None:
        self.sandbox = sandbox
        self.identity = identity or sandbox.operator
        self.http = requests.Session()
        self.http.verify = sandbox.ca_path
        self.http.trust_env = False  # else REQUESTS_CA_BUNDLE, where set, replaces the sandbox's CA
        self._tokens: dict[str, str] = {}

    def token_response(self, client_id: str, secret: str, scope: str = "https://management.azure.com/.default"):
        return self.http.post(f"{self.sandbox.endpoints['login']}/{self.sandbox.tenant_id}/oauth2/v2.0/token",
                              data={"grant_type": "client_credentials", "client_id": client_id,
                                    "client_secret": secret, "scope": scope})

    def auth(self, resource: str) -> dict[str, str]:
        if resource not in self._tokens:
            response = self.token_response(self.identity.client_id, self.identity.client_secret,
                                           f"{resource}/.default")
            assert response.status_code == 200, response.text
            self._tokens[resource] = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._tokens[resource]}"}

    def arm(self, method: str, path: str, *, api_version: str | None = AKS_API, **kwargs: Any) -> requests.Response:
        params = kwargs.pop("params", {})
        if api_version:
            params["api-version"] = api_version
        url = path if path.startswith("https://") else f"{self.sandbox.endpoints['arm']}{path}"
        return self.http.request(method, url, params=params, headers=self.auth("https://management.azure.com"),
                                 **kwargs)

    def graph(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, f"{self.sandbox.endpoints['graph']}/v1.0{path}",
                                 headers=self.auth("https://graph.microsoft.com"), **kwargs)

    def admin(self, path: str, body: Any) -> requests.Response:
        return self.http.post(f"{self.sandbox.endpoints['admin']}/_sandbox/{path}", json=body)

    def cluster_path(self, name: str = "aks-payments", group: str = "rg-payments") -> str:
        return (f"/subscriptions/{self.sandbox.subscription_id}/resourceGroups/{group}/providers/"
                "Microsoft.ContainerService/managedClusters/" + name)


@pytest.fixture
def wire(sandbox: Sandbox) -> Wire:
    return Wire(sandbox)


def app_of(sandbox: Sandbox, cluster: str = "aks-payments") -> dict[str, Any]:
    state = sandbox.snapshot()
    client_id = next(c["clientId"] for c in state["clusters"] if c["name"] == cluster)
    return next(a for a in state["applications"] if a["appId"] == client_id)


def recent(sandbox: Sandbox) -> str:
    """An Activity Log time filter for the last and the next hour."""
    now = sandbox.state.now()
    since, until = (now - timedelta(hours=1)), (now + timedelta(hours=1))
    return (f"eventTimestamp ge '{since.isoformat().replace('+00:00', 'Z')}' and "
            f"eventTimestamp le '{until.isoformat().replace('+00:00', 'Z')}'")


def assert_arm_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


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
                             "Microsoft.ContainerService/managedClusters").json()["value"]
    in_group = wire.arm("GET", wire.cluster_path("").rstrip("/")).json()["value"]
    assert {c["name"] for c in listed} == {"aks-payments", "aks-msi", "aks-healthy"}
    assert {c["name"] for c in in_group} == {"aks-payments", "aks-msi"}


def test_arm_refuses_like_arm(wire: Wire, sandbox: Sandbox) -> None:
    assert_arm_error(wire.arm("GET", wire.cluster_path(), api_version=None), 400, "MissingApiVersionParameter")
    assert_arm_error(wire.arm("GET", wire.cluster_path("aks-nope")), 404, "ResourceNotFound")
    assert_arm_error(wire.arm("GET", wire.cluster_path("aks-nope", "rg-nope")), 404, "ResourceGroupNotFound")
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
    assert_arm_error(wire.arm("POST", wire.cluster_path() + "/resetServicePrincipalProfile",
                              json={"clientId": app["appId"], "secret": "x"}), 409, "OperationNotAllowed")
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
    # Only the documented filter patterns are accepted.
    assert_arm_error(wire.arm("GET", values, api_version="2015-04-01"), 400, "BadRequest")
    assert_arm_error(wire.arm("GET", values, api_version="2015-04-01",
                              params={"$filter": f"{window} and status eq 'Failed'"}), 400, "BadRequest")
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


def test_owned_by_sees_and_changes_only_owned_applications(sandbox: Sandbox) -> None:
    remediator = Wire(sandbox, sandbox.remediator)
    visible = {a["appId"] for a in remediator.graph("GET", "/applications").json()["value"]}
    owned = {app_of(sandbox)["appId"], app_of(sandbox, "aks-healthy")["appId"]}
    assert visible == owned  # not its own app, not the operator's
    operator_app = next(a for a in sandbox.snapshot()["applications"] if a["appId"] == sandbox.operator.client_id)
    response = remediator.graph("POST", f"/applications/{operator_app['objectId']}/addPassword", json={})
    assert response.status_code == 404 and response.json()["error"]["code"] == "Request_ResourceNotFound"
    unsupported = remediator.graph("GET", "/applications", params={"$filter": "startswith(displayName,'a')"})
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

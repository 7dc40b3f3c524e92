"""Only the right people can call the HTTP API: an Entra token for the remediator's API, signed by
the tenant, within its lifetime, with the route's app role. Tokens come from the sandbox's token
endpoint (the real azure-identity client) or, for tokens Entra ID would never issue, from its admin API.

Every refusal is a JSON error with its code, and nothing is written: no record, no queue message,
no call to Azure.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import azure.functions as func
import jwt
import pytest
import requests
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient
from cryptography.hazmat.primitives.asymmetric import rsa

import function_app
from remediation.adapters.entra_tokens import (
    KEY_REFRESH_SECONDS,
    KEY_RETRY_SECONDS,
    KEY_SET_KEPT_SECONDS,
    UNKNOWN_KEY_COOLDOWN_SECONDS,
    EntraTokenValidator,
    SigningKeys,
)
from remediation.app.settings import TABLE_NAME, WORK_QUEUE
from remediation.auth import READ_ROLE, ApiAuthenticator
from remediation.errors import RemediationError
from sandbox import Sandbox
from sandbox.azurite import Azurite
from sandbox.functions_host import functions_of, http_input
from sandbox.wiring import remediator_settings

FUNCTIONS = {f.get_function_name(): f for f in functions_of(function_app.app)}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(scenario="expired-secret") as running:
        yield running


@pytest.fixture
def table(sandbox: Sandbox, azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[TableClient]:
    for name, value in remediator_settings(sandbox, azurite.connection_string).items():
        monkeypatch.setenv(name, value)
    function_app.built_services.cache_clear()
    function_app.services()  # creates the table and queues; fetches nothing from Entra ID yet
    QueueClient.from_connection_string(azurite.connection_string, WORK_QUEUE).clear_messages()
    table = TableClient.from_connection_string(azurite.connection_string, TABLE_NAME)
    for entity in table.query_entities("PartitionKey eq 'remediation'"):
        table.delete_entity(entity["PartitionKey"], entity["RowKey"])
    yield table
    function_app.built_services.cache_clear()


def mint(sandbox: Sandbox, **claims: object) -> str:
    """A token from the sandbox's admin API: the operator's by default, with claims changed."""
    response = requests.post(f"{sandbox.endpoints['admin']}/_sandbox/tokens", json=claims, verify=sandbox.ca_path)
    response.raise_for_status()
    return response.json()["accessToken"]


def cluster_id(sandbox: Sandbox) -> str:
    return (f"/subscriptions/{sandbox.subscription_id}/resourceGroups/rg-payments"
            "/providers/Microsoft.ContainerService/managedClusters/aks-payments")


def start(sandbox: Sandbox, authorization: str | None) -> func.HttpResponse:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return FUNCTIONS["start_remediation"].get_user_function()(http_input(
        "POST", "http://localhost:7071/api/remediations", headers=headers,
        body=json.dumps({"clusterResourceId": cluster_id(sandbox)}).encode()).decode())


def list_remediations(sandbox: Sandbox, authorization: str) -> func.HttpResponse:
    url = f"http://localhost:7071/api/remediations?clusterResourceId={quote(cluster_id(sandbox))}"
    return FUNCTIONS["list_remediations"].get_user_function()(http_input(
        "GET", url, headers={"Authorization": authorization}).decode())


def nothing_written(sandbox: Sandbox, azurite: Azurite, table: TableClient) -> bool:
    records = list(table.query_entities("PartitionKey eq 'remediation'"))
    messages = QueueClient.from_connection_string(azurite.connection_string, WORK_QUEUE).peek_messages()
    azure_calls = sum(n for api in sandbox.snapshot()["requests"].values() for n in api.values())
    return records == [] and list(messages) == [] and azure_calls == 0


def error_of(response: func.HttpResponse) -> dict[str, str]:
    body = json.loads(response.get_body())
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert response.mimetype == "application/json"
    return body["error"]


REFUSED_TOKENS = {
    "no header": (lambda sb: None, 401, "MissingToken"),
    "not bearer": (lambda sb: "Basic dXNlcjpwYXNz", 401, "InvalidToken"),
    "not a jwt": (lambda sb: "Bearer not.a.jwt", 401, "InvalidToken"),
    # A real token from the real token endpoint, but for Azure Resource Manager: a v1.0 token, as Entra issues for
    # ARM, so its issuer (https://sts.windows.net/{tid}/) is refused before its audience.
    "token for arm": (lambda sb: "Bearer " + sb.credential(sb.operator).get_token(
        f"{sb.endpoints['arm']}/.default").token, 401, "InvalidIssuer"),
    "wrong audience": (lambda sb: "Bearer " + mint(sb, audience="https://management.azure.com"), 401,
                       "InvalidAudience"),
    "wrong issuer": (lambda sb: "Bearer " + mint(sb, issuer="https://sts.example.com/evil/v2.0"), 401,
                     "InvalidIssuer"),
    "other tenant": (lambda sb: "Bearer " + mint(sb, tenantId="72f988bf-86f1-41af-91ab-2d7cd011db47"), 401,
                     "InvalidIssuer"),
    "expired": (lambda sb: "Bearer " + mint(sb, expiresInSeconds=-600), 401, "TokenExpired"),
    "foreign key": (lambda sb: "Bearer " + mint(sb, signingKey="foreign"), 401, "InvalidSignature"),
    "tampered": (lambda sb: "Bearer " + _tampered(sb.api_token()), 401, "InvalidSignature"),
    # Valid tokens without Remediations.Write: the auditor (Read only) and an app granted no role at all.
    "read role only": (lambda sb: "Bearer " + sb.api_token(sb.auditor), 403, "MissingRole"),
    "no role": (lambda sb: "Bearer " + sb.api_token(sb.remediator), 403, "MissingRole"),
}


def _tampered(token: str) -> str:
    """The same token with one claim changed and the signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["Remediations.Write", "Remediations.Read", "Admin"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize("case", list(REFUSED_TOKENS), ids=list(REFUSED_TOKENS))
def test_a_refused_caller_gets_a_json_error_and_nothing_is_written(
        case: str, sandbox: Sandbox, azurite: Azurite, table: TableClient) -> None:
    make, status, code = REFUSED_TOKENS[case]
    authorization = make(sandbox)
    sandbox.state.requests.clear()  # getting the token is not the app's doing
    response = start(sandbox, authorization)
    assert response.status_code == status
    error = error_of(response)
    assert error["code"] == code, error
    if status == 401:
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer")
        assert ("error=" in challenge) == (code != "MissingToken")  # RFC 6750: no error code without a token
    assert nothing_written(sandbox, azurite, table)


def test_a_writer_starts_a_remediation_and_is_recorded_as_its_requester(
        sandbox: Sandbox, azurite: Azurite, table: TableClient) -> None:
    response = start(sandbox, "Bearer " + sandbox.api_token(sandbox.operator))
    assert response.status_code == 202
    body = json.loads(response.get_body())
    operator = sandbox.state.applications[sandbox.operator.client_id]
    assert body["requestedBy"] == {"objectId": operator.sp_object_id, "appId": sandbox.operator.client_id}
    [record] = table.query_entities("PartitionKey eq 'remediation' and RowKey lt '~'")  # not the claim row
    assert json.loads(record["requested_by"])["objectId"] == operator.sp_object_id


def test_a_reader_may_read_but_not_start(sandbox: Sandbox, azurite: Azurite, table: TableClient) -> None:
    start(sandbox, "Bearer " + sandbox.api_token(sandbox.operator))
    as_auditor = "Bearer " + sandbox.api_token(sandbox.auditor)
    listed = list_remediations(sandbox, as_auditor)
    assert listed.status_code == 200 and len(json.loads(listed.get_body())["value"]) == 1
    assert start(sandbox, as_auditor).status_code == 403
    # The remediator's own identity was granted no role on its API: it may not even read.
    refused = list_remediations(sandbox, "Bearer " + sandbox.api_token(sandbox.remediator))
    assert refused.status_code == 403 and error_of(refused)["code"] == "MissingRole"


def test_unreachable_signing_keys_are_a_503_with_retry_after(
        sandbox: Sandbox, azurite: Azurite, table: TableClient) -> None:
    token = sandbox.api_token()
    # The keys are fetched on first use; make that fetch fail as an outage of Entra ID would.
    requests.post(f"{sandbox.endpoints['admin']}/_sandbox/faults", verify=sandbox.ca_path,
                  json={"api": "login", "kind": "error", "status": 503, "count": 1})
    sandbox.state.requests.clear()
    response = start(sandbox, f"Bearer {token}")
    assert response.status_code == 503
    assert error_of(response)["code"] == "Transient"
    assert int(response.headers["Retry-After"]) >= 1
    assert nothing_written(sandbox, azurite, table)
    # Once Entra ID answers again, the same token is accepted.
    assert start(sandbox, f"Bearer {token}").status_code == 202


# ----- the tenant's signing keys: one fetch at a time, the last good set kept through an outage -------------------

class Clock:
    """A monotonic clock the test moves (the key set's age); token lifetimes still use the real clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def validator(sandbox: Sandbox, clock: Clock | None = None, *, timeout: float = 10.0) -> ApiAuthenticator:
    keys = SigningKeys(f"{sandbox.endpoints['login']}/{sandbox.tenant_id}/discovery/v2.0/keys",
                       ca_bundle=sandbox.ca_path, timeout=timeout, clock=clock or time.monotonic)
    return ApiAuthenticator(EntraTokenValidator(authority_host=sandbox.endpoints["login"], tenant_id=sandbox.tenant_id,
                                                audiences=(sandbox.api_client_id,), keys=keys))


def fault(sandbox: Sandbox, **body: object) -> None:
    requests.post(f"{sandbox.endpoints['admin']}/_sandbox/faults", verify=sandbox.ca_path,
                  json={"api": "login", "route": "GET keys", **body}).raise_for_status()


def key_fetches(sandbox: Sandbox) -> int:
    return sandbox.snapshot()["keyFetches"]


def eventually(probe, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def outcome(auth: ApiAuthenticator, token: str) -> str:
    try:
        auth.authenticate(f"Bearer {token}", READ_ROLE)
    except RemediationError as err:
        return err.code
    return "accepted"


def test_concurrent_requests_while_the_key_endpoint_hangs_share_one_fetch(sandbox: Sandbox) -> None:
    auth, token = validator(sandbox, timeout=1.0), sandbox.api_token()
    fault(sandbox, kind="latency", seconds=2, count=100)  # every fetch outlasts the client's timeout
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: outcome(auth, token), range(8)))
    # The requests did not fetch (and time out) one after another: one fetch, whose failure all eight got as a 503.
    assert answers == ["Transient"] * 8 and key_fetches(sandbox) == 1
    requests.delete(f"{sandbox.endpoints['admin']}/_sandbox/faults", verify=sandbox.ca_path).raise_for_status()
    assert outcome(auth, token) == "accepted" and key_fetches(sandbox) == 2  # Entra ID answers again


def test_the_last_good_keys_serve_through_an_entra_outage_and_are_refreshed_off_the_request_path(
        sandbox: Sandbox) -> None:
    clock = Clock()
    auth, token = validator(sandbox, clock), sandbox.api_token()
    assert outcome(auth, token) == "accepted" and key_fetches(sandbox) == 1
    assert outcome(auth, token) == "accepted" and key_fetches(sandbox) == 1  # the set is kept

    fault(sandbox, kind="error", status=503, count=1000)  # Entra ID's key endpoint fails from now on
    clock.now += KEY_REFRESH_SECONDS + 1  # the set is due for a refresh
    assert outcome(auth, token) == "accepted"  # served from the last good set; the refresh runs in the background
    eventually(lambda: key_fetches(sandbox) == 2, "the background refresh")
    assert [outcome(auth, token) for _ in range(20)] == ["accepted"] * 20
    time.sleep(0.2)
    assert key_fetches(sandbox) == 2  # a failed refresh is tried again later, not by every request
    clock.now += KEY_RETRY_SECONDS + 1
    assert outcome(auth, token) == "accepted"
    eventually(lambda: key_fetches(sandbox) == 3, "the next refresh")

    clock.now += KEY_SET_KEPT_SECONDS  # a day without an answer: the old set is no longer trusted
    assert outcome(auth, token) == "Transient"


def test_a_key_entra_id_rotated_in_is_fetched_once_and_unknown_key_ids_cannot_force_fetches(
        sandbox: Sandbox) -> None:
    clock = Clock()
    auth = validator(sandbox, clock)
    assert outcome(auth, sandbox.api_token()) == "accepted" and key_fetches(sandbox) == 1
    with sandbox.state.lock:  # Entra ID rolls its signing key over
        sandbox.state.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sandbox.state.signing_key_id = uuid.uuid4().hex
    assert outcome(auth, sandbox.api_token()) == "accepted" and key_fetches(sandbox) == 2
    # Tokens naming key ids nobody publishes, as many as an attacker likes: at most one fetch per cooldown.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = [jwt.encode({"aud": sandbox.api_client_id}, stranger, algorithm="RS256", headers={"kid": uuid.uuid4().hex})
              for _ in range(10)]
    assert {outcome(auth, token) for token in forged} == {"InvalidSignature"}
    assert key_fetches(sandbox) == 2  # the rollover's fetch was this cooldown's one
    clock.now += UNKNOWN_KEY_COOLDOWN_SECONDS + 1
    assert [outcome(auth, token) for token in forged] == ["InvalidSignature"] * 10
    assert key_fetches(sandbox) == 3
    assert outcome(auth, sandbox.api_token()) == "accepted"  # the known key, as ever

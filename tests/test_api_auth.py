"""Only the right people can call the HTTP API: an Entra token for the remediator's API, signed by
the tenant, within its lifetime, with the route's app role. Tokens come from the sandbox's token
endpoint (the real azure-identity client) or, for tokens Entra ID would never issue, from its admin API.

Every refusal is a JSON error with its code, and nothing is written: no record, no queue message,
no call to Azure.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from urllib.parse import quote

import azure.functions as func
import pytest
import requests
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

import function_app
from remediation.settings import TABLE_NAME, WORK_QUEUE
from sandbox import Sandbox
from sandbox.azurite import Azurite
from sandbox.runner import functions_of, http_input
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
    function_app.services.cache_clear()
    function_app.services()  # creates the table and queues; fetches nothing from Entra ID yet
    QueueClient.from_connection_string(azurite.connection_string, WORK_QUEUE).clear_messages()
    table = TableClient.from_connection_string(azurite.connection_string, TABLE_NAME)
    for entity in table.query_entities("PartitionKey eq 'remediation'"):
        table.delete_entity(entity["PartitionKey"], entity["RowKey"])
    yield table
    function_app.services.cache_clear()


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
    # A real token from the real token endpoint, but for Azure Resource Manager.
    "wrong audience": (lambda sb: "Bearer " + sb.credential(sb.operator).get_token(
        f"{sb.endpoints['arm']}/.default").token, 401, "InvalidAudience"),
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

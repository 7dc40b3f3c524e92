"""The sandbox's fleet-wide reads behave like Azure's: Azure Resource Graph's query API on the ARM host and Microsoft
Graph's JSON batching, checked on the wire (through the real ResourceGraphClient where the SDK has one) against the
official examples in tests/reference/ (resourcegraph_*, graph_json_batching_v1.0, graph_throttling_429_v1.0)."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from sandbox import Identity, Sandbox
from sandbox.fleets import fleet
from sandbox.kql import COLUMNS
from sandbox.rbac import BUILT_IN_ROLES

SAMPLES = Path(__file__).resolve().parents[1] / "reference"
ARG_ROUTE = "POST Microsoft.ResourceGraph/resources"
CLUSTERS = ("Resources | where type =~ 'microsoft.containerservice/managedclusters' "
            "| project id, name, type, location, resourceGroup, subscriptionId, tags, "
            "clientId = properties.servicePrincipalProfile.clientId, provisioningState = properties.provisioningState, "
            "identityType = identity.type | order by id asc")
FLEET_CLUSTERS, FLEET_APPLICATIONS = 1100, 45


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


def assert_same_shape(reference: dict[str, Any], actual: dict[str, Any], *, optional: set[str] = frozenset()) -> None:
    """Every key of the reference is in `actual` (unless `optional`), with a value of the same JSON type."""
    missing = set(reference) - set(actual) - set(optional)
    assert not missing, f"missing {sorted(missing)} in {sorted(actual)}"
    for key in set(reference) & set(actual):
        assert type(actual[key]) is type(reference[key]), (key, actual[key], reference[key])


class Caller:
    """Raw HTTPS calls as one identity, with tokens from the sandbox's token endpoint."""

    def __init__(self, sandbox: Sandbox, identity: Identity) -> None:
        self.sandbox = sandbox
        self.credential = sandbox.credential(identity)
        self.http = requests.Session()
        self.http.verify = sandbox.ca_path
        self.http.trust_env = False  # else REQUESTS_CA_BUNDLE, where set, replaces the sandbox's CA

    def auth(self, resource: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential.get_token(f'{resource}/.default').token}"}

    def query(self, body: dict[str, Any], api_version: str = "2022-10-01") -> requests.Response:
        return self.http.post(f"{self.sandbox.endpoints['arm']}/providers/Microsoft.ResourceGraph/resources",
                              params={"api-version": api_version}, json=body,
                              headers=self.auth("https://management.azure.com"))

    def arm(self, method: str, path: str, api_version: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, f"{self.sandbox.endpoints['arm']}{path}", params={"api-version": api_version},
                                 headers=self.auth("https://management.azure.com"), **kwargs)

    def batch(self, body: Any) -> requests.Response:
        return self.http.post(f"{self.sandbox.endpoints['graph']}/v1.0/$batch", json=body,
                              headers=self.auth("https://graph.microsoft.com"))

    def graph(self, method: str, path: str) -> requests.Response:
        return self.http.request(method, f"{self.sandbox.endpoints['graph']}/v1.0{path}",
                                 headers=self.auth("https://graph.microsoft.com"))

    def admin(self, path: str, body: Any) -> requests.Response:
        return self.http.post(f"{self.sandbox.endpoints['admin']}/_sandbox/{path}", json=body)


def resource_graph(sandbox: Sandbox, identity: Identity) -> ResourceGraphClient:
    return ResourceGraphClient(sandbox.credential(identity), base_url=sandbox.endpoints["arm"],
                               connection_verify=sandbox.ca_path)


def fresh_quota(sandbox: Sandbox) -> None:
    """Start every caller's Resource Graph quota window anew (windows run on the sandbox clock)."""
    sandbox.state.advance(sandbox.state.resource_graph_window_seconds)


@pytest.fixture(scope="module")
def fleet_sandbox() -> Iterator[Sandbox]:
    with Sandbox(fleet=fleet(clusters=FLEET_CLUSTERS, subscriptions=3, applications=FLEET_APPLICATIONS)) as running:
        yield running


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(scenario="expired-secret") as running:
        yield running


def requests_counted(sandbox: Sandbox, api: str) -> dict[str, int]:
    return dict(sandbox.snapshot()["requests"].get(api, {}))


# ---------------------------------------------------------------- Azure Resource Graph


def test_resource_graph_pages_a_fleet_of_clusters_through_the_sdk(fleet_sandbox: Sandbox) -> None:
    fresh_quota(fleet_sandbox)
    client = resource_graph(fleet_sandbox, fleet_sandbox.remediator)
    pages, token = [], None
    while True:
        page = client.resources(QueryRequest(subscriptions=list(fleet_sandbox.subscription_ids), query=CLUSTERS,
                                             options=QueryRequestOptions(top=1000, skip_token=token,
                                                                         result_format="objectArray")))
        pages.append(page)
        token = page.skip_token
        if token is None:
            break
    assert [(p.total_records, p.count, p.result_truncated) for p in pages] == [
        (FLEET_CLUSTERS, 1000, "false"), (FLEET_CLUSTERS, FLEET_CLUSTERS - 1000, "false")]
    rows = [row for p in pages for row in p.data]
    ids = [row["id"] for row in rows]
    assert ids == sorted(ids) and len(set(ids)) == FLEET_CLUSTERS
    assert {i.lower() for i in ids} == {c["id"].lower() for c in fleet_sandbox.snapshot()["clusters"]}
    assert set(rows[0]) == {"id", "name", "type", "location", "resourceGroup", "subscriptionId", "tags", "clientId",
                            "provisioningState", "identityType"}
    assert {row["type"] for row in rows} == {"microsoft.containerservice/managedclusters"}  # ARG's lower case
    assert all(row["resourceGroup"] == row["resourceGroup"].lower() for row in rows)
    assert {row["identityType"] for row in rows if row["clientId"] == "msi"} == {"SystemAssigned"}
    assert {row["identityType"] for row in rows if row["clientId"] != "msi"} == {None}
    assert requests_counted(fleet_sandbox, "arm")[ARG_ROUTE] >= 2


def test_resource_graph_rows_are_the_clusters_arm_serves(fleet_sandbox: Sandbox) -> None:
    fresh_quota(fleet_sandbox)
    caller = Caller(fleet_sandbox, fleet_sandbox.remediator)
    every_column = {"subscriptions": list(fleet_sandbox.subscription_ids), "options": {"$top": 3},
                    "query": "Resources | where type =~ 'Microsoft.ContainerService/managedClusters'"}
    answer = caller.query(every_column)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    reference = sample("resourcegraph_ResourcesFirstPageQuery_2022-10-01.json")["responses"]["200"]["body"]
    assert_same_shape(reference, body)
    assert body["resultTruncated"] == "false" and body["count"] == 3 and body["totalRecords"] == FLEET_CLUSTERS
    row = body["data"][0]
    assert set(row) == set(COLUMNS)  # ARG's resources table, column by column
    arm = caller.arm("GET", row["id"], "2024-09-01").json()
    assert (row["id"], row["name"], row["type"], row["location"]) == (arm["id"], arm["name"], arm["type"].lower(),
                                                                      arm["location"])
    assert row["properties"] == arm["properties"] and row["tags"] == arm["tags"] and row["sku"] == arm["sku"]
    assert row["resourceGroup"] == row["id"].split("/")[4].lower() and row["subscriptionId"] == row["id"].split("/")[2]
    assert row["tenantId"] == fleet_sandbox.tenant_id
    # The next page, as the NextPageQuery example asks for it: the same query and scopes, and the token.
    following = caller.query({**every_column, "options": {"$skipToken": body["$skipToken"]}}).json()
    next_reference = sample("resourcegraph_ResourcesNextPageQuery_2022-10-01.json")["responses"]["200"]["body"]
    assert_same_shape(next_reference, following, optional={"$skipToken"})
    assert following["count"] == 3 and following["data"][0]["id"] > body["data"][-1]["id"]  # the token keeps $top


def test_resource_graph_shows_only_what_the_caller_may_read(fleet_sandbox: Sandbox) -> None:
    fresh_quota(fleet_sandbox)
    state = fleet_sandbox.state
    first, second, third = fleet_sandbox.subscription_ids
    reader_app = state.add_application(f"fleet-reader-{uuid.uuid4().hex[:6]}")
    _, secret = state.add_password(reader_app, "test", start=state.now() - timedelta(days=1))
    reader = Identity(reader_app.app_id, secret)
    operator = Caller(fleet_sandbox, fleet_sandbox.operator)
    assignment = operator.arm("PUT", f"/subscriptions/{second}/providers/Microsoft.Authorization/roleAssignments/"
                              f"{uuid.uuid4()}", "2022-04-01", json={"properties": {
                                  "roleDefinitionId": f"/subscriptions/{second}/providers/Microsoft.Authorization/"
                                                      f"roleDefinitions/{BUILT_IN_ROLES['Reader']}",
                                  "principalId": reader_app.sp_object_id, "principalType": "ServicePrincipal"}})
    assert assignment.status_code == 201, assignment.text

    as_reader = Caller(fleet_sandbox, reader)
    unknown = str(uuid.uuid4())
    seen = as_reader.query({"subscriptions": [first, second, third, unknown], "query": CLUSTERS}).json()
    in_second = [c for c in fleet_sandbox.snapshot()["clusters"] if c["subscriptionId"] == second]
    assert {row["subscriptionId"] for row in seen["data"]} == {second}
    assert seen["totalRecords"] == len(in_second) == len(seen["data"])
    # ARM agrees: the reader may GET a cluster of the second subscription, not one of the first.
    other = next(c for c in fleet_sandbox.snapshot()["clusters"] if c["subscriptionId"] == first)
    assert as_reader.arm("GET", seen["data"][0]["id"], "2024-09-01").status_code == 200
    denied = as_reader.arm("GET", other["id"], "2024-09-01")
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "AuthorizationFailed"
    # Subscriptions none of which the caller reaches: ARG's AccessDenied, for the reader and for an identity with no
    # ARM access at all (the auditor).
    for identity, subscriptions in ((reader, [first, third]), (fleet_sandbox.auditor, [second])):
        refused = Caller(fleet_sandbox, identity).query({"subscriptions": subscriptions, "query": CLUSTERS})
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "AccessDenied" and error["message"].startswith("Please provide below info")
        assert [d["code"] for d in error["details"]] == ["AccessDenied"]


def test_resource_graph_refuses_a_query_it_cannot_run_like_arg(sandbox: Sandbox) -> None:
    caller = Caller(sandbox, sandbox.remediator)
    reference = sample("resourcegraph_QueryError_400_azure-powershell.json")["response"]
    for query, token in (("Resources | where type =~ 'microsoft.containerservice/managedclusters' | limit 3", "limit"),
                         ("Resources | where type =~ 'x' | project id, secret = foo", "foo"),
                         ("Resources | where name contains 'aks'", "name"), ("where where", "where")):
        answer = caller.query({"subscriptions": [sandbox.subscription_id], "query": query})
        assert answer.status_code == reference["status"], answer.text
        assert set(reference["headers"]) <= {h.lower() for h in answer.headers}  # quota headers on refusals too
        body = answer.json()
        assert set(body) == set(reference["body"])
        assert_same_shape(reference["body"]["error"], body["error"])
        invalid, failure = body["error"]["details"]
        assert invalid == reference["body"]["error"]["details"][0]  # ARG's words, verbatim
        assert_same_shape(reference["body"]["error"]["details"][1], failure, optional={"expectedToken", "message"})
        assert failure["code"] == "ParserFailure" and failure["token"] == token and failure["line"] == 1
        assert query[failure["characterPositionInLine"]:].startswith(token)
    with pytest.raises(HttpResponseError) as raised:  # what the SDK makes of it
        resource_graph(sandbox, sandbox.remediator).resources(QueryRequest(
            subscriptions=[sandbox.subscription_id], query="Resources | take 1"))
    assert raised.value.status_code == 400 and raised.value.error.code == "BadRequest"
    assert [d.code for d in raised.value.error.details] == ["InvalidQuery", "ParserFailure"]


def test_resource_graph_refuses_a_skip_token_it_did_not_give_for_that_query(sandbox: Sandbox) -> None:
    caller = Caller(sandbox, sandbox.remediator)
    query = {"subscriptions": [sandbox.subscription_id], "query": CLUSTERS}
    first = caller.query({**query, "options": {"$top": 1}}).json()
    assert first["count"] == 1 and "$skipToken" in first
    reference = sample("resourcegraph_CouldNotDecodeSkipToken_400_field_report.json")["response"]
    for token in ("not-a-token", "eyAibm8iOiAibHVjayIsICJidXQiOiAibmljZSIsICJ0cnkiOiAiISIgfQ==", first["$skipToken"]):
        other_query = {**query, "query": CLUSTERS.replace("asc", "desc")} if token == first["$skipToken"] else query
        answer = caller.query({**other_query, "options": {"$skipToken": token}})
        assert answer.status_code == reference["status"], answer.text
        assert_same_shape(reference["body"]["error"], answer.json()["error"])
        assert answer.json()["error"]["details"] == reference["body"]["error"]["details"]
    rest = caller.query({**query, "options": {"$skipToken": first["$skipToken"]}}).json()
    assert rest["count"] == 1 and rest["data"][0]["id"] > first["data"][0]["id"]  # the token's own page size


def test_resource_graph_formats_orders_and_truncates_as_documented(sandbox: Sandbox) -> None:
    caller = Caller(sandbox, sandbox.remediator)
    scope = {"subscriptions": [sandbox.subscription_id]}
    table = caller.query({**scope, "query": CLUSTERS, "options": {"resultFormat": "table"}}).json()
    assert [c["name"] for c in table["data"]["columns"]][:3] == ["id", "name", "type"]
    assert {c["name"]: c["type"] for c in table["data"]["columns"]}["tags"] == "object"
    assert {c["name"]: c["type"] for c in table["data"]["columns"]}["clientId"] == "object"  # a dynamic path
    assert len(table["data"]["rows"]) == 3 and all(len(r) == 10 for r in table["data"]["rows"])
    ascending = [r["id"] for r in caller.query({**scope, "query": CLUSTERS}).json()["data"]]
    descending = caller.query({**scope, "query": CLUSTERS.replace(" asc", "")}).json()  # KQL's default: desc
    assert [r["id"] for r in descending["data"]] == ascending[::-1] == sorted(ascending, reverse=True)
    exact = "Resources | where type == 'Microsoft.ContainerService/managedClusters' | project id"
    assert caller.query({**scope, "query": exact}).json()["totalRecords"] == 0  # ARG stores type in lower case
    # Without the id column ARG cannot page: the rest is cut off, and there is no token.
    names = caller.query({**scope, "query": "Resources | where type =~ 'microsoft.containerservice/managedclusters' "
                          "| project name, properties.provisioningState", "options": {"$top": 2}}).json()
    assert (names["count"], names["totalRecords"], names["resultTruncated"]) == (2, 3, "true")
    assert "$skipToken" not in names and set(names["data"][0]) == {"name", "properties_provisioningState"}
    skipped = caller.query({**scope, "query": CLUSTERS, "options": {"$skip": 2}}).json()
    assert [r["id"] for r in skipped["data"]] == ascending[2:]
    tenant_wide = caller.query({"query": CLUSTERS}).json()  # no scope: every subscription the caller reaches
    assert tenant_wide["totalRecords"] == 3
    assert caller.query({**scope, "query": CLUSTERS}, api_version="2021-03-01").status_code == 200
    assert caller.query({**scope, "query": CLUSTERS}, api_version="2019-04-01").status_code == 400


def test_resource_graph_throttles_each_user_by_its_quota(sandbox: Sandbox) -> None:
    fresh_quota(sandbox)
    caller = Caller(sandbox, sandbox.remediator)
    body = {"subscriptions": [sandbox.subscription_id], "query": CLUSTERS}
    quota = sandbox.state.resource_graph_quota
    answers = [caller.query(body) for _ in range(quota)]
    assert [a.headers["x-ms-user-quota-remaining"] for a in answers] == [str(n) for n in range(quota - 1, -1, -1)]
    assert all(a.status_code == 200 for a in answers)
    assert answers[0].headers["x-ms-user-quota-resets-after"] == "00:00:05"
    throttled = caller.query(body)
    reference = sample("resourcegraph_RateLimiting_429_field_report.json")["response"]
    assert throttled.status_code == reference["status"] == 429
    assert throttled.headers["x-ms-user-quota-remaining"] == "0"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 5
    assert throttled.headers["x-ms-user-quota-resets-after"].startswith("00:00:0")
    assert_same_shape(reference["body"]["error"], throttled.json()["error"])
    assert throttled.json()["error"]["details"] == reference["body"]["error"]["details"]  # ARG's words
    other = Caller(sandbox, sandbox.operator).query(body)  # the quota is per user
    assert other.status_code == 200 and other.headers["x-ms-user-quota-remaining"] == str(quota - 1)
    sandbox.state.advance(int(throttled.headers["Retry-After"]))
    again = caller.query(body)
    assert again.status_code == 200 and again.headers["x-ms-user-quota-remaining"] == str(quota - 1)
    assert sandbox.snapshot()["responses"]["arm"][ARG_ROUTE] == {"200": quota + 2, "429": 1}


# ---------------------------------------------------------------- Microsoft Graph JSON batching


def app_reads(apps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": str(n), "method": "GET",
             "url": f"/applications(appId='{a['appId']}')?$select=id,appId,displayName,passwordCredentials"}
            for n, a in enumerate(apps, start=1)]


def test_a_batch_answers_each_request_as_its_direct_call_would(sandbox: Sandbox) -> None:
    caller = Caller(sandbox, sandbox.remediator)
    apps = sandbox.snapshot()["applications"]
    operator_app = next(a for a in apps if a["appId"] == sandbox.operator.client_id)
    missing = "00000000-0000-4000-8000-000000000000"
    steps = [*app_reads(apps), {"id": "missing", "method": "GET", "url": f"applications(appId='{missing}')"},
             {"id": "denied", "method": "POST", "url": f"/applications/{operator_app['objectId']}/addPassword",
              "headers": {"Content-Type": "application/json"}, "body": {}}]
    before = requests_counted(sandbox, "graph")
    answer = caller.batch({"requests": steps})
    assert answer.status_code == 200, answer.text
    reference = sample("graph_json_batching_v1.0.json")["response"]["body"]
    assert set(answer.json()) == set(reference)
    entries = {e["id"]: e for e in answer.json()["responses"]}
    assert set(entries) == {s["id"] for s in steps}
    assert [e["id"] for e in answer.json()["responses"]] != [s["id"] for s in steps]  # "might appear in a different
    for entry in entries.values():                                                     # order": match by id
        assert_same_shape(reference["responses"][0], entry, optional={"body"})
    for step, app in zip(steps, apps, strict=False):
        assert entries[step["id"]]["status"] == 200
        assert set(entries[step["id"]]["body"]) == {"id", "appId", "displayName", "passwordCredentials"}
        assert entries[step["id"]]["body"]["appId"] == app["appId"]
    direct = caller.graph("GET", f"/applications(appId='{missing}')")
    assert entries["missing"]["status"] == direct.status_code == 404
    assert entries["missing"]["body"]["error"]["code"] == direct.json()["error"]["code"] == "Request_ResourceNotFound"
    assert_same_shape(direct.json()["error"], entries["missing"]["body"]["error"])
    assert entries["denied"]["status"] == 403  # OwnedBy may not write an application it does not own
    assert entries["denied"]["body"]["error"]["code"] == "Authorization_RequestDenied"
    after = requests_counted(sandbox, "graph")
    assert after["POST /$batch"] - before.get("POST /$batch", 0) == 1
    assert after["GET /applications(appId=)"] - before.get("GET /applications(appId=)", 0) == len(apps) + 2
    assert after["POST /applications/{id}/addPassword"] == 1


def test_a_malformed_batch_fails_as_a_whole(sandbox: Sandbox) -> None:
    caller = Caller(sandbox, sandbox.remediator)
    app = sandbox.snapshot()["applications"][0]
    one = app_reads([app])[0]
    too_many = [{**one, "id": str(n)} for n in range(21)]
    for body, words in ((({"requests": too_many}), "Number of requests inside batch exceed the limit"),
                        ({"requests": [one, {**one, "id": one["id"].upper()}]}, "unique"),
                        ({"requests": [{**one, "id": "a"}, {**one, "id": "A"}]}, "unique"),
                        ({"requests": [{"id": "w", "method": "POST", "url": "/applications", "body": {}}]},
                         "Content-Type"),
                        ({"requests": [{**one, "dependsOn": ["later"]}, {**one, "id": "later"}]}, "depends"),
                        ({"requests": [{"id": "n", "method": "POST", "url": "/$batch", "body": {"requests": [one]},
                                        "headers": {"Content-Type": "application/json"}}]}, "do not nest"),
                        ({"requests": []}, "Invalid batch payload format"),
                        ({"value": [one]}, "Invalid batch payload format")):
        before = requests_counted(sandbox, "graph").get("GET /applications(appId=)", 0)
        answer = caller.batch(body)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == "BadRequest" and words in error["message"] and "innerError" in error
        assert requests_counted(sandbox, "graph").get("GET /applications(appId=)", 0) == before  # none ran
    assert len(too_many[:20]) == 20 and caller.batch({"requests": too_many[:20]}).status_code == 200


def test_a_throttled_request_in_a_batch_gets_its_own_429(sandbox: Sandbox) -> None:
    caller = Caller(sandbox, sandbox.remediator)
    fault = caller.admin("faults", {"api": "graph", "kind": "throttle", "route": "GET /applications(appId=)",
                                    "count": 2, "retryAfter": 7})
    assert fault.status_code in (200, 201), fault.text
    steps = app_reads(sandbox.snapshot()["applications"][:5])
    answer = caller.batch({"requests": steps})
    assert answer.status_code == 200  # the batch parsed; its requests answer for themselves
    statuses = sorted(e["status"] for e in answer.json()["responses"])
    assert statuses == [200, 200, 200, 429, 429]
    reference = sample("graph_throttling_429_v1.0.json")["response"]
    for entry in (e for e in answer.json()["responses"] if e["status"] == 429):
        assert entry["headers"]["Retry-After"] == "7"
        assert entry["body"]["error"]["code"] == reference["body"]["error"]["code"]
        assert entry["body"]["error"]["message"] == reference["body"]["error"]["message"]
        assert_same_shape(reference["body"]["error"]["innerError"], entry["body"]["error"]["innerError"])
    assert sandbox.snapshot()["responses"]["graph"]["GET /applications(appId=)"] == {"429": 2, "200": 3}
    # A request that depends on a throttled one is not run: 424 Failed Dependency.
    caller.admin("faults", {"api": "graph", "kind": "throttle", "route": "GET /applications(appId=)", "count": 1})
    chained = caller.batch({"requests": [steps[0], {**steps[1], "dependsOn": [steps[0]["id"]]}]}).json()
    assert sorted(e["status"] for e in chained["responses"]) == [424, 429]


def test_a_latency_fault_delays_a_batch_once(sandbox: Sandbox) -> None:
    caller = Caller(sandbox, sandbox.remediator)
    caller.auth("https://graph.microsoft.com")  # the token first: its request is not the one timed
    caller.admin("faults", {"api": "graph", "kind": "latency", "seconds": 0.4, "count": 10})
    steps = app_reads(sandbox.snapshot()["applications"][:6])
    answer = caller.batch({"requests": steps})
    assert answer.status_code == 200 and {e["status"] for e in answer.json()["responses"]} == {200}
    # Used once for the call, not once for each of its six requests (no timing asserted: the fault's count says it).
    assert [f["remaining"] for f in caller.http.get(f"{sandbox.endpoints['admin']}/_sandbox/faults").json()
            ["value"]] == [9]


def test_batching_a_fleet_takes_one_call_per_twenty_applications(fleet_sandbox: Sandbox) -> None:
    caller = Caller(fleet_sandbox, fleet_sandbox.remediator)
    apps = [a for a in fleet_sandbox.snapshot()["applications"] if a["displayName"].startswith("aks-fleet-sp-")]
    assert len(apps) == FLEET_APPLICATIONS
    before = requests_counted(fleet_sandbox, "graph")
    found = {}
    for start in range(0, len(apps), 20):
        answer = caller.batch({"requests": app_reads(apps[start:start + 20])})
        found.update({e["body"]["appId"]: e["body"] for e in answer.json()["responses"] if e["status"] == 200})
    assert set(found) == {a["appId"] for a in apps}
    after = requests_counted(fleet_sandbox, "graph")
    assert after["POST /$batch"] - before.get("POST /$batch", 0) == math.ceil(FLEET_APPLICATIONS / 20) == 3
    assert after["GET /applications(appId=)"] - before.get("GET /applications(appId=)", 0) == FLEET_APPLICATIONS

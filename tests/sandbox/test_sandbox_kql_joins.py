"""Resource Graph's `join` in the sandbox, on the wire through azure-mgmt-resourcegraph's ResourceGraphClient: the
documented pairing of `Resources` with `ResourceContainers` for resource group tags (query-language, and the
samples' `tolower` keys), the join kinds ARG supports, and its refusals in ARG's shape (UnsupportedJoinFlavor:
MicrosoftDocs/azure-docs#45495; ParserFailure: azure-powershell's ResourceGraphQueryTests.ps1)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from sandbox import Identity, Sandbox

CLUSTERS_WITH_GROUP_TAGS = """Resources
| where type =~ 'microsoft.containerservice/managedclusters'
| extend rg = tolower(resourceGroup)
| join kind={kind} (ResourceContainers | where type =~ 'microsoft.resources/subscriptions/resourcegroups'
    | project subscriptionId, rg = tolower(name), groupTags = tags) on subscriptionId, rg
| project id, name, resourceGroup, subscriptionId, tags, groupTags, properties"""
OTHER_SUBSCRIPTION = "0b1c2d3e-0000-4000-8000-00000000beef"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(scenario="expired-secret") as running:
        state = running.state
        state.add_resource_group("rg-payments", tags={"costCenter": "4711", "owner": "payments"})
        # A group of the same name in another subscription, with other tags: the join must key on the subscription.
        state.add_subscription(OTHER_SUBSCRIPTION, "other")
        state.add_resource_group("RG-Payments", subscription_id=OTHER_SUBSCRIPTION, tags={"costCenter": "0815"})
        state.add_cluster("RG-Payments", "aks-other", client_id="msi", secret=None, subscription_id=OTHER_SUBSCRIPTION)
        yield running


def client(sandbox: Sandbox, identity: Identity | None = None) -> ResourceGraphClient:
    return ResourceGraphClient(sandbox.credential(identity or sandbox.remediator), base_url=sandbox.endpoints["arm"],
                               connection_verify=sandbox.ca_path)


def query(sandbox: Sandbox, text: str, identity: Identity | None = None, **options: Any) -> Any:
    sandbox.state.advance(sandbox.state.resource_graph_window_seconds)  # a fresh quota window for every query
    return client(sandbox, identity).resources(QueryRequest(
        subscriptions=[sandbox.subscription_id, OTHER_SUBSCRIPTION], query=text,
        options=QueryRequestOptions(**options) if options else None))


def refused(sandbox: Sandbox, text: str) -> tuple[list[Any], dict[str, Any]]:
    """The details of ARG's 400 for `text`, as the SDK reads them, and the raw error body."""
    with pytest.raises(HttpResponseError) as raised:
        query(sandbox, text)
    assert raised.value.status_code == 400 and raised.value.error.code == "BadRequest"
    assert raised.value.error.message.startswith("Please provide below info when asking for support: timestamp = ")
    return raised.value.error.details, raised.value.response.json()["error"]


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in rows}


def test_leftouter_join_gives_each_cluster_its_groups_tags(sandbox: Sandbox) -> None:
    result = query(sandbox, CLUSTERS_WITH_GROUP_TAGS.format(kind="leftouter"))
    rows = by_name(result.data)
    assert set(rows) == {"aks-payments", "aks-msi", "aks-healthy", "aks-other"}
    assert result.total_records == 4 and result.result_truncated == "false"
    for name in ("aks-payments", "aks-msi"):
        assert rows[name]["groupTags"] == {"costCenter": "4711", "owner": "payments"}
    assert rows["aks-other"]["groupTags"] == {"costCenter": "0815"}  # its own subscription's group, not the other
    assert rows["aks-other"]["resourceGroup"] == "rg-payments"  # ARG's lower case; the key is tolower'd either way
    assert rows["aks-healthy"]["groupTags"] == {}  # the group has no tags: an empty bag, as ARM's GET shows them
    assert set(rows["aks-payments"]) == {"id", "name", "resourceGroup", "subscriptionId", "tags", "groupTags",
                                         "properties"}
    assert rows["aks-payments"]["properties"]["servicePrincipalProfile"]["clientId"] != "msi"
    assert [row["id"] for row in result.data] == sorted(row["id"] for row in result.data)  # ARG's paging order


def test_the_repair_query_filters_on_the_client_id_and_pages_with_the_id_column(sandbox: Sandbox) -> None:
    app_id = sandbox.state.cluster("rg-payments", "aks-payments").client_id
    text = CLUSTERS_WITH_GROUP_TAGS.format(kind="leftouter").replace(
        "managedclusters'\n", f"managedclusters' and properties.servicePrincipalProfile.clientId =~ "
                              f"'{app_id.upper()}'\n", 1)
    rows = query(sandbox, text).data
    assert [(r["name"], r["groupTags"]["owner"]) for r in rows] == [("aks-payments", "payments")]
    pages = [query(sandbox, CLUSTERS_WITH_GROUP_TAGS.format(kind="leftouter"), top=1)]
    while pages[-1].skip_token:  # a joined result pages like any other that carries the id column
        pages.append(query(sandbox, CLUSTERS_WITH_GROUP_TAGS.format(kind="leftouter"), skip_token=pages[-1].skip_token))
    assert [(p.count, p.total_records) for p in pages] == [(1, 4)] * 4
    whole = query(sandbox, CLUSTERS_WITH_GROUP_TAGS.format(kind="leftouter")).data
    assert [row for p in pages for row in p.data] == whole
    table = query(sandbox, CLUSTERS_WITH_GROUP_TAGS.format(kind="leftouter"), result_format="table").data
    assert {c["name"]: c["type"] for c in table["columns"]} == {
        "id": "string", "name": "string", "resourceGroup": "string", "subscriptionId": "string", "tags": "object",
        "groupTags": "object", "properties": "object"}


def test_inner_join_drops_clusters_whose_group_is_missing(sandbox: Sandbox) -> None:
    with sandbox.state.lock:
        del sandbox.state.resource_groups[f"{sandbox.subscription_id}/rg-platform".lower()]
    inner = by_name(query(sandbox, CLUSTERS_WITH_GROUP_TAGS.format(kind="inner")).data)
    assert set(inner) == {"aks-payments", "aks-msi", "aks-other"}
    outer = by_name(query(sandbox, CLUSTERS_WITH_GROUP_TAGS.format(kind="leftouter")).data)
    assert outer["aks-healthy"]["groupTags"] is None  # no group: null, where a group without tags gives {}


def test_left_right_keys_default_innerunique_and_fullouter_behave_as_kql(sandbox: Sandbox) -> None:
    explicit = CLUSTERS_WITH_GROUP_TAGS.format(kind="leftouter").replace(
        "on subscriptionId, rg", "on $left.subscriptionId == $right.subscriptionId and $left.rg == $right.rg")
    assert query(sandbox, explicit).data == query(sandbox, CLUSTERS_WITH_GROUP_TAGS.format(kind="leftouter")).data
    # KQL's default kind, innerunique, keeps one left row per key (MicrosoftDocs/azure-docs#55955): one cluster per
    # subscription here, paired with every group of it. The right side's key column comes back renamed, as KQL does.
    unique = ("Resources | where type =~ 'microsoft.containerservice/managedclusters' "
              "| join (ResourceContainers | where type =~ 'microsoft.resources/subscriptions/resourcegroups' "
              "| project subscriptionId, groupName = name) on subscriptionId "
              "| project id, subscriptionId, subscriptionId1, groupName")
    rows = query(sandbox, unique).data
    assert len({r["id"] for r in rows}) == 2 and all(r["subscriptionId"] == r["subscriptionId1"] for r in rows)
    assert sorted(r["groupName"] for r in rows if r["subscriptionId"] == OTHER_SUBSCRIPTION) == [
        "MC_RG-Payments_aks-other_westeurope", "RG-Payments"]
    # Rows are what the caller may read: the remediator's role has resourceGroups/read, not subscriptions/read.
    subscriptions = "ResourceContainers | where type =~ 'microsoft.resources/subscriptions' | project id, name"
    assert query(sandbox, subscriptions).total_records == 0
    assert sorted(r["name"] for r in query(sandbox, subscriptions, sandbox.operator).data) == sorted(
        ["other", sandbox.state.subscriptions[sandbox.subscription_id.lower()].display_name])  # `name`: display name
    # fullouter: groups without a cluster come back too, with the left side's columns null.
    full = query(sandbox, CLUSTERS_WITH_GROUP_TAGS.format(kind="fullouter").replace(
        "| project id,", "| project rg1, id,")).data
    groups_only = [r for r in full if r["id"] is None]
    assert {r["rg1"] for r in groups_only} >= {"mc_rg-payments_aks-payments_westeurope"}
    assert len(full) - len(groups_only) == 4


def test_unsupported_join_kinds_and_forms_get_args_errors(sandbox: Sandbox) -> None:
    for kind, flavor in (("leftsemi", "LeftSemi"), ("leftanti", "LeftAnti"), ("rightouter", "RightOuter")):
        details, _ = refused(sandbox, CLUSTERS_WITH_GROUP_TAGS.format(kind=kind))
        assert [(d.code, d.message) for d in details] == [
            ("InvalidQuery", "Query is invalid. Please refer to the documentation for the Azure Resource Graph "
                             "service and fix the error before retrying."),
            ("UnsupportedJoinFlavor", f'The join kind "{flavor}" is not supported or not allowed.')]
    join = (" | join kind=leftouter (ResourceContainers | where type =~ 'microsoft.resources/subscriptions' "
            "| project subscriptionId, n{i} = name) on subscriptionId")
    base = "Resources | where type =~ 'microsoft.containerservice/managedclusters'"
    assert query(sandbox, base + "".join(join.format(i=i) for i in range(3))).total_records == 4  # three: allowed
    four = base + "".join(join.format(i=i) for i in range(4))
    for text, token in ((four, "join"),  # query-language: at most 3 joins a query
                        (CLUSTERS_WITH_GROUP_TAGS.format(kind="leftouter").replace("on subscriptionId, rg",
                                                                                   "on subscriptionId, name"), "name"),
                        (base + " | join kind=inner hint.strategy=broadcast (Resources) on id", "hint"),
                        (base + " | join ResourceContainers on subscriptionId", "ResourceContainers"),
                        (base + " | join kind=sideways (ResourceContainers) on id", "sideways"),
                        (base + " | extend tolower(name)", "(")):
        details, body = refused(sandbox, text)
        assert [d.code for d in details] == ["InvalidQuery", "ParserFailure"], text
        failure = body["details"][1]
        assert failure["token"] == token, (text, failure)
        offset = sum(len(line) + 1 for line in text.split("\n")[:failure["line"] - 1])
        assert text[offset + failure["characterPositionInLine"]:].startswith(token)
    fourth = refused(sandbox, four)[1]["details"][1]
    assert fourth["characterPositionInLine"] == four.rfind("| join") + 2  # the fourth join is refused

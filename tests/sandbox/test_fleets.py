"""Fleets in the sandbox: many subscriptions, tagged resource groups, clusters sharing applications, built by the
generator, a scenario file or the admin API, and served to the real SDK clients as ARM serves them (pages with
nextLink, resource groups with tags, 404 SubscriptionNotFound)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox import Sandbox
from sandbox.fleets import OPT_OUT_TAG, ScenarioError, build_fleet, fleet, opted_out_by
from sandbox.state import REMEDIATOR_ARM_ACTIONS
from tests.support.wire import ROOT, Wire, assert_arm_error, recent

CLUSTERS = "providers/Microsoft.ContainerService/managedClusters"


def aks(sandbox: Sandbox, subscription_id: str) -> ContainerServiceClient:
    return ContainerServiceClient(sandbox.credential(sandbox.remediator), subscription_id,
                                  base_url=sandbox.endpoints["arm"], connection_verify=sandbox.ca_path)


def resources(sandbox: Sandbox, subscription_id: str | None = None) -> ResourceManagementClient:
    return ResourceManagementClient(sandbox.credential(sandbox.remediator), subscription_id or sandbox.subscription_id,
                                    base_url=sandbox.endpoints["arm"], connection_verify=sandbox.ca_path,
                                    credential_scopes=["https://management.azure.com/.default"])


def admin(wire: Wire, path: str, body: Any, params: dict[str, str] | None = None) -> requests.Response:
    return wire.http.post(f"{wire.sandbox.endpoints['admin']}/_sandbox/{path}", json=body, params=params)


# ---------------------------------------------------------------- the generator


def test_a_generated_fleet_has_the_promised_shape() -> None:
    document = fleet()  # = the fleet-50 scenario
    assert document == fleet() and document != fleet(seed=8)  # the same for the same seed
    state, identities = build_fleet(document)
    snapshot = state.snapshot()
    clusters, groups = snapshot["clusters"], {g["id"].lower(): g for g in snapshot["resourceGroups"]}
    subscriptions = [s["subscriptionId"] for s in snapshot["subscriptions"]]
    assert len(clusters) == 50 and len(subscriptions) == 3 and subscriptions[0] == state.subscription_id
    assert set(Counter(c["subscriptionId"] for c in clusters).values()) <= {16, 17}
    fleet_apps = {a["appId"]: a for a in snapshot["applications"] if a["displayName"].startswith("aks-fleet-sp-")}
    assert len(fleet_apps) == 10
    assert all(state.applications[app_id].owners == {identities.remediator.client_id} for app_id in fleet_apps)
    assert not any(p["validNow"] for a in fleet_apps.values() for p in a["passwords"])  # all expired

    managed = [c for c in clusters if c["clientId"] == "msi"]
    service_principal = [c for c in clusters if c["clientId"] != "msi"]
    assert len(managed) == 5 and {c["clientId"] for c in service_principal} == set(fleet_apps)
    # The clusters of one application hold its one (expired) password.
    held = defaultdict(set)
    for c in service_principal:
        held[c["clientId"]].add(c["heldKeyId"])
    assert all(keys == {fleet_apps[app]["passwords"][0]["keyId"]} for app, keys in held.items())
    assert not any(c["secretValidNow"] for c in service_principal)

    def group_of(cluster: dict[str, Any]) -> dict[str, Any]:
        return groups[cluster["id"].lower().split("/providers/")[0]]

    by_tag = [c for c in clusters if opted_out_by(c["tags"])]
    by_group = [c for c in clusters if opted_out_by(group_of(c)["tags"])]
    assert len(by_tag) == 3 and all(c["clientId"] != "msi" for c in by_tag)
    assert len([g for g in groups.values() if opted_out_by(g["tags"])]) == 1 and by_group
    assert not {c["id"] for c in by_tag} & {c["id"] for c in by_group}
    assert all(c["tags"]["team"] == group_of(c)["tags"]["team"] for c in clusters)


@pytest.mark.parametrize("arguments", [{"managed_identity": 51}, {"expired": 1.5}, {"applications": 0},
                                       {"opted_out_groups": 10}, {"subscriptions": 0},
                                       {"clusters": 5, "opted_out_clusters": 5}])
def test_the_generator_refuses_a_fleet_it_cannot_make(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        fleet(**arguments)


# ---------------------------------------------------------------- ARM over a fleet, with the real SDKs


@pytest.fixture(scope="module")
def big() -> Iterator[Sandbox]:
    """60 clusters in one subscription: more than ARM's default page of 50."""
    with Sandbox(fleet=fleet(clusters=60, subscriptions=1, applications=4, managed_identity=2, seed=3)) as running:
        yield running


def test_arm_pages_the_cluster_lists_and_the_sdk_follows_next_link(big: Sandbox) -> None:
    wire = Wire(big, big.remediator)
    first = wire.arm("GET", f"/subscriptions/{big.subscription_id}/{CLUSTERS}").json()
    assert len(first["value"]) == 50 and parse_qs(urlsplit(first["nextLink"]).query)["$skipToken"] == ["50"]
    assert first["nextLink"].startswith(f"{big.endpoints['arm']}/subscriptions/{big.subscription_id}/")
    second = wire.arm("GET", first["nextLink"], api_version=None).json()
    assert len(second["value"]) == 10 and "nextLink" not in second
    listed = list(aks(big, big.subscription_id).managed_clusters.list())
    assert sorted(c.name for c in listed) == sorted(c["name"] for c in big.snapshot()["clusters"])
    assert all(c.tags and c.tags["team"] for c in listed)
    group = big.snapshot()["resourceGroups"][0]["name"]
    pages_before = big.snapshot()["requests"]["arm"].get("GET resourceGroups/{rg}/managedClusters", 0)
    big.state.cluster_page_size = 7
    try:
        in_group = list(aks(big, big.subscription_id).managed_clusters.list_by_resource_group(group))
    finally:
        big.state.cluster_page_size = 50
    assert len(in_group) == 20 and {c.id.split("/")[4] for c in in_group} == {group}
    pages = big.snapshot()["requests"]["arm"]["GET resourceGroups/{rg}/managedClusters"] - pages_before
    assert pages == 3  # 7 + 7 + 6


def test_resource_groups_read_like_arm_with_their_tags(big: Sandbox) -> None:
    group = next(g for g in big.snapshot()["resourceGroups"] if opted_out_by(g["tags"]))
    found = resources(big).resource_groups.get(group["name"])
    assert (found.id, found.name, found.type, found.location) == (
        group["id"], group["name"], "Microsoft.Resources/resourceGroups", "westeurope")
    assert found.tags == group["tags"] and found.tags["aks-sp-remediator"] == "off"
    assert found.properties.provisioning_state == "Succeeded"
    raw = Wire(big, big.remediator).arm("GET", f"/subscriptions/{big.subscription_id}/resourcegroups/{group['name']}",
                                        api_version="2024-03-01")
    assert set(raw.json()) == {"id", "name", "type", "location", "tags", "properties"}
    with pytest.raises(ResourceNotFoundError) as missing:
        resources(big).resource_groups.get("rg-nope")
    assert missing.value.error.code == "ResourceGroupNotFound"
    assert missing.value.error.message == "Resource group 'rg-nope' could not be found."


def test_an_unknown_subscription_is_not_found(big: Sandbox) -> None:
    nobody = str(uuid.uuid4())
    wire = Wire(big)
    for path in (f"/subscriptions/{nobody}/{CLUSTERS}", f"/subscriptions/{nobody}/resourcegroups/rg-payments-01",
                 f"/subscriptions/{nobody}/resourceGroups/rg-payments-01/{CLUSTERS}/aks-payments-001"):
        assert_arm_error(wire.arm("GET", path), 404, "SubscriptionNotFound")
    with pytest.raises(ResourceNotFoundError, match="SubscriptionNotFound"):
        list(aks(big, nobody).managed_clusters.list())
    assert_arm_error(wire.arm("GET", f"/subscriptions/{big.subscription_id}/resourceGroups/rg-nope/{CLUSTERS}"),
                     404, "ResourceGroupNotFound")


def test_the_remediator_may_read_groups_but_writes_nothing(big: Sandbox) -> None:
    assert "Microsoft.Resources/subscriptions/resourceGroups/read" in REMEDIATOR_ARM_ACTIONS
    remediator = Wire(big, big.remediator)
    target = next(c for c in big.snapshot()["clusters"] if c["clientId"] != "msi")
    group = target["id"].split("/providers/")[0]
    assert remediator.arm("GET", group, api_version="2024-03-01").status_code == 200
    body = remediator.arm("GET", target["id"]).json()
    assert_arm_error(remediator.arm("PUT", target["id"], json=body), 403, "AuthorizationFailed")
    managed = next(c for c in big.snapshot()["clusters"] if c["clientId"] == "msi")
    refused = remediator.arm("POST", managed["id"] + "/resetServicePrincipalProfile",
                             json={"clientId": "msi", "secret": "s"})
    assert_arm_error(refused, 400, "BadRequest")
    # Refused writes still reached the clusters: they are counted, per cluster.
    writes = {c["name"]: c["writes"] for c in big.snapshot()["clusters"]}
    assert writes[target["name"]] == {"reset": 0, "put": 1} and writes[managed["name"]] == {"reset": 1, "put": 0}
    assert sum(w["reset"] + w["put"] for w in writes.values()) == 2


# ---------------------------------------------------------------- many subscriptions


def test_clusters_operations_and_the_activity_log_belong_to_their_subscription() -> None:
    document = fleet(clusters=2, subscriptions=2, applications=1, managed_identity=0, opted_out_clusters=0,
                     opted_out_groups=0, groups_per_subscription=1, seed=1)
    # The same cluster name in both subscriptions.
    document["clusters"][1]["name"] = document["clusters"][0]["name"]
    document["resourceGroups"][1]["name"] = document["resourceGroups"][0]["name"]
    for cluster in document["clusters"]:
        cluster["resourceGroup"] = document["resourceGroups"][0]["name"]
    with Sandbox(fleet=document) as sandbox:
        wire = Wire(sandbox)
        first, second = sandbox.snapshot()["clusters"]
        name, group = first["name"], first["resourceGroup"]
        assert first["subscriptionId"] != second["subscriptionId"] and second["name"] == name
        ambiguous = admin(wire, f"clusters/{name}/operate", {})
        assert ambiguous.status_code == 409 and ambiguous.json()["error"]["code"] == "AmbiguousCluster"
        by_query = admin(wire, f"clusters/{name}/operate", {}, {"subscriptionId": second["subscriptionId"],
                                                               "resourceGroup": group}).json()
        by_id = admin(wire, f"{first['id'].lstrip('/')}/operate", {}).json()
        assert by_query["succeeded"] is False and by_id["succeeded"] is False  # the expired password
        missing = admin(wire, f"clusters/{name}/operate", {}, {"resourceGroup": "rg-elsewhere"})
        assert missing.status_code == 404

        def log_of(subscription: str) -> list[dict[str, Any]]:
            window = f"{recent(sandbox)} and correlationId eq '{by_query['correlationId']}'"
            return wire.arm("GET", f"/subscriptions/{subscription}/providers/microsoft.insights/eventtypes/"
                            "management/values", api_version="2015-04-01", params={"$filter": window}).json()["value"]
        [end, _] = log_of(second["subscriptionId"])
        assert end["subscriptionId"] == second["subscriptionId"] and end["resourceId"].lower() == second["id"].lower()
        assert log_of(first["subscriptionId"]) == []

        # A reset in the second subscription: its operation answers there, and only there.
        started = wire.arm("POST", second["id"] + "/resetServicePrincipalProfile",
                           json={"clientId": second["clientId"], "secret": "x"})
        status_url = started.headers["Azure-AsyncOperation"]
        assert f"/subscriptions/{second['subscriptionId']}/" in status_url
        assert wire.arm("GET", status_url, api_version=None).status_code == 200
        elsewhere = status_url.replace(second["subscriptionId"], first["subscriptionId"])
        assert_arm_error(wire.arm("GET", elsewhere, api_version=None), 404, "NotFound")
        writes = {c["subscriptionId"]: c["writes"] for c in sandbox.snapshot()["clusters"]}
        assert writes == {second["subscriptionId"]: {"reset": 1, "put": 0},
                          first["subscriptionId"]: {"reset": 0, "put": 0}}


# ---------------------------------------------------------------- the admin API


@pytest.fixture(scope="module")
def running() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


def test_the_admin_api_builds_a_fleet_piece_by_piece_and_answers_no_secret(running: Sandbox) -> None:
    wire = Wire(running)
    subscription = admin(wire, "subscriptions", {"displayName": "team-b"})
    assert subscription.status_code == 201
    sub = subscription.json()["subscriptionId"]
    group = admin(wire, "resourcegroups", {"subscriptionId": sub, "name": "rg-team-b", "tags": {"env": "prod"}})
    assert group.status_code == 201 and group.json()["tags"] == {"env": "prod"}
    retagged = admin(wire, "resourcegroups", {"subscriptionId": sub, "name": "rg-team-b", "tags": OPT_OUT_TAG})
    assert retagged.status_code == 200 and retagged.json()["tags"] == OPT_OUT_TAG  # create or update, as ARM
    app = admin(wire, "applications", {"displayName": "aks-team-b-sp", "passwords": [
        {"startDaysAgo": 400, "endInDays": -3}, {"displayName": "newer", "endInDays": 20}]})
    assert app.status_code == 201
    created = app.json()
    assert set(created) == {"appId", "objectId", "displayName", "passwords"}
    assert all(set(p) == {"keyId", "hint", "endDateTime"} for p in created["passwords"])
    old, newer = created["passwords"]
    holding_old = admin(wire, "clusters", {"subscriptionId": sub, "resourceGroup": "rg-team-b", "name": "aks-b-1",
                                           "applicationAppId": created["appId"], "holdsPassword": old["keyId"],
                                           "tags": {"team": "b"}})
    holding_newest = admin(wire, "clusters", {"subscriptionId": sub, "resourceGroup": "rg-team-b", "name": "aks-b-2",
                                              "applicationAppId": created["appId"]})
    managed = admin(wire, "clusters", {"resourceGroup": "rg-payments", "name": "aks-msi-2", "managedIdentity": True,
                                       "kubernetesVersion": "1.31.2"})
    assert (holding_old.status_code, holding_newest.status_code, managed.status_code) == (201, 201, 201)
    assert holding_old.json()["heldKeyId"] == old["keyId"] and holding_old.json()["secretValidNow"] is False
    assert holding_newest.json()["heldKeyId"] == newer["keyId"] and holding_newest.json()["secretValidNow"] is True
    assert managed.json()["subscriptionId"] == running.subscription_id and managed.json()["clientId"] == "msi"
    state = wire.http.get(f"{running.endpoints['admin']}/_sandbox/state").json()
    assert {"subscriptionId": sub, "displayName": "team-b"} in state["subscriptions"]
    assert next(g for g in state["resourceGroups"] if g["subscriptionId"] == sub)["tags"] == OPT_OUT_TAG
    listed = next(c for c in state["clusters"] if c["name"] == "aks-b-1")
    assert (listed["subscriptionId"], listed["resourceGroup"], listed["tags"]) == (sub, "rg-team-b", {"team": "b"})
    # The remediator owns it (OwnedBy), and ARM serves the new cluster in its subscription.
    owned = Wire(running, running.remediator).graph("GET", "/applications", params={
        "$filter": f"appId eq '{created['appId']}'"}).json()["value"]
    assert [a["displayName"] for a in owned] == ["aks-team-b-sp"]
    assert aks(running, sub).managed_clusters.get("rg-team-b", "aks-b-1").tags == {"team": "b"}
    answers = subscription.text + group.text + app.text + holding_old.text + holding_newest.text + json.dumps(state)
    assert running.state.secret_text_of_cluster("aks-b-1") not in answers
    assert running.state.secret_text_of_cluster("aks-b-2") not in answers


GUID = "6a1e8e5e-8a0c-4a8e-9c5e-1d2f3a4b5c6d"


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("subscriptions", [], 400, "InvalidJson"),  # as every admin route answers a body that is no object
    ("subscriptions", {"subscriptionId": "not-a-guid"}, 400, "InvalidRequest"),
    ("subscriptions", {"displayName": 7}, 400, "InvalidRequest"),
    ("subscriptions", {"id": GUID}, 400, "InvalidRequest"),  # a typo, not ignored
    ("resourcegroups", {}, 400, "InvalidRequest"),
    ("resourcegroups", {"name": "rg/slash"}, 400, "InvalidRequest"),
    ("resourcegroups", {"name": "rg-x", "tags": {"a": 1}}, 400, "InvalidRequest"),
    ("resourcegroups", {"name": "rg-x", "tags": ["a"]}, 400, "InvalidRequest"),
    ("resourcegroups", {"name": "rg-x", "location": "West Europe"}, 400, "InvalidRequest"),
    ("resourcegroups", {"name": "rg-x", "subscriptionId": GUID}, 404, "SubscriptionNotFound"),
    ("resourcegroups", {"name": "rg-payments", "location": "northeurope"}, 409, "InvalidResourceGroupLocation"),
    ("applications", {}, 400, "InvalidRequest"),
    ("applications", {"displayName": "a", "passwords": [{}]}, 400, "InvalidRequest"),
    ("applications", {"displayName": "a", "passwords": [{"endInDays": "soon"}]}, 400, "InvalidRequest"),
    ("applications", {"displayName": "a", "passwords": [{"startDaysAgo": 5, "endInDays": -6}]}, 400, "InvalidRequest"),
    ("applications", {"displayName": "a", "passwords": {"endInDays": 1}}, 400, "InvalidRequest"),
    ("applications", {"displayName": "a", "passwords": [{"endInDays": 1e308}]}, 400, "InvalidRequest"),
    ("applications", {"displayName": "a", "ownedByRemediator": "yes"}, 400, "InvalidRequest"),
    ("clusters", {"resourceGroup": "rg-payments"}, 400, "InvalidRequest"),
    ("clusters", {"resourceGroup": "rg-payments", "name": "aks-x"}, 400, "InvalidRequest"),  # no identity
    ("clusters", {"resourceGroup": "rg-payments", "name": "-bad-", "managedIdentity": True}, 400, "InvalidRequest"),
    ("clusters", {"resourceGroup": "rg-payments", "name": "aks-x", "managedIdentity": True,
                  "applicationAppId": GUID}, 400, "InvalidRequest"),
    ("clusters", {"resourceGroup": "rg-payments", "name": "aks-x", "managedIdentity": True,
                  "kubernetesVersion": "latest"}, 400, "InvalidRequest"),
    ("clusters", {"resourceGroup": "rg-payments", "name": "aks-x", "applicationAppId": GUID}, 404,
     "ApplicationNotFound"),
    ("clusters", {"resourceGroup": "rg-nope", "name": "aks-x", "managedIdentity": True}, 404, "ResourceGroupNotFound"),
    ("clusters", {"resourceGroup": "rg-payments", "name": "aks-msi", "managedIdentity": True}, 409, "ClusterExists"),
])
def test_the_admin_creation_routes_refuse_bad_input(running: Sandbox, path: str, body: Any, status: int,
                                                    code: str) -> None:
    refused = admin(Wire(running), path, body)
    assert refused.status_code == status and refused.json()["error"]["code"] == code, refused.text


ROUTE_FIELDS = {"subscriptions": ("subscriptionId", "displayName"),
                "resourcegroups": ("subscriptionId", "name", "location", "tags"),
                "applications": ("displayName", "ownedByRemediator", "passwords"),
                "clusters": ("subscriptionId", "resourceGroup", "name", "applicationAppId", "managedIdentity",
                             "holdsPassword", "tags", "kubernetesVersion")}
ODD_VALUES = (None, 0, -1.5, True, "", "x" * 600, [], [{}], {}, {"": ""})


def test_no_value_of_any_field_makes_an_admin_route_fail_with_5xx() -> None:
    with Sandbox() as sandbox:
        wire = Wire(sandbox)
        for path, fields in ROUTE_FIELDS.items():
            for field in fields:
                for value in ODD_VALUES:
                    answer = admin(wire, path, {field: value})
                    assert answer.status_code < 500, (path, field, value, answer.text)
                    assert answer.json().get("error", {}).get("code") or answer.status_code < 300


def test_a_cluster_holds_only_a_password_its_application_has(running: Sandbox) -> None:
    wire = Wire(running)
    bare = admin(wire, "applications", {"displayName": "no-password", "ownedByRemediator": False}).json()
    apps = {a["displayName"]: a for a in running.snapshot()["applications"]}
    for body in ({"applicationAppId": bare["appId"]},  # no password at all
                 {"applicationAppId": apps["aks-payments-sp"]["appId"],  # another application's password
                  "holdsPassword": apps["aks-healthy-sp"]["passwords"][0]["keyId"]}):
        refused = admin(wire, "clusters", {"resourceGroup": "rg-payments", "name": "aks-y", **body})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "InvalidRequest"
    # Not owned by the remediator: OwnedBy reads every application but writes only those it owns.
    remediator = Wire(running, running.remediator)
    found = remediator.graph("GET", "/applications", params={"$filter": f"appId eq '{bare['appId']}'"}).json()
    assert [a["appId"] for a in found["value"]] == [bare["appId"]]
    refused = remediator.graph("POST", f"/applications/{found['value'][0]['id']}/addPassword",
                               json={"passwordCredential": {"displayName": "x"}})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "Authorization_RequestDenied"


# ---------------------------------------------------------------- scenario files and restarts


def test_a_scenario_file_that_cannot_be_built_says_where(tmp_path: Path) -> None:
    document = fleet(clusters=3, subscriptions=1, applications=1, managed_identity=0, opted_out_clusters=0,
                     opted_out_groups=0, groups_per_subscription=1)
    document["clusters"][2]["application"] = "nobody"
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ScenarioError, match=r"clusters\[2\]: no application .* 'nobody'"):
        Sandbox(scenario_file=path)
    for broken, message in (({"clusters": {}}, "clusters must be a list"), ({"extra": 1}, "unknown field 'extra'"),
                            ({"resourceGroups": [{"name": "rg", "tags": {"a": 1}}]}, r"resourceGroups\[0\]: ")):
        with pytest.raises(ScenarioError, match=message):
            build_fleet(broken)
    with pytest.raises(ValueError, match="its own subscriptions"):
        Sandbox(fleet=document, subscription_id=str(uuid.uuid4()))


def test_serve_takes_a_scenario_file(tmp_path: Path) -> None:
    document = fleet(clusters=4, subscriptions=2, applications=2, managed_identity=1, opted_out_clusters=1,
                     opted_out_groups=0, groups_per_subscription=1)
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(document))
    process = subprocess.Popen([sys.executable, "-m", "sandbox", "serve", "--no-functions", "--scenario-file",
                                str(path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(process.stdout.readline())
        assert info["subscriptionId"] == document["subscriptions"][0]["subscriptionId"]
        state = requests.get(f"{info['admin']}/_sandbox/state", verify=info["ca"]).json()
        assert [s["subscriptionId"] for s in state["subscriptions"]] == [
            s["subscriptionId"] for s in document["subscriptions"]]
        assert [c["name"] for c in state["clusters"]] == [c["name"] for c in document["clusters"]]
    finally:
        process.terminate()
        process.communicate(timeout=30)
    path.write_text("{")
    refused = subprocess.run([sys.executable, "-m", "sandbox", "serve", "--no-functions", "--scenario-file",
                              str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "cannot read a JSON scenario" in refused.stderr


def test_a_fleet_survives_a_state_dir_restart(tmp_path: Path) -> None:
    document = fleet(clusters=8, subscriptions=2, applications=2, managed_identity=1, opted_out_clusters=1,
                     opted_out_groups=1, groups_per_subscription=2, seed=5)
    with Sandbox(fleet=document, state_dir=tmp_path) as first:
        wire = Wire(first)
        admin(wire, "resourcegroups", {"subscriptionId": document["subscriptions"][1]["subscriptionId"],
                                       "name": "rg-late", "tags": OPT_OUT_TAG})
        first.state.cluster_page_size = 3
        target = first.snapshot()["clusters"][-1]
        wire.arm("PUT", target["id"], json=wire.arm("GET", target["id"]).json())
        wire.admin("clock", {"advanceSeconds": 1})  # the write ends before the snapshot
        before = _world_of(first.snapshot())
    with Sandbox(state_dir=tmp_path) as second:
        assert _world_of(second.snapshot()) == before
        assert second.scenario == "fleet" and second.state.cluster_page_size == 3
        assert next(c for c in second.snapshot()["clusters"] if c["id"] == target["id"])["writes"]["put"] == 1
        # ARM serves the other subscription after the restart, too.
        other = document["subscriptions"][1]["subscriptionId"]
        assert resources(second, other).resource_groups.get("rg-late").tags == OPT_OUT_TAG
        assert len(list(aks(second, other).managed_clusters.list())) == 4


def _world_of(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {k: snapshot[k] for k in ("subscriptions", "resourceGroups", "clusters", "applications")}


def test_a_state_dir_of_the_first_format_still_loads(tmp_path: Path) -> None:
    """A directory written before fleets (one subscription, no resource groups): what it lacks is filled in."""
    with Sandbox(state_dir=tmp_path) as first:
        wire = Wire(first)
        wire.admin("faults", {"kind": "slow_operations", "seconds": 600})
        started = wire.arm("POST", wire.cluster_path() + "/resetServicePrincipalProfile",
                           json={"clientId": "x", "secret": "y"})
        ids = first.snapshot()["clusters"]
    [generation] = tmp_path.glob("state.*.json")
    saved = json.loads(generation.read_text())
    saved["format"] = 1
    for name in ("subscriptions", "resourceGroups", "clusterPageSize"):
        del saved[name]
    for cluster in saved["clusters"]:
        for name in ("subscriptionId", "tags", "writes"):
            del cluster[name]
    # Format 1 keyed an operation's cluster by resource group/name.
    operations = tmp_path / "operations.jsonl"
    lines = [json.loads(line) for line in operations.read_text().splitlines()]
    for line in lines:
        line["cluster"] = line["cluster"].split("/", 1)[1]
    operations.write_text("".join(json.dumps(line) + "\n" for line in lines))
    saved["logs"]["operations"] = operations.stat().st_size
    generation.write_text(json.dumps(saved))
    with Sandbox(state_dir=tmp_path) as second:
        assert [(c["id"], c["subscriptionId"], c["tags"]) for c in second.snapshot()["clusters"]] == [
            (c["id"], c["subscriptionId"], {}) for c in ids]
        assert {g["name"] for g in second.snapshot()["resourceGroups"]} == {"rg-payments", "rg-platform"}
        assert Wire(second).arm("GET", started.headers["Azure-AsyncOperation"], api_version=None).json()[
            "status"] == "InProgress"

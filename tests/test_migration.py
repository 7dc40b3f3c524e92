"""The plan to move a service-principal cluster to managed identity (remediation/decide/migration.py): over stateful
fakes (the RoleAssignments fake, a cluster as ARM returns it), then against the sandbox for a fleet of 12 clusters of
varied shapes with no write to Azure, then the plan's own steps run in the sandbox, which prevent the
LinkedAuthorizationFailed a naive switch gets, and `python -m remediation migrate plan` over the sandbox."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from remediation.__main__ import main
from remediation.cli.migrate import plan_all, readers
from remediation.decide.guardrails import Guardrails, Scope
from remediation.decide.maintenance import parse_window_setting
from remediation.decide.migration import (
    ACR_PULL,
    BLOCKED,
    CONTRIBUTOR,
    CONTROL_PLANE,
    KUBELET,
    MANAGED_IDENTITY_OPERATOR,
    NETWORK_CONTRIBUTOR,
    NOT_APPLICABLE,
    PRIVATE_DNS_ZONE_CONTRIBUTOR,
    READY,
    ROLE_ASSIGNMENTS_UNREAD,
    gather,
    plan_migration,
)
from remediation.errors import NotFoundError, PermanentError
from remediation.ids import ClusterId
from sandbox import Sandbox
from sandbox.fleets import fleet
from tests.support.fakes import FakeClock, FakeDirectory, FakeRoleAssignments, Faults
from tests.support.wire import Wire, sandbox_info_file

SUB = "00000000-0000-0000-0000-0000000000aa"
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)  # a Monday
SUBNET = f"/subscriptions/{SUB}/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/aks"
ZONE = f"/subscriptions/{SUB}/resourceGroups/rg-dns/providers/Microsoft.Network/privateDnsZones/privatelink.azmk8s.io"
REGISTRY = f"/subscriptions/{SUB}/resourceGroups/rg-acr/providers/Microsoft.ContainerRegistry/registries/acrshared"
WEEKLY = {"maintenanceWindow": {"schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Saturday"}},
                                "durationHours": 4, "startTime": "01:00", "utcOffset": "+00:00"}}


# ---------------------------------------------------------------------------------------- over fakes


class FakeClusterDocuments:
    """Clusters as ARM's REST API returns them, with their maintenance configurations; counts what it is asked."""

    def __init__(self) -> None:
        self.bodies: dict[str, dict[str, Any]] = {}
        self.maintenance: dict[str, dict[str, dict[str, Any]]] = {}
        self.refused: set[str] = set()  # clusters whose maintenance configurations the reader may not read
        self.reads = 0

    def add(self, name: str, *, client_id: str, subnet: str | None = None, zone: str | None = None,
            managed: bool = False, maintenance: dict[str, dict[str, Any]] | None = None) -> ClusterId:
        cluster = ClusterId(SUB, "rg-apps", name)
        pool: dict[str, Any] = {"name": "nodepool1", "count": 3}
        if subnet:
            pool["vnetSubnetID"] = subnet
        body: dict[str, Any] = {"id": str(cluster), "name": name, "location": "westeurope", "properties": {
            "servicePrincipalProfile": {"clientId": "msi" if managed else client_id},
            "nodeResourceGroup": f"MC_rg-apps_{name}_westeurope", "agentPoolProfiles": [pool]}}
        if zone:
            body["properties"]["apiServerAccessProfile"] = {"enablePrivateCluster": True, "privateDNSZone": zone}
        if managed:
            body["identity"] = {"type": "SystemAssigned", "principalId": str(uuid.uuid4())}
        self.bodies[str(cluster).lower()] = body
        self.maintenance[str(cluster).lower()] = maintenance or {}
        return cluster

    def get_cluster_document(self, cluster: ClusterId) -> dict[str, Any]:
        self.reads += 1
        if str(cluster).lower() not in self.bodies:
            raise NotFoundError(f"reading cluster {cluster.name}: (ResourceNotFound)", code="ResourceNotFound")
        return json.loads(json.dumps(self.bodies[str(cluster).lower()]))

    def list_maintenance_configurations(self, cluster: ClusterId) -> dict[str, dict[str, Any]]:
        if str(cluster).lower() in self.refused:
            raise PermanentError(f"reading the maintenance configurations of cluster {cluster.name}: no "
                                 "maintenanceConfigurations/read", code="AuthorizationFailed")
        return self.maintenance[str(cluster).lower()]


@pytest.fixture
def world() -> tuple[FakeClusterDocuments, FakeRoleAssignments]:
    clock, faults = FakeClock(NOW), Faults()
    return FakeClusterDocuments(), FakeRoleAssignments(FakeDirectory(clock, faults), clock, faults)


def planned(world, cluster: ClusterId, guardrails: Guardrails | None = None, principal: str | None = "sp-1", **kw):
    clusters, roles = world
    present = gather(cluster, clusters=clusters, maintenance=clusters, roles=roles,
                     principal_of=lambda app_id: principal)
    return plan_migration(present, guardrails or Guardrails(), now=NOW, **kw)


def test_a_byo_network_cluster_needs_a_user_assigned_identity_holding_its_roles_first(world) -> None:
    clusters, roles = world
    cluster = clusters.add("aks-net", client_id="app-1", subnet=SUBNET, zone=ZONE, maintenance={
        "aksManagedNodeOSUpgradeSchedule": WEEKLY})
    roles.plant(SUBNET, CONTRIBUTOR, "sp-1")  # broad: narrowed to Network Contributor
    roles.plant(ZONE, PRIVATE_DNS_ZONE_CONTRIBUTOR, "sp-1")
    roles.plant(REGISTRY, ACR_PULL, "sp-1")
    roles.plant(f"/subscriptions/{SUB}/resourceGroups/MC_rg-apps_aks-net_westeurope", CONTRIBUTOR, "sp-1")  # AKS's
    plan = planned(world, cluster)
    assert plan.status == READY and plan.user_assigned_required and plan.control_plane == "userAssigned"
    assert "own subnet" in plan.user_assigned_why and "private DNS zone" in plan.user_assigned_why
    carried = {(r.identity, r.scope, r.grant_role_id) for r in plan.roles}
    kubelet_name = plan.identity_names[KUBELET]
    assert kubelet_name.startswith("id-aks-net-") and kubelet_name.endswith("-kubelet")  # a digest of the id between
    assert carried == {(CONTROL_PLANE, SUBNET, NETWORK_CONTRIBUTOR), (KUBELET, REGISTRY, ACR_PULL),
                       (CONTROL_PLANE, ZONE, PRIVATE_DNS_ZONE_CONTRIBUTOR),
                       (CONTROL_PLANE, f"/subscriptions/{SUB}/resourceGroups/rg-apps/providers/Microsoft."
                        f"ManagedIdentity/userAssignedIdentities/{kubelet_name}", MANAGED_IDENTITY_OPERATOR)}
    nodes = f"/subscriptions/{SUB}/resourceGroups/MC_rg-apps_aks-net_westeurope"
    assert [x["scope"] for x in plan.left_alone] == [nodes]
    commands = plan.commands
    order = [next(i for i, c in enumerate(commands) if c.startswith(prefix)) for prefix in (
        "CONTROL_PLANE_ID=$(az identity create", "KUBELET_ID=$(az identity create", "az role assignment create",
        "until [", "az aks update", "az aks nodepool upgrade")]
    assert order == sorted(order)
    update = next(c for c in commands if c.startswith("az aks update"))
    assert '--enable-managed-identity --assign-identity "$CONTROL_PLANE_ID" --assign-kubelet-identity "$KUBELET_ID"' \
        in update
    assert sum(c.startswith("az role assignment create") for c in commands) == 4
    assert "--node-image-only" in next(c for c in commands if c.startswith("az aks nodepool upgrade"))
    assert plan.window["source"] == "aksManagedNodeOSUpgradeSchedule" and plan.window["nextOpening"].startswith(
        "2026-12-12T01:00")
    assert any("KEEP USING" in d or "keeps using the service principal" in d for d in plan.disruption)
    assert any("never deleted" in a and "orphans" in a for a in plan.afterwards)
    assert plan.view()["writes"] == 0 and roles.writes == 0


def test_clusters_sharing_a_principal_each_carry_only_their_own_network(world) -> None:
    clusters, roles = world
    other_subnet = SUBNET.replace("/subnets/aks", "/subnets/other")
    mine = clusters.add("aks-one", client_id="app-5", subnet=SUBNET)
    plain = clusters.add("aks-two", client_id="app-5")
    roles.plant(SUBNET, NETWORK_CONTRIBUTOR, "sp-5")
    roles.plant(other_subnet, NETWORK_CONTRIBUTOR, "sp-5")
    roles.plant(ZONE, PRIVATE_DNS_ZONE_CONTRIBUTOR, "sp-5")
    one = planned(world, mine, principal="sp-5")
    assert [(r.scope, r.grant_role_id) for r in one.roles] == [(SUBNET, NETWORK_CONTRIBUTOR)]
    assert {x["scope"] for x in one.left_alone} == {other_subnet, ZONE}
    two = planned(world, plain, principal="sp-5")
    assert not two.roles and two.control_plane == "systemAssigned" and len(two.left_alone) == 3


def test_a_plain_cluster_gets_a_system_assigned_identity_and_no_role(world) -> None:
    clusters, _ = world
    plan = planned(world, clusters.add("aks-plain", client_id="app-2"), principal="sp-2")
    assert plan.status == READY and plan.control_plane == "systemAssigned" and not plan.roles
    assert plan.kubelet == "madeByAks" and plan.identity_names == {}
    assert [c.split(" --")[0] for c in plan.commands[:2]] == ["az aks update", "az aks nodepool upgrade"]
    assert plan.commands[0].endswith("--enable-managed-identity --yes")
    assert plan.window["source"] is None and "choose a time" in plan.window["description"]


def test_blockers_are_named_management_group_role_not_assignable_and_denied_scope(world) -> None:
    clusters, roles = world
    cluster = clusters.add("aks-odd", client_id="app-3", subnet=SUBNET)
    roles.plant(SUBNET, NETWORK_CONTRIBUTOR, "sp-3")
    roles.plant(REGISTRY, "8311e382-0749-4cb8-b61a-304f252e45ec", "sp-3")  # AcrPush: kept, not assignable
    denied = f"/subscriptions/{SUB}/resourceGroups/rg-secure/providers/Microsoft.Network/routeTables/rt"
    roles.plant(denied, NETWORK_CONTRIBUTOR, "sp-3")
    rails = Guardrails(scope=Scope(deny_resource_groups=frozenset({"rg-secure"})),
                       assignable_roles=frozenset({NETWORK_CONTRIBUTOR, ACR_PULL, PRIVATE_DNS_ZONE_CONTRIBUTOR,
                                                   MANAGED_IDENTITY_OPERATOR}))
    plan = planned(world, cluster, rails, principal="sp-3")
    assert plan.status == BLOCKED and {r.blocker for r in plan.blockers} == {"RoleNotAssignable", "DeniedResourceGroup"}
    assert not any(denied in c for c in plan.commands) and "cannot be carried" in plan.reason


def test_a_management_group_scope_is_a_blocker() -> None:
    from remediation.decide.migration import CarriedRole, _checked

    role = CarriedRole(CONTROL_PLANE, "/providers/Microsoft.Management/managementGroups/mg-1", READER_GUID,
                       READER_GUID, "x")
    assert _checked(role, Guardrails()).blocker == "ManagementGroupScope"


def test_a_managed_identity_cluster_and_a_missing_principal(world) -> None:
    clusters, _ = world
    assert planned(world, clusters.add("aks-msi", client_id="", managed=True)).status == NOT_APPLICABLE
    missing = planned(world, clusters.add("aks-gone", client_id="app-9"), principal=None)
    assert missing.status == BLOCKED and "not found" in missing.reason


def test_the_operators_window_applies_without_a_maintenance_configuration(world) -> None:
    clusters, _ = world
    rails = Guardrails()
    rails = Guardrails(rotation=rails.rotation.__class__(window=parse_window_setting("Sat,Sun 01:00-05:00")))
    plan = planned(world, clusters.add("aks-w", client_id="app-4"), rails)
    assert plan.window["source"] == "REMEDIATOR_ROTATION_WINDOW" and plan.window["nextOpening"].startswith(
        "2026-12-12T01:00")


def test_role_assignments_the_reader_may_not_list_are_named_and_block_the_plan(world) -> None:
    clusters, roles = world
    hub = "00000000-0000-0000-0000-0000000000bb"
    hub_subnet = SUBNET.replace(SUB, hub)
    cluster = clusters.add("aks-hub", client_id="app-6", subnet=hub_subnet)
    roles.plant(hub_subnet, NETWORK_CONTRIBUTOR, "sp-6")
    roles.plant(REGISTRY, ACR_PULL, "sp-6")
    roles.unreadable.add(hub)  # 403 AuthorizationFailed: the reader's role is not assigned on the hub subscription
    plan = planned(world, cluster, principal="sp-6")
    assert plan.status == BLOCKED and f"/subscriptions/{hub}" in plan.reason
    view = plan.view()
    assert [(b["code"], b["scope"]) for b in view["blockers"]] == [(ROLE_ASSIGNMENTS_UNREAD, f"/subscriptions/{hub}")]
    assert [(u["what"], u["code"]) for u in view["unread"]] == [("roleAssignments", "AuthorizationFailed")]
    assert [r.scope for r in plan.roles if r.role_id] == [REGISTRY]  # what could be read is still planned
    roles.unreadable.clear()
    assert planned(world, cluster, principal="sp-6").status == READY


def test_maintenance_configurations_the_reader_may_not_list_leave_the_window_to_choose_by_hand(world) -> None:
    clusters, _ = world
    cluster = clusters.add("aks-closed", client_id="app-7", maintenance={"default": WEEKLY})
    clusters.refused.add(str(cluster).lower())
    plan = planned(world, cluster, principal="sp-7")
    assert plan.status == READY and plan.window["nextOpening"] is None
    assert "AuthorizationFailed" in plan.window["error"] and "by hand" in plan.window["error"]
    assert [(u["what"], u["scope"]) for u in plan.view()["unread"]] == [("maintenanceConfigurations", str(cluster))]


def test_a_missing_cluster_is_cluster_not_found(world) -> None:
    with pytest.raises(NotFoundError) as raised:
        planned(world, ClusterId(SUB, "rg-apps", "aks-gone"))
    assert raised.value.code == "ClusterNotFound"


READER_GUID = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


# ---------------------------------------------------------------------------------------- against the sandbox

SHAPES = ("subnet", "zone", "registry", "plain")


def fleet_document() -> dict[str, Any]:
    """12 service-principal clusters in 1 subscription, 3 of each shape: own subnet (Network Contributor), private
    DNS zone (Private DNS Zone Contributor, on the subnet too, as a private cluster has one), attached registry
    (AcrPull), plain; some with a planned maintenance window."""
    document = fleet(clusters=12, subscriptions=1, applications=4, managed_identity=0, opted_out_clusters=0,
                     opted_out_groups=0, groups_per_subscription=2, seed=22)
    sub = document["subscriptions"][0]["subscriptionId"]
    document["resourceGroups"] += [{"subscriptionId": sub, "name": name, "location": "westeurope", "tags": {}}
                                   for name in ("rg-network", "rg-acr")]
    for index, body in enumerate(document["clusters"]):
        give_shape(body, SHAPES[index % 4], sub)
        if index % 3 == 0:
            body["maintenanceConfigurations"] = {"aksManagedNodeOSUpgradeSchedule": WEEKLY}
    return document


def give_shape(body: dict[str, Any], shape: str, sub: str) -> None:
    """Make a fleet cluster's body one of SHAPES: its own subnet (Network Contributor), a private DNS zone (and the
    subnet a private cluster has), an attached registry (AcrPull), or plain."""
    net = f"/subscriptions/{sub}/resourceGroups/rg-network/providers"
    if shape in ("subnet", "zone"):
        body["vnetSubnetId"] = f"{net}/Microsoft.Network/virtualNetworks/vnet-spoke/subnets/{body['name']}"
        body["grantNetworkRoles"] = True
    if shape == "zone":
        body["privateDnsZoneId"] = f"{net}/Microsoft.Network/privateDnsZones/privatelink.westeurope.azmk8s.io"
    if shape == "registry":
        body["attachedRegistryId"] = f"/subscriptions/{sub}/resourceGroups/rg-acr/providers/" \
                                     "Microsoft.ContainerRegistry/registries/acrfleet"


@pytest.fixture(scope="module")
def shaped() -> Iterator[Sandbox]:
    with Sandbox(fleet=fleet_document()) as running:
        yield running


def writes_of(sandbox: Sandbox) -> dict[str, int]:
    """Every write request ARM and Graph saw (the token endpoint's POSTs are sign-ins, not writes), and the
    clusters' own write counters."""
    snapshot = sandbox.snapshot()
    counted = {f"{api} {route}": n for api, routes in snapshot["requests"].items() if api in ("arm", "graph")
               for route, n in routes.items() if route.startswith(("POST", "PUT", "PATCH", "DELETE"))}
    counted.update({f"cluster {c['name']} {k}": n for c in snapshot["clusters"] for k, n in c["writes"].items()})
    return counted


def operator_readers(sandbox: Sandbox):
    from tests.test_azure_adapters import credential

    return readers(credential=credential(sandbox, sandbox.operator), arm=sandbox.endpoints["arm"],
                   graph=sandbox.endpoints["graph"], verify=sandbox.ca_path)


def test_a_plan_for_12_clusters_of_varied_shapes_writes_nothing(shaped: Sandbox) -> None:
    before = writes_of(shaped)
    reads = operator_readers(shaped)
    clusters = [ClusterId.parse(c["id"]) for c in shaped.snapshot()["clusters"]]
    started = time.monotonic()
    result = plan_all(clusters, reads, Guardrails(), retire_after=timedelta(hours=24))
    seconds = time.monotonic() - started
    assert writes_of(shaped) == before  # not one write to Azure
    plans = {p["cluster"].rsplit("/", 1)[1]: p for p in result["value"]}
    assert len(plans) == 12 and result["counts"] == {"ready": 12, "blocked": 0, NOT_APPLICABLE: 0}
    by_shape: dict[str, list[dict[str, Any]]] = {shape: [] for shape in SHAPES}
    for index, body in enumerate(fleet_document()["clusters"]):
        by_shape[SHAPES[index % 4]].append(plans[body["name"]])
    assert all(p["userAssignedRequired"] and any(r["grantRole"] == "Network Contributor" for r in p["roles"])
               for p in by_shape["subnet"] + by_shape["zone"])
    assert all(any(r["grantRole"] == "Private DNS Zone Contributor" for r in p["roles"]) for p in by_shape["zone"])
    assert all(p["kubeletIdentity"] == "userAssigned" and any(r["identity"] == KUBELET and r["grantRole"] == "AcrPull"
                                                               for r in p["roles"]) for p in by_shape["registry"])
    assert all(p["controlPlaneIdentity"] == "systemAssigned" and not p["roles"] for p in by_shape["plain"])
    windows = [p for p in plans.values() if p["window"].get("source") == "aksManagedNodeOSUpgradeSchedule"]
    assert len(windows) == 4 and all(p["window"]["nextOpening"] for p in windows)
    print(f"\nplan for 12 clusters: {seconds:.2f} s, 0 writes")  # the closing note's figure


def test_the_plans_steps_prevent_the_linked_authorization_failure_of_a_naive_switch(shaped: Sandbox) -> None:
    wire = Wire(shaped)
    bodies = fleet_document()["clusters"]
    subnet_clusters = [b for i, b in enumerate(bodies) if SHAPES[i % 4] == "subnet"]
    naive, planned_one = subnet_clusters[0], subnet_clusters[1]

    def path(body: dict[str, Any]) -> str:
        return (f"/subscriptions/{body['subscriptionId']}/resourceGroups/{body['resourceGroup']}/providers/"
                f"Microsoft.ContainerService/managedClusters/{body['name']}")
    naive_switch = _switch(wire, path(naive), None)
    assert _finish(wire, naive_switch)["error"]["code"] == "LinkedAuthorizationFailed"

    result = plan_all([ClusterId.parse(path(planned_one))], operator_readers(shaped), Guardrails(),
                      retire_after=timedelta(hours=24))
    plan = result["value"][0]
    group = f"/subscriptions/{planned_one['subscriptionId']}/resourceGroups/{plan['identityResourceGroup']}"
    made = wire.arm("PUT", f"{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
                    f"{plan['identityNames'][CONTROL_PLANE]}", api_version="2023-01-31",
                    json={"location": "westeurope"}).json()
    for role in plan["roles"]:  # what the plan's `az role assignment create` lines do
        answer = wire.arm("PUT", f"{role['scope']}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
                          api_version="2022-04-01", json={"properties": {
                              "roleDefinitionId": f"/subscriptions/{planned_one['subscriptionId']}/providers/"
                                                  f"Microsoft.Authorization/roleDefinitions/{role['grantRoleId']}",
                              "principalId": made["properties"]["principalId"], "principalType": "ServicePrincipal"}})
        assert answer.status_code == 201, answer.text
    assert _finish(wire, _switch(wire, path(planned_one), made["id"]))["status"] == "Succeeded"
    upgrade = wire.arm("POST", f"{path(planned_one)}/agentPools/nodepool1/upgradeNodeImageVersion")
    assert _finish(wire, upgrade)["status"] == "Succeeded"
    shown = next(c for c in shaped.snapshot()["clusters"] if c["name"] == planned_one["name"])
    assert shown["clientId"] == "msi" and shown["identity"]["kubeletInUse"] == shown["identity"]["kubelet"]
    again = plan_all([ClusterId.parse(path(planned_one))], operator_readers(shaped), Guardrails(),
                     retire_after=timedelta(hours=24))
    assert again["value"][0]["status"] == NOT_APPLICABLE


def _switch(wire: Wire, path: str, control_plane: str | None):
    body = wire.arm("GET", path).json()
    body["identity"] = ({"type": "UserAssigned", "userAssignedIdentities": {control_plane: {}}} if control_plane
                        else {"type": "SystemAssigned"})
    body["properties"]["servicePrincipalProfile"] = {"clientId": "msi"}
    return wire.arm("PUT", path, json=body)


def _finish(wire: Wire, started) -> dict[str, Any]:
    assert started.status_code in (200, 202), started.text
    for _ in range(200):
        status = wire.arm("GET", started.headers["Azure-AsyncOperation"], api_version=None).json()
        if status["status"] != "InProgress":
            return status
        time.sleep(0.05)
    raise AssertionError("the operation did not finish")


def test_migrate_plan_over_the_cli_with_the_sandbox(shaped: Sandbox, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    info = sandbox_info_file(shaped, tmp_path)
    sub = fleet_document()["subscriptions"][0]["subscriptionId"]
    before = writes_of(shaped)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(["migrate", "plan", "--subscription", sub, "--sandbox", str(info), "-o", "json"])
    assert status == 0, err.getvalue()
    result = json.loads(out.getvalue())
    assert result["writes"] == 0 and len(result["value"]) >= 10 and writes_of(shaped) == before
    text = io.StringIO()
    with redirect_stdout(text), redirect_stderr(io.StringIO()):
        assert main(["migrate", "plan", result["value"][0]["cluster"], "--sandbox", str(info)]) == 0
    assert "az aks update" in text.getvalue() and "nothing was written" in text.getvalue()
    assert shaped.operator.client_secret not in text.getvalue() + out.getvalue()
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        assert main(["migrate", "plan", "--sandbox", str(info)]) == 2

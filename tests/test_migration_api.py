"""The migration plan over the HTTP API (`GET /api/clusters/migration-plan`, `GET /api/migration-plans`) and the
health report's link to it: the triggers called as the host calls them, with the remediator's own identity against
the sandbox over HTTPS, and Azurite.

The world: subscription A, the one the deployment manages (its custom role is assigned there only, as infra/
assigns it), with a bring-your-own-subnet cluster, a plain one, a managed-identity one, and one whose subnet lies in
subscription B (a hub network), where the remediator may read nothing; and a cluster in B, out of the deployment's
scope. The plans are compared with what the operator's CLI planner (remediation/cli/migrate.py) computes for the
same clusters with the same guardrails, and the sandbox must see no write.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import azure.functions as func
import pytest

import function_app
from remediation.cli.migrate import plan_all, readers
from remediation.decide.migration import BLOCKED, NOT_APPLICABLE, READY, ROLE_ASSIGNMENTS_UNREAD
from remediation.ids import ClusterId
from sandbox import Sandbox, WorldOptions
from sandbox.azurite import Azurite
from sandbox.functions_host import functions_of, http_input
from sandbox.wiring import remediator_settings

FUNCTIONS = {f.get_function_name(): f for f in functions_of(function_app.app)}
SUB_A = "0a0a0a0a-0000-4000-8000-00000000000a"
SUB_B = "0b0b0b0b-0000-4000-8000-00000000000b"
WEEKLY = {"maintenanceWindow": {"schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Saturday"}},
                                "durationHours": 4, "startTime": "01:00", "utcOffset": "+00:00"}}
SP_CLUSTERS = {"aks-subnet", "aks-plain", "aks-hub"}
# POSTs that only read: a Resource Graph query, a Graph JSON batch (of GETs), a token.
READ_POSTS = frozenset({"POST Microsoft.ResourceGraph/resources", "POST /$batch", "POST token"})


def cluster_id(name: str, sub: str = SUB_A, group: str = "rg-apps") -> str:
    return f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.ContainerService/managedClusters/{name}"


def subnet(sub: str, group: str, name: str) -> str:
    return (f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Network/virtualNetworks/vnet/subnets/"
            f"{name}")


def fleet_document() -> dict[str, Any]:
    def app(name: str, days: int) -> dict[str, Any]:
        return {"displayName": name, "ownedByRemediator": True,
                "passwords": [{"displayName": "rbac", "startDaysAgo": 300, "endInDays": days}]}

    def cluster(name: str, sub: str = SUB_A, group: str = "rg-apps", **shape: Any) -> dict[str, Any]:
        return {"subscriptionId": sub, "resourceGroup": group, "name": name, **shape}

    return {
        "subscriptions": [{"subscriptionId": SUB_A, "displayName": "apps"},
                          {"subscriptionId": SUB_B, "displayName": "hub"}],
        "resourceGroups": [{"subscriptionId": sub, "name": name, "location": "westeurope"} for sub, name in (
            (SUB_A, "rg-apps"), (SUB_A, "rg-network"), (SUB_B, "rg-hub"), (SUB_B, "rg-elsewhere"))],
        "applications": [app("sp-subnet", 200), app("sp-plain", -3), app("sp-hub", 200), app("sp-elsewhere", 200)],
        "clusters": [
            cluster("aks-subnet", application="sp-subnet", vnetSubnetId=subnet(SUB_A, "rg-network", "aks-subnet"),
                    grantNetworkRoles=True, maintenanceConfigurations={"aksManagedNodeOSUpgradeSchedule": WEEKLY}),
            cluster("aks-plain", application="sp-plain"),
            cluster("aks-msi", managedIdentity=True),
            cluster("aks-hub", application="sp-hub", vnetSubnetId=subnet(SUB_B, "rg-hub", "aks-hub"),
                    grantNetworkRoles=True),
            cluster("aks-elsewhere", SUB_B, "rg-elsewhere", application="sp-elsewhere"),
        ],
    }


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    # The remediator's custom role is assigned on subscription A only: B's role assignments are not its to read.
    with Sandbox(fleet=fleet_document(), options=WorldOptions(remediator_subscriptions=frozenset({SUB_A}))) as running:
        yield running


@pytest.fixture
def app(sandbox: Sandbox, azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in remediator_settings(sandbox, azurite.connection_string,
                                           REMEDIATOR_SUBSCRIPTION_IDS=SUB_A).items():
        monkeypatch.setenv(name, value)
    function_app.built_services.cache_clear()
    yield
    function_app.built_services.cache_clear()


@pytest.fixture(scope="module")
def bearer(sandbox: Sandbox) -> dict[str, str]:
    """The auditor's token: Remediations.Read is all a plan needs."""
    return {"Authorization": f"Bearer {sandbox.api_token(sandbox.auditor)}"}


def get(function: str, path: str, headers: dict[str, str]) -> func.HttpResponse:
    request = http_input("GET", f"http://localhost:7071{path}", headers=headers).decode()
    return FUNCTIONS[function].get_user_function()(request)


def plan_of(cluster: str, headers: dict[str, str]) -> func.HttpResponse:
    return get("migration_plan", f"/api/clusters/migration-plan?clusterResourceId={quote(cluster, safe='')}", headers)


def body_of(response: func.HttpResponse, status: int = 200) -> Any:
    assert response.status_code == status, response.get_body()
    assert response.mimetype == "application/json"
    return json.loads(response.get_body())


def error_of(response: func.HttpResponse, status: int) -> dict[str, str]:
    body = body_of(response, status)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


def requests_to_azure(sandbox: Sandbox) -> dict[str, int]:
    """Every request ARM and Graph answered so far, by route."""
    return {f"{api} {route}": n for api, routes in sandbox.snapshot()["requests"].items() if api in ("arm", "graph")
            for route, n in routes.items()}


def writes(sandbox: Sandbox) -> dict[str, int]:
    """Every write Azure's APIs saw (a Resource Graph query and a Graph batch of GETs read), and the clusters' own
    write counters."""
    snapshot = sandbox.snapshot()
    counted = {f"{api} {route}": n for api, routes in snapshot["requests"].items() if api != "topic"
               for route, n in routes.items() if not route.startswith("GET") and route not in READ_POSTS}
    counted.update({f"cluster {c['name']} {k}": n for c in snapshot["clusters"] for k, n in c["writes"].items()})
    return counted


def cli_plan(sandbox: Sandbox, cluster: str) -> dict[str, Any]:
    """What `python -m remediation migrate plan` computes for the cluster, with the operator's sign-in and the
    deployment's guardrails and retirement grace."""
    from tests.test_azure_adapters import credential

    settings = function_app.services().settings
    reads = readers(credential=credential(sandbox, sandbox.operator), arm=sandbox.endpoints["arm"],
                    graph=sandbox.endpoints["graph"], verify=sandbox.ca_path)
    [plan] = plan_all([ClusterId.parse(cluster)], reads, settings.guardrails,
                      retire_after=settings.retire_after)["value"]
    return plan


def test_the_routes_are_gets_behind_the_function_key() -> None:
    bindings = {name: json.loads(FUNCTIONS[name].get_raw_bindings()[0]) for name in ("migration_plan",
                                                                                     "migration_plans")}
    assert {name: (b["route"], b["methods"], b["authLevel"]) for name, b in bindings.items()} == {
        "migration_plan": ("clusters/migration-plan", ["GET"], "FUNCTION"),
        "migration_plans": ("migration-plans", ["GET"], "FUNCTION")}


# ------------------------------------------------------------------------------------------ one cluster


@pytest.mark.parametrize("name", ["aks-subnet", "aks-plain"])
def test_the_route_gives_the_plan_the_cli_planner_gives_and_writes_nothing(app, sandbox: Sandbox,
                                                                           bearer: dict[str, str], name: str) -> None:
    before = writes(sandbox)
    plan = body_of(plan_of(cluster_id(name), bearer))
    assert writes(sandbox) == before
    assert plan == cli_plan(sandbox, cluster_id(name))
    assert plan["writes"] == 0 and plan["status"] == READY and plan["cluster"] == cluster_id(name)
    if name == "aks-subnet":
        assert plan["userAssignedRequired"] and plan["controlPlaneIdentity"] == "userAssigned"
        assert [(r["grantRole"], r["scope"]) for r in plan["roles"]] == [
            ("Network Contributor", subnet(SUB_A, "rg-network", "aks-subnet"))]
        assert plan["window"]["source"] == "aksManagedNodeOSUpgradeSchedule" and plan["window"]["nextOpening"]
    else:
        assert plan["controlPlaneIdentity"] == "systemAssigned" and not plan["roles"]
        assert plan["commands"][0].endswith("--enable-managed-identity --yes")
    assert "REMEDIATOR_RETIRE_AFTER_HOURS, 0 h" in " ".join(plan["afterwards"])  # the deployment's setting


def test_role_assignments_arm_refuses_to_show_are_named_and_block_the_plan(app, sandbox: Sandbox,
                                                                           bearer: dict[str, str]) -> None:
    plan = body_of(plan_of(cluster_id("aks-hub"), bearer))
    hub = f"/subscriptions/{SUB_B}"
    assert plan["status"] == BLOCKED and hub in plan["reason"] and "AuthorizationFailed" in plan["reason"]
    assert [(b["code"], b["scope"]) for b in plan["blockers"]] == [(ROLE_ASSIGNMENTS_UNREAD, hub)]
    assert [(u["what"], u["scope"], u["code"]) for u in plan["unread"]] == [
        ("roleAssignments", hub, "AuthorizationFailed")]
    # The operator, who may read B, sees the role the remediator could not: the plan did not pretend it was none.
    operator = cli_plan(sandbox, cluster_id("aks-hub"))
    assert operator["status"] == READY and operator["unread"] == []
    assert [(r["grantRole"], r["scope"]) for r in operator["roles"]] == [
        ("Network Contributor", subnet(SUB_B, "rg-hub", "aks-hub"))]


def test_a_managed_identity_cluster_needs_no_plan(app, bearer: dict[str, str]) -> None:
    plan = body_of(plan_of(cluster_id("aks-msi"), bearer))
    assert plan["status"] == NOT_APPLICABLE and plan["commands"] == [] and plan["writes"] == 0


@pytest.mark.parametrize(("raw", "code"), [
    ("not-an-id", "InvalidClusterResourceId"),
    (cluster_id("aks-x").replace("managedClusters", "virtualMachines"), "NotAManagedCluster"),
    (cluster_id("aks-subnet") + "/", "InvalidClusterResourceId"),
    ("", "InvalidClusterResourceId"),  # absent: the host drops an empty query value
])
def test_an_id_that_is_not_a_managed_cluster_is_a_400_and_nothing_is_read(app, sandbox: Sandbox, bearer: dict[str, str],
                                                                          raw: str, code: str) -> None:
    function_app.services()  # built before the count, as a warm worker is
    before = requests_to_azure(sandbox)
    error = error_of(get("migration_plan", f"/api/clusters/migration-plan?clusterResourceId={quote(raw, safe='')}",
                         bearer), 400)
    assert error["code"] == code
    assert requests_to_azure(sandbox) == before


def test_a_missing_cluster_is_a_404_and_one_outside_the_scope_a_403_read_nowhere(app, sandbox: Sandbox,
                                                                                bearer: dict[str, str]) -> None:
    assert error_of(plan_of(cluster_id("aks-gone"), bearer), 404)["code"] == "ClusterNotFound"
    before = requests_to_azure(sandbox)
    refused = error_of(plan_of(cluster_id("aks-elsewhere", SUB_B, "rg-elsewhere"), bearer), 403)
    assert refused["code"] == "OutOfScope" and "REMEDIATOR_SUBSCRIPTION_IDS" in refused["message"]
    assert requests_to_azure(sandbox) == before


def test_a_token_without_a_role_is_a_403_and_none_a_401(app, sandbox: Sandbox) -> None:
    no_role = {"Authorization": f"Bearer {sandbox.api_token(sandbox.remediator)}"}
    assert error_of(plan_of(cluster_id("aks-plain"), no_role), 403)["code"] == "MissingRole"
    assert error_of(get("migration_plans", "/api/migration-plans", no_role), 403)["code"] == "MissingRole"
    assert error_of(plan_of(cluster_id("aks-plain"), {}), 401)["code"] == "MissingToken"


# ------------------------------------------------------------------------------------------ the fleet


def test_the_fleets_plans_cover_every_service_principal_cluster_of_the_health_report(app, sandbox: Sandbox,
                                                                                    bearer: dict[str, str]) -> None:
    before = writes(sandbox)
    report = body_of(get("fleet_health", "/api/health", bearer))
    scans = sandbox.snapshot()["requests"]["arm"]["POST Microsoft.ResourceGraph/resources"]
    result = body_of(get("migration_plans", "/api/migration-plans", bearer))
    assert sandbox.snapshot()["requests"]["arm"]["POST Microsoft.ResourceGraph/resources"] == scans  # no new scan
    plans = {p["cluster"].rsplit("/", 1)[1]: p for p in result["value"]}
    assert set(plans) == SP_CLUSTERS  # not the managed-identity one, not the one outside the scope
    assert result["counts"] == {READY: 2, BLOCKED: 1, NOT_APPLICABLE: 0} and result["errors"] == []
    assert result["writes"] == 0 and result["healthReport"]["generatedAt"] == report["generatedAt"]
    for name in ("aks-subnet", "aks-plain"):
        assert plans[name] == cli_plan(sandbox, cluster_id(name))
    assert plans["aks-hub"]["blockers"][0]["code"] == ROLE_ASSIGNMENTS_UNREAD
    expired = body_of(get("migration_plans", "/api/migration-plans?health=expired", bearer))
    assert [p["cluster"] for p in expired["value"]] == [cluster_id("aks-plain")]
    assert writes(sandbox) == before


def test_a_bad_health_filter_is_a_400(app, bearer: dict[str, str]) -> None:
    error = error_of(get("migration_plans", "/api/migration-plans?health=broken", bearer), 400)
    assert error["code"] == "InvalidHealthFilter"


def test_the_health_report_links_each_service_principal_clusters_plan_without_planning(
        app, sandbox: Sandbox, bearer: dict[str, str]) -> None:
    before = requests_to_azure(sandbox)
    report = body_of(get("fleet_health", "/api/health", bearer))
    during = {route: n - before.get(route, 0) for route, n in requests_to_azure(sandbox).items()
              if n != before.get(route, 0)}
    assert not any("roleAssignments" in route or "managedClusters/{name}" in route for route in during), during
    links = {c["name"]: c["migrationPlan"] for c in report["value"]}
    assert links["aks-msi"] is None and set(links) == SP_CLUSTERS | {"aks-msi"}
    link = links["aks-subnet"]
    assert link == f"/api/clusters/migration-plan?clusterResourceId={quote(cluster_id('aks-subnet'), safe='')}"
    assert body_of(get("migration_plan", link, bearer)) == cli_plan(sandbox, cluster_id("aks-subnet"))


def test_retire_after_is_the_deployments_setting(sandbox: Sandbox, azurite: Azurite, bearer: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in remediator_settings(sandbox, azurite.connection_string, REMEDIATOR_SUBSCRIPTION_IDS=SUB_A,
                                           REMEDIATOR_RETIRE_AFTER_HOURS="36").items():
        monkeypatch.setenv(name, value)
    function_app.built_services.cache_clear()
    try:
        plan = body_of(plan_of(cluster_id("aks-plain"), bearer))
        assert function_app.services().settings.retire_after == timedelta(hours=36)
        assert "REMEDIATOR_RETIRE_AFTER_HOURS, 36 h" in " ".join(plan["afterwards"])
    finally:
        function_app.built_services.cache_clear()

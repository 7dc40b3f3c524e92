"""ARM's answers at the wire where the Azure CLI needs Azure's semantics: unknown routes, namespaces and api-versions
in ARM's own codes, what a cluster PUT keeps and refuses, credentials and abort as the official examples show them,
resource groups written by PUT and PATCH, role definitions by name, and the Activity Log filter azure-cli writes."""

from __future__ import annotations

import base64

import pytest

from sandbox import Sandbox
from tests.support.wire import Wire, assert_arm_error, recent, sample


def test_an_unknown_resource_type_is_invalid_resource_type_in_arms_words(wire: Wire, sandbox: Sandbox) -> None:
    answer = wire.arm("GET", f"{wire.cluster_path()}/widgets")
    assert_arm_error(answer, 404, "InvalidResourceType")
    assert answer.json()["error"]["message"] == (
        "The resource type 'managedClusters/widgets' could not be found in the namespace "
        "'Microsoft.ContainerService' for api version '2024-09-01'.")
    assert_arm_error(wire.arm("GET", f"/subscriptions/{sandbox.subscription_id}/widgets"), 404, "InvalidResourceType")


def test_an_unknown_namespace_is_invalid_resource_namespace(wire: Wire, sandbox: Sandbox) -> None:
    answer = wire.arm("GET", f"/subscriptions/{sandbox.subscription_id}/providers/Microsoft.Container/things")
    assert_arm_error(answer, 400, "InvalidResourceNamespace")
    assert answer.json()["error"]["message"] == "The resource namespace 'Microsoft.Container' is invalid."


@pytest.mark.parametrize("path", [
    "{cluster}", "{cluster}/maintenanceConfigurations", "/subscriptions/{sub}/resourcegroups/rg-payments",
    "/subscriptions/{sub}/providers/microsoft.insights/eventtypes/management/values",
    "/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments"])
def test_an_api_version_the_type_does_not_take_is_refused_with_the_supported_list(
        wire: Wire, sandbox: Sandbox, path: str) -> None:
    answer = wire.arm("GET", path.format(cluster=wire.cluster_path(), sub=sandbox.subscription_id),
                      api_version="1999-01-01")
    assert_arm_error(answer, 400, "NoRegisteredProviderFound")
    message = answer.json()["error"]["message"]
    assert "API version '1999-01-01'" in message and "The supported api-versions are '" in message


def test_the_api_version_is_read_without_regard_to_case(wire: Wire, sandbox: Sandbox) -> None:
    assert wire.arm("GET", wire.cluster_path(), api_version="2026-06-01").status_code == 200
    roles = f"/subscriptions/{sandbox.subscription_id}/providers/Microsoft.Authorization/roleAssignments"
    assert wire.arm("GET", roles, api_version="2020-10-01-Preview").status_code == 200


def test_a_cluster_put_keeps_its_tags_and_refuses_what_aks_refuses(wire: Wire) -> None:
    path = wire.cluster_path("aks-healthy", "rg-platform")
    body = wire.arm("GET", path).json()
    body["tags"] = {"aks-sp-remediator": "off"}
    assert wire.arm("PUT", path, json=body).status_code == 200
    assert wire.arm("GET", path).json()["tags"] == {"aks-sp-remediator": "off"}
    for change, code in (({"location": "eastus"}, "InvalidResourceLocation"),
                         ({"properties": {**body["properties"], "dnsPrefix": "other"}}, "PropertyChangeNotAllowed"),
                         ({"properties": {**body["properties"], "kubernetesVersion": "1.20.7"}},
                          "OperationNotAllowed"),
                         ({"properties": {**body["properties"], "kubernetesVersion": "1.99.0"}},
                          "AgentPoolK8sVersionNotSupported"),
                         ({"tags": {"n": 1}}, "InvalidRequestContent")):
        assert_arm_error(wire.arm("PUT", path, json={**body, **change}), 400, code)
    stale = wire.http.put(f"{wire.sandbox.endpoints['arm']}{path}", params={"api-version": "2024-09-01"}, json=body,
                          headers={**wire.auth("https://management.azure.com"), "If-Match": '"stale"'})
    assert_arm_error(stale, 412, "PreconditionFailed")


def test_user_credentials_are_a_base64_kubeconfig_as_the_official_example(wire: Wire) -> None:
    reference = sample("aks_ManagedClustersListClusterUserCredentials_2024-09-01.json")["responses"]["200"]["body"]
    answer = wire.arm("POST", f"{wire.cluster_path('aks-healthy', 'rg-platform')}/listClusterUserCredential")
    assert answer.status_code == 200
    [kubeconfig] = answer.json()["kubeconfigs"]
    assert set(kubeconfig) == set(reference["kubeconfigs"][0])
    assert base64.b64decode(kubeconfig["value"]).decode().startswith("apiVersion: v1\n")


def test_an_abort_with_nothing_running_is_204_and_one_while_running_cancels(wire: Wire, sandbox: Sandbox) -> None:
    path = wire.cluster_path("aks-healthy", "rg-platform")
    sandbox.state.settle(force=True)  # what earlier tests started has ended
    assert wire.arm("POST", f"{path}/abort").status_code == 204
    usual, sandbox.state.operation_seconds = sandbox.state.operation_seconds, 600
    try:
        started = wire.arm("PUT", path, json=wire.arm("GET", path).json())
        assert started.status_code == 200
        aborted = wire.arm("POST", f"{path}/abort")
    finally:
        sandbox.state.operation_seconds = usual
    assert aborted.status_code == 202 and {"Azure-AsyncOperation", "Location"} <= set(aborted.headers)
    assert wire.arm("GET", aborted.headers["Azure-AsyncOperation"], api_version=None).json()["status"] == "Succeeded"
    canceled = wire.arm("GET", started.headers["Azure-AsyncOperation"], api_version=None).json()
    assert canceled["status"] == "Canceled"
    assert wire.arm("GET", path).json()["properties"]["provisioningState"] == "Canceled"


def test_resource_groups_are_created_replaced_and_patched(wire: Wire, sandbox: Sandbox) -> None:
    groups = f"/subscriptions/{sandbox.subscription_id}/resourcegroups"
    created = wire.arm("PUT", f"{groups}/rg-new", api_version="2024-11-01",
                       json={"location": "West Europe", "tags": {"a": "1"}})
    assert created.status_code == 201 and created.json()["location"] == "westeurope"
    replaced = wire.arm("PUT", f"{groups}/rg-new", api_version="2024-11-01", json={"location": "westeurope"})
    assert replaced.status_code == 200 and replaced.json()["tags"] == {}
    patched = wire.arm("PATCH", f"{groups}/rg-new", api_version="2024-11-01", json={"tags": {"b": "2"}})
    assert patched.status_code == 200 and patched.json()["tags"] == {"b": "2"}
    moved = wire.arm("PUT", f"{groups}/rg-new", api_version="2024-11-01", json={"location": "eastus"})
    assert_arm_error(moved, 409, "InvalidResourceGroupLocation")
    assert moved.json()["error"]["message"] == ("Invalid resource group location 'eastus'. The Resource group "
                                                "already exists in location 'westeurope'.")
    listed = wire.arm("GET", groups, api_version="2024-11-01").json()["value"]
    assert {"rg-new", "rg-payments"} <= {g["name"] for g in listed}


def test_role_definitions_are_found_by_name(wire: Wire, sandbox: Sandbox) -> None:
    definitions = f"/subscriptions/{sandbox.subscription_id}/providers/Microsoft.Authorization/roleDefinitions"
    found = wire.arm("GET", definitions, api_version="2022-05-01-preview",
                     params={"$filter": "roleName eq 'Network Contributor'"}).json()["value"]
    assert [d["properties"]["roleName"] for d in found] == ["Network Contributor"]
    assert len(wire.arm("GET", definitions, api_version="2022-04-01").json()["value"]) > 1
    assert_arm_error(wire.arm("GET", definitions, api_version="2022-04-01", params={"$filter": "nonsense"}), 400,
                     "UnsupportedQuery")


def test_the_activity_log_reads_the_filter_azure_cli_writes(wire: Wire, sandbox: Sandbox) -> None:
    failed = wire.admin("clusters/aks-payments/operate", {}).json()
    assert failed["succeeded"] is False
    values = f"/subscriptions/{sandbox.subscription_id}/providers/Microsoft.Insights/eventtypes/management/values"
    bare = recent(sandbox).replace("'", "").replace("Z", "")  # az: eventTimestamp ge 2026-12-07T05:00:00.123456
    found = wire.arm("GET", values, api_version="2015-04-01", params={
        "$filter": f"{bare} and resourceId eq '{wire.cluster_path()}' and caller eq '{sandbox.operator.client_id}' "
                   "and status eq 'Failed'"}).json()["value"]
    assert found and all(e["status"]["value"] == "Failed" for e in found)
    assert failed["correlationId"] in {e["correlationId"] for e in found}

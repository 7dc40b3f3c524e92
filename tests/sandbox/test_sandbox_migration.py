"""A move to managed identity in the sandbox (sandbox/identities.py), on the wire: user-assigned identities as the
official examples show them, the cluster's identity update as a long-running operation ending with `identity`,
`identityProfile.kubeletidentity` and `servicePrincipalProfile.clientId` "msi", node-image upgrade, and
LinkedAuthorizationFailed when the new identity may not join the cluster's own subnet."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox import Sandbox
from tests.support.wire import Wire, assert_arm_error, assign, sample

MANAGED_IDENTITY_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"

MSI_API = "2023-01-31"
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(scenario="expired-secret") as running:
        yield running


def group(sandbox: Sandbox, name: str = "rg-payments") -> str:
    return f"/subscriptions/{sandbox.subscription_id}/resourceGroups/{name}"


def subnet(sandbox: Sandbox) -> str:
    return f"{group(sandbox)}/providers/Microsoft.Network/virtualNetworks/vnet-spoke/subnets/aks"


def identity_path(sandbox: Sandbox, name: str) -> str:
    return f"{group(sandbox)}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"


def create_identity(wire: Wire, name: str) -> dict[str, Any]:
    made = wire.arm("PUT", identity_path(wire.sandbox, name), api_version=MSI_API, json={"location": "westeurope"})
    assert made.status_code == 201, made.text
    return made.json()


def finish(wire: Wire, started: requests.Response) -> dict[str, Any]:
    url = started.headers["Azure-AsyncOperation"]
    for _ in range(100):
        status = wire.arm("GET", url, api_version=None).json()
        if status["status"] != "InProgress":
            return status
        time.sleep(0.05)
    raise AssertionError("the operation did not finish")


def switch(wire: Wire, cluster: str, *, control_plane: str | None, kubelet: str | None = None,
           group_name: str = "rg-payments") -> requests.Response:
    """What `az aks update --enable-managed-identity [--assign-identity] [--assign-kubelet-identity]` PUTs."""
    path = wire.cluster_path(cluster, group_name)
    body = wire.arm("GET", path).json()
    body["identity"] = ({"type": "UserAssigned", "userAssignedIdentities": {control_plane: {}}} if control_plane
                        else {"type": "SystemAssigned"})
    body["properties"]["servicePrincipalProfile"] = {"clientId": "msi"}
    if kubelet:
        body["properties"]["identityProfile"] = {"kubeletidentity": {"resourceId": kubelet}}
    return wire.arm("PUT", path, json=body)


def view(sandbox: Sandbox, name: str) -> dict[str, Any]:
    return next(c for c in sandbox.snapshot()["clusters"] if c["name"] == name)


def test_a_user_assigned_identity_is_created_and_read_as_the_official_examples_show_it(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    made = create_identity(wire, "id-aks-payments")
    reference = sample("msi_IdentityCreate_2023-01-31.json")["responses"]["201"]["body"]
    assert set(made) == set(reference) and set(made["properties"]) == set(reference["properties"])
    assert made["type"] == reference["type"] and made["properties"]["tenantId"] == sandbox.tenant_id
    again = wire.arm("PUT", identity_path(sandbox, "id-aks-payments"), api_version=MSI_API,
                     json={"location": "westeurope", "tags": {"team": "payments"}})
    assert again.status_code == 200 and again.json()["properties"] == made["properties"]
    got = wire.arm("GET", identity_path(sandbox, "id-aks-payments"), api_version=MSI_API)
    assert got.status_code == 200 and got.json()["tags"] == {"team": "payments"}
    assert set(got.json()) == set(sample("msi_IdentityGet_2023-01-31.json")["responses"]["200"]["body"])
    assert_arm_error(wire.arm("GET", identity_path(sandbox, "nope"), api_version=MSI_API), 404, "ResourceNotFound")
    assert_arm_error(wire.arm("PUT", identity_path(sandbox, "x"), api_version=MSI_API, json={}), 400,
                     "LocationRequired")
    assert_arm_error(Wire(sandbox, sandbox.remediator).arm("PUT", identity_path(sandbox, "y"), api_version=MSI_API,
                                                           json={"location": "westeurope"}), 403,
                     "AuthorizationFailed")


def test_the_switch_is_a_long_running_write_and_the_kubelet_moves_with_the_node_image(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    control, kubelet = create_identity(wire, "id-cp"), create_identity(wire, "id-kubelet")
    # The control-plane identity assigns the kubelet identity to the nodes: Managed Identity Operator on it first.
    assert assign(wire, kubelet["id"], MANAGED_IDENTITY_OPERATOR, control["properties"]["principalId"]).status_code \
        == 201
    started = switch(wire, "aks-payments", control_plane=control["id"], kubelet=kubelet["id"])
    assert started.status_code == 200 and "Azure-AsyncOperation" in started.headers
    assert finish(wire, started)["status"] == "Succeeded"  # the expired secret is no longer needed
    body = wire.arm("GET", wire.cluster_path("aks-payments")).json()
    assert body["identity"]["type"] == "UserAssigned"
    assert body["identity"]["userAssignedIdentities"][control["id"]]["principalId"] == \
        control["properties"]["principalId"]
    assert body["properties"]["servicePrincipalProfile"] == {"clientId": "msi"}
    assert body["properties"]["identityProfile"]["kubeletidentity"] == {
        "clientId": kubelet["properties"]["clientId"], "objectId": kubelet["properties"]["principalId"],
        "resourceId": kubelet["id"]}
    assert view(sandbox, "aks-payments")["identity"]["kubeletInUse"] is None  # still the service principal
    upgrade = wire.arm("POST", f"{wire.cluster_path('aks-payments')}/agentPools/nodepool1/upgradeNodeImageVersion")
    reference = sample("aks_AgentPoolsUpgradeNodeImageVersion_2024-09-01.json")["responses"]["202"]
    assert upgrade.status_code == 202 and set(reference["body"]) <= set(upgrade.json())
    assert upgrade.json()["properties"]["provisioningState"] == "UpgradingNodeImageVersion"
    assert set(reference["headers"]) <= set(upgrade.headers)
    assert finish(wire, upgrade)["status"] == "Succeeded"
    shown = view(sandbox, "aks-payments")
    assert shown["identity"]["kubeletInUse"] == kubelet["id"] and shown["writes"]["nodeImage"] == 1
    missing = wire.arm("POST", f"{wire.cluster_path('aks-payments')}/agentPools/other/upgradeNodeImageVersion")
    assert missing.status_code == 404


def test_a_kubelet_identity_the_control_plane_may_not_assign_fails_the_switch(sandbox: Sandbox) -> None:
    # Learn's "Use a managed identity in AKS": the control-plane identity needs Managed Identity Operator on a
    # kubelet identity it is given (MicrosoftDocs/azure-docs#104830 quotes it); the plan grants it before the switch.
    wire = Wire(sandbox)
    control, kubelet = create_identity(wire, "id-cp-2"), create_identity(wire, "id-kubelet-2")
    failed = finish(wire, switch(wire, "aks-payments", control_plane=control["id"], kubelet=kubelet["id"]))
    assert failed["status"] == "Failed" and failed["error"]["code"] == "CustomKubeletIdentityMissingPermissionError"
    assert "Managed Identity Operator" in failed["error"]["message"] and kubelet["id"] in failed["error"]["message"]
    assert view(sandbox, "aks-payments")["provisioningState"] == "Failed"


def test_a_system_assigned_switch_gets_a_kubelet_identity_made_by_aks(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    assert finish(wire, switch(wire, "aks-payments", control_plane=None))["status"] == "Succeeded"
    body = wire.arm("GET", wire.cluster_path("aks-payments")).json()
    assert body["identity"]["type"] == "SystemAssigned" and body["identity"]["principalId"]
    assert body["properties"]["identityProfile"]["kubeletidentity"]["resourceId"].endswith(
        "/userAssignedIdentities/aks-payments-agentpool")


def test_an_identity_without_the_network_role_on_the_custom_subnet_fails_linked_authorization(sandbox) -> None:
    wire = Wire(sandbox)
    app = next(a for a in sandbox.snapshot()["applications"] if a["displayName"] == "aks-healthy-sp")
    for name in ("aks-byo-bare", "aks-byo-granted", "aks-byo-system"):
        made = wire.admin("clusters", {"resourceGroup": "rg-platform", "name": name, "applicationAppId": app["appId"],
                                       "vnetSubnetId": subnet(sandbox)})
        assert made.status_code in (200, 201), made.text
    bare = create_identity(wire, "id-bare")
    failed = finish(wire, switch(wire, "aks-byo-bare", control_plane=bare["id"], group_name="rg-platform"))
    reference = sample("aks_LinkedAuthorizationFailed_subnet_join.json")
    assert failed["status"] == "Failed" and failed["error"]["code"] == reference["code"]
    assert "Microsoft.Network/virtualNetworks/subnets/join/action" in failed["error"]["message"]
    assert subnet(sandbox) in failed["error"]["message"]
    assert view(sandbox, "aks-byo-bare")["provisioningState"] == "Failed"
    # A system-assigned identity exists only once the switch makes it: no role can be granted to it before.
    system = finish(wire, switch(wire, "aks-byo-system", control_plane=None, group_name="rg-platform"))
    assert system["status"] == "Failed" and system["error"]["code"] == "LinkedAuthorizationFailed"
    granted = create_identity(wire, "id-granted")
    assert assign(wire, subnet(sandbox), NETWORK_CONTRIBUTOR, granted["properties"]["principalId"]).status_code == 201
    assert finish(wire, switch(wire, "aks-byo-granted", control_plane=granted["id"],
                         group_name="rg-platform"))["status"] == "Succeeded"


def test_cluster_shapes_carry_their_zone_and_the_roles_az_aks_create_assigns(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    app = next(a for a in sandbox.snapshot()["applications"] if a["displayName"] == "aks-healthy-sp")
    zone = f"{group(sandbox, 'rg-dns')}/providers/Microsoft.Network/privateDnsZones/privatelink.westeurope.azmk8s.io"
    registry = f"{group(sandbox, 'rg-acr')}/providers/Microsoft.ContainerRegistry/registries/acrshared"
    made = wire.admin("clusters", {"resourceGroup": "rg-platform", "name": "aks-shaped",
                                   "applicationAppId": app["appId"], "vnetSubnetId": subnet(sandbox),
                                   "privateDnsZoneId": zone, "attachedRegistryId": registry,
                                   "grantNetworkRoles": True})
    assert made.status_code in (200, 201), made.text
    body = wire.arm("GET", wire.cluster_path("aks-shaped", "rg-platform")).json()
    assert body["properties"]["apiServerAccessProfile"]["privateDNSZone"] == zone
    scopes = {a.scope for a in sandbox.state.role_assignments.values()
              if a.principal_id == app["servicePrincipalObjectId"]}
    assert {subnet(sandbox), zone, registry} <= scopes


def test_identities_and_a_moved_cluster_survive_a_restart(tmp_path) -> None:
    with Sandbox(scenario="expired-secret", state_dir=tmp_path) as first:
        wire = Wire(first)
        control = create_identity(wire, "id-cp")
        assert finish(wire, switch(wire, "aks-payments", control_plane=control["id"]))["status"] == "Succeeded"
        before = wire.arm("GET", wire.cluster_path("aks-payments")).json()
    with Sandbox(state_dir=tmp_path) as second:
        wire = Wire(second)
        got = wire.arm("GET", identity_path(second, "id-cp"), api_version=MSI_API)
        assert got.status_code == 200 and got.json()["properties"] == control["properties"]
        after = wire.arm("GET", wire.cluster_path("aks-payments")).json()
        assert after["identity"] == before["identity"]
        assert after["properties"]["identityProfile"] == before["properties"]["identityProfile"]

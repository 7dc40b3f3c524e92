"""`az aks`: show, list, update --tags, upgrade, get-credentials, operation-abort, update-credentials (both forms) and
maintenanceconfiguration, run unchanged against the sandbox's AKS, with the state checked where a command writes.

aks-healthy (rg-platform) has a valid secret, so writes to it succeed; aks-payments (rg-payments) holds an expired
one, so a write to it fails as AKS fails it, while the model it was sent (its tags) is kept."""

from __future__ import annotations

from pathlib import Path

from remediation.adapters.aks import AksManagedClusters
from remediation.decide.guardrails import ControlTag
from remediation.ids import ClusterId
from tests.support.az import Az
from tests.support.wire import Wire
from tests.test_azure_adapters import FAST_RETRY, credential

HEALTHY = ("-g", "rg-platform", "-n", "aks-healthy")
BROKEN = ("-g", "rg-payments", "-n", "aks-payments")


def state_cluster(az: Az, name: str) -> dict:
    return next(c for c in az.sandbox.snapshot()["clusters"] if c["name"] == name)


def test_show_and_list_carry_the_read_only_fields_the_cli_reads(az: Az) -> None:
    shown = az("aks", "show", *HEALTHY)
    assert shown["maxAgentPools"] == 100 and shown["azurePortalFqdn"].endswith(".portal.hcp.westeurope.azmk8s.io")
    [pool] = shown["agentPoolProfiles"]
    assert (pool["osDiskSizeGb"], pool["osSku"]) == (128, "Ubuntu") and pool["nodeImageVersion"].startswith("AKS")
    assert shown["systemData"]["createdByType"] == "User" and shown["systemData"]["createdBy"]
    names = {c["name"] for c in az("aks", "list")}
    assert {"aks-healthy", "aks-payments"} <= names
    assert {c["name"] for c in az("aks", "list", "-g", "rg-platform")} == {"aks-healthy"}


def test_a_tag_set_by_aks_update_is_kept_even_when_the_write_then_fails(az: Az) -> None:
    updated = az("aks", "update", *HEALTHY, "--tags", "aks-sp-remediator=off")
    assert updated["tags"] == {"aks-sp-remediator": "off"} and updated["provisioningState"] == "Succeeded"
    assert az("aks", "show", *HEALTHY)["tags"] == {"aks-sp-remediator": "off"}
    assert state_cluster(az, "aks-healthy")["tags"] == {"aks-sp-remediator": "off"}
    assert updated["systemData"]["lastModifiedBy"] == az.sandbox.operator.client_id
    # The expired secret fails the reconcile, as AKS fails it; the opt-out the operator sent stays on the model.
    refused = az.fails("aks", "update", *BROKEN, "--tags", "aks-sp-remediator=off")
    assert "ServicePrincipalValidationClientError" in refused.stderr or "ServicePrincipalProfile" in refused.stderr
    assert state_cluster(az, "aks-payments")["tags"] == {"aks-sp-remediator": "off"}
    # The remediator's own adapter reads the tag its opt-out (REMEDIATOR_OPT_OUT_TAG's default) looks for.
    aks = AksManagedClusters(credential(az.sandbox), endpoint=az.sandbox.endpoints["arm"],
                             connection_verify=az.sandbox.ca_path, polling_interval=0, retry=FAST_RETRY)
    seen = aks.get_cluster(ClusterId(az.sandbox.subscription_id, "rg-payments", "aks-payments"))
    assert ControlTag.parse("aks-sp-remediator=off").on(seen.tags)


def test_upgrade_moves_the_version_and_refuses_a_downgrade_or_an_unknown_version(az: Az) -> None:
    before = az("aks", "show", *HEALTHY)["kubernetesVersion"]
    upgraded = az("aks", "upgrade", *HEALTHY, "-k", "1.31.1", "--yes")
    assert before != "1.31.1" and upgraded["kubernetesVersion"] == "1.31.1"
    assert upgraded["agentPoolProfiles"][0]["orchestratorVersion"] == "1.31.1"
    assert state_cluster(az, "aks-healthy")["kubernetesVersion"] == "1.31.1"
    downgrade = az.fails("aks", "upgrade", *HEALTHY, "-k", before, "--yes")
    assert "Downgrading Kubernetes version 1.31.1" in downgrade.stderr and "OperationNotAllowed" in downgrade.stderr
    unknown = az.fails("aks", "upgrade", *HEALTHY, "-k", "1.31.99", "--yes")
    assert "AgentPoolK8sVersionNotSupported" in unknown.stderr
    assert state_cluster(az, "aks-healthy")["kubernetesVersion"] == "1.31.1"


def test_get_credentials_writes_the_kubeconfig_aks_lists(az: Az, tmp_path: Path) -> None:
    target = tmp_path / "kubeconfig"
    az("aks", "get-credentials", *HEALTHY, "--file", str(target))
    text = target.read_text()
    assert "server: https://aks-healthy-" in text and "current-context: aks-healthy" in text


def test_operation_abort_cancels_the_running_operation(az: Az) -> None:
    state = az.sandbox.state
    usual, state.operation_seconds = state.operation_seconds, 600
    try:
        az("aks", "update", *HEALTHY, "--tags", "phase=abort", "--no-wait")
        with state.lock:
            running = state.cluster("rg-platform", "aks-healthy").operation
        assert running is not None
        az("aks", "operation-abort", *HEALTHY)
    finally:
        state.operation_seconds = usual
    shown = az("aks", "show", *HEALTHY)
    assert shown["provisioningState"] == "Canceled"
    with state.lock:
        assert state.operations[running].status == "Canceled"
        assert state.cluster("rg-platform", "aks-healthy").operation is None
    az("aks", "update", *HEALTHY, "--tags", "aks-sp-remediator=off")  # a canceled cluster takes writes again
    assert az("aks", "show", *HEALTHY)["provisioningState"] == "Succeeded"


def test_update_credentials_resets_the_service_principal_with_the_cli_form(az: Az) -> None:
    client_id = az("aks", "show", *BROKEN)["servicePrincipalProfile"]["clientId"]
    state = az.sandbox.state
    with state.lock:  # a fresh secret of the cluster's application, as `az ad app credential reset` makes one
        _, secret = state.add_password(state.applications[client_id], "az test")
    az("aks", "update-credentials", *BROKEN, "--reset-service-principal", "--service-principal", client_id,
       f"--client-secret={secret}")  # one argument: an Entra secret may start with '-'
    shown = az("aks", "show", *BROKEN)
    assert shown["provisioningState"] == "Succeeded"
    assert shown["servicePrincipalProfile"]["clientId"] == client_id
    assert state_cluster(az, "aks-payments")["secretValidNow"] is True


def test_maintenance_configurations_are_added_listed_shown_and_deleted(az: Az) -> None:
    added = az("aks", "maintenanceconfiguration", "add", "-g", "rg-platform", "--cluster-name", "aks-healthy",
               "-n", "aksManagedAutoUpgradeSchedule", "--schedule-type", "Weekly", "--day-of-week", "Sunday",
               "--interval-weeks", "1", "--duration", "4", "--start-time", "01:00")
    assert added["maintenanceWindow"]["schedule"]["weekly"]["dayOfWeek"] == "Sunday"
    listed = az("aks", "maintenanceconfiguration", "list", "-g", "rg-platform", "--cluster-name", "aks-healthy")
    assert [c["name"] for c in listed] == ["aksManagedAutoUpgradeSchedule"]
    shown = az("aks", "maintenanceconfiguration", "show", "-g", "rg-platform", "--cluster-name", "aks-healthy",
               "-n", "aksManagedAutoUpgradeSchedule")
    assert shown["maintenanceWindow"]["durationHours"] == 4
    az("aks", "maintenanceconfiguration", "delete", "-g", "rg-platform", "--cluster-name", "aks-healthy",
       "-n", "aksManagedAutoUpgradeSchedule")
    assert az("aks", "maintenanceconfiguration", "list", "-g", "rg-platform", "--cluster-name", "aks-healthy") == []


def test_update_credentials_reset_aad_takes_the_legacy_form(az: Az) -> None:
    admin = az.sandbox.endpoints["admin"] + "/_sandbox"
    wire = Wire(az.sandbox)
    server = wire.http.post(f"{admin}/applications", json={"displayName": "aks-aad-server", "passwords": [
        {"startDaysAgo": 400, "endInDays": -1}]}).json()
    client = wire.http.post(f"{admin}/applications", json={"displayName": "aks-aad-client",
                                                             "ownedByRemediator": False}).json()
    healthy = az("aks", "show", *HEALTHY)["servicePrincipalProfile"]["clientId"]
    made = wire.http.post(f"{admin}/clusters", json={
        "resourceGroup": "rg-platform", "name": "aks-aad", "applicationAppId": healthy,
        "legacyAad": {"serverAppId": server["appId"], "clientAppId": client["appId"]}})
    assert made.status_code == 201, made.text
    state = az.sandbox.state
    with state.lock:
        _, secret = state.add_password(state.applications[server["appId"]], "az test")
    az("aks", "update-credentials", "-g", "rg-platform", "-n", "aks-aad", "--reset-aad", "--aad-server-app-id",
       server["appId"], f"--aad-server-app-secret={secret}", "--aad-client-app-id", client["appId"])
    assert state_cluster(az, "aks-aad")["aad"]["serverSecretValidNow"] is True
    assert az("aks", "show", "-g", "rg-platform", "-n", "aks-aad")["aadProfile"]["serverAppId"] == server["appId"]

"""The adapters a replacement and a legacy Azure AD repair use, with their real SDK clients over HTTPS against the
sandbox: azure-mgmt-authorization's role assignments, Graph's deleted items and application creation (msgraph-sdk's
request adapter), and azure-mgmt-containerservice's resetAADProfile. The remediator holds what infra/ deploys in
replace mode: Application.ReadWrite.OwnedBy and Application.Read.All, roleAssignments/read, and Role Based Access
Control Administrator under the condition that names three roles, for service principals only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from remediation.adapters.aks import AksManagedClusters
from remediation.adapters.graph import GraphDirectory
from remediation.adapters.roles import ArmRoleAssignments
from remediation.errors import ConflictError, PermanentError, PrincipalNotReplicatedError
from remediation.ids import ClusterId
from remediation.model import SecretText
from sandbox import Sandbox, WorldOptions
from sandbox.rbac import BUILT_IN_ROLES
from tests.test_azure_adapters import FAST_GRAPH_RETRY, FAST_RETRY, admin, credential, state_of, wait_for_operation

DELEGATED = frozenset({"Network Contributor", "AcrPull", "Private DNS Zone Contributor"})


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(scenario="expired-secret", options=WorldOptions(remediator_role_assignment_roles=DELEGATED)) as s:
        yield s


@pytest.fixture
def roles(sandbox: Sandbox) -> ArmRoleAssignments:
    return ArmRoleAssignments(credential(sandbox), endpoint=sandbox.endpoints["arm"], connection_verify=sandbox.ca_path,
                              retry=FAST_RETRY)


@pytest.fixture
def graph(sandbox: Sandbox) -> GraphDirectory:
    return GraphDirectory(credential(sandbox), endpoint=sandbox.endpoints["graph"], ca_bundle=sandbox.ca_path,
                          retry=FAST_GRAPH_RETRY)


def operator(sandbox: Sandbox, method: str, api: str, path: str, body: object = None) -> requests.Response:
    resource = {"arm": "https://management.azure.com", "graph": "https://graph.microsoft.com"}[api]
    token = credential(sandbox, sandbox.operator).get_token(f"{resource}/.default").token
    base = sandbox.endpoints[api] + ("/v1.0" if api == "graph" else "")
    session = requests.Session()
    session.trust_env = False
    return session.request(method, base + path, json=body, verify=sandbox.ca_path,
                           headers={"Authorization": f"Bearer {token}"})


def role_id(sandbox: Sandbox, role: str) -> str:
    return (f"/subscriptions/{sandbox.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/"
            f"{BUILT_IN_ROLES[role]}")


def subnet(sandbox: Sandbox) -> str:
    return (f"/subscriptions/{sandbox.subscription_id}/resourceGroups/rg-payments/providers/Microsoft.Network/"
            "virtualNetworks/vnet-aks/subnets/aks")


def application(sandbox: Sandbox, name: str) -> dict:
    return next(a for a in sandbox.snapshot()["applications"] if a["displayName"] == name)


def plant(sandbox: Sandbox, scope: str, role: str, principal_id: str) -> None:
    answer = operator(sandbox, "PUT", "arm", f"{scope}/providers/Microsoft.Authorization/roleAssignments/"
                      f"{uuid.uuid4()}?api-version=2022-04-01", {"properties": {
                          "roleDefinitionId": role_id(sandbox, role), "principalId": principal_id,
                          "principalType": "ServicePrincipal"}})
    assert answer.status_code == 201, answer.text


# ---------------------------------------------------------------- role assignments


def test_a_deleted_principals_assignments_are_listed_by_its_principal_id(roles, sandbox: Sandbox) -> None:
    app = application(sandbox, "aks-payments-sp")
    principal = app["servicePrincipalObjectId"]
    plant(sandbox, subnet(sandbox), "Network Contributor", principal)
    plant(sandbox, f"/subscriptions/{sandbox.subscription_id}/resourceGroups/rg-payments", "AcrPull", principal)
    plant(sandbox, subnet(sandbox), "Network Contributor", application(sandbox, "aks-healthy-sp")[
        "servicePrincipalObjectId"])  # someone else's: not listed
    assert operator(sandbox, "DELETE", "graph", f"/applications/{app['objectId']}").status_code == 204
    found = roles.list_for_principal(sandbox.subscription_id, principal)
    assert sorted((a.scope.lower(), a.role_guid) for a in found) == sorted([
        (subnet(sandbox).lower(), BUILT_IN_ROLES["Network Contributor"]),
        (f"/subscriptions/{sandbox.subscription_id}/resourcegroups/rg-payments", BUILT_IN_ROLES["AcrPull"])])
    assert {a.principal_type for a in found} == {"ServicePrincipal"}


def test_creating_an_assignment_again_under_its_name_or_another_counts_as_assigned(roles, sandbox) -> None:
    principal = application(sandbox, "aks-healthy-sp")["servicePrincipalObjectId"]
    name = str(uuid.uuid4())
    first = roles.create(subnet(sandbox), role_id(sandbox, "Network Contributor"), principal, name=name)
    again = roles.create(subnet(sandbox), role_id(sandbox, "Network Contributor"), principal, name=name)
    elsewhere = roles.create(subnet(sandbox), role_id(sandbox, "Network Contributor"), principal,
                             name=str(uuid.uuid4()))  # 409 RoleAssignmentExists
    assert first.name == again.name == name and elsewhere.principal_id == principal
    held = [a for a in sandbox.snapshot()["roleAssignments"] if a["principalId"] == principal]
    assert len(held) == 1 and held[0]["principalType"] == "ServicePrincipal"


def test_a_role_the_condition_does_not_name_is_refused_as_permanent(roles, sandbox: Sandbox) -> None:
    principal = application(sandbox, "aks-healthy-sp")["servicePrincipalObjectId"]
    with pytest.raises(PermanentError) as refused:
        roles.create(subnet(sandbox), role_id(sandbox, "Contributor"), principal, name=str(uuid.uuid4()))
    assert refused.value.code == "AuthorizationFailed" and "REMEDIATOR_ASSIGNABLE_ROLE_IDS" in str(refused.value)
    assert not [a for a in sandbox.snapshot()["roleAssignments"] if a["principalId"] == principal]


def test_a_principal_arm_does_not_know_yet_is_reported_as_not_replicated(roles, graph, sandbox: Sandbox) -> None:
    admin(sandbox, "/_sandbox/faults", {"kind": "principal_replication_delay", "seconds": 600,
                                        "ignorePrincipalType": True})
    created = graph.create_application(f"replacement-{uuid.uuid4().hex[:6]}", notes="test")
    principal = graph.create_service_principal(created.app_id)
    with pytest.raises(PrincipalNotReplicatedError):
        roles.create(subnet(sandbox), role_id(sandbox, "AcrPull"), principal, name=str(uuid.uuid4()))
    admin(sandbox, "/_sandbox/clock", {"advanceSeconds": 601})
    assert roles.create(subnet(sandbox), role_id(sandbox, "AcrPull"), principal,
                        name=str(uuid.uuid4())).principal_id == principal


# ---------------------------------------------------------------- Graph


def test_the_deleted_service_principal_is_found_in_deleted_items(graph: GraphDirectory, sandbox: Sandbox) -> None:
    app = application(sandbox, "aks-payments-sp")
    assert graph.find_deleted_service_principal(app["appId"]) is None  # not deleted yet
    assert operator(sandbox, "DELETE", "graph", f"/applications/{app['objectId']}").status_code == 204
    deleted = graph.find_deleted_service_principal(app["appId"])
    assert deleted is not None and deleted.object_id == app["servicePrincipalObjectId"]
    assert deleted.display_name == "aks-payments-sp" and deleted.deleted_at is not None
    assert datetime.now(UTC) - deleted.deleted_at < timedelta(days=1)


def test_an_application_the_remediator_creates_is_its_own_and_found_again(graph: GraphDirectory, sandbox) -> None:
    owner = sandbox.state.applications[sandbox.remediator.client_id].sp_object_id
    name = f"aks-payments-sp (aks-sp-remediator {uuid.uuid4().hex[:12]})"
    nonce = uuid.uuid4().hex
    created = graph.create_application(name, notes=f"replaces a deleted application. Creation nonce {nonce}.")
    [found] = [a for a in graph.list_owned_applications(owner) if nonce in a.notes]  # found again after a crash
    assert found.app_id == created.app_id and found.owner_ids == {owner}
    assert found.passwords == () and found.certificates == 0 and graph.count_federated_credentials(found.object_id) == 0
    assert owner in (graph.get_application_by_app_id(created.app_id).owner_ids or ())
    assert graph.get_service_principal(created.app_id) is None
    principal = graph.create_service_principal(created.app_id)
    with pytest.raises(ConflictError):  # once only: Graph refuses a second one
        graph.create_service_principal(created.app_id)
    made = graph.get_service_principal(created.app_id)
    assert made is not None and made.object_id == principal and made.owner_ids == {owner} and made.credentials == 0
    assert application(sandbox, name)["servicePrincipalObjectId"] == principal
    someone_elses = application(sandbox, "platform-operator")
    assert owner not in (graph.get_application_by_app_id(someone_elses["appId"]).owner_ids or ())


# ---------------------------------------------------------------- the legacy Azure AD integration


def test_a_legacy_aad_cluster_is_read_and_its_aad_profile_reset(sandbox: Sandbox, graph: GraphDirectory) -> None:
    aks = AksManagedClusters(credential(sandbox), endpoint=sandbox.endpoints["arm"],
                             connection_verify=sandbox.ca_path, polling_interval=0, retry=FAST_RETRY)
    server = admin(sandbox, "/_sandbox/applications", {"displayName": "aks-aad-server", "passwords": [
        {"startDaysAgo": 400, "endInDays": -1}]})
    client = admin(sandbox, "/_sandbox/applications", {"displayName": "aks-aad-client", "ownedByRemediator": False})
    healthy = application(sandbox, "aks-healthy-sp")
    admin(sandbox, "/_sandbox/clusters", {
        "resourceGroup": "rg-platform", "name": "aks-aad", "applicationAppId": healthy["appId"],
        "vnetSubnetId": subnet(sandbox),
        "legacyAad": {"serverAppId": server["appId"], "clientAppId": client["appId"]}})
    target = ClusterId(sandbox.subscription_id, "rg-platform", "aks-aad")
    info = aks.get_cluster(target)
    assert (info.aad_server_app_id, info.aad_client_app_id) == (server["appId"], client["appId"])
    new = graph.add_password(server["objectId"], "test", datetime.now(UTC) + timedelta(days=30))
    url = aks.begin_reset_aad_profile(target, server_app_id=server["appId"], client_app_id=client["appId"],
                                      tenant_id=info.aad_tenant_id, secret=new.secret_text).status_url
    assert url.startswith(sandbox.endpoints["arm"]) and new.secret_text.reveal() not in url
    assert wait_for_operation(aks, url).succeeded
    assert state_of(sandbox, "aks-aad")["aad"]["serverSecretValidNow"]
    failed = aks.begin_reset_aad_profile(target, server_app_id=server["appId"], client_app_id=client["appId"],
                                         tenant_id=info.aad_tenant_id, secret=SecretText("not-its-secret"))
    status = wait_for_operation(aks, failed.status_url)
    assert not status.succeeded and "not-its-secret" not in (status.error or "")

"""The sandbox's identity routes behave like Azure on the wire: ARM role assignments (2022-04-01) with the
documented delegation condition and replication delay, Graph's application and service principal creation,
ownership and deleted items, and AKS's resetAADProfile; compared with the official examples in tests/reference/."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox import Sandbox, WorldOptions
from sandbox.rbac import delegation_condition, parse_condition
from sandbox.state import GRAPH_OWNED_BY
from tests.support.wire import Wire, assert_arm_error, sample

AUTHORIZATION_API = "2022-04-01"
# Built-in role definition GUIDs, from Microsoft's built-in roles reference (not read from the sandbox).
ROLES = {"Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c", "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
         "Network Contributor": "4d97b98b-1d4f-4787-a291-c67834d212e7"}
DELEGATION = WorldOptions(remediator_role_assignment_roles=frozenset({"Network Contributor"}))


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(scenario="healthy") as running:
        yield running


@pytest.fixture
def delegated() -> Iterator[Sandbox]:
    """A world whose remediator holds Role Based Access Control Administrator under the documented condition:
    Network Contributor only, to service principals only."""
    with Sandbox(scenario="healthy", options=DELEGATION) as running:
        yield running


def subscription(sandbox: Sandbox) -> str:
    return f"/subscriptions/{sandbox.subscription_id}"


def subnet(sandbox: Sandbox) -> str:
    """A resource scope below rg-payments (ARM does not check that it exists, nor does the sandbox)."""
    return (f"{subscription(sandbox)}/resourceGroups/rg-payments/providers/Microsoft.Network/virtualNetworks/"
            "vnet-payments/subnets/nodes")


def assignment_path(scope: str, name: str) -> str:
    return f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"


def assign(wire: Wire, scope: str, principal_id: str, role: str, *, principal_type: str | None = "ServicePrincipal",
           name: str | None = None) -> requests.Response:
    properties = {"roleDefinitionId": f"{subscription(wire.sandbox)}/providers/Microsoft.Authorization/"
                                      f"roleDefinitions/{ROLES[role]}", "principalId": principal_id}
    if principal_type is not None:
        properties["principalType"] = principal_type
    return wire.arm("PUT", assignment_path(scope, name or str(uuid.uuid4())), api_version=AUTHORIZATION_API,
                    json={"properties": properties})


def listed(wire: Wire, scope: str, query: str | None = None) -> requests.Response:
    return wire.arm("GET", f"{scope}/providers/Microsoft.Authorization/roleAssignments",
                    api_version=AUTHORIZATION_API, params={"$filter": query} if query else {})


def names(response: requests.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {a["name"] for a in response.json()["value"]}


def new_principal(wire: Wire, name: str = "aks-identity-sp") -> dict[str, Any]:
    """A new application with a service principal, made on the admin route (so replicated long ago):
    {"appId", "objectId", "principalId"}."""
    app = wire.admin("applications", {"displayName": name, "passwords": [{"endInDays": 30}]}).json()
    found = wire.graph("GET", f"/servicePrincipals(appId='{app['appId']}')")
    assert found.status_code == 200, found.text
    return {"appId": app["appId"], "objectId": app["objectId"], "principalId": found.json()["id"]}


def graph_error(response: requests.Response, status: int, code: str) -> None:
    # An unexpected success may carry secret text (addPassword): only an error body is worth showing.
    assert response.status_code == status, response.text if response.status_code >= 400 else response.status_code
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and {"date", "request-id"} <= set(error["innerError"])


# ---------------------------------------------------------------- ARM role assignments


def test_role_assignment_bodies_read_like_the_2022_04_01_examples(sandbox: Sandbox) -> None:
    wire, principal = Wire(sandbox), new_principal(Wire(sandbox))["principalId"]
    name, scope = str(uuid.uuid4()), subnet(sandbox)
    created = assign(wire, scope, principal, "Network Contributor", name=name)
    assert created.status_code == 201, created.text
    body = created.json()
    reference = sample("authorization_RoleAssignments_CreateForResource_2022-04-01.json")["responses"]["201"]["body"]
    # 2022-04-01 answers every property (the docs' list example shows them all), the spec example's among them.
    full = sample("authorization_RoleAssignments_List_filter_docs_2022-04-01.json")["response"]["body"]["value"][0]
    assert set(body) == set(reference) and set(reference["properties"]) <= set(body["properties"])
    assert set(body["properties"]) == set(full["properties"])
    assert body["id"] == assignment_path(scope, name) and body["name"] == name and body["type"] == reference["type"]
    assert body["properties"]["roleDefinitionId"].endswith(f"/providers/Microsoft.Authorization/roleDefinitions/"
                                                           f"{ROLES['Network Contributor']}")
    assert (body["properties"]["principalId"], body["properties"]["principalType"], body["properties"]["scope"]) == (
        principal, "ServicePrincipal", scope)
    got = wire.arm("GET", assignment_path(scope, name), api_version=AUTHORIZATION_API)
    assert got.status_code == 200 and got.json() == body
    for_scope = listed(wire, subscription(sandbox))  # ListForScope at the subscription: the subnet's is below it
    list_reference = sample("authorization_RoleAssignments_ListForScope_2022-04-01.json")["responses"]["200"]["body"]
    assert set(for_scope.json()) == set(list_reference) and for_scope.json()["value"] == [body]
    deleted = wire.arm("DELETE", assignment_path(scope, name), api_version=AUTHORIZATION_API)
    delete_reference = sample("authorization_RoleAssignments_Delete_2022-04-01.json")["responses"]
    assert deleted.status_code == 200 and set(deleted.json()) == set(delete_reference["200"]["body"])
    assert deleted.json()["id"] == body["id"]
    # The spec's 204: "Role assignment was already deleted or does not exist" (a retried delete).
    again = wire.arm("DELETE", assignment_path(scope, name), api_version=AUTHORIZATION_API)
    assert again.status_code == 204 and again.content == b""
    assert_arm_error(wire.arm("GET", assignment_path(scope, name), api_version=AUTHORIZATION_API),
                     404, "RoleAssignmentNotFound")


def test_a_principal_filter_lists_that_principals_assignments_at_any_scope_below(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    one, other = new_principal(wire, "sp-one")["principalId"], new_principal(wire, "sp-other")["principalId"]
    group = f"{subscription(sandbox)}/resourceGroups/rg-payments"
    made = {(who, scope): assign(wire, scope, who, "Reader").json()["name"]
            for who in (one, other) for scope in (subscription(sandbox), group, subnet(sandbox))}
    mine = {made[(one, scope)] for scope in (subscription(sandbox), group, subnet(sandbox))}
    assert names(listed(wire, subscription(sandbox), f"assignedTo('{one}')")) == mine
    assert names(listed(wire, subscription(sandbox), f"principalId eq '{one}'")) == mine
    assert names(listed(wire, subscription(sandbox))) == set(made.values())
    # atScope(): at or above the scope only, so the subnet's is left out at the resource group.
    assert names(listed(wire, group, f"atScope() and assignedTo('{one}')")) == mine - {made[(one, subnet(sandbox))]}
    # The docs' request URL as written ('+' for spaces): at or above the subscription, that is at it.
    url = sample("authorization_RoleAssignments_List_filter_docs_2022-04-01.json")["request"]["url"]
    url = url.replace("https://management.azure.com", sandbox.endpoints["arm"]).replace(
        "{subscriptionId1}", sandbox.subscription_id).replace("{objectId1}", one)
    assert names(wire.arm("GET", url, api_version=None)) == {made[(one, subscription(sandbox))]}
    assert_arm_error(listed(wire, subscription(sandbox), f"roleDefinitionId eq '{ROLES['Reader']}'"),
                     400, "UnsupportedQuery")


def test_a_new_principal_is_not_found_until_it_replicates_unless_principal_type_is_named(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    app = wire.graph("POST", "/applications", json={"displayName": "made-moments-ago"}).json()
    principal = wire.graph("POST", "/servicePrincipals", json={"appId": app["appId"]}).json()["id"]
    assert wire.admin("faults", {"kind": "principal_replication_delay", "seconds": 60}).status_code == 200
    unknown = assign(wire, subscription(sandbox), principal, "Reader", principal_type=None)
    assert_arm_error(unknown, 400, "PrincipalNotFound")
    assert principal.replace("-", "") in unknown.json()["error"]["message"]  # ARM prints it without hyphens
    assert assign(wire, subscription(sandbox), principal, "Reader").status_code == 201  # the documented fix
    # Named, but as another type: ARM's words, its typo included.
    wrong_type = assign(wire, subscription(sandbox), principal, "Contributor", principal_type="User")
    assert_arm_error(wrong_type, 400, "UnmatchedPrincipalType")
    assert "PrinciaplType 'User'" in wrong_type.json()["error"]["message"]
    wire.admin("faults", {"kind": "principal_replication_delay", "seconds": 60, "ignorePrincipalType": True})
    assert_arm_error(assign(wire, subscription(sandbox), principal, "Network Contributor"), 400, "PrincipalNotFound")
    wire.admin("clock", {"advanceSeconds": 61})
    replicated = assign(wire, subscription(sandbox), principal, "Network Contributor", principal_type=None)
    assert replicated.status_code == 201 and replicated.json()["properties"]["principalType"] == "ServicePrincipal"


def test_the_same_role_for_the_same_principal_at_the_same_scope_exists_under_one_name_only(sandbox: Sandbox) -> None:
    wire, principal = Wire(sandbox), new_principal(Wire(sandbox))["principalId"]
    name = str(uuid.uuid4())
    assert assign(wire, subnet(sandbox), principal, "Reader", name=name).status_code == 201
    assert assign(wire, subnet(sandbox), principal, "Reader", name=name).status_code == 201  # the same PUT again
    twin = assign(wire, subnet(sandbox), principal, "Reader")
    assert_arm_error(twin, 409, "RoleAssignmentExists")
    assert twin.json()["error"]["message"] == "The role assignment already exists."
    assert names(listed(wire, subscription(sandbox), f"principalId eq '{principal}'")) == {name}


def test_the_documented_delegation_request_is_taken_and_its_condition_is_the_one_the_sandbox_evaluates(
        sandbox: Sandbox) -> None:
    wire, principal = Wire(sandbox), new_principal(Wire(sandbox))["principalId"]
    request = sample("authorization_RoleAssignments_Create_RBACAdminConstrainedDelegation_docs.json")["request"]
    url = request["url"].replace("https://management.azure.com", sandbox.endpoints["arm"]).replace(
        "{subscriptionId}", sandbox.subscription_id)
    body = json.loads(json.dumps(request["body"]).replace("{subscriptionId}", sandbox.subscription_id).replace(
        "{principalId}", principal))
    created = wire.arm(request["method"], url, api_version=None, json=body)
    assert created.status_code == 201, created.text
    properties = created.json()["properties"]
    assert (properties["condition"], properties["conditionVersion"], properties["principalType"]) == (
        body["properties"]["condition"], "2.0", "ServicePrincipal")
    # What WorldOptions grants the remediator is this template, word for word; parsed, it allows what it says.
    condition = body["properties"]["condition"]
    backup = ["5e467623-bb1f-42f4-a55d-6e525e11384b", "a795c7a0-d4a2-40c1-ae25-d81f01202912"]
    assert delegation_condition(backup, principal_types=["User"]) == condition
    parsed = parse_condition(condition)
    anyone = str(uuid.uuid4())  # the template excludes no principal
    assert parsed.allows_write(backup[0], "User", anyone) and parsed.allows_delete(backup[1], "user", anyone)
    assert not parsed.allows_write(backup[0], "ServicePrincipal", anyone)
    assert not parsed.allows_write(backup[0], None, anyone)
    assert not parsed.allows_delete(ROLES["Contributor"], "User", anyone)


def test_the_delegated_remediator_may_assign_only_the_roles_and_principal_types_of_its_condition(
        delegated: Sandbox) -> None:
    operator, remediator = Wire(delegated), Wire(delegated, delegated.remediator)
    principal, scope = new_principal(operator)["principalId"], subnet(delegated)
    allowed = assign(remediator, scope, principal, "Network Contributor")
    assert allowed.status_code == 201, allowed.text
    for role, principal_type in (("Contributor", "ServicePrincipal"), ("Network Contributor", "User"),
                                 ("Network Contributor", None)):  # a PrincipalType clause fails when none is named
        refused = assign(remediator, scope, principal, role, principal_type=principal_type)
        assert_arm_error(refused, 403, "AuthorizationFailed")
        assert "ABAC condition that is not fulfilled" in refused.json()["error"]["message"]
    # Its role holds roleAssignments/write only (infra/modules/role-assignment-writer-role.bicep): it deletes no
    # assignment, not even one it wrote, and the refusal is the missing action, not the condition.
    contributor = assign(operator, scope, principal, "Contributor").json()["name"]
    for name in (contributor, allowed.json()["name"]):
        refused = remediator.arm("DELETE", assignment_path(scope, name), api_version=AUTHORIZATION_API)
        assert_arm_error(refused, 403, "AuthorizationFailed")
        assert "ABAC" not in refused.json()["error"]["message"]
    assert names(listed(remediator, subscription(delegated))) == {allowed.json()["name"], contributor}


def test_without_the_delegation_the_remediator_may_only_read_role_assignments(sandbox: Sandbox) -> None:
    operator, remediator = Wire(sandbox), Wire(sandbox, sandbox.remediator)
    principal, scope = new_principal(operator)["principalId"], subnet(sandbox)
    refused = assign(remediator, scope, principal, "Network Contributor")
    assert_arm_error(refused, 403, "AuthorizationFailed")
    assert "ABAC" not in refused.json()["error"]["message"]  # it lacks the action, not a condition
    existing = assign(operator, scope, principal, "Network Contributor").json()["name"]
    assert_arm_error(remediator.arm("DELETE", assignment_path(scope, existing), api_version=AUTHORIZATION_API),
                     403, "AuthorizationFailed")
    assert names(listed(remediator, subscription(sandbox))) == {existing}


def test_a_deleted_applications_assignments_stay_and_its_principal_is_in_the_deleted_items(sandbox: Sandbox) -> None:
    operator = Wire(sandbox)
    app = new_principal(operator, "aks-deleted-sp")
    made = assign(operator, subnet(sandbox), app["principalId"], "Network Contributor").json()
    assert operator.graph("DELETE", f"/applications/{app['objectId']}").status_code == 204
    kept = operator.arm("GET", assignment_path(subnet(sandbox), made["name"]), api_version=AUTHORIZATION_API)
    # The assignment stays as it was made. ARM's principalType enum has no "Unknown": the portal's "Unknown" /
    # "Identity not found" is drawn from a failed Graph lookup of principalId, so ARM keeps answering the stored type.
    assert kept.status_code == 200 and kept.json() == made
    assert kept.json()["properties"]["principalType"] == "ServicePrincipal"
    assert names(listed(operator, subscription(sandbox), f"principalId eq '{app['principalId']}'")) == {made["name"]}
    # No replica has a deleted principal: naming principalType does not help.
    assert_arm_error(assign(operator, subnet(sandbox), app["principalId"], "Reader"), 400, "PrincipalNotFound")
    graph_error(operator.graph("GET", f"/servicePrincipals/{app['principalId']}"), 404, "Request_ResourceNotFound")
    query = {"$filter": f"appId eq '{app['appId']}'"}
    deleted = Wire(sandbox, sandbox.remediator).graph(  # the remediator holds Application.Read.All by default
        "GET", "/directory/deletedItems/microsoft.graph.servicePrincipal", params=query)
    assert deleted.status_code == 200, deleted.text
    reference = sample("graph_directory_deletedItems_list_v1.0.json")["response"]["body"]
    principal_keys = set(sample("graph_servicePrincipal_create_v1.0.json")["response"]["body"]) - {"@odata.context"}
    assert set(deleted.json()) == set(reference)
    assert deleted.json()["@odata.context"].endswith("/v1.0/$metadata#servicePrincipals")
    [found] = deleted.json()["value"]
    assert principal_keys <= set(found) and (found["id"], found["appId"]) == (app["principalId"], app["appId"])
    assert found["deletedDateTime"] is not None
    graph_error(Wire(sandbox, sandbox.auditor).graph("GET", "/directory/deletedItems/microsoft.graph.servicePrincipal",
                                                     params=query), 403, "Authorization_RequestDenied")


def test_deleted_items_need_application_read_all_which_owned_by_alone_is_not() -> None:
    with Sandbox(scenario="healthy", options=WorldOptions(remediator_graph_permissions=frozenset({GRAPH_OWNED_BY}))
                 ) as owned_by_only:
        remediator = Wire(owned_by_only, owned_by_only.remediator)
        assert remediator.graph("GET", "/applications").status_code == 200  # it reads every application
        graph_error(remediator.graph("GET", "/directory/deletedItems/microsoft.graph.application"),
                    403, "Authorization_RequestDenied")


# ---------------------------------------------------------------- Graph: what the remediator creates and owns


def test_the_remediator_owns_the_application_it_creates_and_may_write_only_what_it_owns(sandbox: Sandbox) -> None:
    remediator = Wire(sandbox, sandbox.remediator)
    created = remediator.graph("POST", "/applications", json={"displayName": "Display name"})
    reference = sample("graph_application_create_v1.0.json")["response"]["body"]
    assert created.status_code == 201 and set(reference) <= set(created.json())
    assert created.json()["@odata.context"].endswith("/v1.0/$metadata#applications/$entity")
    app = created.json()
    me = remediator.graph("GET", f"/servicePrincipals(appId='{sandbox.remediator.client_id}')").json()["id"]
    expanded = remediator.graph("GET", f"/applications(appId='{app['appId']}')", params={"$expand": "owners"})
    assert [o["id"] for o in expanded.json()["owners"]] == [me]
    owned = remediator.graph("GET", f"/servicePrincipals/{me}/ownedObjects/microsoft.graph.application").json()
    assert app["id"] in {o["id"] for o in owned["value"]}
    added = remediator.graph("POST", f"/applications/{app['id']}/addPassword", json={"passwordCredential": {}})
    assert added.status_code == 200  # the body holds secret text: never printed
    # A password of an application without a service principal does not sign in (Entra ID's AADSTS7000229).
    orphan = remediator.token_response(app["appId"], added.json()["secretText"])
    assert orphan.status_code == 401 and orphan.json()["error"] == "invalid_client"
    assert orphan.json()["error_codes"] == [7000229]
    principal = remediator.graph("POST", "/servicePrincipals", json={"appId": app["appId"]})
    principal_reference = sample("graph_servicePrincipal_create_v1.0.json")["response"]["body"]
    assert principal.status_code == 201 and set(principal_reference) <= set(principal.json())
    assert principal.json()["appId"] == app["appId"]
    graph_error(remediator.graph("POST", "/servicePrincipals", json={"appId": app["appId"]}),
                409, "Request_MultipleObjectsWithSameKeyValue")
    signed_in = remediator.token_response(app["appId"], added.json()["secretText"])
    assert signed_in.status_code == 200  # (the call stays out of the assert: pytest would print its arguments)
    operators = next(a for a in sandbox.snapshot()["applications"] if a["appId"] == sandbox.operator.client_id)
    graph_error(remediator.graph("POST", f"/applications/{operators['objectId']}/addPassword",
                                 json={"passwordCredential": {}}), 403, "Authorization_RequestDenied")


# ---------------------------------------------------------------- Graph: owners, notes, federated credentials, order


class UserWire(Wire):
    """A member user's Graph calls, with the delegated token the Azure CLI would hold for the user."""

    def __init__(self, sandbox: Sandbox, display_name: str = "Mallory Contractor") -> None:
        super().__init__(sandbox)
        self.user = self.admin("users", {"displayName": display_name}).json()

    def auth(self, resource: str) -> dict[str, str]:
        token = self.admin(f"users/{self.user['id']}/token", {"resource": resource}).json()["accessToken"]
        return {"Authorization": f"Bearer {token}"}


def owner_ref(object_id: str) -> dict[str, str]:
    # application-post-owners: the request body names the new owner as a directoryObjects URL.
    return {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{object_id}"}


def test_a_member_user_registers_an_application_and_makes_the_remediator_its_co_owner(sandbox: Sandbox) -> None:
    # Entra ID's default user permissions: any member user may register applications (they own what they create)
    # and, as an owner, add owners (application-post-owners, delegated). Ownership is not exclusive: that is how a
    # user makes the remediator co-owner of an application the remediator never created.
    user = UserWire(sandbox)
    app = user.graph("POST", "/applications", json={"displayName": "lookalike", "notes": "Creation nonce 00."})
    assert app.status_code == 201, app.text
    assert app.json()["notes"] == "Creation nonce 00."
    remediator = Wire(sandbox, sandbox.remediator)
    me = remediator.graph("GET", f"/servicePrincipals(appId='{sandbox.remediator.client_id}')").json()["id"]
    added = user.graph("POST", f"/applications/{app.json()['id']}/owners/$ref", json=owner_ref(me))
    assert added.status_code == 204, added.text
    graph_error(user.graph("POST", f"/applications/{app.json()['id']}/owners/$ref", json=owner_ref(me)),
                400, "Request_BadRequest")  # already an owner
    owners = remediator.graph("GET", f"/applications/{app.json()['id']}/owners").json()["value"]
    assert sorted((o["@odata.type"], o["id"]) for o in owners) == sorted(
        [("#microsoft.graph.servicePrincipal", me), ("#microsoft.graph.user", user.user["id"])])
    # The remediator now finds it among what it owns, with its notes and owners: nothing there says who created it.
    owned = remediator.graph("GET", f"/servicePrincipals/{me}/ownedObjects/microsoft.graph.application",
                             params={"$select": "id,notes", "$expand": "owners"}).json()["value"]
    found = next(o for o in owned if o["id"] == app.json()["id"])
    assert found["notes"] == "Creation nonce 00." and {o["id"] for o in found["owners"]} == {me, user.user["id"]}
    # The user leaves: the remediator is the sole owner of an application it never made.
    left = user.graph("DELETE", f"/applications/{app.json()['id']}/owners/{user.user['id']}/$ref")
    assert left.status_code == 204, left.text
    owners = remediator.graph("GET", f"/applications/{app.json()['id']}/owners").json()["value"]
    assert [o["id"] for o in owners] == [me]
    graph_error(user.graph("PATCH", f"/applications/{app.json()['id']}", json={"notes": "x"}),
                403, "Authorization_RequestDenied")  # no longer an owner


def test_owned_by_may_not_add_another_owner_and_no_one_may_change_what_they_do_not_own(sandbox: Sandbox) -> None:
    # application-post-owners: "Application.ReadWrite.OwnedBy isn't sufficient to add another owner".
    remediator = Wire(sandbox, sandbox.remediator)
    mine = remediator.graph("POST", "/applications", json={"displayName": "mine"}).json()
    user = UserWire(sandbox)
    graph_error(remediator.graph("POST", f"/applications/{mine['id']}/owners/$ref",
                                 json=owner_ref(user.user["id"])), 403, "Authorization_RequestDenied")
    me = remediator.graph("GET", f"/servicePrincipals(appId='{sandbox.remediator.client_id}')").json()["id"]
    graph_error(user.graph("DELETE", f"/applications/{mine['id']}/owners/{me}/$ref"),
                403, "Authorization_RequestDenied")
    graph_error(user.graph("POST", f"/applications/{mine['id']}/owners/$ref", json=owner_ref(user.user["id"])),
                403, "Authorization_RequestDenied")
    graph_error(user.graph("POST", f"/applications/{mine['id']}/owners/$ref", json={"@odata.id": "nonsense"}),
                403, "Authorization_RequestDenied")  # authorization is decided before the body is read
    graph_error(user.graph("PATCH", f"/applications/{mine['id']}", json={"notes": "x" * 1025}),
                403, "Authorization_RequestDenied")
    graph_error(remediator.graph("PATCH", f"/applications/{mine['id']}", json={"notes": "x" * 1025}),
                400, "Request_BadRequest")  # notes: at most 1,024 characters


def test_a_service_principal_has_owners_of_its_own_and_federated_credentials_sign_in_without_a_secret(
        sandbox: Sandbox) -> None:
    user = UserWire(sandbox)
    app = user.graph("POST", "/applications", json={"displayName": "users-app"}).json()
    principal = user.graph("POST", "/servicePrincipals", json={"appId": app["appId"]})
    assert principal.status_code == 201, principal.text
    # Its creator owns the service principal itself, apart from the application's owners.
    expanded = user.graph("GET", f"/servicePrincipals/{principal.json()['id']}",
                          params={"$select": "id,appId", "$expand": "owners"}).json()
    assert set(expanded) >= {"id", "appId", "owners"} and "displayName" not in expanded
    assert [o["id"] for o in expanded["owners"]] == [user.user["id"]]
    created = user.graph("POST", f"/applications/{app['id']}/federatedIdentityCredentials", json={
        "name": "ci", "issuer": "https://token.actions.githubusercontent.com", "subject": "repo:x/y:ref:main",
        "audiences": ["api://AzureADTokenExchange"]})
    assert created.status_code == 201, created.text
    listed = Wire(sandbox, sandbox.remediator).graph("GET", f"/applications/{app['id']}/federatedIdentityCredentials")
    assert [c["subject"] for c in listed.json()["value"]] == ["repo:x/y:ref:main"]


def test_collections_come_in_no_promised_order_but_the_same_one_on_every_read(sandbox: Sandbox) -> None:
    # Graph promises no order without $orderby: the sandbox lists in a seeded permutation, not creation order, so no
    # code can depend on order by accident; a list read twice is the same (paging stays consistent).
    remediator = Wire(sandbox, sandbox.remediator)
    made = [remediator.graph("POST", "/applications", json={"displayName": f"app-{n:02d}"}).json()["id"]
            for n in range(12)]
    listed = [a["id"] for a in remediator.graph("GET", "/applications").json()["value"] if a["id"] in made]
    assert sorted(listed) == sorted(made) and listed != made
    assert listed == [a["id"] for a in remediator.graph("GET", "/applications").json()["value"] if a["id"] in made]


# ---------------------------------------------------------------- AKS: legacy Azure AD integration


def test_reset_aad_profile_is_a_long_running_operation_like_the_example(sandbox: Sandbox) -> None:
    remediator = Wire(sandbox, sandbox.remediator)
    server = remediator.admin("applications", {"displayName": "aks-legacy-server", "passwords": [
        {"startDaysAgo": 400, "endInDays": -2}]}).json()  # the cluster holds an expired server secret
    client = remediator.admin("applications", {"displayName": "aks-legacy-client"}).json()
    cluster = remediator.admin("clusters", {"resourceGroup": "rg-payments", "name": "aks-legacy",
                                            "managedIdentity": True, "legacyAad": {
                                                "serverAppId": server["appId"], "clientAppId": client["appId"]}})
    assert cluster.status_code == 201 and cluster.json()["aad"]["serverSecretValidNow"] is False
    added = remediator.graph("POST", f"/applications/{server['objectId']}/addPassword",
                             json={"passwordCredential": {}})
    reference = sample("aks_ManagedClustersResetAADProfile_2024-09-01.json")
    fields = ("clientAppID", "serverAppID", "serverAppSecret", "tenantID")
    assert set(fields) == set(reference["parameters"]["parameters"])  # the body holds secret text: keys checked apart
    body = dict(zip(fields, (client["appId"], server["appId"], added.json()["secretText"], sandbox.tenant_id),
                    strict=True))
    path = remediator.cluster_path("aks-legacy") + "/resetAADProfile"
    missing = {k: v for k, v in body.items() if k != "serverAppSecret"}
    assert_arm_error(remediator.arm("POST", path, json=missing), 400, "InvalidParameter")
    assert_arm_error(remediator.arm("POST", remediator.cluster_path() + "/resetAADProfile", json=body),
                     400, "BadRequest")  # aks-payments has no legacy Azure AD integration
    started = remediator.arm("POST", path, json=body)
    assert started.status_code == 202 and started.content == b""
    ours = started.headers["Location"].split("/subscriptions/")[1].split("/")
    theirs = reference["responses"]["202"]["headers"]["location"].split("/subscriptions/")[1].split("/")
    assert ours[0] == sandbox.subscription_id and ours[1:4] == theirs[1:4] and ours[5] == theirs[5]
    assert started.headers["Location"].endswith("?api-version=2017-08-31")
    assert "/operations/" in started.headers["Azure-AsyncOperation"]
    remediator.admin("clock", {"advanceSeconds": 1})
    done = remediator.arm("GET", started.headers["Azure-AsyncOperation"], api_version=None).json()
    assert done["status"] == "Succeeded"
    assert remediator.arm("GET", started.headers["Location"], api_version=None).status_code == 204
    view = next(c for c in sandbox.snapshot()["clusters"] if c["name"] == "aks-legacy")
    assert view["provisioningState"] == "Succeeded" and view["aad"]["serverSecretValidNow"] is True

"""`az role assignment list/create` by role name, and `az role definition list --name`: the built-in definitions
(sandbox/rbac.py) found by `roleName eq`, assignments made and listed by object id."""

from __future__ import annotations

from tests.support.az import Az


def test_an_assignment_by_role_name_and_object_id_is_created_and_listed(az: Az) -> None:
    [definition] = az("role", "definition", "list", "--name", "Network Contributor")
    assert definition["roleName"] == "Network Contributor" and definition["roleType"] == "BuiltInRole"
    state = az.sandbox.state
    client_id = az("aks", "show", "-g", "rg-payments", "-n", "aks-payments")["servicePrincipalProfile"]["clientId"]
    with state.lock:
        object_id = state.applications[client_id].sp_object_id
    scope = f"/subscriptions/{az.sandbox.subscription_id}/resourceGroups/rg-payments"
    created = az("role", "assignment", "create", "--assignee-object-id", object_id, "--assignee-principal-type",
                 "ServicePrincipal", "--role", "Network Contributor", "--scope", scope)
    assert created["principalId"] == object_id and created["scope"] == scope
    assert created["roleDefinitionId"].endswith(definition["name"])
    listed = az("role", "assignment", "list", "--scope", scope)
    assert any(a["principalId"] == object_id and a["roleDefinitionName"] == "Network Contributor" for a in listed)
    everywhere = az("role", "assignment", "list", "--all")
    assert any(a["principalId"] == object_id for a in everywhere)
    assert isinstance(az("role", "assignment", "list"), list)  # the default form: atScope() at the subscription


def test_an_assignment_by_the_assignees_app_id_is_created_and_found(az: Az) -> None:
    client_id = az("aks", "show", "-g", "rg-platform", "-n", "aks-healthy")["servicePrincipalProfile"]["clientId"]
    scope = f"/subscriptions/{az.sandbox.subscription_id}/resourceGroups/rg-platform"
    created = az("role", "assignment", "create", "--assignee", client_id, "--role", "Network Contributor",
                 "--scope", scope)
    with az.sandbox.state.lock:
        object_id = az.sandbox.state.applications[client_id].sp_object_id
    assert created["principalId"] == object_id
    found = az("role", "assignment", "list", "--assignee", client_id, "--all")
    assert [a["roleDefinitionName"] for a in found if a["scope"] == scope] == ["Network Contributor"]

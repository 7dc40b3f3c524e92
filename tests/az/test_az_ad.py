"""`az ad app`, `az ad sp` (show, list, create, delete, credential list and reset), `az ad sp create-for-rbac`
and the Graph side of `az role assignment list --assignee`: the real CLI, unchanged, against the sandbox's Graph.
No test prints a password: they are only measured, or used to sign in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.az import Az, pointed_at
from tests.support.wire import Wire, assign

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"  # Microsoft's built-in Reader role


def application(az: Az, app_id: str) -> Any:
    return az.sandbox.state.application_record(app_id)


def sign_in_status(az: Az, app_id: str, secret: str) -> int:
    """The token endpoint's status for this secret (compared by the callers, so that no assertion shows it)."""
    return Wire(az.sandbox).token_response(app_id, secret).status_code


def assert_signs_in(az: Az, app_id: str, secret: str, *, yes: bool = True) -> None:
    status = sign_in_status(az, app_id, secret)
    assert (status == 200) == yes, f"a client credentials sign-in as {app_id} answered {status}"


def test_an_application_is_created_once_per_display_name_shown_listed_and_deleted(az: Az) -> None:
    made = az("ad", "app", "create", "--display-name", "az-ad-app")
    again = az("ad", "app", "create", "--display-name", "az-ad-app")  # an existing one is patched, not duplicated
    assert again["appId"] == made["appId"] and again["id"] == made["id"]
    longer = az("ad", "app", "create", "--display-name", "az-ad-app-longer")
    listed = az("ad", "app", "list", "--display-name", "az-ad-app")  # az asks startswith(displayName,...)
    assert sorted(a["appId"] for a in listed) == sorted([made["appId"], longer["appId"]])
    assert az("ad", "app", "list", "--app-id", made["appId"], "--query", "[].displayName") == ["az-ad-app"]
    by_app_id = az("ad", "app", "show", "--id", made["appId"])
    by_object_id = az("ad", "app", "show", "--id", made["id"])
    assert by_app_id["id"] == by_object_id["id"] == made["id"]
    assert by_app_id["displayName"] == "az-ad-app" and by_app_id["passwordCredentials"] == []
    # The operator created it, so it owns it, as Graph makes a creator an owner.
    assert az.sandbox.operator.client_id in application(az, made["appId"]).owners

    az("ad", "app", "delete", "--id", made["appId"])
    gone = az.fails("ad", "app", "show", "--id", made["appId"])
    assert gone.returncode == 3 and "does not exist" in gone.stderr
    assert made["appId"] in az.sandbox.state.deleted_applications  # soft-deleted: restorable for 30 days
    assert az("ad", "app", "list", "--display-name", "az-ad-app", "--query", "[].appId") == [longer["appId"]]


def test_an_application_credential_reset_replaces_or_with_append_adds_a_password(az: Az) -> None:
    made = az("ad", "app", "create", "--display-name", "az-ad-app-credentials")
    first = az("ad", "app", "credential", "reset", "--id", made["appId"])
    assert (first["appId"], first["tenant"]) == (made["appId"], az.sandbox.tenant_id) and first["password"]
    appended = az("ad", "app", "credential", "reset", "--id", made["appId"], "--append", "--display-name", "second")
    assert (appended["appId"], appended["tenant"]) == (made["appId"], az.sandbox.tenant_id)
    listed = az("ad", "app", "credential", "list", "--id", made["appId"])
    assert len(listed) == 2 and sorted(p["displayName"] or "" for p in listed)[-1] == "second"
    assert all(p["secretText"] is None for p in listed)
    # By object id, without --append: every password is removed, one new one added.
    replaced = az("ad", "app", "credential", "reset", "--id", made["id"])
    assert replaced["appId"] == made["appId"]
    [kept] = az("ad", "app", "credential", "list", "--id", made["id"])
    assert kept["keyId"] not in {p["keyId"] for p in listed}
    assert [p.key_id for p in application(az, made["appId"]).passwords] == [kept["keyId"]]


def test_a_service_principal_is_created_shown_by_any_of_its_ids_listed_and_deleted(az: Az) -> None:
    app = az("ad", "app", "create", "--display-name", "az-ad-sp", "--identifier-uris", "api://az-ad-sp")
    made = az("ad", "sp", "create", "--id", app["appId"])
    assert made["appId"] == app["appId"] and made["servicePrincipalNames"] == [app["appId"], "api://az-ad-sp"]
    for identifier in (app["appId"], made["id"], "api://az-ad-sp"):
        assert az("ad", "sp", "show", "--id", identifier)["id"] == made["id"], identifier
    assert az("ad", "sp", "list", "--display-name", "az-ad-sp", "--query", "[].id") == [made["id"]]
    assert az("ad", "sp", "list", "--spn", "api://az-ad-sp", "--query", "[].appId") == [app["appId"]]
    again = az.fails("ad", "sp", "create", "--id", app["appId"])
    assert "already in use" in again.stderr

    az("ad", "sp", "delete", "--id", app["appId"])
    assert az.fails("ad", "sp", "show", "--id", app["appId"]).returncode == 3
    assert az("ad", "app", "show", "--id", app["appId"])["id"] == app["id"]  # the application stays


def test_a_service_principal_credential_reset_gives_it_a_password_of_its_own_that_signs_in(az: Az) -> None:
    # The articles' repair: the cluster's service principal, by the appId `az aks show` gives.
    app_id = az("ad", "app", "list", "--display-name", "aks-payments-sp", "--query", "[0].appId")
    app_passwords = [p.key_id for p in application(az, app_id).passwords]
    assert az("ad", "sp", "credential", "list", "--id", app_id) == []
    reset = az("ad", "sp", "credential", "reset", "--id", app_id)
    assert (reset["appId"], reset["tenant"]) == (app_id, az.sandbox.tenant_id)
    assert_signs_in(az, app_id, reset["password"])
    [listed] = az("ad", "sp", "credential", "list", "--id", app_id)
    assert listed["hint"] == reset["password"][:3] and listed["secretText"] is None
    # The application's own (expired) password is untouched: a service principal's are not its application's.
    assert [p.key_id for p in application(az, app_id).passwords] == app_passwords

    principal_id = az("ad", "sp", "show", "--id", app_id, "--query", "id")
    again = az("ad", "sp", "credential", "reset", "--id", principal_id)  # by object id, replacing it
    [replaced] = az("ad", "sp", "credential", "list", "--id", principal_id)
    assert replaced["keyId"] != listed["keyId"]
    assert_signs_in(az, app_id, again["password"])
    assert_signs_in(az, app_id, reset["password"], yes=False)


def test_create_for_rbac_makes_an_application_a_service_principal_and_a_password_once_per_name(az: Az) -> None:
    made = az("ad", "sp", "create-for-rbac", "--name", "az-ad-rbac")
    assert (made["displayName"], made["tenant"]) == ("az-ad-rbac", az.sandbox.tenant_id)
    assert_signs_in(az, made["appId"], made["password"])
    [principal] = az("ad", "sp", "list", "--display-name", "az-ad-rbac")
    assert principal["appId"] == made["appId"]
    # Run again with the same name, it patches the same application and replaces its password.
    again = az("ad", "sp", "create-for-rbac", "--name", "az-ad-rbac")
    assert again["appId"] == made["appId"]
    assert [p["displayName"] for p in az("ad", "app", "credential", "list", "--id", made["appId"])] == ["rbac"]
    assert_signs_in(az, made["appId"], again["password"])
    assert_signs_in(az, made["appId"], made["password"], yes=False)


def test_role_assignment_list_resolves_an_assignee_through_graph(az: Az) -> None:
    made = az("ad", "sp", "create-for-rbac", "--name", "az-ad-assignee")
    principal_id = az("ad", "sp", "show", "--id", made["appId"], "--query", "id")
    scope = f"/subscriptions/{az.sandbox.subscription_id}"
    assert assign(Wire(az.sandbox), scope, READER, principal_id).status_code == 201
    # By appId (servicePrincipals?$filter=servicePrincipalNames/any(...)) and by object id (getByIds).
    for assignee in (made["appId"], principal_id):
        [found] = az("role", "assignment", "list", "--assignee", assignee, "--all")
        assert (found["principalId"], found["principalType"]) == (principal_id, "ServicePrincipal")
        assert found["principalName"] == made["appId"]  # az names a service principal by its first name
        assert found["roleDefinitionId"].endswith(READER)


def test_create_for_rbac_with_a_role_assigns_it_to_the_new_service_principal(az: Az) -> None:
    scope = f"/subscriptions/{az.sandbox.subscription_id}/resourceGroups/rg-payments"
    made = az("ad", "sp", "create-for-rbac", "--name", "az-ad-rbac-reader", "--role", "Reader", "--scopes", scope)
    assert_signs_in(az, made["appId"], made["password"])
    [assigned] = az("role", "assignment", "list", "--assignee", made["appId"], "--scope", scope)
    assert (assigned["roleDefinitionName"], assigned["scope"]) == ("Reader", scope)
    assert assigned["principalId"] == az("ad", "sp", "show", "--id", made["appId"], "--query", "id")


def test_an_identity_without_the_permission_is_refused_with_graphs_insufficient_privileges(az: Az,
                                                                                           tmp_path: Path) -> None:
    # The remediator holds Application.ReadWrite.OwnedBy: it owns the clusters' applications, not their service
    # principals, so it may reset an application's password but not a service principal's.
    remediator = pointed_at(az.sandbox, tmp_path, identity="remediator")
    app_id = az("ad", "app", "list", "--display-name", "aks-healthy-sp", "--query", "[0].appId")
    refused = remediator.fails("ad", "sp", "credential", "reset", "--id", app_id)
    assert "Insufficient privileges to complete the operation." in refused.stderr
    assert az("ad", "sp", "credential", "list", "--id", app_id) == []
    appended = remediator("ad", "app", "credential", "reset", "--id", app_id, "--append")
    assert appended["appId"] == app_id
    assert len(az("ad", "app", "credential", "list", "--id", app_id)) == 2

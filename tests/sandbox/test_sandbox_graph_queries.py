"""Microsoft Graph's queries and the routes the Azure CLI needs, on the wire: `$filter` clauses supported and refused
(with Graph's code and words), paging with `@odata.nextLink`, unknown segments, a service principal's own passwords,
`directoryObjects/getByIds`, and who may write a service principal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox import Sandbox
from tests.support.wire import Wire, new_identity, sample


def listed(wire: Wire, collection: str, query: str) -> list[dict[str, Any]]:
    response = wire.graph("GET", f"/{collection}", params={"$filter": query})
    assert response.status_code == 200, response.text
    return response.json()["value"]


def made_application(wire: Wire, name: str, **body: Any) -> dict[str, Any]:
    created = wire.graph("POST", "/applications", json={"displayName": name, **body})
    assert created.status_code == 201, created.text
    return created.json()


def made_principal(wire: Wire, app_id: str) -> dict[str, Any]:
    created = wire.graph("POST", "/servicePrincipals", json={"appId": app_id})
    assert created.status_code == 201, created.text
    return created.json()


def assert_graph_error(response: Any, status: int, code: str, message: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["message"]) == (code, message)
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}


def test_applications_are_filtered_by_display_name_app_id_id_and_identifier_uri(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    first = made_application(wire, "queries-Alpha", identifierUris=["api://queries-alpha"])
    second = made_application(wire, "queries-alpha-two")
    quoted = made_application(wire, "queries-o'brien")

    def ids(query: str) -> set[str]:
        return {a["id"] for a in listed(wire, "applications", query)}

    assert ids("displayName eq 'queries-alpha'") == {first["id"]}  # Entra ID's string comparison ignores case
    assert ids("startswith(displayName,'queries-alpha')") == {first["id"], second["id"]}
    assert ids("displayName eq 'queries-o''brien'") == {quoted["id"]}
    assert ids(f"appId eq '{second['appId']}'") == {second["id"]}
    assert ids(f"id eq '{first['id']}'") == {first["id"]}
    assert ids("identifierUris/any(s:s eq 'api://queries-alpha')") == {first["id"]}
    assert ids(f"startswith(displayName,'queries') and appId eq '{first['appId']}'") == {first["id"]}
    assert ids("displayName eq 'queries and more'") == set()  # an `and` inside a literal is part of it


def test_service_principals_are_filtered_by_service_principal_name_and_display_name(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    app = made_application(wire, "queries-principal", identifierUris=["api://queries-principal"])
    principal = made_principal(wire, app["appId"])
    for query in (f"servicePrincipalNames/any(c:c eq '{app['appId']}')",
                  "servicePrincipalNames/any(c:c eq 'api://queries-principal')",
                  "displayName eq 'queries-principal'", "startswith(displayName,'queries-princ')",
                  f"id eq '{principal['id']}'"):
        assert [p["id"] for p in listed(wire, "servicePrincipals", query)] == [principal["id"]], query
    selected = wire.graph("GET", "/servicePrincipals", params={"$filter": f"appId eq '{app['appId']}'",
                                                              "$select": "id,appId"}).json()
    assert selected["value"] == [{"id": principal["id"], "appId": app["appId"]}]


@pytest.mark.parametrize(("collection", "query", "prop", "resource"), [
    ("applications", "endswith(displayName,'x')", "endswith", "Application"),
    ("applications", "notes eq 'x'", "notes", "Application"),
    ("applications", "servicePrincipalNames/any(c:c eq 'x')", "servicePrincipalNames", "Application"),
    ("servicePrincipals", "appRoleAssignmentRequired eq true", "appRoleAssignmentRequired", "ServicePrincipal"),
    ("servicePrincipals", "identifierUris/any(s:s eq 'x')", "identifierUris", "ServicePrincipal"),
    ("servicePrincipals", "appId eq 'x' or appId eq 'y'", "appId", "ServicePrincipal"),
])
def test_a_filter_graph_does_not_support_is_refused_in_graphs_words(sandbox: Sandbox, collection: str, query: str,
                                                                    prop: str, resource: str) -> None:
    response = Wire(sandbox).graph("GET", f"/{collection}", params={"$filter": query})
    assert_graph_error(response, 400, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause "
                       f"specified for property '{prop}' of resource '{resource}'.")


def test_lists_are_paged_with_next_links_that_keep_the_filter(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    names = {made_application(wire, f"queries-paged-{n}")["id"] for n in range(5)}
    seen: list[str] = []
    page = wire.graph("GET", "/applications", params={"$filter": "startswith(displayName,'queries-paged-')",
                                                      "$top": "2"}).json()
    while True:
        assert len(page["value"]) <= 2
        seen += [a["id"] for a in page["value"]]
        if "@odata.nextLink" not in page:
            break
        page = wire.http.get(page["@odata.nextLink"], headers=wire.auth("https://graph.microsoft.com")).json()
    assert sorted(seen) == sorted(names)
    assert_graph_error(wire.graph("GET", "/servicePrincipals", params={"$top": "1000"}), 400, "Request_BadRequest",
                       "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive.")


def test_an_unknown_segment_is_graphs_bad_request_naming_it_and_an_unknown_method_its_405(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    assert_graph_error(wire.graph("GET", "/applicatons"), 400, "BadRequest",
                       "Resource not found for the segment 'applicatons'.")
    app = made_application(wire, "queries-segment")
    assert_graph_error(wire.graph("POST", f"/applications/{app['id']}/addSecret", json={}), 400, "BadRequest",
                       "Resource not found for the segment 'addSecret'.")
    assert_graph_error(wire.graph("PUT", f"/applications/{app['id']}", json={}), 405, "Request_BadRequest",
                       "Specified HTTP method is not allowed for the request target.")


def test_a_service_principal_keeps_passwords_of_its_own_which_sign_in(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    app = made_application(wire, "queries-sp-password")
    principal = made_principal(wire, app["appId"])
    reference = sample("graph_servicePrincipal_addPassword_v1.0.json")
    added = wire.graph("POST", f"/servicePrincipals/{principal['id']}/addPassword", json=reference["request"]["body"])
    assert added.status_code == 200, added.text
    assert set(reference["response"]["body"]) <= set(added.json())
    assert added.json()["displayName"] == "Password friendly name" and added.json()["secretText"]
    shown = wire.graph("GET", f"/servicePrincipals/{principal['id']}").json()
    assert [p["keyId"] for p in shown["passwordCredentials"]] == [added.json()["keyId"]]
    assert all(p["secretText"] is None for p in shown["passwordCredentials"])
    assert wire.graph("GET", f"/applications/{app['id']}").json()["passwordCredentials"] == []
    assert wire.token_response(app["appId"], added.json()["secretText"]).status_code == 200

    removed = wire.graph("POST", f"/servicePrincipals/{principal['id']}/removePassword",
                         json={"keyId": added.json()["keyId"]})
    assert removed.status_code == 204
    assert wire.graph("GET", f"/servicePrincipals/{principal['id']}").json()["passwordCredentials"] == []
    assert wire.token_response(app["appId"], added.json()["secretText"]).json()["error"] == "invalid_client"


def test_only_readwrite_all_or_an_owner_writes_a_service_principal(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    app = made_application(wire, "queries-sp-denied")
    principal = made_principal(wire, app["appId"])
    remediator = Wire(sandbox, sandbox.remediator)  # OwnedBy, and not the service principal's owner
    for method, path, body in (("POST", "addPassword", {}), ("POST", "removePassword", {"keyId": app["id"]}),
                               ("DELETE", "", None)):
        refused = remediator.graph(method, f"/servicePrincipals/{principal['id']}/{path}".rstrip("/"), json=body)
        assert_graph_error(refused, 403, "Authorization_RequestDenied",
                           "Insufficient privileges to complete the operation.")
    assert wire.graph("GET", f"/servicePrincipals/{principal['id']}").json()["passwordCredentials"] == []


def test_deleting_a_service_principal_keeps_its_application_which_can_no_longer_sign_in(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    app = made_application(wire, "queries-sp-deleted")
    principal = made_principal(wire, app["appId"])
    secret = wire.graph("POST", f"/applications/{app['id']}/addPassword", json={}).json()["secretText"]
    assert wire.token_response(app["appId"], secret).status_code == 200
    assert wire.graph("DELETE", f"/servicePrincipals/{principal['id']}").status_code == 204
    assert wire.graph("GET", f"/servicePrincipals/{principal['id']}").status_code == 404
    assert wire.graph("GET", f"/applications/{app['id']}").status_code == 200
    refused = wire.token_response(app["appId"], secret)
    assert refused.status_code == 401 and "AADSTS7000229" in refused.json()["error_description"]


def test_directory_objects_are_resolved_by_id_with_their_type(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    app = made_application(wire, "queries-by-ids")
    principal = made_principal(wire, app["appId"])
    user = wire.admin("users", {"displayName": "Queries User"}).json()
    missing = "00000000-0000-4000-8000-000000000000"
    every = {"ids": [principal["id"], missing, app["id"], user["id"]]}
    answered = wire.graph("POST", "/directoryObjects/getByIds", json=every).json()
    reference = sample("graph_directoryObject_getByIds_v1.0.json")["response"]["body"]
    assert answered["@odata.context"].endswith(reference["@odata.context"].removeprefix("https://graph.microsoft.com"))
    found = answered["value"]
    assert [(o["@odata.type"], o["id"]) for o in found] == [
        ("#microsoft.graph.servicePrincipal", principal["id"]), ("#microsoft.graph.application", app["id"]),
        ("#microsoft.graph.user", user["id"])]
    assert found[0]["appId"] == app["appId"] and found[0]["servicePrincipalNames"] == [app["appId"]]
    assert found[2]["displayName"] is None  # an application may not read users: limited information
    typed = wire.graph("POST", "/directoryObjects/getByIds",
                       json={**every, "types": ["User", "group", "SERVICEPRINCIPAL"]}).json()["value"]
    assert [o["id"] for o in typed] == [principal["id"], user["id"]]


def test_a_service_principals_passwords_survive_a_restart(tmp_path: Path) -> None:
    with Sandbox(state_dir=tmp_path) as first:
        wire = Wire(first)
        app = made_application(wire, "queries-restart")
        principal = made_principal(wire, app["appId"])
        path = f"/servicePrincipals/{principal['id']}"
        kept = wire.graph("POST", f"{path}/addPassword", json={}).json()
        gone = wire.graph("POST", f"{path}/addPassword", json={}).json()
        assert wire.graph("POST", f"{path}/removePassword", json={"keyId": gone["keyId"]}).status_code == 204
    with Sandbox(state_dir=tmp_path) as second:
        wire = Wire(second)
        shown = wire.graph("GET", path).json()
        assert [p["keyId"] for p in shown["passwordCredentials"]] == [kept["keyId"]]
        assert wire.graph("GET", f"/applications/{app['id']}").json()["passwordCredentials"] == []
        assert wire.token_response(app["appId"], kept["secretText"]).status_code == 200


def test_owned_by_creates_and_then_writes_the_service_principal_it_made(sandbox: Sandbox) -> None:
    creator, _ = new_identity(sandbox, "queries-owned-by-creator", graphPermissions=["Application.ReadWrite.OwnedBy"])
    wire = Wire(sandbox, creator)
    app = made_application(wire, "queries-owned-by-made")
    principal = made_principal(wire, app["appId"])
    added = wire.graph("POST", f"/servicePrincipals/{principal['id']}/addPassword", json={})
    assert added.status_code == 200, added.text

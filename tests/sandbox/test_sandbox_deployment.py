"""What a deployment meets in the sandbox behaves like Azure on the wire: the remediator's delegation condition that
excludes itself, Graph's application upsert and its pre-authorization rule, a principal's directory roles and app
role assignments, the cloud's endpoint metadata, Flex Consumption regions, Event Grid system topics, function apps
and their app settings, Resource Graph rows of function apps and built-in role definitions; compared with the
official examples in tests/reference/ and read through the real SDK clients where one exists."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from azure.core import PipelineClient
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.policies import RetryPolicy
from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest

from sandbox import Identity, Sandbox, WorldOptions
from sandbox.rbac import BUILT_IN_ROLES, condition_excluded_principals, delegation_condition, parse_condition
from tests.support.wire import Wire, assert_arm_error, new_identity, reader, sample

DELEGATION = WorldOptions(remediator_role_assignment_roles=frozenset({"Network Contributor"}))
NETWORK = "4d97b98b-1d4f-4787-a291-c67834d212e7"  # Network Contributor (built-in roles reference)
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# Microsoft Graph permissions reference: application permission ids.
GRAPH_PERMISSION_IDS = {"Application.Read.All": "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
                        "Application.ReadWrite.OwnedBy": "18a4783c-866b-4cc7-a460-3d5e5662c884",
                        "Application.ReadWrite.All": "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9",
                        "AppRoleAssignment.ReadWrite.All": "06b708a9-e830-4db3-a914-8e69da51d44f"}
PRIVILEGED_ROLE_ADMINISTRATOR = "e8611ab8-c189-46e8-94e1-60213ab1f814"  # Entra built-in roles reference
APPLICATION_DEVELOPER = "cf1c38e5-3621-4004-a7cb-879624dced7c"
AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
SETTINGS = {"AzureWebJobsStorage__accountName": "stremabc", "REMEDIATOR_MODE": "remediate",
            "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=not-shown", "SOME_API_KEY": "not-shown",
            "WEBHOOK_SECRET": "not-shown"}
SITE_QUERY = "Resources | where type =~ 'microsoft.web/sites' | project id, name, resourceGroup, subscriptionId, tags"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(scenario="healthy", options=DELEGATION) as running:
        yield running


def arm(sandbox: Sandbox, identity: Identity | None = None) -> ARMPipelineClient:
    """azure-mgmt-core's ARM pipeline, signed in with azure-identity as `identity` (the operator by default)."""
    return ARMPipelineClient(base_url=sandbox.endpoints["arm"], connection_verify=sandbox.ca_path, policies=[
        RetryPolicy(retry_total=0), ARMChallengeAuthenticationPolicy(
            sandbox.credential(identity or sandbox.operator), "https://management.azure.com/.default")])


def call(client: PipelineClient, method: str, url: str, **params: str) -> HttpResponse:
    return client.send_request(HttpRequest(method, url, params=params))


def error_code(response: HttpResponse) -> str:
    return response.json()["error"]["code"]


def body_of(name: str, status: str = "200") -> dict[str, Any]:
    return sample(name)["responses"][status]["body"]


def upsert(wire: Wire, name: str, body: Any, *, create: bool = True) -> Any:
    """Graph's PATCH /applications(uniqueName='...'), with `Prefer: create-if-missing` unless `create` is false."""
    headers = wire.auth("https://graph.microsoft.com") | ({"Prefer": "create-if-missing"} if create else {})
    return wire.http.patch(f"{wire.sandbox.endpoints['graph']}/v1.0/applications(uniqueName='{name}')", json=body,
                           headers=headers)


def plant(sandbox: Sandbox, **body: Any) -> dict[str, Any]:
    planted = Wire(sandbox).admin("remediators", {"resourceGroup": "rg-remediator", "name": "func-remediator-abc",
                                                  "tags": {"azd-env-name": "prod"}, "appSettings": SETTINGS, **body})
    assert planted.status_code in (200, 201), planted.text
    return planted.json()


# ---------------------------------------------------------------- the delegation condition excludes the remediator


def test_the_remediator_may_not_assign_a_listed_role_to_itself_but_may_to_another_principal(sandbox: Sandbox) -> None:
    remediator = AuthorizationManagementClient(sandbox.credential(sandbox.remediator), sandbox.subscription_id,
                                               base_url=sandbox.endpoints["arm"], connection_verify=sandbox.ca_path,
                                               retry_total=0)
    scope = f"/subscriptions/{sandbox.subscription_id}/resourceGroups/rg-payments"
    me = next(a for a in sandbox.snapshot()["applications"] if a["appId"] == sandbox.remediator.client_id)
    _, other = new_identity(sandbox, "replacement-sp")

    def give(principal_id: str) -> Any:
        return remediator.role_assignments.create(scope, str(uuid.uuid4()), RoleAssignmentCreateParameters(
            role_definition_id=f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{NETWORK}",
            principal_id=principal_id, principal_type="ServicePrincipal"))

    with pytest.raises(HttpResponseError) as refused:
        give(me["servicePrincipalObjectId"])
    assert refused.value.status_code == 403 and refused.value.error.code == "AuthorizationFailed"
    assert "ABAC condition that is not fulfilled" in refused.value.error.message
    assert give(other["servicePrincipalObjectId"]).principal_id == other["servicePrincipalObjectId"]
    # The delete branch tests @Resource's principal the same way (its role holds no delete action, but the condition
    # infra/ deploys keeps Microsoft's two-branch template).
    condition = parse_condition(delegated_condition(sandbox))
    assert not condition.allows_delete(NETWORK, "ServicePrincipal", me["servicePrincipalObjectId"])
    assert condition.allows_delete(NETWORK, "ServicePrincipal", other["servicePrincipalObjectId"])
    condition_text = delegation_condition([NETWORK], principal_types=["ServicePrincipal"],
                                          excluded_principals=[me["servicePrincipalObjectId"]])
    assert condition_excluded_principals(condition_text) == {me["servicePrincipalObjectId"]}


def delegated_condition(sandbox: Sandbox) -> str:
    """The condition on the remediator's role assignment writes, as the world grants it."""
    with sandbox.state.lock:
        found = sandbox.state.applications[sandbox.remediator.client_id].role_assignment_condition
    assert found
    return found


# ---------------------------------------------------------------- Graph: upsert and the pre-authorization rule


def test_upsert_creates_with_the_header_updates_without_and_is_404_for_a_missing_one(sandbox: Sandbox) -> None:
    wire, name = Wire(sandbox), f"app-{uuid.uuid4().hex[:8]}"
    path = f"/applications(uniqueName='{name}')"
    reference = sample("graph_application_upsert_v1.0.json")
    assert wire.graph("GET", path).status_code == 404
    missing = upsert(wire, name, {"displayName": "Display name"}, create=False)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "Request_ResourceNotFound"
    no_name = upsert(wire, name, {"signInAudience": "AzureADMyOrg"})
    assert no_name.status_code == 400  # the body must hold displayName on create
    assert reference["create"]["request"]["headers"]["Prefer"] == "create-if-missing"
    created = upsert(wire, name, reference["create"]["request"]["body"])
    assert created.status_code == 201, created.text
    assert set(reference["create"]["response"]["body"]) <= set(created.json())
    assert created.json()["uniqueName"] == name
    assert created.json()["@odata.context"].endswith("/v1.0/$metadata#applications/$entity")
    updated = upsert(wire, name, {"displayName": "Renamed"})
    assert updated.status_code == 204 and updated.content == b""
    got = wire.graph("GET", path).json()
    assert (got["id"], got["displayName"], got["uniqueName"]) == (created.json()["id"], "Renamed", name)
    changed = wire.graph("PATCH", f"/applications/{got['id']}", json={"uniqueName": "another"})
    assert changed.status_code == 400  # uniqueName is immutable once set
    # OwnedBy may create one (and then owns it), not update one it does not own.
    remediator = Wire(sandbox, sandbox.remediator)
    denied = upsert(remediator, name, {"displayName": "Mine"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "Authorization_RequestDenied"
    assert upsert(remediator, f"{name}-r", {"displayName": "Mine"}).status_code == 201
    owned = next(a for a in sandbox.snapshot()["applications"] if a["uniqueName"] == f"{name}-r")
    assert owned["owners"] == [sandbox.remediator.client_id]


def api_body(scope_id: str, *, preauthorize: bool) -> dict[str, Any]:
    """What infra/modules/api-app.bicep sends: a scope, and Azure CLI pre-authorized for it."""
    body: dict[str, Any] = {
        "displayName": "aks-sp-remediator-api", "signInAudience": "AzureADMyOrg",
        "identifierUris": ["api://tenant/aks-sp-remediator"],
        "appRoles": [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "write")), "value": "Remediations.Write",
                      "displayName": "Start remediations", "description": "Start", "isEnabled": True,
                      "allowedMemberTypes": ["User", "Application"]}],
        "api": {"requestedAccessTokenVersion": 2, "oauth2PermissionScopes": [{
            "id": scope_id, "value": "user_impersonation", "type": "User", "isEnabled": True,
            "adminConsentDisplayName": "Use the API", "adminConsentDescription": "Call the API as the user"}]}}
    if preauthorize:
        body["api"]["preAuthorizedApplications"] = [{"appId": AZURE_CLI, "delegatedPermissionIds": [scope_id]}]
    return body


def test_a_preauthorization_of_a_scope_made_in_the_same_request_is_refused_and_nothing_is_written(
        sandbox: Sandbox) -> None:
    wire, name, scope = Wire(sandbox), "remediator-api", str(uuid.uuid4())
    before = len(sandbox.snapshot()["applications"])
    refused = upsert(wire, name, api_body(scope, preauthorize=True))
    reference = sample("graph_preAuthorizedApplications_InvalidValue_field_report.json")["response"]
    assert refused.status_code == reference["status"]
    error = refused.json()["error"]
    assert {k: error[k] for k in reference["body"]["error"]} == reference["body"]["error"]
    posted = wire.graph("POST", "/applications", json=api_body(scope, preauthorize=True))
    assert posted.status_code == 400 and posted.json()["error"]["code"] == "InvalidValue"
    assert len(sandbox.snapshot()["applications"]) == before
    assert wire.graph("GET", f"/applications(uniqueName='{name}')").status_code == 404
    # By id too: a scope added in the same PATCH does not count; the stored application is unchanged.
    created = upsert(wire, name, api_body(scope, preauthorize=False)).json()
    second = str(uuid.uuid4())
    both = api_body(second, preauthorize=True)
    both["api"]["oauth2PermissionScopes"] += created["api"]["oauth2PermissionScopes"]
    assert wire.graph("PATCH", f"/applications/{created['id']}", json=both).status_code == 400
    assert wire.graph("GET", f"/applications/{created['id']}").json()["api"] == created["api"]


def test_a_scope_first_then_its_preauthorization_succeeds_and_the_full_body_repeats_idempotently(
        sandbox: Sandbox) -> None:
    wire, name, scope = Wire(sandbox), "remediator-api", str(uuid.uuid4())
    path = f"/applications(uniqueName='{name}')"
    assert upsert(wire, name, api_body(scope, preauthorize=False)).status_code == 201
    second_step = {"api": {"preAuthorizedApplications": [{"appId": AZURE_CLI, "delegatedPermissionIds": [scope]}]}}
    assert upsert(wire, name, second_step).status_code == 204
    stored = wire.graph("GET", path).json()
    # Sub-properties of `api` not given are kept: the scope stays.
    assert [s["id"] for s in stored["api"]["oauth2PermissionScopes"]] == [scope]
    assert stored["api"]["preAuthorizedApplications"] == second_step["api"]["preAuthorizedApplications"]
    assert stored["api"]["requestedAccessTokenVersion"] == 2
    # A re-deploy sends the whole body again: the scope exists now, so it is taken, and nothing changes.
    assert upsert(wire, name, api_body(scope, preauthorize=True)).status_code == 204
    again = wire.graph("GET", path).json()
    assert again == stored
    assert (again["signInAudience"], again["identifierUris"], [r["value"] for r in again["appRoles"]]) == (
        "AzureADMyOrg", ["api://tenant/aks-sp-remediator"], ["Remediations.Write"])


# ---------------------------------------------------------------- Graph: what a principal holds


def test_directory_roles_and_app_role_assignments_read_like_the_examples(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    operator = wire.graph("GET", f"/servicePrincipals(appId='{sandbox.operator.client_id}')").json()["id"]
    roles = wire.graph("GET", f"/servicePrincipals/{operator}/transitiveMemberOf/microsoft.graph.directoryRole")
    assert roles.status_code == 200, roles.text
    role_reference = sample("graph_directoryRole_get_v1.0.json")["response"]["body"]
    assert roles.json()["@odata.context"].endswith("/v1.0/$metadata#directoryRoles")
    (role,) = roles.json()["value"]
    assert set(role) == (set(role_reference) - {"@odata.context"}) | {"@odata.type"}
    assert (role["@odata.type"], role["roleTemplateId"], role["displayName"]) == (
        "#microsoft.graph.directoryRole", PRIVILEGED_ROLE_ADMINISTRATOR, "Privileged Role Administrator")
    picked = wire.graph("GET", f"/servicePrincipals/{operator}/transitiveMemberOf/microsoft.graph.directoryRole",
                        params={"$select": "id,displayName,roleTemplateId"}).json()
    assert picked["@odata.context"].endswith("#directoryRoles(id,displayName,roleTemplateId)")
    assert set(picked["value"][0]) == {"@odata.type", "id", "displayName", "roleTemplateId"}
    graph_sp = wire.graph("GET", f"/servicePrincipals(appId='{GRAPH_APP_ID}')").json()
    assert graph_sp["displayName"] == "Microsoft Graph"
    assert {r["value"]: r["id"] for r in graph_sp["appRoles"]} == GRAPH_PERMISSION_IDS
    assignments = wire.graph("GET", f"/servicePrincipals/{operator}/appRoleAssignments").json()
    reference = sample("graph_servicePrincipal_list_appRoleAssignments_v1.0.json")["response"]["body"]
    assert assignments["@odata.context"].endswith("/v1.0/$metadata#appRoleAssignments")
    assert all(set(reference["value"][0]) <= set(a) for a in assignments["value"])
    to_graph = {a["appRoleId"] for a in assignments["value"] if a["resourceId"] == graph_sp["id"]}
    assert to_graph == {GRAPH_PERMISSION_IDS["Application.ReadWrite.All"],
                        GRAPH_PERMISSION_IDS["AppRoleAssignment.ReadWrite.All"]}
    assert {(a["principalId"], a["principalType"], a["principalDisplayName"]) for a in assignments["value"]} == {
        (operator, "ServicePrincipal", "platform-operator")}
    assert {a["resourceDisplayName"] for a in assignments["value"]} == {"Microsoft Graph", "aks-sp-remediator-api"}
    # Microsoft Graph is another tenant's application: not one of this tenant's applications.
    assert wire.graph("GET", "/applications", params={"$filter": f"appId eq '{GRAPH_APP_ID}'"}).json()["value"] == []
    assert GRAPH_APP_ID not in {a["appId"] for a in sandbox.snapshot()["applications"]}
    me = wire.graph("GET", "/me/transitiveMemberOf/microsoft.graph.directoryRole")
    reference_me = sample("graph_me_app_only_400_field_report.json")["response"]
    assert me.status_code == reference_me["status"]
    assert {k: me.json()["error"][k] for k in ("code", "message")} == reference_me["body"]["error"]


def test_an_identity_made_on_the_admin_api_signs_in_with_the_grants_it_is_given(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    made = wire.admin("applications", {"displayName": "deployer-2", "withSecret": True}).json()
    secret = made.pop("clientSecret")
    assert set(made) == {"appId", "objectId", "displayName", "passwords"} and len(made["passwords"]) == 1
    assert secret not in json.dumps(sandbox.snapshot())
    patch = f"{sandbox.endpoints['admin']}/_sandbox/applications/{made['appId']}"
    bad = wire.http.patch(patch, json={"directoryRoles": ["Chief Wizard"]})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidRequest"
    assert wire.http.patch(patch, json={"graphPermissions": ["Directory.ReadWrite.All"]}).status_code == 400
    granted = wire.http.patch(patch, json={"graphPermissions": ["AppRoleAssignment.ReadWrite.All"],
                                           "directoryRoles": ["Application Developer"]}).json()
    assert (granted["graphPermissions"], granted["directoryRoles"]) == (
        ["AppRoleAssignment.ReadWrite.All"], [APPLICATION_DEVELOPER])
    principal = granted["servicePrincipalObjectId"]
    deployer = Wire(sandbox, Identity(made["appId"], secret))
    # AppRoleAssignment.ReadWrite.All alone reads no application.
    alone = deployer.graph("GET", "/applications")
    assert alone.status_code == 403 and alone.json()["error"]["code"] == "Authorization_RequestDenied"
    wire.http.patch(patch, json={"graphPermissions": ["Application.Read.All", "AppRoleAssignment.ReadWrite.All"]})
    mine = deployer.graph("GET", f"/servicePrincipals/{principal}/transitiveMemberOf").json()
    assert [r["roleTemplateId"] for r in mine["value"]] == [APPLICATION_DEVELOPER]
    assert mine["@odata.context"].endswith("#directoryObjects")
    assert wire.http.patch(f"{sandbox.endpoints['admin']}/_sandbox/applications/{uuid.uuid4()}",
                           json={"directoryRoles": []}).status_code == 404


# ---------------------------------------------------------------- the cloud's metadata and Flex regions


def test_the_metadata_endpoints_name_the_sandbox_and_the_cloud_without_a_token(sandbox: Sandbox) -> None:
    client = PipelineClient(base_url=sandbox.endpoints["arm"], connection_verify=sandbox.ca_path)
    url = f"{sandbox.endpoints['arm']}/metadata/endpoints"
    document = call(client, "GET", url, **{"api-version": "2022-09-01"})
    reference = sample("arm_metadata_endpoints_2022-09-01.json")
    assert document.status_code == 200 and set(document.json()) == set(reference)
    assert set(document.json()["suffixes"]) == set(reference["suffixes"])
    assert set(document.json()["authentication"]) == set(reference["authentication"])
    assert (document.json()["name"], document.json()["resourceManager"], document.json()["microsoftGraphResourceId"],
            document.json()["authentication"]["loginEndpoint"]) == (
        "AzureCloud", f"{sandbox.endpoints['arm']}/", f"{sandbox.endpoints['graph']}/", sandbox.endpoints["login"])
    assert Wire(sandbox).admin("cloud", {"name": "AzureUSGovernment"}).status_code == 200
    assert call(client, "GET", url, **{"api-version": "2022-09-01"}).json()["name"] == "AzureUSGovernment"
    assert call(client, "GET", url, **{"api-version": "2019-05-01"}).status_code == 400
    assert Wire(sandbox).admin("cloud", {"name": ""}).status_code == 400


def test_flex_consumption_regions_come_from_the_state_and_need_an_arm_reader(sandbox: Sandbox) -> None:
    url = f"{sandbox.endpoints['arm']}/subscriptions/{sandbox.subscription_id}/providers/Microsoft.Web/geoRegions"
    flex = {"api-version": "2023-01-01", "sku": "FlexConsumption"}
    regions = call(arm(sandbox), "GET", url, **flex)
    reference = sample("web_geoRegions_list_field_report.json")["response"]["body"]["value"][0]
    assert regions.status_code == 200 and all(set(r) == set(reference) and set(r["properties"]) == set(
        reference["properties"]) for r in regions.json()["value"])
    names = [r["name"] for r in regions.json()["value"]]
    assert {"West Europe", "Sweden Central", "East US"} <= set(names)
    # What `az functionapp list-flexconsumption-locations` makes of them.
    assert "westeurope" in {n.lower().replace(" ", "") for n in names}
    assert Wire(sandbox).admin("flexregions", {"regions": ["Sweden Central", "North Europe"]}).status_code == 200
    scoped = reader(sandbox, f"/subscriptions/{sandbox.subscription_id}")
    assert [r["name"] for r in call(arm(sandbox, scoped), "GET", url, **flex).json()["value"]] == [
        "Sweden Central", "North Europe"]
    denied = call(arm(sandbox, sandbox.remediator), "GET", url, **flex)
    assert denied.status_code == 403 and error_code(denied) == "AuthorizationFailed"
    old = call(arm(sandbox), "GET", url, **{**flex, "api-version": "2020-06-01"})
    assert old.status_code == 404 and error_code(old) == "InvalidResourceType"
    assert Wire(sandbox).admin("flexregions", {"regions": "West Europe"}).status_code == 400


# ---------------------------------------------------------------- another deployment of the remediator


def test_a_planted_remediator_has_its_system_topic_and_event_subscription_as_the_examples_show(
        sandbox: Sandbox) -> None:
    planted = plant(sandbox)
    client, base, sub = arm(sandbox), sandbox.endpoints["arm"], sandbox.subscription_id
    version = {"api-version": "2022-06-15"}
    topics = call(client, "GET", f"{base}/subscriptions/{sub}/providers/Microsoft.EventGrid/systemTopics", **version)
    reference = body_of("eventgrid_SystemTopics_ListBySubscription_2022-06-15.json")
    assert topics.status_code == 200 and set(topics.json()) == set(reference)
    (topic,) = topics.json()["value"]
    assert set(topic) == set(reference["value"][0]) and set(topic["properties"]) == set(
        reference["value"][0]["properties"])
    assert (topic["id"], topic["location"], topic["properties"]["source"], topic["properties"]["topicType"]) == (
        planted["systemTopicId"], "global", f"/subscriptions/{sub}", "Microsoft.Resources.Subscriptions")
    got = call(client, "GET", f"{base}{planted['systemTopicId']}", **version)
    assert got.json() == topic and set(got.json()) == set(body_of("eventgrid_SystemTopics_Get_2022-06-15.json"))
    listed = call(client, "GET", f"{base}{planted['systemTopicId']}/eventSubscriptions", **version).json()["value"]
    one = call(client, "GET", f"{base}{planted['eventSubscriptionId']}", **version)
    es_reference = body_of("eventgrid_SystemTopicEventSubscriptions_Get_2022-06-15.json")
    assert listed == [one.json()] and set(one.json()) == set(es_reference)
    assert set(one.json()["properties"]) == set(es_reference["properties"])
    properties = one.json()["properties"]
    assert one.json()["name"] == "aks-cluster-failures-func-remediator-abc"
    assert properties["destination"] == {"endpointType": "AzureFunction", "properties": {
        "resourceId": f"{planted['siteId']}/functions/on_resource_failure", "maxEventsPerBatch": 1,
        "preferredBatchSizeInKilobytes": 64}}
    assert properties["filter"]["includedEventTypes"] == ["Microsoft.Resources.ResourceWriteFailure",
                                                          "Microsoft.Resources.ResourceActionFailure"]
    # Another deployment in the same subscription subscribes to the same topic (one per source).
    second = plant(sandbox, resourceGroup="rg-remediator-2", name="func-remediator-def")
    assert second["systemTopicId"] == planted["systemTopicId"]
    assert len(call(client, "GET", f"{base}{planted['systemTopicId']}/eventSubscriptions", **version).json()[
        "value"]) == 2
    unknown = call(client, "GET", f"{base}{planted['systemTopicId']}", **{"api-version": "2019-01-01"})
    assert unknown.status_code == 400 and error_code(unknown) == "NoRegisteredProviderFound"
    missing = call(client, "GET", f"{base}{planted['systemTopicId']}/eventSubscriptions/nope", **version)
    assert missing.status_code == 404 and error_code(missing) == "ResourceNotFound"
    state = sandbox.snapshot()
    assert [t["id"] for t in state["systemTopics"]] == [planted["systemTopicId"]]


def test_a_function_app_and_its_app_settings_read_like_the_examples_and_need_their_actions(
        sandbox: Sandbox) -> None:
    planted = plant(sandbox, location="westeurope", eventSubscription=False)
    assert "systemTopicId" not in planted
    client, base = arm(sandbox), sandbox.endpoints["arm"]
    site = call(client, "GET", f"{base}{planted['siteId']}", **{"api-version": "2024-04-01"})
    reference = body_of("web_GetWebApp_2023-12-01.json")
    assert site.status_code == 200 and set(reference) <= set(site.json())
    assert (site.json()["kind"], site.json()["location"], site.json()["tags"]) == (
        "functionapp,linux", "West Europe", {"azd-env-name": "prod"})
    settings = call(client, "POST", f"{base}{planted['siteId']}/config/appsettings/list",
                    **{"api-version": "2024-04-01"})
    settings_reference = body_of("web_ListAppSettings_2024-04-01.json")
    assert settings.status_code == 200 and set(settings_reference) <= set(settings.json())
    assert (settings.json()["id"], settings.json()["properties"]) == (f"{planted['siteId']}/config/appsettings",
                                                                      SETTINGS)
    scoped = reader(sandbox, f"/subscriptions/{sandbox.subscription_id}")
    assert call(arm(sandbox, scoped), "GET", f"{base}{planted['siteId']}",
                **{"api-version": "2024-04-01"}).json() == site.json()
    denied = call(arm(sandbox, scoped), "POST", f"{base}{planted['siteId']}/config/appsettings/list",
                  **{"api-version": "2024-04-01"})
    assert denied.status_code == 403 and error_code(denied) == "AuthorizationFailed"
    assert "Microsoft.Web/sites/config/list/action" in denied.json()["error"]["message"]
    missing = call(client, "GET", f"{base}{planted['siteId']}-gone", **{"api-version": "2024-04-01"})
    assert missing.status_code == 404 and error_code(missing) == "ResourceNotFound"
    # The state shows the settings but never the values of keys, secrets and connection strings.
    (shown,) = sandbox.snapshot()["functionApps"]
    assert shown["appSettings"] == {**SETTINGS, "APPLICATIONINSIGHTS_CONNECTION_STRING": "", "SOME_API_KEY": "",
                                    "WEBHOOK_SECRET": ""}
    assert "not-shown" not in json.dumps(sandbox.snapshot())


def test_the_web_and_event_grid_sdks_read_a_planted_remediator(sandbox: Sandbox) -> None:
    from azure.mgmt.eventgrid import EventGridManagementClient
    from azure.mgmt.web import WebSiteManagementClient

    planted = plant(sandbox)
    options = {"base_url": sandbox.endpoints["arm"], "connection_verify": sandbox.ca_path}
    credential = sandbox.credential(sandbox.operator)
    web = WebSiteManagementClient(credential, sandbox.subscription_id, **options)
    assert "Sweden Central" in {r.name for r in web.list_geo_regions(sku="FlexConsumption")}
    site = web.web_apps.get("rg-remediator", "func-remediator-abc")
    assert (site.id, site.kind, site.location, site.tags) == (
        planted["siteId"], "functionapp,linux", "West Europe", {"azd-env-name": "prod"})
    assert web.web_apps.list_application_settings("rg-remediator", "func-remediator-abc").properties == SETTINGS
    event_grid = EventGridManagementClient(credential, sandbox.subscription_id, **options)
    (topic,) = event_grid.system_topics.list_by_subscription()
    assert (topic.id, topic.topic_type, topic.source) == (
        planted["systemTopicId"], "Microsoft.Resources.Subscriptions", f"/subscriptions/{sandbox.subscription_id}")
    (subscription,) = event_grid.system_topic_event_subscriptions.list_by_system_topic("rg-remediator", topic.name)
    assert (subscription.destination.endpoint_type, subscription.destination.resource_id) == (
        "AzureFunction", f"{planted['siteId']}/functions/on_resource_failure")
    assert subscription.filter.included_event_types == ["Microsoft.Resources.ResourceWriteFailure",
                                                        "Microsoft.Resources.ResourceActionFailure"]


def test_resource_graph_lists_function_apps_to_those_who_may_read_them(sandbox: Sandbox) -> None:
    wire = Wire(sandbox)
    other = wire.admin("subscriptions", {"displayName": "other"}).json()["subscriptionId"]
    here = plant(sandbox, resourceGroup="RG-Remediator")
    there = plant(sandbox, subscriptionId=other, name="func-remediator-xyz", tags={})
    graph = ResourceGraphClient(sandbox.credential(sandbox.operator), base_url=sandbox.endpoints["arm"],
                                connection_verify=sandbox.ca_path)
    rows = graph.resources(QueryRequest(query=SITE_QUERY)).data
    assert sorted(rows, key=lambda r: r["id"]) == sorted([
        {"id": here["siteId"], "name": "func-remediator-abc", "resourceGroup": "rg-remediator",
         "subscriptionId": sandbox.subscription_id, "tags": {"azd-env-name": "prod"}},
        {"id": there["siteId"], "name": "func-remediator-xyz", "resourceGroup": "rg-remediator",
         "subscriptionId": other, "tags": {}}], key=lambda r: r["id"])
    typed = graph.resources(QueryRequest(query="Resources | where type =~ 'microsoft.web/sites' | project type"))
    assert {r["type"] for r in typed.data} == {"microsoft.web/sites"}
    scoped = reader(sandbox, f"/subscriptions/{sandbox.subscription_id}")
    visible = ResourceGraphClient(sandbox.credential(scoped), base_url=sandbox.endpoints["arm"],
                                  connection_verify=sandbox.ca_path).resources(QueryRequest(query=SITE_QUERY)).data
    assert [r["id"] for r in visible] == [here["siteId"]]
    # The cluster query still finds clusters only.
    clusters = graph.resources(QueryRequest(
        query="Resources | where type =~ 'microsoft.containerservice/managedclusters' | project id")).data
    assert clusters and all("/managedClusters/" in r["id"] for r in clusters)


# ---------------------------------------------------------------- role definitions


def test_built_in_role_definitions_are_served_as_the_reference_defines_them(sandbox: Sandbox) -> None:
    client = AuthorizationManagementClient(sandbox.credential(sandbox.operator), sandbox.subscription_id,
                                           base_url=sandbox.endpoints["arm"], connection_verify=sandbox.ca_path)
    scope = f"/subscriptions/{sandbox.subscription_id}"
    documented = {d["name"]: d for d in sample("authorization_builtin_role_definitions_docs.json")}
    assert set(documented) == set(BUILT_IN_ROLES.values())
    for guid, doc in documented.items():
        served = client.role_definitions.get(scope, guid)
        assert (served.role_name, served.role_type, served.description, served.assignable_scopes) == (
            doc["roleName"], doc["roleType"], doc["description"], doc["assignableScopes"])
        assert [p.as_dict() for p in served.permissions] == [{
            "actions": p["actions"], "not_actions": p["notActions"], "data_actions": p["dataActions"],
            "not_data_actions": p["notDataActions"]} for p in doc["permissions"]]
        assert served.id == f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    wire = Wire(sandbox)
    raw = wire.arm("GET", f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{NETWORK}",
                   api_version="2022-04-01").json()
    reference = body_of("authorization_RoleDefinitions_Get_2022-04-01.json")
    assert set(raw) == set(reference) and set(raw["properties"]) == set(reference["properties"])
    unknown = str(uuid.uuid4())
    with pytest.raises(ResourceNotFoundError) as missing:
        client.role_definitions.get(scope, unknown)
    assert missing.value.error.code == "RoleDefinitionDoesNotExist"
    assert missing.value.error.message == f"The specified role definition with ID '{unknown}' does not exist."
    # The remediator's custom role has no roleDefinitions/read.
    assert_arm_error(Wire(sandbox, sandbox.remediator).arm(
        "GET", f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{NETWORK}", api_version="2022-04-01"),
        403, "AuthorizationFailed")


# ---------------------------------------------------------------- restarts


def test_a_restart_keeps_what_a_preflight_reads(tmp_path: Path) -> None:
    with Sandbox(scenario="healthy", state_dir=tmp_path) as first:
        wire = Wire(first)
        planted = plant(first)
        wire.admin("cloud", {"name": "AzureChinaCloud"})
        wire.admin("flexregions", {"regions": ["Sweden Central"]})
        identity, made = new_identity(first, "deployer-3", directoryRoles=["Application Administrator"])
        assert upsert(wire, "kept-api", api_body(str(uuid.uuid4()), preauthorize=False)).status_code == 201
        before = wire.graph("GET", "/applications(uniqueName='kept-api')").json()
    with Sandbox(state_dir=tmp_path) as second:
        wire, client, base = Wire(second), arm(second), second.endpoints["arm"]
        assert call(client, "GET", f"{base}{planted['eventSubscriptionId']}", **{"api-version": "2022-06-15"}
                    ).status_code == 200
        assert call(client, "POST", f"{base}{planted['siteId']}/config/appsettings/list",
                    **{"api-version": "2024-04-01"}).json()["properties"] == SETTINGS
        assert call(PipelineClient(base_url=base, connection_verify=second.ca_path), "GET",
                    f"{base}/metadata/endpoints", **{"api-version": "2022-09-01"}).json()["name"] == "AzureChinaCloud"
        assert second.snapshot()["flexRegions"] == ["Sweden Central"]
        assert next(a for a in second.snapshot()["applications"] if a["appId"] == made["appId"])[
            "directoryRoles"] == ["9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"]
        assert wire.graph("GET", "/applications(uniqueName='kept-api')").json() == before
        assert Wire(second, identity).token_response(identity.client_id, identity.client_secret).status_code == 200
        # The operator's default grants came with the world and stay with it.
        operator = next(a for a in second.snapshot()["applications"] if a["appId"] == second.operator.client_id)
        assert operator["directoryRoles"] == [PRIVILEGED_ROLE_ADMINISTRATOR]


def test_a_format_3_state_directory_loads_with_the_new_things_at_their_defaults(tmp_path: Path) -> None:
    with Sandbox(scenario="healthy", state_dir=tmp_path) as first:
        ids = (first.remediator, first.operator)
    (generation,) = tmp_path.glob("state.*.json")
    saved = json.loads(generation.read_text())
    for key in ("cloudName", "flexRegions", "functionApps", "systemTopics"):
        del saved[key]
    for app in saved["applications"]:
        app["appRoles"] = {r["value"]: r["id"] for r in app["appRoles"]}  # format 3 kept value -> id
        for key in ("uniqueName", "api", "signInAudience", "directoryRoles"):
            del app[key]
    generation.write_text(json.dumps({**saved, "format": 3}))
    with Sandbox(state_dir=tmp_path) as second:
        assert (second.remediator, second.operator) == ids
        state = second.snapshot()
        assert (state["cloudName"], state["functionApps"], state["systemTopics"]) == ("AzureCloud", [], [])
        assert "West Europe" in state["flexRegions"]
        assert all(a["directoryRoles"] == [] and a["uniqueName"] is None for a in state["applications"])
        # The API application's roles, kept as value -> id in format 3, still sign operators in with their roles.
        claims = jwt.decode(second.api_token(), options={"verify_signature": False})
        assert sorted(claims["roles"]) == ["Remediations.Read", "Remediations.Write"]
        api = Wire(second).graph("GET", f"/applications(appId='{second.api_client_id}')").json()
        assert sorted(r["value"] for r in api["appRoles"]) == ["Remediations.Read", "Remediations.Write"]
        assert api["api"]["oauth2PermissionScopes"] == [] and api["signInAudience"] == "AzureADMyOrg"

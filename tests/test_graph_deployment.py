"""The API application as the Microsoft Graph Bicep extension deploys it, against the sandbox's Graph.

There is no Bicep compiler or ARM deployment here, so this plays the extension's part for the one resource type
whose refusal broke first deployments: each `Microsoft.Graph/applications@v1.0` of main.bicep's api-app stages is
evaluated from the Bicep (tests/support/bicep.py) and sent, in deployment order, as the extension sends it: an upsert by
the client-provided key, `PATCH /applications(uniqueName='...')` with `Prefer: create-if-missing`
(learn.microsoft.com/graph/templates/concept-uniquely-named-resources, application-upsert). The sandbox refuses,
as Graph does, a request that pre-authorizes a scope the stored application does not have yet
(microsoftgraph/microsoft-graph-docs-contrib#1395), so the template written as one stage fails here as it failed on
a real tenant, and the two stages deploy, and deploy again.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from sandbox import Sandbox
from tests.support import bicep

AZURE_CLI_APP_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
REFUSAL = ("Property api.preAuthorizedApplications.delegatedPermissionIds has a Permission Id that cannot be found "
           "in the AppPermissions sets.")


class GraphDeployment:
    """Deploys Graph application bodies to the sandbox the way the Graph Bicep extension does, as its operator."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._graph = sandbox.endpoints["graph"]
        token = sandbox.credential(sandbox.operator).get_token(f"{self._graph}/.default").token
        self._http = httpx.Client(verify=ssl.create_default_context(cafile=sandbox.ca_path),
                                  headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def _url(self, unique_name: str) -> str:
        return f"{self._graph}/v1.0/applications(uniqueName='{quote(unique_name)}')"

    def deploy(self, application: dict[str, Any]) -> httpx.Response:
        body = {k: v for k, v in application.items() if k != "uniqueName"}
        return self._http.patch(self._url(application["uniqueName"]), json=body,
                                headers={"Prefer": "create-if-missing"})

    def read(self, unique_name: str) -> httpx.Response:
        return self._http.get(self._url(unique_name))

    def close(self) -> None:
        self._http.close()


@pytest.fixture(scope="module")
def graph() -> Iterator[GraphDeployment]:
    with Sandbox(scenario="healthy") as sandbox:
        deployment = GraphDeployment(sandbox)
        yield deployment
        deployment.close()


def _stages(token: str) -> list[dict[str, Any]]:
    """The application bodies main.bicep's stages write, for an environment of its own (a fresh uniqueName)."""
    return [bicep.api_application(params)
            for params in bicep.api_application_stages({**bicep.SAMPLE_ENVIRONMENT, "resourceToken": token})]


def test_the_stages_deploy_the_application_with_azure_cli_pre_authorized(graph: GraphDeployment):
    stages = _stages("first")
    assert [graph.deploy(stage).status_code for stage in stages] == [201, 204]
    stored = graph.read(stages[0]["uniqueName"]).json()
    (scope,) = stored["api"]["oauth2PermissionScopes"]
    assert scope["value"] == "user_impersonation"
    assert stored["api"]["preAuthorizedApplications"] == [{"appId": AZURE_CLI_APP_ID,
                                                           "delegatedPermissionIds": [scope["id"]]}]
    assert {r["value"] for r in stored["appRoles"]} == {"Remediations.Read", "Remediations.Write"}


def test_a_redeployment_converges_to_the_same_application(graph: GraphDeployment):
    stages = _stages("again")
    for stage in stages:
        graph.deploy(stage)
    first = graph.read(stages[0]["uniqueName"]).json()
    assert [graph.deploy(stage).status_code for stage in stages] == [204, 204]
    again = graph.read(stages[0]["uniqueName"]).json()
    assert again["id"] == first["id"] and again["api"] == first["api"] and again["appRoles"] == first["appRoles"]


def test_the_template_in_one_stage_is_refused_and_writes_nothing(graph: GraphDeployment):
    # What the template did before the stages: the scope and its pre-authorization in one request.
    final = _stages("one-stage")[-1]
    refused = graph.deploy(final)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "InvalidValue" and error["message"] == REFUSAL
    assert graph.read(final["uniqueName"]).status_code == 404

"""A running sandbox (`sandbox.Sandbox`) seen from outside: raw HTTPS calls signed in as one of its identities
(`Wire`), the official examples it is compared with, new identities with a role, and the info file
`python -m sandbox serve` writes. Shared by the sandbox's own tests (tests/sandbox/), the product's tests that run
a command against a sandbox, and benchmarks/preflight.py."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests

from sandbox import Identity, Sandbox

ROOT = Path(__file__).resolve().parents[2]
# Copies of the official request/response examples, each with a .source.txt naming where it came from.
SAMPLES = Path(__file__).resolve().parents[1] / "reference"
AKS_API = "2024-09-01"


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


class Wire:
    """Raw HTTPS calls against one sandbox, signed in as one of its identities."""

    def __init__(self, sandbox: Sandbox, identity=None) -> None:
        self.sandbox = sandbox
        self.identity = identity or sandbox.operator
        self.http = requests.Session()
        self.http.verify = sandbox.ca_path
        self.http.trust_env = False  # else REQUESTS_CA_BUNDLE, where set, replaces the sandbox's CA
        self._tokens: dict[str, str] = {}

    def token_response(self, client_id: str, secret: str, scope: str = "https://management.azure.com/.default"):
        return self.http.post(f"{self.sandbox.endpoints['login']}/{self.sandbox.tenant_id}/oauth2/v2.0/token",
                              data={"grant_type": "client_credentials", "client_id": client_id,
                                    "client_secret": secret, "scope": scope})

    def auth(self, resource: str) -> dict[str, str]:
        if resource not in self._tokens:
            response = self.token_response(self.identity.client_id, self.identity.client_secret,
                                           f"{resource}/.default")
            assert response.status_code == 200, response.text
            self._tokens[resource] = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._tokens[resource]}"}

    def arm(self, method: str, path: str, *, api_version: str | None = AKS_API, **kwargs: Any) -> requests.Response:
        params = kwargs.pop("params", {})
        if api_version:
            params["api-version"] = api_version
        url = path if path.startswith("https://") else f"{self.sandbox.endpoints['arm']}{path}"
        return self.http.request(method, url, params=params, headers=self.auth("https://management.azure.com"),
                                 **kwargs)

    def graph(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, f"{self.sandbox.endpoints['graph']}/v1.0{path}",
                                 headers=self.auth("https://graph.microsoft.com"), **kwargs)

    def admin(self, path: str, body: Any) -> requests.Response:
        return self.http.post(f"{self.sandbox.endpoints['admin']}/_sandbox/{path}", json=body)

    def cluster_path(self, name: str = "aks-payments", group: str = "rg-payments") -> str:
        return (f"/subscriptions/{self.sandbox.subscription_id}/resourceGroups/{group}/providers/"
                "Microsoft.ContainerService/managedClusters/" + name)


def recent(sandbox: Sandbox) -> str:
    """An Activity Log time filter for the last and the next hour."""
    now = sandbox.state.now()
    since, until = (now - timedelta(hours=1)), (now + timedelta(hours=1))
    return (f"eventTimestamp ge '{since.isoformat().replace('+00:00', 'Z')}' and "
            f"eventTimestamp le '{until.isoformat().replace('+00:00', 'Z')}'")


def assert_arm_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


# ---------------------------------------------------------------- identities

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


def new_identity(sandbox: Sandbox, name: str, **grants: list[str]) -> tuple[Identity, dict[str, Any]]:
    """A new application with a service principal and a secret to sign in with, and these Graph grants."""
    wire = Wire(sandbox)
    made = wire.admin("applications", {"displayName": name, "ownedByRemediator": False, "withSecret": True})
    assert made.status_code == 201, made.text
    patched = wire.http.patch(f"{sandbox.endpoints['admin']}/_sandbox/applications/{made.json()['appId']}",
                              json=grants)
    assert patched.status_code == 200, patched.text
    return Identity(made.json()["appId"], made.json()["clientSecret"]), patched.json()


def assign(wire: Wire, scope: str, role: str, principal_id: str) -> Any:
    """A role assignment PUT (2022-04-01) of a built-in role to a service principal, as `wire`'s identity."""
    return wire.arm("PUT", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
                    api_version="2022-04-01", json={"properties": {
                        "roleDefinitionId": f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{role}",
                        "principalId": principal_id, "principalType": "ServicePrincipal"}})


def reader(sandbox: Sandbox, scope: str, name: str = "preflight-reader") -> Identity:
    """An identity holding Reader at `scope` (assigned by the operator), no more."""
    identity, created = new_identity(sandbox, name)
    assigned = assign(Wire(sandbox), scope, READER, created["servicePrincipalObjectId"])
    assert assigned.status_code == 201, assigned.text
    return identity


def sandbox_info_file(sandbox: Any, directory: Path) -> Path:
    """The line `python -m sandbox serve | tee info.json` leaves (without the function app), and its identities file
    beside it (mode 0600, as serve writes it): what `python -m remediation ... --sandbox INFO_FILE` reads."""
    identities = directory / "identities.json"
    identities.touch(mode=0o600)
    identities.write_text(json.dumps({
        "remediatorClientId": sandbox.remediator.client_id, "remediatorClientSecret": sandbox.remediator.client_secret,
        "operatorClientId": sandbox.operator.client_id, "operatorClientSecret": sandbox.operator.client_secret,
        "auditorClientId": sandbox.auditor.client_id, "auditorClientSecret": sandbox.auditor.client_secret}))
    info = directory / "info.json"
    info.write_text(json.dumps({
        **sandbox.endpoints, "functions": None, "functionKey": None, "ca": sandbox.ca_path,
        "tenantId": sandbox.tenant_id, "subscriptionId": sandbox.subscription_id,
        "remediatorClientId": sandbox.remediator.client_id, "operatorClientId": sandbox.operator.client_id,
        "auditorClientId": sandbox.auditor.client_id, "apiClientId": sandbox.api_client_id,
        "apiAppIdUri": sandbox.api_app_id_uri, "identitiesFile": str(identities), "stateDir": None}) + "\n")
    return info

"""Tokens and secrets as Entra ID makes them: v1.0 access tokens for Microsoft's resources (ARM, Graph, Key Vault),
v2.0 for an API application that asks for them (the remediator's own), and client secrets with Entra's fixed `Q~`
marker, from every place the sandbox mints one. Tokens are read with the tenant's published keys (PyJWT)."""

from __future__ import annotations

import re
import ssl
from typing import Any

import jwt
import pytest
import requests

from remediation.decide.classify import _evidence
from sandbox import Sandbox
from tests.support.wire import Wire

ENTRA_SECRET = re.compile(r"[A-Za-z0-9~._-]{3}8Q~[A-Za-z0-9~._-]{34}")


def claims_of(sandbox: Sandbox, wire: Wire, token: str) -> dict[str, Any]:
    """The token's claims, its signature checked against the tenant's JWKS (audience and issuer read, not checked)."""
    jwks = f"{sandbox.endpoints['login']}/{sandbox.tenant_id}/discovery/v2.0/keys"
    key = jwt.PyJWKClient(jwks, ssl_context=ssl.create_default_context(cafile=sandbox.ca_path)) \
        .get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["RS256"], options={"verify_aud": False})


def token_for(wire: Wire, sandbox: Sandbox, scope: str) -> str:
    response = wire.token_response(sandbox.operator.client_id, sandbox.operator.client_secret, scope)
    assert response.status_code == 200, response.json().get("error")
    return response.json()["access_token"]


@pytest.mark.parametrize("scope, audience", [
    ("https://management.azure.com/.default", "https://management.azure.com"),
    ("https://management.core.windows.net//.default", "https://management.core.windows.net/"),  # as az asks
    ("https://graph.microsoft.com/.default", "https://graph.microsoft.com"),
    ("https://vault.azure.net/.default", "https://vault.azure.net"),
])
def test_tokens_for_microsofts_resources_are_v1_as_entra_issues_them(sandbox: Sandbox, wire: Wire, scope: str,
                                                                     audience: str) -> None:
    claims = claims_of(sandbox, wire, token_for(wire, sandbox, scope))
    operator = sandbox.state.applications[sandbox.operator.client_id]
    issuer = f"https://sts.windows.net/{sandbox.tenant_id}/"
    assert (claims["ver"], claims["iss"], claims["idp"], claims["aud"]) == ("1.0", issuer, issuer, audience)
    assert (claims["appid"], claims["appidacr"], claims["idtyp"]) == (sandbox.operator.client_id, "1", "app")
    assert (claims["oid"], claims["sub"], claims["tid"]) == (operator.sp_object_id, operator.sp_object_id,
                                                             sandbox.tenant_id)
    assert not {"azp", "azpacr"} & set(claims)


def test_v1_tokens_are_taken_where_the_sandbox_serves_the_resource(sandbox: Sandbox, wire: Wire) -> None:
    headers = {"Authorization": "Bearer " + token_for(wire, sandbox, "https://management.core.windows.net//.default")}
    listed = wire.http.get(f"{sandbox.endpoints['arm']}/subscriptions", params={"api-version": "2022-12-01"},
                           headers=headers)
    assert listed.status_code == 200
    assert sandbox.subscription_id in {s["subscriptionId"] for s in listed.json()["value"]}


def test_the_remediators_api_gets_v2_tokens_because_its_manifest_asks_for_them(sandbox: Sandbox, wire: Wire) -> None:
    claims = claims_of(sandbox, wire, token_for(wire, sandbox, f"{sandbox.api_app_id_uri}/.default"))
    assert (claims["ver"], claims["iss"]) == ("2.0", f"{sandbox.endpoints['login']}/{sandbox.tenant_id}/v2.0")
    assert (claims["aud"], claims["azp"], claims["azpacr"]) == (sandbox.api_client_id, sandbox.operator.client_id, "1")
    assert "appid" not in claims and claims["roles"] == ["Remediations.Read", "Remediations.Write"]


def test_an_api_that_accepts_v1_gets_v1_tokens_for_its_app_id_uri(sandbox: Sandbox, wire: Wire) -> None:
    api = sandbox.state.applications[sandbox.api_client_id]
    api.api["requestedAccessTokenVersion"] = None  # Graph's default for a new API: v1.0
    try:
        claims = claims_of(sandbox, wire, token_for(wire, sandbox, f"{sandbox.api_app_id_uri}/.default"))
    finally:
        api.api["requestedAccessTokenVersion"] = 2
    assert (claims["ver"], claims["aud"], claims["appid"]) == ("1.0", sandbox.api_app_id_uri,
                                                               sandbox.operator.client_id)
    assert claims["roles"] == ["Remediations.Read", "Remediations.Write"]


def test_every_minted_secret_carries_entras_marker_and_its_hint(sandbox: Sandbox, wire: Wire) -> None:
    seeded = [sandbox.remediator.client_secret, sandbox.operator.client_secret, sandbox.auditor.client_secret,
              sandbox.state.secret_text_of_cluster("aks-payments")]
    app = sandbox.state.applications[next(a for a, v in sandbox.state.applications.items()
                                          if v.display_name == "aks-healthy-sp")]
    added = wire.graph("POST", f"/applications/{app.object_id}/addPassword", json={"passwordCredential": {}})
    assert added.status_code == 200
    on_principal = wire.graph("POST", f"/servicePrincipals/{app.sp_object_id}/addPassword", json={})
    assert on_principal.status_code == 200
    minted = added.json()
    texts = [*seeded, minted["secretText"], on_principal.json()["secretText"]]
    shaped = [bool(ENTRA_SECRET.fullmatch(text or "")) for text in texts]
    assert shaped == [True] * 6, "a minted secret lacks Entra's shape (3 characters, 8Q~, 34 more)"
    assert minted["hint"] == minted["secretText"][:3]


def test_the_remediators_redaction_hides_a_secret_the_sandbox_minted(sandbox: Sandbox) -> None:
    secret = sandbox.state.secret_text_of_cluster("aks-payments") or ""
    shown = _evidence(f"AADSTS7000215: Invalid client secret provided: {secret} for app x")
    hidden = secret not in shown and "[redacted]" in shown
    assert hidden, "classify's evidence shows a sandbox-minted secret"


def test_a_token_from_the_admin_api_stays_v2_for_the_remediators_api(sandbox: Sandbox) -> None:
    minted = requests.post(f"{sandbox.endpoints['admin']}/_sandbox/tokens", json={}, verify=sandbox.ca_path)
    claims = jwt.decode(minted.json()["accessToken"], options={"verify_signature": False})
    assert (claims["ver"], claims["aud"], claims["azp"]) == ("2.0", sandbox.api_client_id, sandbox.operator.client_id)

"""`az cloud register`, `az login --service-principal` and `az account`: the CLI finds the sandbox as it finds any
Azure cloud (the ARM metadata document), signs in at its token endpoint, and lists what the identity reaches."""

from __future__ import annotations

from tests.support.az import Az


def test_the_cli_signs_in_and_sees_the_sandbox_subscription_and_tenant(az: Az) -> None:
    account = az("account", "show")
    assert account["id"] == az.sandbox.subscription_id
    assert account["tenantId"] == az.sandbox.tenant_id
    assert account["environmentName"] == "AzureSandbox"
    assert account["user"] == {"name": az.sandbox.operator.client_id, "type": "servicePrincipal"}
    [listed] = az("account", "list")
    assert listed["id"] == az.sandbox.subscription_id and listed["state"] == "Enabled"
    assert listed["tenantId"] == az.sandbox.tenant_id and listed["isDefault"] is True


def test_the_cloud_takes_its_endpoints_from_the_metadata_document(az: Az) -> None:
    cloud = az("cloud", "show", "--name", "AzureSandbox")
    assert cloud["endpoints"]["resourceManager"].rstrip("/") == az.sandbox.endpoints["arm"]
    assert cloud["endpoints"]["activeDirectory"].rstrip("/") == az.sandbox.endpoints["login"]
    assert cloud["endpoints"]["microsoftGraphResourceId"].rstrip("/") == az.sandbox.endpoints["graph"]


def test_a_subscription_the_identity_does_not_reach_is_not_found(az: Az) -> None:
    refused = az.fails("account", "show", "--subscription", "00000000-0000-4000-8000-000000000000")
    assert "doesn't exist" in refused.stderr or "not found" in refused.stderr.lower()


def test_a_secret_that_starts_with_a_dash_reaches_the_token_endpoint(az: Az) -> None:
    # Entra's secrets may start with '-': given as `--password SECRET`, argparse reads it as an option ("expected one
    # argument") and az never signs in. az-setup and the README pass `--password=SECRET` / `--client-secret=SECRET`.
    # (An application no tenant has: MSAL would answer a known client id from its token cache, secret unchecked.)
    refused = az.cli.run(["login", "--service-principal", "--username", "5f0e8a2c-0000-4000-8000-00000000dead",
                          "--password=-not8Q~any-applications-secret-00000000000", "--tenant", az.sandbox.tenant_id,
                          "--allow-no-subscriptions", "--output", "none"])
    assert refused.returncode != 0
    assert "expected one argument" not in refused.stderr
    assert "AADSTS" in refused.stderr, refused.stderr[-1000:]  # the token endpoint's answer: it got that far

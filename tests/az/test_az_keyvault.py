"""`az keyvault secret set/show/list/list-versions --vault-name`: the CLI addresses the vault by name under the
sandbox cloud's Key Vault suffix and reaches it through the sandbox's proxy (sandbox/vaulthosts.py), unchanged. A name
the sandbox has no vault for fails as DNS would; a caller without a data role gets Key Vault's 403."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.vaulthosts import VAULT_DNS_SUFFIX
from tests.support.az import Az, pointed_at


def vault_url(az: Az) -> str:
    return f"https://{az.sandbox.state.vault_name}{VAULT_DNS_SUFFIX}"


def test_the_cloud_names_the_sandboxs_own_key_vault_suffix(az: Az) -> None:
    cloud = az("cloud", "show", "--name", "AzureSandbox")
    assert cloud["suffixes"]["keyvaultDns"] == VAULT_DNS_SUFFIX


def test_a_secret_set_by_vault_name_is_shown_listed_and_versioned(az: Az) -> None:
    vault = az.sandbox.state.vault_name
    first = az("keyvault", "secret", "set", "--vault-name", vault, "--name", "az-rehearsal", "--value", "one",
               "--query", "{id: id, name: name}")
    second = az("keyvault", "secret", "set", "--vault-name", vault, "--name", "az-rehearsal", "--value", "two",
                "--tags", "owner=platform", "--query", "{id: id, tags: tags}")
    assert first["name"] == "az-rehearsal" and first["id"].startswith(f"{vault_url(az)}/secrets/az-rehearsal/")
    shown = az("keyvault", "secret", "show", "--vault-name", vault, "--name", "az-rehearsal",
               "--query", "{id: id, tags: tags, enabled: attributes.enabled}")
    assert shown == {"id": second["id"], "tags": {"owner": "platform", "file-encoding": "utf-8"}, "enabled": True}
    assert az.sandbox.state.vault_current_value("az-rehearsal") == "two"
    versions = az("keyvault", "secret", "list-versions", "--vault-name", vault, "--name", "az-rehearsal")
    assert sorted(v["id"] for v in versions) == sorted([first["id"], second["id"]])
    assert all("value" not in v for v in versions)
    listed = az("keyvault", "secret", "list", "--vault-name", vault, "--query", "[].id")
    assert f"{vault_url(az)}/secrets/az-rehearsal" in listed
    older = az("keyvault", "secret", "show", "--id", first["id"], "--query", "id")
    assert older == first["id"]


def test_an_unknown_vault_name_fails_as_a_name_that_does_not_resolve(az: Az) -> None:
    refused = az.fails("keyvault", "secret", "show", "--vault-name", "kv-nobody-has", "--name", "x")
    assert "Tunnel connection failed: 502" in refused.stderr


def test_a_caller_without_the_data_action_gets_forbidden_by_rbac(az: Az,
                                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    # The remediator's data role on the vault (infra/) sets, gets and lists secrets; it may not delete them.
    remediator = pointed_at(az.sandbox, Path(tmp_path_factory.mktemp("remediator")), identity="remediator")
    vault = az.sandbox.state.vault_name
    remediator("keyvault", "secret", "set", "--vault-name", vault, "--name", "kept", "--value", "v", "--query", "id")
    refused = remediator.fails("keyvault", "secret", "delete", "--vault-name", vault, "--name", "kept")
    assert "(Forbidden) Caller is not authorized to perform action on resource." in refused.stderr
    assert "ForbiddenByRbac" in refused.stderr
    assert f"appid={az.sandbox.remediator.client_id}" in refused.stderr
    assert "Action: 'Microsoft.KeyVault/vaults/secrets/delete'" in refused.stderr
    assert az.sandbox.state.vault_current_value("kept") == "v"

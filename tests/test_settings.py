"""Settings are read and validated once, with every problem named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remediation.errors import ConfigurationError
from remediation.settings import SETTINGS, Settings

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = {"AZURE_TENANT_ID": "t", "REMEDIATOR_KEY_VAULT_URL": "https://kv.vault.azure.net/",
           "AzureWebJobsStorage__accountName": "remediatorsa"}


def test_defaults_fill_what_is_not_set() -> None:
    settings = Settings.from_env(MINIMAL)
    assert settings.key_vault_url == "https://kv.vault.azure.net"
    assert settings.arm_endpoint == "https://management.azure.com"
    assert settings.sweep_schedule == "0 */15 * * * *" and settings.secret_lifetime_days == 180
    assert settings.subscription_ids == ()


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ConfigurationError) as problems:
        Settings.from_env({"REMEDIATOR_RESET_WAIT_SECONDS": "soon", "REMEDIATOR_RETRY_DELAY_SECONDS": "-1"})
    message = str(problems.value)
    for expected in ("AZURE_TENANT_ID", "REMEDIATOR_KEY_VAULT_URL", "AzureWebJobsStorage",
                     "REMEDIATOR_RESET_WAIT_SECONDS", "REMEDIATOR_RETRY_DELAY_SECONDS"):
        assert expected in message


def test_the_client_secret_never_shows_in_repr() -> None:
    settings = Settings.from_env({**MINIMAL, "AZURE_CLIENT_SECRET": "s3cr3t-value",
                                  "REMEDIATOR_SUBSCRIPTION_IDS": " a, b ,,"})
    assert "s3cr3t-value" not in repr(settings)
    assert settings.subscription_ids == ("a", "b")


def test_the_sample_local_settings_list_every_setting() -> None:
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert {spec.name for spec in SETTINGS} <= set(values)

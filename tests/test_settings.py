"""Settings are read and validated once, with every problem named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from remediation.app.settings import SETTINGS, Settings
from remediation.errors import ConfigurationError

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = {"AZURE_TENANT_ID": "t", "REMEDIATOR_KEY_VAULT_URL": "https://kv.vault.azure.net/",
           "AzureWebJobsStorage__accountName": "remediatorsa", "REMEDIATOR_API_CLIENT_ID": "api-client"}


def test_defaults_fill_what_is_not_set() -> None:
    settings = Settings.from_env(MINIMAL)
    assert settings.key_vault_url == "https://kv.vault.azure.net"
    assert settings.arm_endpoint == "https://management.azure.com"
    assert settings.sweep_schedule == "0 */15 * * * *" and settings.secret_lifetime_days == 180
    assert settings.subscription_ids == ()


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ConfigurationError) as problems:
        Settings.from_env({"REMEDIATOR_RESET_POLL_SECONDS": "soon", "REMEDIATOR_RETRY_DELAY_SECONDS": "-1"})
    message = str(problems.value)
    for expected in ("AZURE_TENANT_ID", "REMEDIATOR_KEY_VAULT_URL", "AzureWebJobsStorage", "REMEDIATOR_API_CLIENT_ID",
                     "REMEDIATOR_RESET_POLL_SECONDS", "REMEDIATOR_RETRY_DELAY_SECONDS"):
        assert expected in message


def test_the_client_secret_never_shows_in_repr() -> None:
    settings = Settings.from_env({**MINIMAL, "AZURE_CLIENT_SECRET": "s3cr3t-value",
                                  "REMEDIATOR_SUBSCRIPTION_IDS": " a, b ,,"})
    assert "s3cr3t-value" not in repr(settings)
    assert settings.subscription_ids == ("a", "b")


def test_the_sample_local_settings_list_every_setting() -> None:
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert {spec.name for spec in SETTINGS} <= set(values)


def test_storage_endpoints_come_from_the_service_uris_when_set() -> None:
    # What the Bicep sets: the account's own endpoints, right for whichever cloud it lives in.
    sovereign = {**MINIMAL, "AzureWebJobsStorage__accountName": "",
                 "AzureWebJobsStorage__tableServiceUri": "https://sa.table.core.usgovcloudapi.net/",
                 "AzureWebJobsStorage__queueServiceUri": "https://sa.queue.core.usgovcloudapi.net/"}
    settings = Settings.from_env(sovereign)
    assert settings.table_service_uri == "https://sa.table.core.usgovcloudapi.net"
    assert settings.queue_service_uri == "https://sa.queue.core.usgovcloudapi.net"


def test_an_account_name_alone_means_the_public_cloud() -> None:
    settings = Settings.from_env(MINIMAL)
    assert settings.table_service_uri == "https://remediatorsa.table.core.windows.net"
    assert settings.queue_service_uri == "https://remediatorsa.queue.core.windows.net"


def test_the_api_audience_defaults_to_the_client_id_uri() -> None:
    assert Settings.from_env(MINIMAL).api_app_id_uri == "api://api-client"
    given = Settings.from_env({**MINIMAL, "REMEDIATOR_API_APP_ID_URI": "api://tenant/remediator/"})
    assert given.api_app_id_uri == "api://tenant/remediator"


# Hosts of Azure's clouds. Only remediation/app/settings.py may name them (as the defaults of endpoint
# settings); everything else takes its endpoints from Settings, so one deployment works in any cloud.
CLOUD_HOSTS = re.compile(
    r"(management\.(azure|core\.windows|usgovcloudapi|chinacloudapi)\.(com|net|cn)"
    r"|graph\.microsoft\.(com|us)|microsoftgraph\.chinacloudapi\.cn"
    r"|login\.(microsoftonline\.(com|us)|chinacloudapi\.cn|partner\.microsoftonline\.cn)"
    r"|\.(core\.windows\.net|core\.usgovcloudapi\.net|core\.chinacloudapi\.cn)"
    r"|vault\.(azure\.net|usgovcloudapi\.net|azure\.cn))", re.IGNORECASE)


def test_the_grep_finds_a_cloud_host() -> None:
    # The check below is only worth something if it sees hosts in the forms code writes them.
    for text in ('f"https://{account}.table.core.windows.net"', '"https://graph.microsoft.com/.default"',
                 "PUBLIC = 'https://login.microsoftonline.com'", '"https://management.azure.com"'):
        assert CLOUD_HOSTS.search(text), text


def test_no_module_but_settings_names_a_cloud_host() -> None:
    deployed = [ROOT / "function_app.py", *sorted((ROOT / "remediation").rglob("*.py"))]
    offenders = []
    for path in deployed:
        if path == ROOT / "remediation" / "app" / "settings.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if CLOUD_HOSTS.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []

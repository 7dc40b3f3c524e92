"""Settings are declared once (`SETTINGS`), read once and validated once, with every problem named; the README's
settings table and local.settings.sample.json are generated from the declarations.

`python -m tests.test_settings` rewrites both generated files; the tests below fail while either is stale.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from remediation.app.bootstrap import step_config
from remediation.app.settings import SETTINGS, Duration, Settings, id_list, lower, names, text, url
from remediation.errors import ConfigurationError
from remediation.intake.detection import DetectionConfig
from remediation.run.step import StepConfig

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SAMPLE = ROOT / "local.settings.sample.json"
MINIMAL = {"AZURE_TENANT_ID": "t", "REMEDIATOR_KEY_VAULT_URL": "https://kv.vault.azure.net/",
           "AzureWebJobsStorage__accountName": "remediatorsa", "REMEDIATOR_API_CLIENT_ID": "api-client"}


# ---------------------------------------------------------------- reading and validating


def test_defaults_fill_what_is_not_set() -> None:
    settings = Settings.from_env(MINIMAL)
    assert settings.key_vault_url == "https://kv.vault.azure.net"
    assert settings.arm_endpoint == "https://management.azure.com"
    assert settings.secret_lifetime == timedelta(days=180) and settings.lease == timedelta(seconds=660)
    assert settings.subscription_ids == ()


def test_the_config_objects_default_to_the_table() -> None:
    # StepConfig and DetectionConfig keep defaults of their own (for tests that build them directly); those must be
    # what the table gives, or such tests would run under limits no deployment has.
    settings = Settings.from_env(MINIMAL)
    from_table = step_config(settings)
    for field in dataclasses.fields(StepConfig):
        if field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING:
            assert getattr(StepConfig(), field.name) == getattr(from_table, field.name), field.name
    assert DetectionConfig() == DetectionConfig(lookup_delay_seconds=settings.lookup_delay_seconds,
                                                lookup_timeout=timedelta(minutes=settings.lookup_timeout_minutes))


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ConfigurationError) as problems:
        Settings.from_env({"REMEDIATOR_RESET_POLL_SECONDS": "soon", "REMEDIATOR_RETRY_DELAY_SECONDS": "-1",
                           "REMEDIATOR_LEASE_SECONDS": "0"})
    message = str(problems.value)
    for expected in ("AZURE_TENANT_ID", "REMEDIATOR_KEY_VAULT_URL", "AzureWebJobsStorage", "REMEDIATOR_API_CLIENT_ID",
                     "REMEDIATOR_RESET_POLL_SECONDS", "REMEDIATOR_RETRY_DELAY_SECONDS",
                     "REMEDIATOR_LEASE_SECONDS must be at least 1"):
        assert expected in message


NAMES = {s.name for s in SETTINGS}
BAD_VALUES = ("not-a-value", "-1", "0", "1.5", "inf", "nan", "1e400", "x=", "Mon 25:00-26:00")


def test_every_bad_value_is_refused_naming_its_setting() -> None:
    refused = set()
    for setting in SETTINGS:
        for bad in BAD_VALUES:
            try:
                setting.parse(bad)
                continue
            except ValueError:
                refused.add(setting.name)
            with pytest.raises(ConfigurationError) as problems:
                Settings.from_env({**MINIMAL, setting.name: bad})
            message = str(problems.value)
            assert message.startswith(f"invalid settings: {setting.name} "), message
            assert set(re.findall(r"\w+", message)) & NAMES == {setting.name}, message  # that setting alone
            assert repr(bad).lower() in message.lower(), message
    # Every setting but free text refuses something: numbers, durations, words, flags, tags, GUIDs, the window.
    assert refused == {s.name for s in SETTINGS if s.parse not in (text, url, lower, names, id_list)}


def test_each_setting_is_read_once() -> None:
    reads: Counter[str] = Counter()

    class Environment(dict[str, str]):
        def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
            reads[key] += 1
            return super().get(key, default)

    Settings.from_env(Environment(MINIMAL))
    assert reads == Counter(setting.name for setting in SETTINGS)


def test_the_declarations_are_consistent() -> None:
    assert len({s.name for s in SETTINGS}) == len(SETTINGS)
    for setting in SETTINGS:
        assert not (setting.required and setting.default is not None), setting.name
        assert not (setting.bicep and not setting.deployed), setting.name
        if setting.default:  # every default is valid text for its own parser
            setting.parse(setting.default)
        if isinstance(setting.parse, Duration):  # the unit the name promises
            assert setting.name.endswith("_" + setting.parse.unit.upper()), setting.name
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert {s.field for s in SETTINGS if s.field} <= fields


def test_secrets_never_show_in_repr() -> None:
    settings = Settings.from_env({**MINIMAL, "AZURE_CLIENT_SECRET": "s3cr3t-value",
                                  "AzureWebJobsStorage": "AccountKey=s3cr3t-key",
                                  "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=s3cr3t-ikey",
                                  "REMEDIATOR_SUBSCRIPTION_IDS": " A, b ,,"})
    assert "s3cr3t" not in repr(settings)
    assert settings.subscription_ids == ("a", "b")


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


# ---------------------------------------------------------------- what is generated from the declarations

README_START = "<!-- generated from SETTINGS in remediation/app/settings.py: python -m tests.test_settings -->"
README_END = "<!-- end of settings -->"
# What the Functions host itself needs locally, besides the settings the code reads.
HOST_VALUES = {"FUNCTIONS_WORKER_RUNTIME": "python", "AzureWebJobsFeatureFlags": "EnableWorkerIndexing"}


def readme_table() -> str:
    lines = ["| setting | default | in Azure | meaning |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        default = "required" if s.required else f"`{s.default}`" if s.default else ""
        azure = f"parameter `{s.bicep}`" if s.bicep else "set by the template" if s.deployed else "local runs only"
        lines.append(f"| `{s.name}` | {default} | {azure} | {s.doc} |")
    return "\n".join(lines)


def readme_text(current: str) -> str:
    """The README with the part between the markers replaced by the table."""
    before, start, rest = current.partition(README_START)
    _, end, after = rest.partition(README_END)
    assert start and end, f"README.md lost its markers {README_START!r} ... {README_END!r}"
    return f"{before}{README_START}\n{readme_table()}\n{README_END}{after}"


def sample_text() -> str:
    values = {**HOST_VALUES, **{s.name: s.default or "" if s.example is None else s.example for s in SETTINGS}}
    return json.dumps({"IsEncrypted": False, "Values": values}, indent=2, ensure_ascii=False) + "\n"


def test_the_readme_settings_table_is_current() -> None:
    current = README.read_text(encoding="utf-8")
    assert current == readme_text(current), "README.md's settings table is stale: run python -m tests.test_settings"


def test_the_local_settings_sample_is_current() -> None:
    assert SAMPLE.read_text(encoding="utf-8") == sample_text(), \
        "local.settings.sample.json is stale: run python -m tests.test_settings"


# ---------------------------------------------------------------- endpoints


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
    for line in ('f"https://{account}.table.core.windows.net"', '"https://graph.microsoft.com/.default"',
                 "PUBLIC = 'https://login.microsoftonline.com'", '"https://management.azure.com"'):
        assert CLOUD_HOSTS.search(line), line


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


if __name__ == "__main__":
    README.write_text(readme_text(README.read_text(encoding="utf-8")), encoding="utf-8")
    SAMPLE.write_text(sample_text(), encoding="utf-8")

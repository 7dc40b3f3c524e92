"""The Bicep in infra/: it parses, checkov passes it, its roles grant no wildcard, it sets every app setting the
code reads (remediation/app/settings.py), and it respects the rules of the real platform that nothing here can deploy
to check: each such rule is a test that names its source.

The Bicep is read through tests/bicep.py (tree-sitter, with the rewrites both parsers need: see its docstring).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tree_sitter

from remediation.alerts import POISON_MESSAGE, REMEDIATION_FAILED
from remediation.app.settings import CHECK_QUEUE, INCIDENT_QUEUE, SETTINGS, TABLE_NAME, WORK_QUEUE
from remediation.intake.events import CLUSTER_OPERATION_PREFIX, FAILURE_EVENT_TYPES
from tests.support import bicep
from tests.support.bicep import INFRA, ROOT

# Exactly what the code calls on ARM (remediation/adapters/aks.py and monitor.py).
CUSTOM_ROLE_ACTIONS = {
    # Also covers the health check's Azure Resource Graph query (remediation/adapters/resourcegraph.py):
    # Resource Graph returns the resources the caller may read and has no action of its own.
    "Microsoft.ContainerService/managedClusters/read",
    # Proactive rotation reads the cluster's planned maintenance windows (remediation/adapters/aks.py).
    "Microsoft.ContainerService/managedClusters/maintenanceConfigurations/read",
    "Microsoft.ContainerService/managedClusters/resetServicePrincipalProfile/action",
    "Microsoft.ContainerService/managedClusters/resetAADProfile/action",
    # A replacement reads the deleted principal's role assignments to carry them over; a migration plan (GET
    # /api/clusters/migration-plan) reads a cluster's service principal's.
    "Microsoft.Authorization/roleAssignments/read",
    # The reset is a long-running operation: the SDK poller GETs its Azure-AsyncOperation
    # and Location URLs under .../providers/Microsoft.ContainerService/locations/{region}/.
    "Microsoft.ContainerService/locations/operations/read",
    "Microsoft.ContainerService/locations/operationresults/read",
    "Microsoft.Insights/eventtypes/values/read",
    # A cluster's resource group, for its opt-out tag (remediation/adapters/resources.py).
    "Microsoft.Resources/subscriptions/resourceGroups/read",
}
# What execute mode (REMEDIATOR_MIGRATE=execute) adds, and where: the identity update and the node-image upgrades on
# every managed subscription (remediation/adapters/aks.py) ...
MIGRATION_CLUSTER_ACTIONS = {
    "Microsoft.ContainerService/managedClusters/write",
    "Microsoft.ContainerService/managedClusters/agentPools/upgradeNodeImageVersion/action",
}
# ... and the user-assigned identities, on the identity resource group alone (remediation/adapters/resources.py; the
# cluster write naming them needs assign/action on each, or ARM answers 403 LinkedAuthorizationFailed).
MIGRATION_IDENTITY_ACTIONS = {
    "Microsoft.ManagedIdentity/userAssignedIdentities/read",
    "Microsoft.ManagedIdentity/userAssignedIdentities/write",
    "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
}
ROLE_ASSIGNMENT_WRITE = "Microsoft.Authorization/roleAssignments/write"
# A connection string would bypass the identity (the identity-based __accountName form is used).
FORBIDDEN_APP_SETTINGS = {"AzureWebJobsStorage"}

# What Flex Consumption (plan FC1) rejects at deploy time (ARM error 51021, "The following
# site configuration property (Site.SiteConfig.X) for Flex Consumption sites is invalid") or
# ignores, with where that is documented. Keys compare case-insensitively, as ARM's do.
_LEARN_FLEX = ("https://learn.microsoft.com/azure/azure-functions/functions-app-settings"
               "#flex-consumption-plan-deprecations")
_AVM_360 = "https://github.com/Azure/terraform-azurerm-avm-res-web-site/issues/360"
_PIPELINES_21032 = "https://github.com/microsoft/azure-pipelines-tasks/issues/21032"
_AVM_283 = "https://github.com/Azure/terraform-azurerm-avm-res-web-site/issues/283"
_AVM_345 = "https://github.com/Azure/terraform-azurerm-avm-res-web-site/pull/345"
_FLEX_SAMPLE = ("https://github.com/Azure-Samples/azure-functions-flex-consumption-samples/blob/main/"
                "IaC/bicep/core/host/function.bicep")
FLEX_REJECTED_SITE_CONFIG = {
    "ftpsState": f"error 51021 {_AVM_360}; not valid {_LEARN_FLEX}",
    "use32BitWorkerProcess": f"error 51021 {_AVM_360}; not valid {_LEARN_FLEX}",
    "preWarmedInstanceCount": f"error 51021 {_AVM_360}; replaced {_LEARN_FLEX}",
    "netFrameworkVersion": f"error 51021 {_PIPELINES_21032}; replaced {_LEARN_FLEX}",
    "functionsRuntimeScaleMonitoringEnabled": f"error 51021 {_AVM_360}, {_PIPELINES_21032}",
    "linuxFxVersion": f"error 51021 {_AVM_283}; replaced by functionAppConfig.runtime {_LEARN_FLEX}",
    "windowsFxVersion": f"not valid {_LEARN_FLEX}",
    "alwaysOn": f"not valid {_LEARN_FLEX}",
    "functionAppScaleLimit": f"replaced by scaleAndConcurrency.maximumInstanceCount {_LEARN_FLEX}",
    "javaVersion": f"replaced by functionAppConfig.runtime {_LEARN_FLEX}",
    "powerShellVersion": f"replaced by functionAppConfig.runtime {_LEARN_FLEX}",
    "phpVersion": f"omitted on FC1 {_AVM_345}",
    "pythonVersion": f"omitted on FC1 {_AVM_345}",
    "nodeVersion": f"omitted on FC1 {_AVM_345}",
    "javaContainer": f"omitted on FC1 {_AVM_345}",
    "javaContainerVersion": f"omitted on FC1 {_AVM_345}",
    "remoteDebuggingEnabled": f"ignored: no remote debugging on Linux; the Flex sample sets none {_FLEX_SAMPLE}",
    "remoteDebuggingVersion": f"ignored: no remote debugging on Linux; the Flex sample sets none {_FLEX_SAMPLE}",
}
FLEX_REJECTED_SITE_PROPERTIES = {
    "reserved": f"isReserved: not valid {_LEARN_FLEX}",
    "isXenon": f"not valid {_LEARN_FLEX}",
    "containerSize": f"replaced by scaleAndConcurrency.instanceMemoryMB {_LEARN_FLEX}",
}
FLEX_REJECTED_APP_SETTINGS = {
    name: f"rejected or ignored on Flex {_LEARN_FLEX}"
    for name in (
        "FUNCTIONS_WORKER_RUNTIME",  # a hard deployment error
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_RUN_FROM_PACKAGE",
        "FUNCTIONS_WORKER_RUNTIME_VERSION",
        "FUNCTIONS_MAX_HTTP_CONCURRENCY",
        "FUNCTIONS_WORKER_PROCESS_COUNT",
        "WEBSITE_NODE_DEFAULT_VERSION",
        "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
        "ENABLE_ORYX_BUILD",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "WEBSITE_TIME_ZONE",
        "TZ",
        "WEBSITE_LOAD_CERTIFICATES",
    )
}

# Key Vault data actions the code needs (remediation/adapters: set_secret, get_secret,
# list_versions), and the built-in role that grants far more (delete, purge, backup, restore).
KEY_VAULT_DATA_ACTIONS = {
    "Microsoft.KeyVault/vaults/secrets/setSecret/action",
    "Microsoft.KeyVault/vaults/secrets/getSecret/action",
    "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
}
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"  # Role Based Access Control Administrator (built-in)
AZURE_CLI_APP_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
READER_ROLE = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
# EventGrid Data Sender (built-in; Microsoft Learn, "Azure built-in roles", Integration): events/send/action only.
EVENT_GRID_DATA_SENDER = "d5a91429-5739-47e2-a06b-3470a27159e7"

# Host names of Azure clouds' endpoints. Bicep takes them from environment() or from a
# resource's properties; the only literals allowed are main.bicep's Microsoft Graph map.
CLOUD_HOST_MARKERS = (
    "windows.net", "azure.com", "azure.net", "azure.us", "azure.cn", "microsoftonline",
    "graph.microsoft", "microsoftgraph", "chinacloudapi", "usgovcloudapi", "azurewebsites",
)
GRAPH_ENDPOINT_MAP = "graphEndpoints"
CHECKOV_TIMEOUT_SECONDS = 120

_SKIP_COMMENT = re.compile(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?")


# ---------------------------------------------------------------- reading the Bicep


def _flex_violations(path: Path, text: str | None = None) -> list[str]:
    """Every property or app setting that Flex rejects or ignores on a site whose plan is FC1."""
    resources = bicep.declarations(bicep.parse(path, text), "resource")

    def props(node: tree_sitter.Node | None) -> dict[str, tree_sitter.Node]:
        if node is not None and node.type == "resource_declaration":
            node = bicep.body(node)
        return bicep.properties(node) if node is not None and node.type == "object" else {}

    def literal(values: dict[str, tree_sitter.Node], key: str) -> str:
        return (bicep.literal(values[key]) or "") if key in values else ""

    def rejected(names: Iterator[str] | dict[str, tree_sitter.Node], table: dict[str, str], where: str) -> list[str]:
        lowered = {k.lower(): why for k, why in table.items()}
        return [f"{path.name} {where}.{name}: {lowered[name.lower()]}" for name in names if name.lower() in lowered]

    flex_plans = {symbol for symbol, d in resources.items() if bicep.resource_type(d) == "microsoft.web/serverfarms"
                  and (literal(props(props(d).get("sku")), "name").upper() == "FC1"
                       or literal(props(props(d).get("sku")), "tier").lower() == "flexconsumption")}
    found: list[str] = []
    flex_sites = set()
    for symbol, declaration in resources.items():
        site = props(props(declaration).get("properties"))
        farm = site["serverFarmId"].text.decode().split(".")[0] if "serverFarmId" in site else ""
        if bicep.resource_type(declaration) != "microsoft.web/sites" or (
                "functionAppConfig" not in site and farm not in flex_plans):
            continue
        flex_sites.add(symbol)
        config = props(site.get("siteConfig"))
        found += rejected(site, FLEX_REJECTED_SITE_PROPERTIES, f"{symbol}.properties")
        found += rejected(config, FLEX_REJECTED_SITE_CONFIG, f"{symbol}.siteConfig")
        settings = config["appSettings"].named_children if "appSettings" in config else []
        found += rejected((literal(props(e), "name") for e in settings if e.type == "object"),
                          FLEX_REJECTED_APP_SETTINGS, f"{symbol}.siteConfig.appSettings")
    # The same settings as child resources of a Flex site: sites/config 'web' and 'appsettings'.
    for symbol, declaration in resources.items():
        child = props(declaration)
        if bicep.resource_type(declaration) != "microsoft.web/sites/config" or \
                "parent" not in child or child["parent"].text.decode() not in flex_sites:
            continue
        tables = {"web": FLEX_REJECTED_SITE_CONFIG, "appsettings": FLEX_REJECTED_APP_SETTINGS}
        name = literal(child, "name").lower()
        if name in tables:
            found += rejected(props(child.get("properties")), tables[name], f"{symbol}(config/{name})")
    return found


# ---------------------------------------------------------------- parsing


def test_the_parser_reports_syntax_errors():
    # The parse test below is only worth something if a broken file fails it.
    broken = "resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n  kind:\n"
    assert bicep.syntax_errors(bicep.parse(INFRA / "broken.bicep", broken))
    assert bicep.syntax_errors(bicep.parse(INFRA / "broken.bicepparam", "using 'main.bicep'\nparam x = \n"))


@pytest.mark.parametrize("path", bicep.bicep_files() + sorted(INFRA.rglob("*.bicepparam")),
                         ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_file_parses(path: Path):
    assert bicep.syntax_errors(bicep.parse(path)) == []


def test_only_plain_extension_statements_are_hidden_from_the_parsers():
    # The rewrite hides `extension <alias>` and nothing else: any other use of the word
    # (with a config block, a registry reference) is left for the parsers to judge.
    for path in bicep.bicep_files():
        text = path.read_text(encoding="utf-8")
        words = len(re.findall(r"^\s*extension\b", text, re.MULTILINE))
        assert words == len(bicep.EXTENSION_STATEMENT.findall(text)), path.name


def test_extension_aliases_are_configured():
    aliases = json.loads((INFRA / "bicepconfig.json").read_text(encoding="utf-8")).get("extensions", {})
    for path in bicep.bicep_files():
        for statement in bicep.EXTENSION_STATEMENT.findall(path.read_text(encoding="utf-8")):
            alias = statement.split()[1]
            assert alias in aliases, f"{path.name} uses extension {alias}, missing from bicepconfig.json"
            assert aliases[alias].startswith("br:mcr.microsoft.com/bicep/extensions/"), aliases[alias]


def test_modules_exist():
    for path in bicep.bicep_files():
        for declaration in bicep.parse(path).named_children:
            if declaration.type == "module_declaration":
                target = bicep.literal(declaration.named_children[1])
                assert target and (path.parent / target).is_file(), f"{path.name}: module {target} not found"


def test_parameter_file_sets_only_declared_parameters():
    main = bicep.parse(INFRA / "main.bicep")
    declared = {d.named_children[0].text.decode() for d in main.named_children if d.type == "parameter_declaration"}
    text = (INFRA / "main.bicepparam").read_text(encoding="utf-8")
    assert re.search(r"^using 'main\.bicep'", text, re.MULTILINE)
    assigned = set(re.findall(r"^param\s+(\w+)\s*=", text, re.MULTILINE))
    assert assigned, "main.bicepparam assigns no parameter"
    assert assigned <= declared, f"not parameters of main.bicep: {sorted(assigned - declared)}"
    required = {d.named_children[0].text.decode() for d in main.named_children
                if d.type == "parameter_declaration" and d.named_children[-1].type == "type"}
    assert required <= assigned, f"parameters without a value: {sorted(required - assigned)}"


# ---------------------------------------------------------------- checkov


def _checkov_executable() -> str:
    """checkov from $CHECKOV, beside this interpreter, or in .venv-checkov (its own venv:
    checkov pins packaging<24, which pytest 9 cannot share)."""
    candidates = [os.environ.get("CHECKOV", ""),
                  str(Path(sys.executable).with_name("checkov")),
                  str(ROOT / ".venv-checkov" / "bin" / "checkov")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("checkov is not installed (looked in $CHECKOV, beside this Python, and .venv-checkov/bin); "
                "install the pinned version from the project's dev requirements")


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    checkov = _checkov_executable()
    copy = tmp_path_factory.mktemp("checkov") / "infra"
    shutil.copytree(INFRA, copy)
    for path in copy.rglob("*.bicep"):
        path.write_text(bicep.for_parsers(path, path.read_text(encoding="utf-8")), encoding="utf-8")
    started = time.monotonic()
    run = subprocess.run(
        [checkov, "-d", str(copy), "--framework", "bicep", "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=CHECKOV_TIMEOUT_SECONDS, cwd=copy,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )
    elapsed = time.monotonic() - started
    # Exit 1 means failed checks (asserted below, with detail); anything else is a crash.
    assert run.returncode in (0, 1), f"checkov exited {run.returncode}: {run.stderr[-2000:]}"
    data = json.loads(run.stdout)
    reports = data if isinstance(data, list) else [data]
    found = [r for r in reports if r.get("check_type") == "bicep"]
    assert found, f"checkov produced no bicep report (took {elapsed:.1f} s): {run.stdout[:500]}"
    return found[0]


@pytest.mark.slow
def test_checkov_parses_every_file(checkov_report: dict):
    # A syntax error makes checkov exit 0 with the file left out: count it here.
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0, checkov_report["results"]["parsing_errors"]
    assert summary["resource_count"] >= 30, summary
    scanned = {c["file_path"].lstrip("/") for c in checkov_report["results"]["passed_checks"]}
    for expected in ("modules/storage.bicep", "modules/functionapp.bicep", "modules/keyvault.bicep"):
        assert expected in scanned, f"checkov did not check {expected}"


@pytest.mark.slow
def test_checkov_reports_no_failed_checks(checkov_report: dict):
    failed = [f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']}:{c['file_line_range']})"
              for c in checkov_report["results"]["failed_checks"]]
    assert failed == []


@pytest.mark.slow
def test_every_checkov_skip_is_justified_and_used(checkov_report: dict):
    comments = set()
    for path in bicep.bicep_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = _SKIP_COMMENT.search(line)
            if not match:
                continue
            where = f"{path.relative_to(INFRA)}:{number}"
            # Bicep has no `#` comments: a skip must be a // comment inside the resource.
            assert line.strip().startswith("// checkov:skip="), f"{where}: write skips as // checkov:skip=ID:reason"
            assert len((match.group(2) or "").strip()) >= 30, f"{where}: {match.group(1)} needs a reason"
            comments.add((str(path.relative_to(INFRA)), match.group(1)))
    used = {(c["file_path"].lstrip("/"), c["check_id"]) for c in checkov_report["results"]["skipped_checks"]}
    for check in checkov_report["results"]["skipped_checks"]:
        assert (check["check_result"].get("suppress_comment") or "").strip(), check["check_id"]
    assert comments - used == set(), "skip comments for checks that no longer run: remove them"


# ---------------------------------------------------------------- least privilege


def test_role_definitions_grant_no_wildcards():
    seen = 0
    for path in bicep.bicep_files():
        root = bicep.parse(path)
        variables = bicep.variables(root)
        for symbol, body in bicep.resources(root, "Microsoft.Authorization/roleDefinitions@"):
            seen += 1
            permissions = bicep.properties(bicep.properties(body)["properties"])["permissions"]
            for entry in permissions.named_children:
                if entry.type != "object":
                    continue
                for field, value in bicep.properties(entry).items():
                    for action in bicep.string_list(value, variables, f"{path.name} {symbol}.{field}"):
                        assert "*" not in action, f"{path.name} {symbol}.{field}: wildcard {action!r}"
    assert seen, "no role definition found under infra/"


def test_custom_role_actions_are_exactly_what_the_code_calls():
    root = bicep.parse(INFRA / "modules" / "roles.bicep")
    variables = bicep.variables(root)
    (symbol, body), = list(bicep.resources(root, "Microsoft.Authorization/roleDefinitions@"))
    permissions = bicep.properties(bicep.properties(body)["properties"])["permissions"]
    (entry,) = [e for e in permissions.named_children if e.type == "object"]
    fields = {k: bicep.string_list(v, variables, f"roles.bicep {symbol}.{k}")
              for k, v in bicep.properties(entry).items()}
    assert sorted(fields["actions"]) == sorted(CUSTOM_ROLE_ACTIONS)
    assert len(fields["actions"]) == len(set(fields["actions"]))
    assert fields.get("dataActions", []) == []


# ---------------------------------------------------------------- parity with the code


def test_every_deployed_setting_is_set_by_the_bicep():
    names = set(bicep.app_settings())
    deployed = {spec.name for spec in SETTINGS if spec.deployed}
    assert sorted(deployed - names) == []


def test_local_only_settings_are_not_deployed():
    local_only = {spec.name for spec in SETTINGS if not spec.deployed}
    assert sorted(local_only & set(bicep.app_settings())) == []


def test_app_settings_use_the_identity_and_suit_flex_consumption():
    settings = bicep.app_settings()
    assert sorted(FORBIDDEN_APP_SETTINGS & set(settings)) == []
    assert bicep.literal(settings["AzureWebJobsStorage__credential"]) == "managedidentity"
    client_id = settings["AZURE_CLIENT_ID"].text.decode()
    assert settings["AzureWebJobsStorage__clientId"].text.decode() == client_id
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in settings
    authentication = settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].text.decode()
    assert authentication == "'ClientId=${" + client_id + "};Authorization=AAD'"


# The public cloud's environment(), as ARM returns it (with the trailing slashes the code strips).
PUBLIC_ENVIRONMENT = {"name": "AzureCloud", "resourceManager": "https://management.azure.com/",
                      "authentication": {"loginEndpoint": "https://login.microsoftonline.com/"}}
# Where a deployment with the template's defaults differs from an unset setting on purpose: the template names the
# roles an AKS service principal typically holds, since its role-delegation condition needs a list (main.bicep).
TEMPLATE_OWN_DEFAULTS = {"REMEDIATOR_ASSIGNABLE_ROLE_IDS"}


def _app_setting_sources() -> dict[str, tree_sitter.Node]:
    """Each app setting of functionapp.bicep as main.bicep sets it: the expression main.bicep passes for the module
    parameter the setting reads (through `string(...)` and the fields of the `guardrails` object)."""
    main, _ = _main()
    module = bicep.declarations(main, "module")["functionApp"]
    passed = bicep.properties(bicep.properties(bicep.body(module))["params"])
    sources = {}
    for name, value in bicep.app_settings().items():
        if value.type == "call_expression" and value.named_children[0].text.decode() == "string":
            (value,) = value.named_children[1].named_children
        if value.type == "member_expression" and value.named_children[0].text.decode() in passed:
            owner, member = value.named_children[0].text.decode(), value.named_children[-1].text.decode()
            sources[name] = bicep.properties(passed[owner])[member]
        elif value.type == "identifier" and value.text.decode() in passed:
            sources[name] = passed[value.text.decode()]
    return sources


def _names_behind(node: tree_sitter.Node, variables: dict[str, tree_sitter.Node]) -> set[str]:
    """The names an expression reads, following main.bicep's variables."""
    found: set[str] = set()
    pending = bicep.identifiers(node)
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending |= bicep.identifiers(variables[name]) if name in variables else set()
    return found


def _bicep_text(value: object) -> str:
    """Bicep's string() of a parameter value."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_each_setting_comes_from_its_bicep_parameter_with_the_same_default():
    main, variables = _main()
    parameters = bicep.declarations(main, "parameter")
    sources = _app_setting_sources()
    differing = set()
    for setting in (s for s in SETTINGS if s.bicep):
        declaration = parameters[setting.bicep]
        assert (bicep.decorator_argument(declaration, "description") or "").startswith(f"'{setting.name}:"), \
            f"main.bicep parameter {setting.bicep} does not say it is {setting.name}"
        behind = _names_behind(sources[setting.name], variables)
        assert setting.bicep in behind, f"{setting.name} is not set from the parameter {setting.bicep}"
        # A deployment with the template's defaults gives the app the value an unset setting gives it.
        scope: dict[str, object] = {"environment()": PUBLIC_ENVIRONMENT}
        scope |= {name: bicep.evaluate(bicep.parameter_default(main, name), scope, variables)
                  for name in behind & set(parameters)}
        deployed = bicep.evaluate(sources[setting.name], scope, variables)
        if setting.parse(_bicep_text(deployed)) != setting.parse(setting.default):
            differing.add(setting.name)
    assert sorted(differing ^ TEMPLATE_OWN_DEFAULTS) == [], "the template's default and the app's differ (or agree)"


def test_a_lease_outlasts_the_longest_invocation_the_host_lets_run():
    # The host stops an invocation that runs past host.json's functionTimeout (host.json reference, "functionTimeout";
    # the host's FunctionTimeoutException, "Timeout value of 00:30:00 was exceeded by function"). A lease shorter than
    # that lets a slow but live holder be taken over, and two workers mint (tests/test_properties.py TestTwoWorkers
    # found it: the holder paused 20 minutes between addPassword and the vault write).
    hours, minutes, seconds = (int(part) for part in json.loads((ROOT / "host.json").read_text())["functionTimeout"]
                               .split(":"))
    function_timeout = hours * 3600 + minutes * 60 + seconds
    main, _ = _main()
    bound = bicep.decorator_argument(bicep.declarations(main, "parameter")["leaseSeconds"], "minValue")
    assert bound is not None and int(bound) > function_timeout
    lease = next(s for s in SETTINGS if s.name == "REMEDIATOR_LEASE_SECONDS")
    assert lease.parse(lease.default).total_seconds() > function_timeout


def test_no_bicep_parameter_lets_through_what_the_app_refuses():
    main, _ = _main()
    parameters = bicep.declarations(main, "parameter")
    for setting in (s for s in SETTINGS if s.bicep):
        declaration = parameters[setting.bicep]
        if (minimum := getattr(setting.parse, "minimum", None)) is not None:
            bound = bicep.decorator_argument(declaration, "minValue")
            assert bound is not None and int(bound) >= minimum, f"{setting.bicep}: @minValue({bound}), app: {minimum}"
        if allowed := bicep.decorator_argument(declaration, "allowed"):
            for value in re.findall(r"'([^']*)'", allowed):
                setting.parse(value)


def test_every_setting_parameter_of_the_template_is_declared_in_the_code():
    # A main.bicep parameter documented as a setting ("REMEDIATOR_...: ...") is one the table knows, and the same one.
    main, _ = _main()
    declared = {s.bicep: s.name for s in SETTINGS if s.bicep}
    for name, declaration in bicep.declarations(main, "parameter").items():
        description = bicep.decorator_argument(declaration, "description") or ""
        if match := re.match(r"'([A-Za-z_]+):", description):
            assert declared.get(name) == match.group(1), f"main.bicep parameter {name} ({match.group(1)})"


def test_storage_creates_the_table_and_queues_the_code_uses():
    strings = {bicep.literal(n) for n in bicep.walk(bicep.parse(INFRA / "modules" / "storage.bicep"))
               if n.type == "string"}
    for name in (TABLE_NAME, WORK_QUEUE, f"{WORK_QUEUE}-poison", INCIDENT_QUEUE, f"{INCIDENT_QUEUE}-poison",
                 CHECK_QUEUE, f"{CHECK_QUEUE}-poison"):
        assert name in strings, f"storage.bicep does not create {name}"


def test_event_subscription_targets_the_event_grid_function_and_its_filter():
    root = bicep.parse(INFRA / "modules" / "eventgrid-subscription.bicep")
    params = {d.named_children[0].text.decode(): d.named_children[-1]
              for d in root.named_children if d.type == "parameter_declaration"}
    function_name = bicep.literal(params["functionName"])
    # The Event Grid trigger in function_app.py carries that name (read with ast: no import).
    module = ast.parse((ROOT / "function_app.py").read_text(encoding="utf-8"))
    triggers = {f.name for f in module.body if isinstance(f, ast.FunctionDef)
                for d in f.decorator_list
                if isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "event_grid_trigger"}
    assert function_name in triggers, f"{function_name} is not an Event Grid trigger in function_app.py"

    (_, body), = list(bicep.resources(root, "Microsoft.EventGrid/systemTopics/eventSubscriptions@"))
    props = bicep.properties(bicep.properties(body)["properties"])
    destination = bicep.properties(props["destination"])
    assert bicep.literal(destination["endpointType"]) == "AzureFunction"
    assert destination["properties"].text.decode().count("/functions/${functionName}") == 1
    event_filter = bicep.properties(props["filter"])
    assert set(bicep.string_list(event_filter["includedEventTypes"], {}, "includedEventTypes")) == FAILURE_EVENT_TYPES
    (advanced,) = [a for a in event_filter["advancedFilters"].named_children if a.type == "object"]
    advanced = bicep.properties(advanced)
    assert bicep.literal(advanced["operatorType"]) == "StringBeginsWith"
    assert bicep.literal(advanced["key"]) == "data.operationName"
    prefixes = bicep.string_list(advanced["values"], {}, "advancedFilters.values")
    assert [p.lower() for p in prefixes] == [CLUSTER_OPERATION_PREFIX]
    assert "deadLetterWithResourceIdentity" in props


# ---------------------------------------------------------------- Flex Consumption


def test_flex_sites_set_nothing_flex_rejects_or_ignores():
    flex_files = [p for p in bicep.bicep_files() if "FC1" in p.read_text(encoding="utf-8")]
    assert flex_files, "no Flex Consumption plan found under infra/"
    assert [v for path in bicep.bicep_files() for v in _flex_violations(path)] == []


_SYNTHETIC_SITE = """
resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan'
  location: 'westeurope'
  sku: {
    name: 'SKU'
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: 'site'
  location: 'westeurope'
  properties: {
    serverFarmId: plan.id
    siteConfig: {
      minTlsVersion: '1.2'
      FtpsState: 'Disabled'
      appSettings: [
        {
          name: 'FUNCTIONS_WORKER_RUNTIME'
          value: 'python'
        }
      ]
    }
  }
}

resource web 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'web'
  properties: {
    alwaysOn: false
  }
}
"""


def test_the_flex_check_catches_a_rejected_property_and_only_on_flex():
    flex = _flex_violations(INFRA / "synthetic.bicep", _SYNTHETIC_SITE.replace("'SKU'", "'FC1'"))
    assert [v.split(":")[0] for v in flex] == [
        "synthetic.bicep site.siteConfig.FtpsState",
        "synthetic.bicep site.siteConfig.appSettings.FUNCTIONS_WORKER_RUNTIME",
        "synthetic.bicep web(config/web).alwaysOn",
    ]
    assert _AVM_360 in flex[0]
    # The same site on a classic Consumption plan (Y1) may set them.
    assert _flex_violations(INFRA / "synthetic.bicep", _SYNTHETIC_SITE.replace("'SKU'", "'Y1'")) == []


def test_ftp_stays_off_through_the_publishing_credentials_policies():
    root = bicep.parse(INFRA / "modules" / "functionapp.bicep")
    policies = {bicep.literal(bicep.properties(body)["name"]):
                bicep.properties(bicep.properties(body)["properties"])["allow"].text.decode()
                for _, body in bicep.resources(root, "Microsoft.Web/sites/basicPublishingCredentialsPolicies@")}
    assert policies == {"ftp": "false", "scm": "false"}


# ---------------------------------------------------------------- re-deployable


def _main() -> tuple[tree_sitter.Node, dict[str, tree_sitter.Node]]:
    root = bicep.parse(INFRA / "main.bicep")
    return root, bicep.variables(root)


def test_deployments_outside_the_environments_group_carry_its_resource_token():
    # Subscription-scope deployment names are shared by every environment in a subscription
    # (and tied to one region); so are names in another environment's resource group.
    checked = 0
    for path in bicep.bicep_files():
        root = bicep.parse(path)
        if not re.search(r"^targetScope\s*=\s*'subscription'", path.read_text(encoding="utf-8"), re.MULTILINE):
            continue
        own_groups = {name for name, d in bicep.declarations(root, "resource").items() if not bicep.is_existing(d)
                      and (bicep.literal(d.named_children[1]) or "").startswith("Microsoft.Resources/resourceGroups@")}
        for symbol, declaration in bicep.declarations(root, "module").items():
            props = bicep.properties(bicep.body(declaration))
            if "scope" in props and props["scope"].text.decode() in own_groups:
                continue
            checked += 1
            assert "resourceToken" in bicep.identifiers(props["name"]), \
                f"{path.name}: module {symbol} deploys outside the environment's group as {props['name'].text.decode()}"
    assert checked >= 4  # roles, extra subscriptions, Key Vault role, shared-topic modules


@pytest.mark.parametrize(("topic_group", "creates_topic"), [
    ("", True),               # the first environment: creates and owns the topic
    ("rg-Second", True),      # its own group read back from its outputs: still its own topic
    ("rg-first", False),      # a second environment: attaches to the first one's topic
])
def test_a_second_environment_reuses_the_subscriptions_system_topic(topic_group: str, creates_topic: bool):
    root, variables = _main()
    scope = {"environmentName": "second", "resourceGroupName": "", "resourceToken": "tok2",
             "existingSystemTopicName": "evgt-arm-tok1" if topic_group else "",
             "existingSystemTopicResourceGroup": topic_group}
    modules = bicep.declarations(root, "module")
    topic_condition = bicep.condition(modules["eventGrid"])
    assert bicep.literal(modules["eventGrid"].named_children[1]) == "modules/eventgrid.bicep"
    assert bicep.evaluate(topic_condition, scope, variables) is creates_topic
    # No other file declares (rather than references) a system topic.
    declared = [(path.name, symbol) for path in bicep.bicep_files()
                for symbol, d in bicep.declarations(bicep.parse(path), "resource").items()
                if (bicep.literal(d.named_children[1]) or "").startswith("Microsoft.EventGrid/systemTopics@")
                and not bicep.is_existing(d)]
    assert declared == [("eventgrid.bicep", "systemTopic")]

    expected_group = "rg-second" if creates_topic else "rg-first"
    assert bicep.evaluate(variables["systemTopicResourceGroup"], scope, variables) == expected_group
    assert bicep.evaluate(variables["systemTopicName"], scope, variables) == ("evgt-arm-tok2" if creates_topic
                                                                          else "evgt-arm-tok1")
    subscription = bicep.properties(bicep.body(modules["eventSubscription"]))
    assert subscription["scope"].text.decode() == "resourceGroup(systemTopicResourceGroup)"
    params = bicep.properties(subscription["params"])
    assert params["name"].text.decode() == "eventSubscriptionName"
    assert bicep.evaluate(variables["eventSubscriptionName"], scope, variables) == "aks-cluster-failures-tok2"
    # Dead-lettering on a shared topic uses the topic's identity, which gets write access here.
    for symbol in ("sharedTopicIdentity", "sharedTopicDeadLetter"):
        assert bicep.evaluate(bicep.condition(modules[symbol]), scope, variables) is not creates_topic
    writer = bicep.properties(bicep.properties(bicep.body(modules["sharedTopicDeadLetter"]))["params"])
    assert "sharedTopicIdentity" in bicep.identifiers(writer["principalId"])
    assert "sharedTopicIdentity" in bicep.identifiers(params["deadLetterIdentityId"])
    assert {"eventGrid", "sharedTopicDeadLetter"} <= bicep.identifiers(subscription["dependsOn"])
    reader = (INFRA / "modules" / "eventgrid-topic-identity.bicep").read_text(encoding="utf-8")
    assert "objectKeys(systemTopic.identity" in reader


def test_the_key_vault_name_is_salted_per_deployment_generation():
    root, variables = _main()
    assert "keyVaultNameSalt" in bicep.declarations(root, "parameter")

    def name(salt: str) -> str:
        value = bicep.evaluate(variables["keyVaultName"], {"resourceToken": "abcdefghijklm", "keyVaultNameSalt": salt},
                          variables)
        assert isinstance(value, str) and 3 <= len(value) <= 24, value
        return value

    assert name("") == "kv-rem-abcdefghijklm"  # unsalted: environments provisioned before the salt
    assert name("0a1b2c3d") == name("0a1b2c3d") != name("9f8e7d6c")
    assert name("0a1b2c3d") != name("")
    keyvault = bicep.properties(bicep.body(bicep.declarations(root, "module")["keyVault"]))
    assert bicep.properties(keyvault["params"])["name"].text.decode() == "keyVaultName"
    bicepparam = (INFRA / "main.bicepparam").read_text(encoding="utf-8")
    assert "param keyVaultNameSalt = readEnvironmentVariable('REMEDIATOR_VAULT_SALT', '')" in bicepparam


# ---------------------------------------------------------------- the API's Entra application


def test_the_api_application_matches_what_the_app_validates():
    from remediation.auth import API_ROLES  # the roles the HTTP API checks

    final = bicep.api_application_stages()[-1]
    app = bicep.api_application(final)
    assert app["signInAudience"] == "AzureADMyOrg"
    assert app["identifierUris"] == ["api://tid/aks-sp-remediator-tok"]
    assert {r["value"] for r in app["appRoles"]} == {"Remediations.Read", "Remediations.Write"} == set(API_ROLES)
    for role in app["appRoles"]:
        assert role["allowedMemberTypes"] == ["User", "Application"] and role["isEnabled"] is True
    assert app["api"]["requestedAccessTokenVersion"] == 2
    (scope,) = app["api"]["oauth2PermissionScopes"]
    assert scope["value"] == "user_impersonation"
    assert app["api"]["preAuthorizedApplications"] == [{"appId": AZURE_CLI_APP_ID,
                                                        "delegatedPermissionIds": [scope["id"]]}]
    # Stable ids: a re-deployment keeps the roles and the scope (guid() of the unique name).
    assert bicep.api_application(final) == app
    root = bicep.parse(INFRA / "modules" / "api-app.bicep")
    variables = bicep.variables(root)
    for name in ("writeRoleId", "readRoleId", "userImpersonationId"):
        assert variables[name].text.decode().startswith("guid(uniqueName"), f"{name} must be a stable guid()"

    main, _ = _main()
    assert "resourceToken" in bicep.identifiers(bicep.variables(main)["apiUniqueName"])
    outputs = set(bicep.declarations(main, "output"))
    assert {"REMEDIATOR_API_CLIENT_ID", "REMEDIATOR_API_APP_ID_URI", "FUNCTION_APP_URL"} <= outputs


def test_no_stage_pre_authorizes_a_scope_it_creates():
    # Graph refuses api.preAuthorizedApplications naming a scope that the stored application does not have yet,
    # which includes one created in the same request: "Property api.preAuthorizedApplications.delegatedPermissionIds
    # has a Permission Id that cannot be found in the AppPermissions sets" (microsoftgraph/microsoft-graph-docs-
    # contrib#1395; microsoft-graph-docs#12675). So: the scope first, the pre-authorization in a later stage.
    stages = [bicep.api_application(params) for params in bicep.api_application_stages()]
    assert len(stages) == 2
    scopes_before: set[str] = set()
    for app in stages:
        pre_authorized = {i for p in app["api"]["preAuthorizedApplications"] for i in p["delegatedPermissionIds"]}
        assert pre_authorized <= scopes_before, "a stage pre-authorizes a scope the application does not have yet"
        scopes_before |= {s["id"] for s in app["api"]["oauth2PermissionScopes"]}
    # Every stage writes the same application (one uniqueName), and the last one pre-authorizes Azure CLI.
    assert len({app["uniqueName"] for app in stages}) == 1
    assert stages[-1]["api"]["preAuthorizedApplications"]
    main, _ = _main()
    modules = bicep.declarations(main, "module")
    access = bicep.properties(bicep.properties(bicep.body(modules["apiAccess"]))["params"])
    assert "apiAppPreAuthorization" in bicep.identifiers(access["apiAppId"])


# ---------------------------------------------------------------- diagnostics and alerts


def _diagnostic_categories(path: Path) -> set[str]:
    categories = set()
    for _, body in bicep.resources(bicep.parse(path), "Microsoft.Insights/diagnosticSettings@"):
        props = bicep.properties(bicep.properties(body)["properties"])
        assert "workspaceId" in props
        categories |= {bicep.literal(bicep.properties(log)["category"])
                       for log in props["logs"].named_children if log.type == "object"}
    return categories


def test_key_vault_audit_and_event_grid_delivery_failures_go_to_log_analytics():
    assert _diagnostic_categories(INFRA / "modules" / "keyvault.bicep") == {"AuditEvent"}
    assert _diagnostic_categories(INFRA / "modules" / "eventgrid.bicep") == {"DeliveryFailures"}
    assert _diagnostic_categories(INFRA / "modules" / "outcome-topic.bicep") == {"PublishFailures", "DeliveryFailures"}


def test_log_alerts_search_for_the_lines_the_code_and_host_write():
    root = bicep.parse(INFRA / "modules" / "alerts.bicep")
    alerts = [bicep.properties(a) for a in bicep.variables(root)["logAlerts"].named_children if a.type == "object"]
    queries = [bicep.literal(a["query"]) or "" for a in alerts]
    assert all(q.startswith("traces") for q in queries)
    poison = [q for q in queries if POISON_MESSAGE in q]
    assert poison and '"-poison"' in poison[0]
    assert [q for q in queries if f'"{REMEDIATION_FAILED}"' in q]
    # Each rule searches exactly the span since its last run: no line is missed or counted twice.
    assert all(bicep.literal(a["frequency"]) == bicep.literal(a["window"]) for a in alerts)

    rule = bicep.properties(dict(bicep.resources(root, "Microsoft.Insights/scheduledQueryRules@"))["logAlertRules"])
    assert bicep.literal(bicep.properties(rule["identity"])["type"]) == "SystemAssigned"
    assert bicep.properties(rule["properties"])["scopes"].text.decode().split() == ["[", "appInsights.id", "]"]
    readers = dict(bicep.resources(root, "Microsoft.Authorization/roleAssignments@"))
    reader = bicep.properties(readers["logAlertReaders"])
    assert reader["scope"].text.decode() == "appInsights"
    assert "reader" in bicep.identifiers(bicep.properties(reader["properties"])["roleDefinitionId"])
    assert bicep.literal(bicep.variables(root)["reader"]) == READER_ROLE


def test_an_alert_searches_for_the_health_checks_expired_clusters_line():
    from remediation.intake.health import EXPIRED_NOW_LOG  # logged as "<count> clusters expired now"

    root = bicep.parse(INFRA / "modules" / "alerts.bicep")
    alerts = [bicep.properties(a) for a in bicep.variables(root)["logAlerts"].named_children if a.type == "object"]
    (expired,) = [a for a in alerts if f'"{EXPIRED_NOW_LOG}"' in (bicep.literal(a["query"]) or "")]
    assert (bicep.literal(expired["query"]) or "").startswith("traces | where message contains")
    assert expired["severity"].text.decode() in ("1", "2")
    # The check runs once a day: an hourly look finds its line within the hour.
    assert bicep.literal(expired["frequency"]) == bicep.literal(expired["window"]) == "PT1H"
    looped = dict(bicep.resources(root, "Microsoft.Insights/scheduledQueryRules@"))["logAlertRules"]
    rule = bicep.properties(bicep.properties(looped)["properties"])
    assert rule["evaluationFrequency"].text.decode() == "alert.frequency"
    assert rule["windowSize"].text.decode() == "alert.window"


def test_dead_lettered_events_alert_on_this_environments_subscription():
    root = bicep.parse(INFRA / "modules" / "alerts.bicep")
    (_, alert), = list(bicep.resources(root, "Microsoft.Insights/metricAlerts@"))
    props = bicep.properties(bicep.properties(alert)["properties"])
    assert props["scopes"].text.decode().split() == ["[", "systemTopicId", "]"]
    criteria = bicep.properties(props["criteria"])["allOf"]
    (criterion,) = [bicep.properties(c) for c in criteria.named_children if c.type == "object"]
    assert bicep.literal(criterion["metricName"]) == "DeadLetteredCount"
    assert bicep.literal(criterion["metricNamespace"]) == "Microsoft.EventGrid/systemTopics"
    assert bicep.literal(criterion["operator"]) == "GreaterThan" and criterion["threshold"].text.decode() == "0"
    (dimension,) = [bicep.properties(d) for d in criterion["dimensions"].named_children if d.type == "object"]
    assert bicep.literal(dimension["name"]) == "EventSubscriptionName"
    assert "eventSubscriptionName" in bicep.identifiers(dimension["values"])
    main, _ = _main()
    params = bicep.properties(bicep.properties(bicep.body(bicep.declarations(main, "module")["alerts"]))["params"])
    assert params["eventSubscriptionName"].text.decode() == "eventSubscriptionName"
    assert params["systemTopicId"].text.decode() == "systemTopicId"


def test_the_action_group_notifies_only_the_receivers_given():
    for path in (INFRA / "main.bicep", INFRA / "modules" / "alerts.bicep"):
        root = bicep.parse(path)
        webhook = bicep.declarations(root, "parameter")["alertWebhookUrl"]
        assert bicep.decorated(webhook, "secure"), f"{path.name}: alertWebhookUrl may carry a token: make it @secure"
    root = bicep.parse(INFRA / "modules" / "alerts.bicep")
    (_, group), = list(bicep.resources(root, "Microsoft.Insights/actionGroups@"))
    props = bicep.properties(bicep.properties(group)["properties"])
    assert len(bicep.literal(props["groupShortName"]) or "") <= 12
    assert props["emailReceivers"].text.decode().startswith("empty(alertEmail) ? [] :")
    assert props["webhookReceivers"].text.decode().startswith("empty(alertWebhookUrl) ? [] :")


# ---------------------------------------------------------------- outcome events


def test_the_outcome_topic_takes_cloud_events_from_the_remediator_identity_only():
    root = bicep.parse(INFRA / "modules" / "outcome-topic.bicep")
    variables = bicep.variables(root)
    (symbol, topic), = list(bicep.resources(root, "Microsoft.EventGrid/topics@"))
    props = bicep.properties(bicep.properties(topic)["properties"])
    assert bicep.literal(props["inputSchema"]) == "CloudEventSchemaV1_0"
    assert props["disableLocalAuth"].text.decode() == "true"  # Entra ID only: no access keys, no SAS
    assert bicep.literal(props["minimumTlsVersionAllowed"]) == "1.2"
    # EventGrid Data Sender, on this topic alone, for the remediator identity's principal: the only grant here.
    (_, assignment), = list(bicep.resources(root, "Microsoft.Authorization/roleAssignments@"))
    assignment = bicep.properties(assignment)
    assert assignment["scope"].text.decode() == symbol
    grant = bicep.properties(assignment["properties"])
    assert grant["principalId"].text.decode() == "identityPrincipalId"
    assert bicep.literal(grant["principalType"]) == "ServicePrincipal"
    (role,) = bicep.identifiers(grant["roleDefinitionId"]) & set(variables)
    assert bicep.literal(variables[role]) == EVENT_GRID_DATA_SENDER
    assert grant["roleDefinitionId"].text.decode().startswith("subscriptionResourceId(")
    outputs = bicep.declarations(root, "output")
    assert outputs["endpoint"].named_children[-1].text.decode() == f"{symbol}.properties.endpoint"
    assert outputs["id"].named_children[-1].text.decode() == f"{symbol}.id"

    main, _ = _main()
    modules = bicep.declarations(main, "module")
    topic_params = bicep.properties(bicep.properties(bicep.body(modules["outcomeTopic"]))["params"])
    assert topic_params["identityPrincipalId"].text.decode() == "identity.outputs.principalId"
    assert topic_params["workspaceId"].text.decode() == "monitoring.outputs.workspaceId"
    assert "resourceToken" in bicep.identifiers(topic_params["name"])
    assert bicep.condition(modules["outcomeTopic"]) is None
    # Its endpoint reaches the app as REMEDIATOR_OUTCOME_TOPIC_ENDPOINT ...
    app_params = bicep.properties(bicep.properties(bicep.body(modules["functionApp"]))["params"])
    assert app_params["outcomeTopicEndpoint"].text.decode() == "outcomeTopic.outputs.endpoint"
    assert bicep.app_settings()["REMEDIATOR_OUTCOME_TOPIC_ENDPOINT"].text.decode() == "outcomeTopicEndpoint"
    # ... and its id and endpoint reach other teams, who subscribe to it.
    main_outputs = bicep.declarations(main, "output")
    assert main_outputs["REMEDIATOR_OUTCOME_TOPIC_ID"].named_children[-1].text.decode() == "outcomeTopic.outputs.id"
    assert main_outputs["REMEDIATOR_OUTCOME_TOPIC_ENDPOINT"].named_children[-1].text.decode() == \
        "outcomeTopic.outputs.endpoint"


def test_no_other_file_grants_event_grid_data_sender():
    offenders = [p.relative_to(INFRA) for p in INFRA.rglob("*.bicep")
                 if EVENT_GRID_DATA_SENDER in p.read_text(encoding="utf-8") and p.name != "outcome-topic.bicep"]
    assert offenders == []


# ---------------------------------------------------------------- Key Vault rights


def test_the_key_vault_role_grants_exactly_what_the_code_does():
    root = bicep.parse(INFRA / "modules" / "keyvault-secrets-role.bicep")
    variables = bicep.variables(root)
    (symbol, body), = list(bicep.resources(root, "Microsoft.Authorization/roleDefinitions@"))
    props = bicep.properties(bicep.properties(body)["properties"])
    (entry,) = [e for e in props["permissions"].named_children if e.type == "object"]
    fields = {k: bicep.string_list(v, variables, f"{symbol}.{k}") for k, v in bicep.properties(entry).items()}
    assert sorted(fields["dataActions"]) == sorted(KEY_VAULT_DATA_ACTIONS)
    assert {k: v for k, v in fields.items() if k != "dataActions"} == {"actions": [], "notActions": [],
                                                                       "notDataActions": []}
    assert props["assignableScopes"].text.decode().split() == ["[", "subscription().id", "]"]
    assert "resourceToken" in bicep.identifiers(bicep.properties(body)["name"])


def test_the_sandbox_grants_the_remediator_exactly_the_deployed_roles():
    # The sandbox refuses what these roles do not allow, so the end-to-end tests prove the roles suffice.
    from sandbox.state import REMEDIATOR_ARM_ACTIONS, REMEDIATOR_VAULT_DATA_ACTIONS, ROLE_ASSIGNMENT_WRITE_ACTIONS

    assert REMEDIATOR_ARM_ACTIONS == CUSTOM_ROLE_ACTIONS
    assert REMEDIATOR_VAULT_DATA_ACTIONS == KEY_VAULT_DATA_ACTIONS
    root = bicep.parse(INFRA / "modules" / "role-assignment-writer-role.bicep")
    assert set(bicep.string_list(bicep.variables(root)["actions"], {}, "actions")) == ROLE_ASSIGNMENT_WRITE_ACTIONS


def test_the_vault_assignment_uses_the_custom_role_and_no_file_names_secrets_officer():
    offenders = [p.relative_to(INFRA) for p in INFRA.rglob("*") if p.is_file()
                 and KEY_VAULT_SECRETS_OFFICER in p.read_text(encoding="utf-8", errors="replace")]
    assert offenders == []
    root = bicep.parse(INFRA / "modules" / "keyvault.bicep")
    (_, assignment), = list(bicep.resources(root, "Microsoft.Authorization/roleAssignments@"))
    assignment = bicep.properties(assignment)
    assert assignment["scope"].text.decode() == "vault"
    assert bicep.properties(assignment["properties"])["roleDefinitionId"].text.decode() == "secretsRoleDefinitionId"
    main, _ = _main()
    params = bicep.properties(bicep.properties(bicep.body(bicep.declarations(main, "module")["keyVault"]))["params"])
    assert params["secretsRoleDefinitionId"].text.decode() == "keyVaultRole.outputs.roleDefinitionId"


# ---------------------------------------------------------------- cloud-aware endpoints


def _cloud_hosts(path: Path, text: str | None = None) -> list[str]:
    root = bicep.parse(path, text)
    allowed = [d for d in root.named_children if d.type == "variable_declaration"
               and d.named_children[0].text.decode() == GRAPH_ENDPOINT_MAP and path.name == "main.bicep"]
    found = []
    for node in bicep.walk(root):
        if node.type != "string" or any(a.start_byte <= node.start_byte < a.end_byte for a in allowed):
            continue
        value = node.text.decode().lower()
        found += [f"{path.name}:{node.start_point[0] + 1}: {node.text.decode()}"
                  for marker in CLOUD_HOST_MARKERS if marker in value][:1]
    return found


def test_no_bicep_file_hard_codes_a_cloud_host():
    files = bicep.bicep_files() + sorted(INFRA.rglob("*.bicepparam"))
    assert [h for path in files for h in _cloud_hosts(path)] == []
    # The check bites: a literal ARM or storage host outside the Graph map is reported.
    planted = "var a = 'https://management.azure.com/'\nvar b = 'x.blob.core.windows.net'\n"
    assert len(_cloud_hosts(INFRA / "x.bicep", planted)) == 2
    main, variables = _main()
    graph = bicep.properties(variables[GRAPH_ENDPOINT_MAP])
    assert set(graph) == {"AzureCloud", "AzureUSGovernment", "AzureChinaCloud"}
    assert variables["effectiveGraphEndpoint"].text.decode() == \
        "empty(graphEndpoint) ? graphEndpoints[environment().name] : graphEndpoint"


def test_endpoint_settings_come_from_the_environment_and_the_storage_account():
    settings = bicep.app_settings()
    for name, param in (("AzureWebJobsStorage__blobServiceUri", "storageBlobEndpoint"),
                        ("AzureWebJobsStorage__queueServiceUri", "storageQueueEndpoint"),
                        ("AzureWebJobsStorage__tableServiceUri", "storageTableEndpoint")):
        assert settings[name].text.decode() == param
    storage = (INFRA / "modules" / "storage.bicep").read_text(encoding="utf-8")
    for service in ("blob", "queue", "table"):
        assert f"account.properties.primaryEndpoints.{service}" in storage
    main, _ = _main()
    params = bicep.declarations(main, "parameter")
    assert params["armEndpoint"].named_children[-1].text.decode() == "environment().resourceManager"
    assert params["authorityHost"].named_children[-1].text.decode() == "environment().authentication.loginEndpoint"


# ---------------------------------------------------------------- replacing a deleted application

def _default_assignable_role_ids() -> list[str]:
    main, _ = _main()
    (declaration,) = [d for d in main.named_children if d.type == "parameter_declaration"
                      and d.named_children[0].text.decode() == "assignableRoleIds"]
    return [bicep.literal(n) for n in bicep.walk(declaration.named_children[-1]) if n.type == "string"]


REMEDIATOR_PRINCIPAL = "0f6c2b1e-7e3a-4c55-9a51-2d0e8f3b6a11"
ANOTHER_PRINCIPAL = "5b2a9c40-1f7d-4e8b-b6c3-9e0d1a2f3c44"


def _deployed_condition(role_ids: list[str]) -> str:
    """role-delegation.bicep's condition as deployed for these roles and REMEDIATOR_PRINCIPAL."""
    root = bicep.parse(INFRA / "modules" / "role-delegation.bicep")
    return bicep.evaluate(bicep.variables(root)["condition"],
                          {"assignableRoleIds": role_ids, "identityPrincipalId": REMEDIATOR_PRINCIPAL},
                          bicep.variables(root))


def test_the_role_delegation_condition_is_one_the_sandbox_enforces_and_names_only_the_assignable_roles():
    # The sandbox refuses what this condition refuses: its parser is the one that judges every role assignment
    # write in the end-to-end replacement tests, so the condition deployed is the one those tests ran under.
    from sandbox.rbac import BUILT_IN_ROLES, parse_condition

    defaults = _default_assignable_role_ids()
    condition = parse_condition(_deployed_condition(defaults))
    assert condition.write.role_ids == condition.delete.role_ids == frozenset(defaults)
    assert condition.write.principal_types == condition.delete.principal_types == frozenset({"serviceprincipal"})
    # Never a role that could widen the remediator's own rights or anyone's beyond an AKS cluster's needs.
    assert {BUILT_IN_ROLES[name] for name in ("Network Contributor", "AcrPull", "Private DNS Zone Contributor")} \
        == set(defaults)
    for wide in ("Contributor", "Role Based Access Control Administrator"):
        assert BUILT_IN_ROLES[wide] not in defaults


def test_the_remediator_cannot_give_a_role_to_itself():
    # The remediator is itself a service principal: a condition that limits only roles and principal type would let
    # it assign any listed role to itself at subscription scope. The PrincipalId attribute of role assignment writes
    # and deletes takes ForAnyOfAllValues:GuidNotEquals (Microsoft Learn, "Azure role assignment condition format and
    # syntax" / "authorization actions and attributes"); the sandbox evaluates it (sandbox/rbac.py).
    from sandbox.rbac import BUILT_IN_ROLES, parse_condition

    network = BUILT_IN_ROLES["Network Contributor"]
    condition = parse_condition(_deployed_condition([network]))
    assert condition.write.excluded_principals == condition.delete.excluded_principals == frozenset(
        {REMEDIATOR_PRINCIPAL})
    assert condition.allows_write(network, "ServicePrincipal", ANOTHER_PRINCIPAL)
    assert not condition.allows_write(network, "ServicePrincipal", REMEDIATOR_PRINCIPAL)
    assert not condition.allows_write(BUILT_IN_ROLES["Contributor"], "ServicePrincipal", ANOTHER_PRINCIPAL)
    assert not condition.allows_write(network, "User", ANOTHER_PRINCIPAL)


def test_assignable_role_ids_are_trimmed_before_they_reach_the_condition():
    # A trailing comma or a space in REMEDIATOR_ASSIGNABLE_ROLE_IDS once produced "{a, b, }", which ARM refuses as an
    # invalid condition: main.bicep trims, lower-cases and drops empty entries (the preflight also checks that each
    # is the GUID of an existing role definition).
    from sandbox.rbac import parse_condition

    main, variables = _main()
    given = [" 4D97B98B-1D4F-4787-A291-C67834D212E7", "7f951dda-4ed3-4680-a7ca-43fe172d538d ", ""]
    roles = bicep.evaluate(variables["assignableRoles"], {"assignableRoleIds": given, "migrate": "off"}, variables)
    assert roles == ["4d97b98b-1d4f-4787-a291-c67834d212e7", "7f951dda-4ed3-4680-a7ca-43fe172d538d"]
    assert parse_condition(_deployed_condition(roles)).write.role_ids == frozenset(roles)
    for module in ("roleDelegation", "extraSubscriptionDelegations"):
        params = bicep.properties(bicep.properties(bicep.body(bicep.declarations(main, "module")[module]))["params"])
        assert params["assignableRoleIds"].text.decode() == "assignableRoles"


@pytest.mark.parametrize(("replace", "migrate", "deployed"), [
    ("plan", "off", False), ("replace", "off", True), ("plan", "execute", True), ("replace", "execute", True)])
def test_role_delegation_is_deployed_only_to_replace_or_migrate_and_on_every_subscription(replace: str, migrate: str,
                                                                                        deployed: bool):
    # A replacement carries a deleted principal's assignments over; a move gives a cluster's new identities theirs.
    main, variables = _main()
    modules = bicep.declarations(main, "module")
    scope = {"replaceDeleted": replace, "migrate": migrate, "extraSubscriptionIds": ["sub-b", "sub-c"]}
    for name in ("roleAssignmentWriter", "roleDelegation", "roleAssignmentAlert"):
        assert bicep.evaluate(bicep.condition(modules[name]), scope, variables) is deployed, name
    loop = next(n for n in bicep.walk(modules["extraSubscriptionDelegations"]) if n.type == "for_statement")
    assert len(bicep.evaluate(loop.named_children[1], scope, variables)) == (2 if deployed else 0)


def test_replacement_holds_a_custom_role_with_exactly_role_assignment_write():
    # Role Based Access Control Administrator (f58310d9-...) also grants */read and Microsoft.Support/* on every
    # subscription it is assigned in (built-in roles reference), and an ABAC condition constrains only role
    # assignment writes and deletes: the rest would be unconditional. The code writes assignments and never deletes
    # one (remediation/adapters/roles.py), so the role holds exactly that.
    root = bicep.parse(INFRA / "modules" / "role-assignment-writer-role.bicep")
    variables = bicep.variables(root)
    (symbol, body), = list(bicep.resources(root, "Microsoft.Authorization/roleDefinitions@"))
    (entry,) = [e for e in bicep.properties(bicep.properties(body)["properties"])["permissions"].named_children
                if e.type == "object"]
    fields = {k: bicep.string_list(v, variables, f"{symbol}.{k}") for k, v in bicep.properties(entry).items()}
    assert fields == {"actions": ["Microsoft.Authorization/roleAssignments/write"], "notActions": [],
                      "dataActions": [], "notDataActions": []}
    offenders = [p.name for p in INFRA.rglob("*") if p.is_file()
                 and RBAC_ADMINISTRATOR in p.read_text(encoding="utf-8", errors="replace")]
    assert offenders == []
    delegation = bicep.parse(INFRA / "modules" / "role-delegation.bicep")
    (_, assignment), = list(bicep.resources(delegation, "Microsoft.Authorization/roleAssignments@"))
    grant = bicep.properties(bicep.properties(assignment)["properties"])
    assert grant["roleDefinitionId"].text.decode() == "roleDefinitionId"
    assert grant["condition"].text.decode() == "condition" and bicep.literal(grant["conditionVersion"]) == "2.0"


def test_the_role_assignment_reader_holds_exactly_role_assignment_read_where_it_is_given():
    # A migration plan lists a cluster's service principal's role assignments in every subscription its network
    # names (remediation/decide/migration.py): in subscriptions the remediator does not act on, that read and nothing
    # else, on each subscription given and nowhere when none is.
    root = bicep.parse(INFRA / "modules" / "role-assignment-reader-role.bicep")
    variables = bicep.variables(root)
    (symbol, body), = list(bicep.resources(root, "Microsoft.Authorization/roleDefinitions@"))
    (entry,) = [e for e in bicep.properties(bicep.properties(body)["properties"])["permissions"].named_children
                if e.type == "object"]
    fields = {k: bicep.string_list(v, variables, f"{symbol}.{k}") for k, v in bicep.properties(entry).items()}
    assert fields == {"actions": ["Microsoft.Authorization/roleAssignments/read"], "notActions": [],
                      "dataActions": [], "notDataActions": []}
    main, main_variables = _main()
    modules = bicep.declarations(main, "module")
    for given in ([], ["sub-hub", "sub-dns"]):
        scope = {"roleAssignmentReadSubscriptionIds": given}
        assert bicep.evaluate(bicep.condition(modules["roleAssignmentReader"]), scope, main_variables) is bool(given)
        loop = next(n for n in bicep.walk(modules["roleAssignmentReads"]) if n.type == "for_statement")
        assert bicep.evaluate(loop.named_children[1], scope, main_variables) == given
    params = bicep.properties(bicep.properties(bicep.body(modules["roleAssignmentReads"]))["params"])
    assert params["roleDefinitionId"].text.decode() == "roleAssignmentReader!.outputs.roleDefinitionId"
    assert bicep.literal(bicep.declarations(main, "module")["roleAssignmentReads"].named_children[1]) == \
        "modules/subscription-role-assignment.bicep"


def test_role_assignments_the_identity_writes_raise_an_alert():
    root = bicep.parse(INFRA / "modules" / "role-assignment-alert.bicep")
    (_, alert), = list(bicep.resources(root, "Microsoft.Insights/activityLogAlerts@"))
    props = bicep.evaluate(bicep.properties(alert)["properties"],
                           {"identityPrincipalId": "pid", "identityClientId": "cid", "actionGroupId": "ag",
                            "subscription()": {"id": "/subscriptions/s"}}, bicep.variables(root))
    assert props["scopes"] == ["/subscriptions/s"] and props["enabled"] is True
    conditions = props["condition"]["allOf"]
    # Activity Log alerts must test `category` (Microsoft.Insights/activityLogAlerts 2020-10-01).
    assert {"field": "category", "equals": "Administrative"} in conditions
    assert {"field": "operationName", "equals": "Microsoft.Authorization/roleAssignments/write"} in conditions
    (callers,) = [c["anyOf"] for c in conditions if "anyOf" in c]
    assert {c["equals"] for c in callers if c["field"] == "caller"} == {"pid", "cid"}
    assert props["actions"]["actionGroups"] == [{"actionGroupId": "ag"}]


def test_the_graph_grants_are_the_permissions_the_sandbox_gives_the_remediator():
    from sandbox.state import GRAPH_OWNED_BY, GRAPH_READ_ALL, WorldOptions

    text = (INFRA / "modules" / "graph.bicep").read_text(encoding="utf-8")
    granted = set(re.findall(r"appRoleId: (\w+)", text))
    ids = dict(re.findall(r"^var (\w+) = '([0-9a-f-]{36})'$", text, re.MULTILINE))
    # Microsoft Graph's app role ids (permissions reference).
    known = {"18a4783c-866b-4cc7-a460-3d5e5662c884": GRAPH_OWNED_BY,
             "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30": GRAPH_READ_ALL}
    assert {known[ids[name]] for name in granted} == set(WorldOptions().remediator_graph_permissions)


# ---------------------------------------------------------------- execute mode: moving clusters to managed identity

MIGRATED_SUBSCRIPTIONS = ["sub-a", "sub-b", "sub-c"]  # the deployment's own, then extraSubscriptionIds
EXECUTE = {"migrate": "execute", "migrationIdentityGroup": "rg-aks-identities"}


def _subscription(*given: str) -> dict[str, str]:
    """What subscription() (the deployment's, sub-a) or subscription(id) returns, as far as the templates read it."""
    subscription_id = given[0] if given else MIGRATED_SUBSCRIPTIONS[0]
    return {"subscriptionId": subscription_id, "id": f"/subscriptions/{subscription_id}"}


def _resource_group(subscription_id: str, name: str) -> dict[str, str]:
    return {"name": name, "id": f"/subscriptions/{subscription_id}/resourceGroups/{name}"}


def _deployment(**given: object) -> dict[str, object]:
    """main.bicep's parameters in a deployment to sub-a with two extra subscriptions: the template's defaults but for
    `given`."""
    main, variables = _main()
    scope: dict[str, object] = {"environment()": PUBLIC_ENVIRONMENT, "subscription()": _subscription,
                                "resourceGroup()": _resource_group, "environmentName": "env",
                                "location": "westeurope", "extraSubscriptionIds": MIGRATED_SUBSCRIPTIONS[1:], **given}
    for name in bicep.declarations(main, "parameter"):
        if name not in scope and (default := bicep.parameter_default(main, name)) is not None:
            scope[name] = bicep.evaluate(default, scope, variables)
    return scope


def _deployments(module: str, scope: dict[str, object]) -> list[dict[str, object]]:
    """One main.bicep module's deployments for these parameters (none when its condition is false, one per item of
    its loop), each as its `scope` evaluates, or {} for the deployment's own."""
    main, variables = _main()
    declaration = bicep.declarations(main, "module")[module]
    value = declaration.named_children[-1]
    if value.type == "for_statement":
        name, items = value.named_children[0].text.decode(), bicep.evaluate(value.named_children[1], scope, variables)
        where = bicep.properties(bicep.body(declaration)).get("scope")
        return [bicep.evaluate(where, {**scope, name: item}, variables) if where is not None else {} for item in items]
    condition = bicep.condition(declaration)
    return [{}] if condition is None or bicep.evaluate(condition, scope, variables) else []


def _role_actions(path: Path) -> set[str]:
    """Every action and data action of the role definitions one file declares."""
    root = bicep.parse(path)
    variables = bicep.variables(root)
    found: set[str] = set()
    for symbol, body in bicep.resources(root, "Microsoft.Authorization/roleDefinitions@"):
        for entry in bicep.properties(bicep.properties(body)["properties"])["permissions"].named_children:
            if entry.type == "object":
                fields = bicep.properties(entry)
                for field in ("actions", "dataActions"):
                    found |= set(bicep.string_list(fields[field], variables, f"{path.name} {symbol}.{field}"))
    return found


def _granted(scope: dict[str, object]) -> set[str]:
    """The actions of every role definition a deployment with these parameters creates (each is assigned)."""
    main, _ = _main()
    granted: set[str] = set()
    for module, declaration in bicep.declarations(main, "module").items():
        if _deployments(module, scope):
            granted |= _role_actions(INFRA / (bicep.literal(declaration.named_children[1]) or ""))
    return granted


def test_a_default_deployment_grants_nothing_the_move_needs():
    # Execute mode is off unless asked for, and so are its rights: no cluster write, no identity, no role assignment.
    default = _granted(_deployment())
    assert default & (MIGRATION_CLUSTER_ACTIONS | MIGRATION_IDENTITY_ACTIONS | {ROLE_ASSIGNMENT_WRITE}) == set()
    assert default == CUSTOM_ROLE_ACTIONS | KEY_VAULT_DATA_ACTIONS
    for module in ("migrationRoles", "migrationClusterAssignments", "migrationIdentityAssignments",
                   "roleAssignmentWriter", "roleDelegation", "extraSubscriptionDelegations"):
        assert _deployments(module, _deployment()) == [], module
    assert _deployment()["migrate"] == "off"


def test_execute_mode_adds_exactly_the_moves_rights():
    execute = _granted(_deployment(**EXECUTE))
    added = MIGRATION_CLUSTER_ACTIONS | MIGRATION_IDENTITY_ACTIONS | {ROLE_ASSIGNMENT_WRITE}
    assert execute == _granted(_deployment()) | added
    # Replacing deleted applications already writes role assignments: execute adds the migration roles alone.
    replacing = _granted(_deployment(replaceDeleted="replace"))
    both = _granted(_deployment(replaceDeleted="replace", **EXECUTE))
    assert both - replacing == MIGRATION_CLUSTER_ACTIONS | MIGRATION_IDENTITY_ACTIONS


def test_the_migration_roles_hold_exactly_what_the_move_calls():
    # The sandbox grants the remediator MIGRATION_ARM_ACTIONS in execute mode and refuses the rest, so the end-to-end
    # migration tests prove these suffice.
    from sandbox.state import MIGRATION_ARM_ACTIONS

    root = bicep.parse(INFRA / "modules" / "migration-roles.bicep")
    variables = bicep.variables(root)
    roles = {}
    for symbol, body in bicep.resources(root, "Microsoft.Authorization/roleDefinitions@"):
        (entry,) = [e for e in bicep.properties(bicep.properties(body)["properties"])["permissions"].named_children
                    if e.type == "object"]
        fields = {k: bicep.string_list(v, variables, f"{symbol}.{k}") for k, v in bicep.properties(entry).items()}
        assert {k: v for k, v in fields.items() if k != "actions"} == {"notActions": [], "dataActions": [],
                                                                       "notDataActions": []}, symbol
        assert len(fields["actions"]) == len(set(fields["actions"])), symbol
        roles[symbol] = set(fields["actions"])
        scopes = bicep.evaluate(bicep.properties(bicep.properties(body)["properties"])["assignableScopes"],
                                {"subscription()": _subscription, "extraSubscriptionIds": MIGRATED_SUBSCRIPTIONS[1:]},
                                variables)
        assert scopes == [f"/subscriptions/{s}" for s in MIGRATED_SUBSCRIPTIONS], symbol
    assert roles == {"clusterRole": MIGRATION_CLUSTER_ACTIONS, "identityRole": MIGRATION_IDENTITY_ACTIONS}
    assert MIGRATION_ARM_ACTIONS == MIGRATION_CLUSTER_ACTIONS | MIGRATION_IDENTITY_ACTIONS
    outputs = {name: d.named_children[-1].text.decode() for name, d in bicep.declarations(root, "output").items()}
    assert outputs == {"clusterRoleDefinitionId": "clusterRole.id", "identityRoleDefinitionId": "identityRole.id"}


def test_execute_mode_assigns_each_migration_role_only_where_it_holds():
    # The cluster role on every managed subscription (a cluster may be in any); the identity role on the identity
    # group of each, and nowhere else: the identities a move makes live there, in the cluster's subscription.
    scope = _deployment(**EXECUTE)
    assert _deployments("migrationRoles", scope) == [{}]
    assert [s["id"] for s in _deployments("migrationClusterAssignments", scope)] == \
        [f"/subscriptions/{s}" for s in MIGRATED_SUBSCRIPTIONS]
    assert [s["id"] for s in _deployments("migrationIdentityAssignments", scope)] == \
        [f"/subscriptions/{s}/resourceGroups/rg-aks-identities" for s in MIGRATED_SUBSCRIPTIONS]
    main, _ = _main()
    modules = bicep.declarations(main, "module")
    for module, target, role in (
            ("migrationClusterAssignments", "subscription-role-assignment.bicep", "clusterRoleDefinitionId"),
            ("migrationIdentityAssignments", "resource-group-role-assignment.bicep", "identityRoleDefinitionId")):
        assert bicep.literal(modules[module].named_children[1]) == f"modules/{target}"
        params = bicep.properties(bicep.properties(bicep.body(modules[module]))["params"])
        assert params["roleDefinitionId"].text.decode() == f"migrationRoles!.outputs.{role}", module
        assert params["identityPrincipalId"].text.decode() == "identity.outputs.principalId", module
    # The group-scoped module assigns at its deployment's scope: the group itself, nothing wider or narrower.
    path = INFRA / "modules" / "resource-group-role-assignment.bicep"
    assert re.search(r"^targetScope = 'resourceGroup'$", path.read_text(encoding="utf-8"), re.MULTILINE)
    (_, assignment), = list(bicep.resources(bicep.parse(path), "Microsoft.Authorization/roleAssignments@"))
    assert "scope" not in bicep.properties(assignment)
    grant = bicep.properties(bicep.properties(assignment)["properties"])
    assert bicep.literal(grant["principalType"]) == "ServicePrincipal"
    assert grant["roleDefinitionId"].text.decode() == "roleDefinitionId"


def test_execute_mode_lets_the_writer_assign_managed_identity_operator():
    # A move grants its control-plane identity Managed Identity Operator on its kubelet identity
    # (remediation/decide/migration.py): the condition must allow that role, still to service principals only and never
    # to the remediator, and the app must be told the same list, or it plans instead of moving.
    from remediation.decide.migration import MANAGED_IDENTITY_OPERATOR
    from sandbox.rbac import BUILT_IN_ROLES, parse_condition

    assert BUILT_IN_ROLES["Managed Identity Operator"] == MANAGED_IDENTITY_OPERATOR
    main, variables = _main()
    setting = next(s for s in SETTINGS if s.name == "REMEDIATOR_ASSIGNABLE_ROLE_IDS")
    source = _app_setting_sources()[setting.name]
    defaults = _default_assignable_role_ids()
    for migrate in ("off", "execute"):
        executes = migrate == "execute"
        scope = {"assignableRoleIds": defaults, "migrate": migrate}
        roles = bicep.evaluate(variables["assignableRoles"], scope, variables)
        assert roles == defaults + ([MANAGED_IDENTITY_OPERATOR] if executes else [])
        condition = parse_condition(_deployed_condition(roles))
        assert condition.write.role_ids == frozenset(roles)
        assert condition.write.principal_types == frozenset({"serviceprincipal"})
        assert condition.write.excluded_principals == frozenset({REMEDIATOR_PRINCIPAL})
        assert condition.allows_write(MANAGED_IDENTITY_OPERATOR, "ServicePrincipal", ANOTHER_PRINCIPAL) is executes
        assert not condition.allows_write(MANAGED_IDENTITY_OPERATOR, "ServicePrincipal", REMEDIATOR_PRINCIPAL)
        assert not condition.allows_write(MANAGED_IDENTITY_OPERATOR, "User", ANOTHER_PRINCIPAL)
        deployed = bicep.evaluate(source, scope, variables)
        assert (MANAGED_IDENTITY_OPERATOR in setting.parse(deployed)) is executes
    # Listed already (in any case): once.
    given = {"assignableRoleIds": [MANAGED_IDENTITY_OPERATOR.upper(), " "], "migrate": "execute"}
    assert bicep.evaluate(variables["assignableRoles"], given, variables) == [MANAGED_IDENTITY_OPERATOR]


def test_execute_mode_is_set_from_the_azd_environment():
    # `azd env set REMEDIATOR_MIGRATE execute` (infra/README.md): each of the three settings from the azd environment
    # variable of its own name, with the app's default.
    bicepparam = (INFRA / "main.bicepparam").read_text(encoding="utf-8")
    for name in ("REMEDIATOR_MIGRATE", "REMEDIATOR_MIGRATE_TAG", "REMEDIATOR_MIGRATION_IDENTITY_GROUP"):
        setting = next(s for s in SETTINGS if s.name == name)
        assert f"param {setting.bicep} = readEnvironmentVariable('{name}', '{setting.default}')" in bicepparam, name



# ---------------------------------------------------------------- rules of the real platform, each with its source
# None of these can be seen by deploying here (there is no Azure): each test encodes the rule and names where it is
# written, and fails if the template breaks it again.

_EVENT_DRIVEN_SCALING = ("https://learn.microsoft.com/azure/azure-functions/event-driven-scaling"
                         "#flex-consumption-plan")
_GRAPH_BICEP_LIMITS = "https://learn.microsoft.com/graph/templates/known-issues-graph-bicep"
_HOST_JSON = "https://learn.microsoft.com/azure/azure-functions/functions-host-json#applicationinsightssamplingsettings"
_RESOURCE_SPECIFIC = ("https://learn.microsoft.com/azure/azure-monitor/essentials/resource-logs"
                      "#resource-specific")
_DAILY_CAP = "https://learn.microsoft.com/azure/azure-monitor/logs/daily-cap#alert-when-daily-cap-is-reached"


def test_flex_maximum_instance_count_is_at_least_the_platform_minimum():
    # "Currently the lowest maximum instance count value is 40, and the highest supported maximum instance count
    # value is 1000" (_EVENT_DRIVEN_SCALING; lower values were a preview in a few regions, and 40 is accepted in
    # every region). The cap holds per function group, so it bounds cost, not writes to Azure.
    for path, name in ((INFRA / "main.bicep", "maximumInstanceCount"),
                       (INFRA / "modules" / "functionapp.bicep", "maximumInstanceCount")):
        declaration = bicep.declarations(bicep.parse(path), "parameter")[name]
        assert bicep.decorator_argument(declaration, "minValue") == "40", f"{path.name}: {_EVENT_DRIVEN_SCALING}"
        assert bicep.decorator_argument(declaration, "maxValue") == "1000", path.name
    main, _ = _main()
    assert bicep.parameter_default(main, "maximumInstanceCount").text.decode() == "40"
    description = bicep.decorator_argument(bicep.declarations(main, "parameter")["maximumInstanceCount"],
                                           "description") or ""
    assert "ARM allows" not in description and "not a bound on writes" in description


@pytest.mark.parametrize(("cloud", "given", "on"), [
    ("AzureCloud", "", True), ("AzureUSGovernment", "", False), ("AzureChinaCloud", "", False),
    ("AzureCloud", "false", False), ("AzureUSGovernment", "true", True)])
def test_the_graph_modules_are_off_by_default_outside_the_public_cloud(cloud: str, given: str, on: bool):
    # The Microsoft Graph Bicep extension "is only supported in the Azure public cloud" (_GRAPH_BICEP_LIMITS). An
    # explicit 'true' elsewhere is honoured here and refused by `python -m remediation preflight`.
    main, variables = _main()
    scope = {"environment()": {"name": cloud}, "grantGraphPermission": given, "createApiApplication": given,
             "deployEventSubscription": True}
    assert bicep.evaluate(variables["grantGraph"], scope, variables) is on
    assert bicep.evaluate(variables["createApi"], scope, variables) is on
    modules = bicep.declarations(main, "module")
    for name in ("apiApp", "apiAppPreAuthorization", "apiAccess", "graph"):
        assert bicep.evaluate(bicep.condition(modules[name]), scope, variables) is on, name
    for name in ("grantGraphPermission", "createApiApplication"):
        assert bicep.parameter_default(main, name).text.decode() == "''"
    bicepparam = (INFRA / "main.bicepparam").read_text(encoding="utf-8")
    assert "param grantGraphPermission = readEnvironmentVariable('GRANT_GRAPH_PERMISSION', '')" in bicepparam
    assert "param createApiApplication = readEnvironmentVariable('REMEDIATOR_CREATE_API_APP', '')" in bicepparam


def test_the_identity_is_granted_its_graph_permissions_only_in_the_late_stage():
    # An appRoleAssignedTo for a managed identity created in the same deployment can fail on Entra ID replication
    # ("Not a valid reference update"; microsoftgraph/msgraph-bicep-types#193). The grant waits for the provision
    # azure.yaml's postdeploy hook starts, minutes later, after the code is deployed.
    main, variables = _main()
    graph = bicep.declarations(main, "module")["graph"]
    assert variables["lateStage"].text.decode() == "deployEventSubscription"
    for late in (False, True):
        scope = {"environment()": {"name": "AzureCloud"}, "grantGraphPermission": "", "deployEventSubscription": late}
        assert bicep.evaluate(bicep.condition(graph), scope, variables) is late
    hooks = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert "REMEDIATOR_PROVISION_PHASE=events azd provision --no-prompt" in hooks


def test_each_custom_role_is_keyed_per_deployment():
    # A role definition's name (a GUID) and roleName are unique in the tenant: two deployments that reuse an
    # environment name (another region or resource group) and share one definition overwrite each other's
    # assignableScopes. Every custom role is keyed by the resource token (subscription, environment, region).
    for path in sorted((INFRA / "modules").glob("*.bicep")):
        for symbol, body in bicep.resources(bicep.parse(path), "Microsoft.Authorization/roleDefinitions@"):
            props = bicep.properties(body)
            assert "resourceToken" in bicep.identifiers(props["name"]), f"{path.name} {symbol}: name"
            role_name = bicep.properties(props["properties"])["roleName"]
            assert "resourceToken" in bicep.identifiers(role_name), f"{path.name} {symbol}: roleName"
    main, _ = _main()
    for module in ("roles", "keyVaultRole", "roleAssignmentWriter", "roleAssignmentReader", "migrationRoles"):
        params = bicep.properties(bicep.properties(bicep.body(bicep.declarations(main, "module")[module]))["params"])
        assert params["resourceToken"].text.decode() == "resourceToken", module


def test_the_alerts_read_traces_that_sampling_keeps():
    # Adaptive sampling drops telemetry items of every type not in samplingSettings.excludedTypes (_HOST_JSON): in
    # a storm of failures, when the alerts matter most, the very lines they count. Traces are excluded.
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    excluded = {t.strip().lower() for t in sampling["excludedTypes"].split(";")}
    root = bicep.parse(INFRA / "modules" / "alerts.bicep")
    alerts = [bicep.properties(a) for a in bicep.variables(root)["logAlerts"].named_children if a.type == "object"]
    tables = {(bicep.literal(a["query"]) or "").split()[0].lower() for a in alerts}
    assert tables == {"traces"}
    assert sampling["isEnabled"] is False or {"trace", "request", "exception"} <= excluded, _HOST_JSON


_RESOURCE_SPECIFIC_TABLES = {  # diagnostic category -> its resource-specific table (Azure Monitor tables reference)
    "DeliveryFailures": "AegDeliveryFailureLogs", "PublishFailures": "AegPublishFailureLogs",
    "AuditEvent": "AZKVAuditLogs"}


def test_diagnostics_land_in_the_resource_specific_tables_the_readme_names():
    # Without logAnalyticsDestinationType 'Dedicated' a diagnostic setting writes to AzureDiagnostics, not to the
    # resource-specific tables (_RESOURCE_SPECIFIC); the README's queries read those.
    readme = (INFRA / "README.md").read_text(encoding="utf-8")
    seen = set()
    for path in bicep_files_with("Microsoft.Insights/diagnosticSettings@"):
        for symbol, body in bicep.resources(bicep.parse(path), "Microsoft.Insights/diagnosticSettings@"):
            props = bicep.properties(bicep.properties(body)["properties"])
            assert bicep.literal(props["logAnalyticsDestinationType"]) == "Dedicated", f"{path.name} {symbol}"
            seen |= {bicep.literal(bicep.properties(log)["category"])
                     for log in props["logs"].named_children if log.type == "object"}
    assert seen == set(_RESOURCE_SPECIFIC_TABLES)
    for category in seen:
        assert _RESOURCE_SPECIFIC_TABLES[category] in readme, f"infra/README.md does not name {category}'s table"
    assert "AzureDiagnostics |" not in readme


def bicep_files_with(resource_type: str) -> list[Path]:
    return [p for p in bicep.bicep_files() if resource_type.split("@")[0] in p.read_text(encoding="utf-8")]


def test_an_alert_says_when_the_daily_cap_stops_ingestion():
    # When the daily cap is reached ingestion stops for the rest of the day, and with it every log alert; Microsoft
    # documents the rule that says so (_DAILY_CAP), on the workspace, with exactly this query.
    root = bicep.parse(INFRA / "modules" / "alerts.bicep")
    variables = bicep.variables(root)
    assert bicep.literal(variables["dailyCapQuery"]) == \
        '_LogOperation | where Category =~ "Ingestion" | where Detail contains "OverQuota"'
    rules = bicep.declarations(root, "resource")
    rule = bicep.properties(bicep.body(rules["dailyCapReached"]))
    props = bicep.properties(rule["properties"])
    assert props["scopes"].text.decode().split() == ["[", "workspace.id", "]"]
    assert bicep.literal(props["evaluationFrequency"]) == bicep.literal(props["windowSize"]) == "PT5M"
    assert bicep.condition(rules["dailyCapReached"]).text.decode().strip("()") == "dailyCapSet"
    reader = bicep.properties(bicep.body(rules["dailyCapReader"]))
    assert reader["scope"].text.decode() == "workspace"
    main, variables = _main()
    params = bicep.properties(bicep.properties(bicep.body(bicep.declarations(main, "module")["alerts"]))["params"])
    for quota, alerted in ((1, True), (-1, False)):
        assert bicep.evaluate(params["dailyCapSet"], {"logDailyQuotaGb": quota}, variables) is alerted


def _readme_permission_rows() -> list[list[str]]:
    """The rows of infra/README.md's table of what the remediator identity gets (Scope | Role | Why | Code)."""
    text = (INFRA / "README.md").read_text(encoding="utf-8")
    section = text.split("What the remediator identity gets, and why:", 1)[1].split("\n\n", 2)[1]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in section.splitlines()]
    return [row for row in rows[2:] if len(row) == 4]


def test_every_permission_the_identity_holds_names_the_code_that_needs_it():
    # "infra/README.md lists, for each permission the remediator holds, the code path that needs it": every action
    # of the custom roles is in the table, and every code name the table gives exists in the code.
    rows = _readme_permission_rows()
    held = set(CUSTOM_ROLE_ACTIONS) | KEY_VAULT_DATA_ACTIONS | {"Microsoft.Authorization/roleAssignments/write"} \
        | MIGRATION_CLUSTER_ACTIONS | MIGRATION_IDENTITY_ACTIONS
    for action in held:
        matching = [row for row in rows if f"`{action}`" in row[1] or f"`{action}`" in row[0]]
        assert matching, f"infra/README.md's permission table does not list {action}"
        assert all(row[3] for row in matching), f"{action}: no code named"
    code = [*(ROOT / "remediation").rglob("*.py"), ROOT / "function_app.py"]
    source = "\n".join(p.read_text(encoding="utf-8") for p in code)
    for row in rows:
        for name in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)`", row[3]):
            *owner, member = name.split(".")
            if owner and owner[0][0].isupper():
                assert f"class {owner[0]}" in source, f"infra/README.md names {name}: no class {owner[0]}"
            assert re.search(rf"\b{re.escape(member)}\b", source), f"infra/README.md names {name}: not in the code"


def test_the_app_runs_in_azure_on_the_python_the_tests_run_on():
    # Flex Consumption's runtime `python` `3.13`; azure-functions 2.x declares Requires-Python >=3.13 (its PyPI
    # metadata), and the 3.13 line's runtime version control reads `azure-functions-runtime` from requirements.txt
    # (Azure Functions "Python 3.13 changes"): a test run on another Python proves nothing about the deployed app.
    import importlib.metadata

    text = (INFRA / "modules" / "functionapp.bicep").read_text()
    [version] = re.findall(r"name: 'python'\s+version: '([0-9.]+)'", text)
    assert version == f"{sys.version_info.major}.{sys.version_info.minor}"
    requirements = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^azure-functions==2\.", requirements, re.M)
    assert re.search(r"^azure-functions-runtime==\d", requirements, re.M)
    requires = importlib.metadata.metadata("azure-functions")["Requires-Python"]
    assert requires and "3.13" in requires, requires

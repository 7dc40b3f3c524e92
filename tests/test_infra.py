"""The Bicep in infra/: it parses, checkov passes it, its roles grant no wildcard, and it
sets every app setting the code reads (remediation/settings.py).

Two parsers read the Bicep, and both predate syntax this template uses, so the text is
adjusted first, the same way every time (see `_for_parsers`):
- `extension microsoftGraphV1` (modules/graph.bicep) became a keyword in Bicep 0.30; the
  tree-sitter grammar and checkov's pycep parser reject it. The statement is commented
  out, on its own line, so line numbers (and checkov's skip comments) stay put.
- A .bicepparam `param name = value` has no type, which the grammar requires; it is read
  as `var name = value`, which has the same expression grammar.
- checkov's pycep grammar lists the functions it knows by name, and `objectKeys` (used on an
  existing system topic's identities) is not among them; it is renamed to `string`, which
  takes the same single argument, for both parsers.
"""

from __future__ import annotations

import ast
import functools
import hashlib
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
import tree_sitter_bicep

from remediation.alerts import POISON_MESSAGE, REMEDIATION_FAILED
from remediation.events import CLUSTER_OPERATION_PREFIX, FAILURE_EVENT_TYPES
from remediation.settings import CHECK_QUEUE, INCIDENT_QUEUE, SETTINGS, TABLE_NAME, WORK_QUEUE

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
SAMPLE_SETTINGS = ROOT / "local.settings.sample.json"

# Exactly what the code calls on ARM (remediation/adapters/aks.py and monitor.py).
CUSTOM_ROLE_ACTIONS = {
    # Also covers the health check's Azure Resource Graph query (remediation/adapters/resourcegraph.py):
    # Resource Graph returns the resources the caller may read and has no action of its own.
    "Microsoft.ContainerService/managedClusters/read",
    # Proactive rotation reads the cluster's planned maintenance windows (remediation/adapters/aks.py).
    "Microsoft.ContainerService/managedClusters/maintenanceConfigurations/read",
    "Microsoft.ContainerService/managedClusters/resetServicePrincipalProfile/action",
    "Microsoft.ContainerService/managedClusters/resetAADProfile/action",
    # A replacement reads the deleted principal's role assignments to carry them over.
    "Microsoft.Authorization/roleAssignments/read",
    # The reset is a long-running operation: the SDK poller GETs its Azure-AsyncOperation
    # and Location URLs under .../providers/Microsoft.ContainerService/locations/{region}/.
    "Microsoft.ContainerService/locations/operations/read",
    "Microsoft.ContainerService/locations/operationresults/read",
    "Microsoft.Insights/eventtypes/values/read",
    # A cluster's resource group, for its opt-out tag (remediation/adapters/resources.py).
    "Microsoft.Resources/subscriptions/resourceGroups/read",
}
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

_EXTENSION_STATEMENT = re.compile(r"^extension[ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]*$", re.MULTILINE)
_BICEPPARAM_PARAM = re.compile(r"^param([ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]*=)", re.MULTILINE)
_SKIP_COMMENT = re.compile(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?")
_UNKNOWN_TO_PYCEP = re.compile(r"\bobjectKeys\(")


# ---------------------------------------------------------------- reading the Bicep


def _bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def _for_parsers(path: Path, text: str) -> str:
    """The file's text with the syntax the parsers predate rewritten (module docstring)."""
    text = _EXTENSION_STATEMENT.sub(lambda m: "// " + m.group(0), text)
    text = _UNKNOWN_TO_PYCEP.sub("string(", text)
    if path.suffix == ".bicepparam":
        text = _BICEPPARAM_PARAM.sub(r"var\1", text)
    return text


@functools.cache
def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def _parse(path: Path, text: str | None = None) -> tree_sitter.Node:
    source = path.read_text(encoding="utf-8") if text is None else text
    return _parser().parse(_for_parsers(path, source).encode("utf-8")).root_node


def _syntax_errors(root: tree_sitter.Node) -> list[str]:
    found = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            kind = "missing " + node.type if node.is_missing else "unexpected text"
            line, column = node.start_point
            found.append(f"line {line + 1}, column {column + 1}: {kind} {node.text.decode()[:60]!r}")
        elif node.has_error:
            stack.extend(node.children)
    return sorted(found)


def _walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    yield node
    for child in node.named_children:
        yield from _walk(child)


def _literal(node: tree_sitter.Node) -> str | None:
    """The value of a plain string literal; None for anything else (interpolation, references)."""
    if node.type != "string":
        return None
    parts = []
    for child in node.named_children:
        if child.type == "string_content":
            parts.append(child.text.decode())
        elif child.type == "escape_sequence":
            parts.append(child.text.decode()[1:])
        else:
            return None
    return "".join(parts)


def _key(prop: tree_sitter.Node) -> str:
    key = prop.named_children[0]
    return _literal(key) if key.type == "string" else key.text.decode()


def _value(prop: tree_sitter.Node) -> tree_sitter.Node:
    return prop.named_children[-1]


def _properties(obj: tree_sitter.Node) -> dict[str, tree_sitter.Node]:
    return {_key(p): _value(p) for p in obj.named_children if p.type == "object_property"}


def _variables(root: tree_sitter.Node) -> dict[str, tree_sitter.Node]:
    return {d.named_children[0].text.decode(): d.named_children[-1]
            for d in root.named_children if d.type == "variable_declaration"}


def _resources(root: tree_sitter.Node, type_prefix: str) -> Iterator[tuple[str, tree_sitter.Node]]:
    """(symbolic name, body object) of each resource of that type, conditional or looped too."""
    for declaration in root.named_children:
        if declaration.type != "resource_declaration":
            continue
        type_string = _literal(declaration.named_children[1]) or ""
        if not type_string.lower().startswith(type_prefix.lower()):
            continue
        bodies = [n for n in _walk(declaration) if n.type == "object"]
        if bodies:
            yield declaration.named_children[0].text.decode(), bodies[0]


def _string_list(node: tree_sitter.Node, variables: dict[str, tree_sitter.Node], where: str) -> list[str]:
    """A literal array of literal strings, through one variable reference; fails otherwise."""
    if node.type == "identifier" and node.text.decode() in variables:
        node = variables[node.text.decode()]
    assert node.type == "array", f"{where}: expected a literal array, got {node.text.decode()[:80]!r}"
    values = []
    for element in node.named_children:
        if element.type == "comment":
            continue
        value = _literal(element)
        assert value is not None, f"{where}: cannot verify the non-literal entry {element.text.decode()!r}"
        values.append(value)
    return values


def _app_settings() -> dict[str, tree_sitter.Node]:
    """Every `{ name: '...', value: ... }` in an `appSettings: [...]` array under infra/."""
    settings: dict[str, tree_sitter.Node] = {}
    for path in _bicep_files():
        for node in _walk(_parse(path)):
            if node.type != "object_property" or _key(node) != "appSettings":
                continue
            array = _value(node)
            assert array.type == "array", f"{path.name}: appSettings must be a literal array"
            for entry in array.named_children:
                if entry.type != "object":
                    continue
                props = _properties(entry)
                name = _literal(props["name"])
                assert name is not None, f"{path.name}: app setting {props['name'].text.decode()!r} is not a literal"
                assert name not in settings, f"app setting {name} is set twice"
                settings[name] = props["value"]
    return settings


def _declarations(root: tree_sitter.Node, kind: str) -> dict[str, tree_sitter.Node]:
    """Declarations of one kind ("module", "resource", "parameter", "variable", "output") by name."""
    return {d.named_children[0].text.decode(): d for d in root.named_children if d.type == f"{kind}_declaration"}


def _is_existing(declaration: tree_sitter.Node) -> bool:
    """`resource x 'T@v' existing = ...` (the grammar has no node for the keyword)."""
    head = declaration.text.decode().split("=", 1)[0]
    return re.search(r"\bexisting\s*$", head) is not None


def _body(declaration: tree_sitter.Node) -> tree_sitter.Node:
    """The object of a resource or module declaration, conditional or looped."""
    return next(n for n in _walk(declaration) if n.type == "object")


def _condition(declaration: tree_sitter.Node) -> tree_sitter.Node | None:
    """The expression of `= if (...)`, or None for an unconditional declaration."""
    for child in declaration.named_children:
        if child.type == "if_statement":
            return child.named_children[0]
    return None


def _identifiers(node: tree_sitter.Node) -> set[str]:
    return {n.text.decode() for n in _walk(node) if n.type == "identifier"}


def _decorated(root: tree_sitter.Node, declaration: tree_sitter.Node, decorator: str) -> bool:
    previous = declaration.prev_named_sibling
    return previous is not None and previous.type == "decorators" and any(
        d.text.decode().startswith(f"@{decorator}(") for d in previous.named_children)


def _evaluate(node: tree_sitter.Node, scope: dict[str, object], variables: dict[str, tree_sitter.Node]) -> object:
    """The value of a small expression subset (enough for main.bicep's topic-sharing variables).

    `scope` holds parameter values; variables are evaluated from their declarations."""
    kind = node.type
    if kind == "parenthesized_expression":
        return _evaluate(node.named_children[0], scope, variables)
    if kind == "identifier":
        name = node.text.decode()
        if name in scope:
            return scope[name]
        return _evaluate(variables[name], scope, variables)
    if kind == "string":
        parts = []
        for child in node.named_children:
            if child.type == "string_content":
                parts.append(child.text.decode())
            else:  # interpolation
                parts.append(str(_evaluate(child.named_children[0], scope, variables)))
        return "".join(parts)
    if kind == "boolean":
        return node.text.decode() == "true"
    if kind == "unary_expression" and node.text.decode().startswith("!"):
        return not _evaluate(node.named_children[0], scope, variables)
    if kind == "ternary_expression":
        test, yes, no = node.named_children
        return _evaluate(yes if _evaluate(test, scope, variables) else no, scope, variables)
    if kind == "binary_expression":
        left, right = node.named_children
        operator = node.text.decode()[left.end_byte - node.start_byte:right.start_byte - node.start_byte].strip()
        if operator == "&&":
            return _evaluate(left, scope, variables) and _evaluate(right, scope, variables)
        if operator == "||":
            return _evaluate(left, scope, variables) or _evaluate(right, scope, variables)
        values = _evaluate(left, scope, variables), _evaluate(right, scope, variables)
        if operator in ("==", "!="):
            return (values[0] == values[1]) == (operator == "==")
    if kind == "call_expression":
        function = node.named_children[0].text.decode()
        args = [_evaluate(a, scope, variables) for a in node.named_children[1].named_children]
        functions = {"empty": lambda v: len(v) == 0, "toLower": str.lower,
                     # A stand-in with uniqueString's shape: 13 characters, deterministic.
                     "uniqueString": lambda *v: hashlib.sha256("|".join(v).encode()).hexdigest()[:13]}
        if function in functions:
            return functions[function](*args)
    raise NotImplementedError(f"cannot evaluate {node.text.decode()!r}")


def _type(declaration: tree_sitter.Node) -> str:
    """A resource declaration's type, lower-cased, without the API version."""
    return (_literal(declaration.named_children[1]) or "").split("@")[0].lower()


def _flex_violations(path: Path, text: str | None = None) -> list[str]:
    """Every property or app setting that Flex rejects or ignores on a site whose plan is FC1."""
    resources = _declarations(_parse(path, text), "resource")

    def props(node: tree_sitter.Node | None) -> dict[str, tree_sitter.Node]:
        if node is not None and node.type == "resource_declaration":
            node = _body(node)
        return _properties(node) if node is not None and node.type == "object" else {}

    def literal(values: dict[str, tree_sitter.Node], key: str) -> str:
        return (_literal(values[key]) or "") if key in values else ""

    def rejected(names: Iterator[str] | dict[str, tree_sitter.Node], table: dict[str, str], where: str) -> list[str]:
        lowered = {k.lower(): why for k, why in table.items()}
        return [f"{path.name} {where}.{name}: {lowered[name.lower()]}" for name in names if name.lower() in lowered]

    flex_plans = {symbol for symbol, d in resources.items() if _type(d) == "microsoft.web/serverfarms"
                  and (literal(props(props(d).get("sku")), "name").upper() == "FC1"
                       or literal(props(props(d).get("sku")), "tier").lower() == "flexconsumption")}
    found: list[str] = []
    flex_sites = set()
    for symbol, declaration in resources.items():
        site = props(props(declaration).get("properties"))
        farm = site["serverFarmId"].text.decode().split(".")[0] if "serverFarmId" in site else ""
        if _type(declaration) != "microsoft.web/sites" or ("functionAppConfig" not in site and farm not in flex_plans):
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
        if _type(declaration) != "microsoft.web/sites/config" or \
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
    assert _syntax_errors(_parse(INFRA / "broken.bicep", broken))
    assert _syntax_errors(_parse(INFRA / "broken.bicepparam", "using 'main.bicep'\nparam x = \n"))


@pytest.mark.parametrize("path", _bicep_files() + sorted(INFRA.rglob("*.bicepparam")),
                         ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_file_parses(path: Path):
    assert _syntax_errors(_parse(path)) == []


def test_only_plain_extension_statements_are_hidden_from_the_parsers():
    # The rewrite hides `extension <alias>` and nothing else: any other use of the word
    # (with a config block, a registry reference) is left for the parsers to judge.
    for path in _bicep_files():
        text = path.read_text(encoding="utf-8")
        words = len(re.findall(r"^\s*extension\b", text, re.MULTILINE))
        assert words == len(_EXTENSION_STATEMENT.findall(text)), path.name


def test_extension_aliases_are_configured():
    aliases = json.loads((INFRA / "bicepconfig.json").read_text(encoding="utf-8")).get("extensions", {})
    for path in _bicep_files():
        for statement in _EXTENSION_STATEMENT.findall(path.read_text(encoding="utf-8")):
            alias = statement.split()[1]
            assert alias in aliases, f"{path.name} uses extension {alias}, missing from bicepconfig.json"
            assert aliases[alias].startswith("br:mcr.microsoft.com/bicep/extensions/"), aliases[alias]


def test_modules_exist():
    for path in _bicep_files():
        for declaration in _parse(path).named_children:
            if declaration.type == "module_declaration":
                target = _literal(declaration.named_children[1])
                assert target and (path.parent / target).is_file(), f"{path.name}: module {target} not found"


def test_parameter_file_sets_only_declared_parameters():
    main = _parse(INFRA / "main.bicep")
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
        path.write_text(_for_parsers(path, path.read_text(encoding="utf-8")), encoding="utf-8")
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
    bicep = [r for r in reports if r.get("check_type") == "bicep"]
    assert bicep, f"checkov produced no bicep report (took {elapsed:.1f} s): {run.stdout[:500]}"
    return bicep[0]


def test_checkov_parses_every_file(checkov_report: dict):
    # A syntax error makes checkov exit 0 with the file left out: count it here.
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0, checkov_report["results"]["parsing_errors"]
    assert summary["resource_count"] >= 30, summary
    scanned = {c["file_path"].lstrip("/") for c in checkov_report["results"]["passed_checks"]}
    for expected in ("modules/storage.bicep", "modules/functionapp.bicep", "modules/keyvault.bicep"):
        assert expected in scanned, f"checkov did not check {expected}"


def test_checkov_reports_no_failed_checks(checkov_report: dict):
    failed = [f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']}:{c['file_line_range']})"
              for c in checkov_report["results"]["failed_checks"]]
    assert failed == []


def test_every_checkov_skip_is_justified_and_used(checkov_report: dict):
    comments = set()
    for path in _bicep_files():
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
    for path in _bicep_files():
        root = _parse(path)
        variables = _variables(root)
        for symbol, body in _resources(root, "Microsoft.Authorization/roleDefinitions@"):
            seen += 1
            permissions = _properties(_properties(body)["properties"])["permissions"]
            for entry in permissions.named_children:
                if entry.type != "object":
                    continue
                for field, value in _properties(entry).items():
                    for action in _string_list(value, variables, f"{path.name} {symbol}.{field}"):
                        assert "*" not in action, f"{path.name} {symbol}.{field}: wildcard {action!r}"
    assert seen, "no role definition found under infra/"


def test_custom_role_actions_are_exactly_what_the_code_calls():
    root = _parse(INFRA / "modules" / "roles.bicep")
    variables = _variables(root)
    (symbol, body), = list(_resources(root, "Microsoft.Authorization/roleDefinitions@"))
    permissions = _properties(_properties(body)["properties"])["permissions"]
    (entry,) = [e for e in permissions.named_children if e.type == "object"]
    fields = {k: _string_list(v, variables, f"roles.bicep {symbol}.{k}") for k, v in _properties(entry).items()}
    assert sorted(fields["actions"]) == sorted(CUSTOM_ROLE_ACTIONS)
    assert len(fields["actions"]) == len(set(fields["actions"]))
    assert fields.get("dataActions", []) == []


# ---------------------------------------------------------------- parity with the code


def test_every_deployed_setting_is_set_by_the_bicep():
    names = set(_app_settings())
    deployed = {spec.name for spec in SETTINGS if spec.deployed}
    assert sorted(deployed - names) == []


def test_local_only_settings_are_not_deployed():
    local_only = {spec.name for spec in SETTINGS if not spec.deployed}
    assert sorted(local_only & set(_app_settings())) == []


def test_app_settings_use_the_identity_and_suit_flex_consumption():
    settings = _app_settings()
    assert sorted(FORBIDDEN_APP_SETTINGS & set(settings)) == []
    assert _literal(settings["AzureWebJobsStorage__credential"]) == "managedidentity"
    client_id = settings["AZURE_CLIENT_ID"].text.decode()
    assert settings["AzureWebJobsStorage__clientId"].text.decode() == client_id
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in settings
    authentication = settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].text.decode()
    assert authentication == "'ClientId=${" + client_id + "};Authorization=AAD'"


def test_every_setting_is_in_the_local_settings_sample():
    values = json.loads(SAMPLE_SETTINGS.read_text(encoding="utf-8"))["Values"]
    assert sorted({spec.name for spec in SETTINGS} - set(values)) == []


def test_storage_creates_the_table_and_queues_the_code_uses():
    strings = {_literal(n) for n in _walk(_parse(INFRA / "modules" / "storage.bicep")) if n.type == "string"}
    for name in (TABLE_NAME, WORK_QUEUE, f"{WORK_QUEUE}-poison", INCIDENT_QUEUE, f"{INCIDENT_QUEUE}-poison",
                 CHECK_QUEUE, f"{CHECK_QUEUE}-poison"):
        assert name in strings, f"storage.bicep does not create {name}"


def test_event_subscription_targets_the_event_grid_function_and_its_filter():
    root = _parse(INFRA / "modules" / "eventgrid-subscription.bicep")
    params = {d.named_children[0].text.decode(): d.named_children[-1]
              for d in root.named_children if d.type == "parameter_declaration"}
    function_name = _literal(params["functionName"])
    # The Event Grid trigger in function_app.py carries that name (read with ast: no import).
    module = ast.parse((ROOT / "function_app.py").read_text(encoding="utf-8"))
    triggers = {f.name for f in module.body if isinstance(f, ast.FunctionDef)
                for d in f.decorator_list
                if isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "event_grid_trigger"}
    assert function_name in triggers, f"{function_name} is not an Event Grid trigger in function_app.py"

    (_, body), = list(_resources(root, "Microsoft.EventGrid/systemTopics/eventSubscriptions@"))
    props = _properties(_properties(body)["properties"])
    destination = _properties(props["destination"])
    assert _literal(destination["endpointType"]) == "AzureFunction"
    assert destination["properties"].text.decode().count("/functions/${functionName}") == 1
    event_filter = _properties(props["filter"])
    assert set(_string_list(event_filter["includedEventTypes"], {}, "includedEventTypes")) == FAILURE_EVENT_TYPES
    (advanced,) = [a for a in event_filter["advancedFilters"].named_children if a.type == "object"]
    advanced = _properties(advanced)
    assert _literal(advanced["operatorType"]) == "StringBeginsWith"
    assert _literal(advanced["key"]) == "data.operationName"
    prefixes = _string_list(advanced["values"], {}, "advancedFilters.values")
    assert [p.lower() for p in prefixes] == [CLUSTER_OPERATION_PREFIX]
    assert "deadLetterWithResourceIdentity" in props


# ---------------------------------------------------------------- Flex Consumption


def test_flex_sites_set_nothing_flex_rejects_or_ignores():
    flex_files = [p for p in _bicep_files() if "FC1" in p.read_text(encoding="utf-8")]
    assert flex_files, "no Flex Consumption plan found under infra/"
    assert [v for path in _bicep_files() for v in _flex_violations(path)] == []


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
    root = _parse(INFRA / "modules" / "functionapp.bicep")
    policies = {_literal(_properties(body)["name"]): _properties(_properties(body)["properties"])["allow"].text.decode()
                for _, body in _resources(root, "Microsoft.Web/sites/basicPublishingCredentialsPolicies@")}
    assert policies == {"ftp": "false", "scm": "false"}


# ---------------------------------------------------------------- re-deployable


def _main() -> tuple[tree_sitter.Node, dict[str, tree_sitter.Node]]:
    root = _parse(INFRA / "main.bicep")
    return root, _variables(root)


def test_deployments_outside_the_environments_group_carry_its_resource_token():
    # Subscription-scope deployment names are shared by every environment in a subscription
    # (and tied to one region); so are names in another environment's resource group.
    checked = 0
    for path in _bicep_files():
        root = _parse(path)
        if not re.search(r"^targetScope\s*=\s*'subscription'", path.read_text(encoding="utf-8"), re.MULTILINE):
            continue
        own_groups = {name for name, d in _declarations(root, "resource").items() if not _is_existing(d)
                      and (_literal(d.named_children[1]) or "").startswith("Microsoft.Resources/resourceGroups@")}
        for symbol, declaration in _declarations(root, "module").items():
            props = _properties(_body(declaration))
            if "scope" in props and props["scope"].text.decode() in own_groups:
                continue
            checked += 1
            assert "resourceToken" in _identifiers(props["name"]), \
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
    modules = _declarations(root, "module")
    topic_condition = _condition(modules["eventGrid"])
    assert _literal(modules["eventGrid"].named_children[1]) == "modules/eventgrid.bicep"
    assert _evaluate(topic_condition, scope, variables) is creates_topic
    # No other file declares (rather than references) a system topic.
    declared = [(path.name, symbol) for path in _bicep_files()
                for symbol, d in _declarations(_parse(path), "resource").items()
                if (_literal(d.named_children[1]) or "").startswith("Microsoft.EventGrid/systemTopics@")
                and not _is_existing(d)]
    assert declared == [("eventgrid.bicep", "systemTopic")]

    expected_group = "rg-second" if creates_topic else "rg-first"
    assert _evaluate(variables["systemTopicResourceGroup"], scope, variables) == expected_group
    assert _evaluate(variables["systemTopicName"], scope, variables) == ("evgt-arm-tok2" if creates_topic
                                                                          else "evgt-arm-tok1")
    subscription = _properties(_body(modules["eventSubscription"]))
    assert subscription["scope"].text.decode() == "resourceGroup(systemTopicResourceGroup)"
    params = _properties(subscription["params"])
    assert params["name"].text.decode() == "eventSubscriptionName"
    assert _evaluate(variables["eventSubscriptionName"], scope, variables) == "aks-cluster-failures-tok2"
    # Dead-lettering on a shared topic uses the topic's identity, which gets write access here.
    for symbol in ("sharedTopicIdentity", "sharedTopicDeadLetter"):
        assert _evaluate(_condition(modules[symbol]), scope, variables) is not creates_topic
    writer = _properties(_properties(_body(modules["sharedTopicDeadLetter"]))["params"])
    assert "sharedTopicIdentity" in _identifiers(writer["principalId"])
    assert "sharedTopicIdentity" in _identifiers(params["deadLetterIdentityId"])
    assert {"eventGrid", "sharedTopicDeadLetter"} <= _identifiers(subscription["dependsOn"])
    reader = (INFRA / "modules" / "eventgrid-topic-identity.bicep").read_text(encoding="utf-8")
    assert "objectKeys(systemTopic.identity" in reader


def test_the_key_vault_name_is_salted_per_deployment_generation():
    root, variables = _main()
    assert "keyVaultNameSalt" in _declarations(root, "parameter")

    def name(salt: str) -> str:
        value = _evaluate(variables["keyVaultName"], {"resourceToken": "abcdefghijklm", "keyVaultNameSalt": salt},
                          variables)
        assert isinstance(value, str) and 3 <= len(value) <= 24, value
        return value

    assert name("") == "kv-rem-abcdefghijklm"  # unsalted: environments provisioned before the salt
    assert name("0a1b2c3d") == name("0a1b2c3d") != name("9f8e7d6c")
    assert name("0a1b2c3d") != name("")
    keyvault = _properties(_body(_declarations(root, "module")["keyVault"]))
    assert _properties(keyvault["params"])["name"].text.decode() == "keyVaultName"
    bicepparam = (INFRA / "main.bicepparam").read_text(encoding="utf-8")
    assert "param keyVaultNameSalt = readEnvironmentVariable('REMEDIATOR_VAULT_SALT', '')" in bicepparam


# ---------------------------------------------------------------- the API's Entra application


def test_the_api_application_matches_what_the_app_validates():
    from remediation.auth import API_ROLES  # the roles the HTTP API checks

    root = _parse(INFRA / "modules" / "api-app.bicep")
    variables = _variables(root)
    (_, body), = [(s, b) for s, b in _resources(root, "Microsoft.Graph/applications@")]
    app = _properties(body)
    assert _literal(app["signInAudience"]) == "AzureADMyOrg"
    roles = [_properties(r) for r in app["appRoles"].named_children if r.type == "object"]
    values = {_literal(r["value"]) for r in roles}
    assert values == {"Remediations.Read", "Remediations.Write"} == set(API_ROLES)
    for role in roles:
        assert _string_list(role["allowedMemberTypes"], {}, "allowedMemberTypes") == ["User", "Application"]
        assert role["isEnabled"].text.decode() == "true"
        role_id = role["id"].text.decode()
        assert variables[role_id].text.decode().startswith("guid("), f"{role_id} must be a stable guid()"
    api = _properties(app["api"])
    assert api["requestedAccessTokenVersion"].text.decode() == "2"
    (scope,) = [_properties(s) for s in api["oauth2PermissionScopes"].named_children if s.type == "object"]
    assert _literal(scope["value"]) == "user_impersonation"
    (pre,) = [_properties(s) for s in api["preAuthorizedApplications"].named_children if s.type == "object"]
    assert _literal(variables[pre["appId"].text.decode()]) == AZURE_CLI_APP_ID
    assert _identifiers(pre["delegatedPermissionIds"]) == {scope["id"].text.decode()}

    main, _ = _main()
    module = _properties(_properties(_body(_declarations(main, "module")["apiApp"]))["params"])
    assert module["identifierUri"].text.decode() == "'api://${tenant().tenantId}/aks-sp-remediator-${resourceToken}'"
    assert "resourceToken" in _identifiers(module["uniqueName"])
    outputs = set(_declarations(main, "output"))
    assert {"REMEDIATOR_API_CLIENT_ID", "REMEDIATOR_API_APP_ID_URI", "FUNCTION_APP_URL"} <= outputs


# ---------------------------------------------------------------- diagnostics and alerts


def _diagnostic_categories(path: Path) -> set[str]:
    categories = set()
    for _, body in _resources(_parse(path), "Microsoft.Insights/diagnosticSettings@"):
        props = _properties(_properties(body)["properties"])
        assert "workspaceId" in props
        categories |= {_literal(_properties(log)["category"])
                       for log in props["logs"].named_children if log.type == "object"}
    return categories


def test_key_vault_audit_and_event_grid_delivery_failures_go_to_log_analytics():
    assert _diagnostic_categories(INFRA / "modules" / "keyvault.bicep") == {"AuditEvent"}
    assert _diagnostic_categories(INFRA / "modules" / "eventgrid.bicep") == {"DeliveryFailures"}
    assert _diagnostic_categories(INFRA / "modules" / "outcome-topic.bicep") == {"PublishFailures", "DeliveryFailures"}


def test_log_alerts_search_for_the_lines_the_code_and_host_write():
    root = _parse(INFRA / "modules" / "alerts.bicep")
    alerts = [_properties(a) for a in _variables(root)["logAlerts"].named_children if a.type == "object"]
    queries = [_literal(a["query"]) or "" for a in alerts]
    assert all(q.startswith("traces") for q in queries)
    poison = [q for q in queries if POISON_MESSAGE in q]
    assert poison and '"-poison"' in poison[0]
    assert [q for q in queries if f'"{REMEDIATION_FAILED}"' in q]
    # Each rule searches exactly the span since its last run: no line is missed or counted twice.
    assert all(_literal(a["frequency"]) == _literal(a["window"]) for a in alerts)

    (_, rule), = list(_resources(root, "Microsoft.Insights/scheduledQueryRules@"))
    rule = _properties(rule)
    assert _literal(_properties(rule["identity"])["type"]) == "SystemAssigned"
    assert _properties(rule["properties"])["scopes"].text.decode().split() == ["[", "appInsights.id", "]"]
    (_, reader), = list(_resources(root, "Microsoft.Authorization/roleAssignments@"))
    reader = _properties(reader)
    assert reader["scope"].text.decode() == "appInsights"
    assert "reader" in _identifiers(_properties(reader["properties"])["roleDefinitionId"])
    assert _literal(_variables(root)["reader"]) == READER_ROLE


def test_an_alert_searches_for_the_health_checks_expired_clusters_line():
    from remediation.health import EXPIRED_NOW_LOG  # logged as "<count> clusters expired now"

    root = _parse(INFRA / "modules" / "alerts.bicep")
    alerts = [_properties(a) for a in _variables(root)["logAlerts"].named_children if a.type == "object"]
    (expired,) = [a for a in alerts if f'"{EXPIRED_NOW_LOG}"' in (_literal(a["query"]) or "")]
    assert (_literal(expired["query"]) or "").startswith("traces | where message contains")
    assert expired["severity"].text.decode() in ("1", "2")
    # The check runs once a day: an hourly look finds its line within the hour.
    assert _literal(expired["frequency"]) == _literal(expired["window"]) == "PT1H"
    rule = _properties(_properties(next(_resources(root, "Microsoft.Insights/scheduledQueryRules@"))[1])["properties"])
    assert rule["evaluationFrequency"].text.decode() == "alert.frequency"
    assert rule["windowSize"].text.decode() == "alert.window"


def test_dead_lettered_events_alert_on_this_environments_subscription():
    root = _parse(INFRA / "modules" / "alerts.bicep")
    (_, alert), = list(_resources(root, "Microsoft.Insights/metricAlerts@"))
    props = _properties(_properties(alert)["properties"])
    assert props["scopes"].text.decode().split() == ["[", "systemTopicId", "]"]
    criteria = _properties(props["criteria"])["allOf"]
    (criterion,) = [_properties(c) for c in criteria.named_children if c.type == "object"]
    assert _literal(criterion["metricName"]) == "DeadLetteredCount"
    assert _literal(criterion["metricNamespace"]) == "Microsoft.EventGrid/systemTopics"
    assert _literal(criterion["operator"]) == "GreaterThan" and criterion["threshold"].text.decode() == "0"
    (dimension,) = [_properties(d) for d in criterion["dimensions"].named_children if d.type == "object"]
    assert _literal(dimension["name"]) == "EventSubscriptionName"
    assert "eventSubscriptionName" in _identifiers(dimension["values"])
    main, _ = _main()
    params = _properties(_properties(_body(_declarations(main, "module")["alerts"]))["params"])
    assert params["eventSubscriptionName"].text.decode() == "eventSubscriptionName"
    assert params["systemTopicId"].text.decode() == "systemTopicId"


def test_the_action_group_notifies_only_the_receivers_given():
    for path in (INFRA / "main.bicep", INFRA / "modules" / "alerts.bicep"):
        root = _parse(path)
        webhook = _declarations(root, "parameter")["alertWebhookUrl"]
        assert _decorated(root, webhook, "secure"), f"{path.name}: alertWebhookUrl may carry a token: make it @secure"
    root = _parse(INFRA / "modules" / "alerts.bicep")
    (_, group), = list(_resources(root, "Microsoft.Insights/actionGroups@"))
    props = _properties(_properties(group)["properties"])
    assert len(_literal(props["groupShortName"]) or "") <= 12
    assert props["emailReceivers"].text.decode().startswith("empty(alertEmail) ? [] :")
    assert props["webhookReceivers"].text.decode().startswith("empty(alertWebhookUrl) ? [] :")


# ---------------------------------------------------------------- outcome events


def test_the_outcome_topic_takes_cloud_events_from_the_remediator_identity_only():
    root = _parse(INFRA / "modules" / "outcome-topic.bicep")
    variables = _variables(root)
    (symbol, topic), = list(_resources(root, "Microsoft.EventGrid/topics@"))
    props = _properties(_properties(topic)["properties"])
    assert _literal(props["inputSchema"]) == "CloudEventSchemaV1_0"
    assert props["disableLocalAuth"].text.decode() == "true"  # Entra ID only: no access keys, no SAS
    assert _literal(props["minimumTlsVersionAllowed"]) == "1.2"
    # EventGrid Data Sender, on this topic alone, for the remediator identity's principal: the only grant here.
    (_, assignment), = list(_resources(root, "Microsoft.Authorization/roleAssignments@"))
    assignment = _properties(assignment)
    assert assignment["scope"].text.decode() == symbol
    grant = _properties(assignment["properties"])
    assert grant["principalId"].text.decode() == "identityPrincipalId"
    assert _literal(grant["principalType"]) == "ServicePrincipal"
    (role,) = _identifiers(grant["roleDefinitionId"]) & set(variables)
    assert _literal(variables[role]) == EVENT_GRID_DATA_SENDER
    assert grant["roleDefinitionId"].text.decode().startswith("subscriptionResourceId(")
    outputs = _declarations(root, "output")
    assert outputs["endpoint"].named_children[-1].text.decode() == f"{symbol}.properties.endpoint"
    assert outputs["id"].named_children[-1].text.decode() == f"{symbol}.id"

    main, _ = _main()
    modules = _declarations(main, "module")
    topic_params = _properties(_properties(_body(modules["outcomeTopic"]))["params"])
    assert topic_params["identityPrincipalId"].text.decode() == "identity.outputs.principalId"
    assert topic_params["workspaceId"].text.decode() == "monitoring.outputs.workspaceId"
    assert "resourceToken" in _identifiers(topic_params["name"])
    assert _condition(modules["outcomeTopic"]) is None
    # Its endpoint reaches the app as REMEDIATOR_OUTCOME_TOPIC_ENDPOINT ...
    app_params = _properties(_properties(_body(modules["functionApp"]))["params"])
    assert app_params["outcomeTopicEndpoint"].text.decode() == "outcomeTopic.outputs.endpoint"
    assert _app_settings()["REMEDIATOR_OUTCOME_TOPIC_ENDPOINT"].text.decode() == "outcomeTopicEndpoint"
    # ... and its id and endpoint reach other teams, who subscribe to it.
    main_outputs = _declarations(main, "output")
    assert main_outputs["REMEDIATOR_OUTCOME_TOPIC_ID"].named_children[-1].text.decode() == "outcomeTopic.outputs.id"
    assert main_outputs["REMEDIATOR_OUTCOME_TOPIC_ENDPOINT"].named_children[-1].text.decode() == \
        "outcomeTopic.outputs.endpoint"


def test_no_other_file_grants_event_grid_data_sender():
    offenders = [p.relative_to(INFRA) for p in INFRA.rglob("*.bicep")
                 if EVENT_GRID_DATA_SENDER in p.read_text(encoding="utf-8") and p.name != "outcome-topic.bicep"]
    assert offenders == []


# ---------------------------------------------------------------- Key Vault rights


def test_the_key_vault_role_grants_exactly_what_the_code_does():
    root = _parse(INFRA / "modules" / "keyvault-secrets-role.bicep")
    variables = _variables(root)
    (symbol, body), = list(_resources(root, "Microsoft.Authorization/roleDefinitions@"))
    props = _properties(_properties(body)["properties"])
    (entry,) = [e for e in props["permissions"].named_children if e.type == "object"]
    fields = {k: _string_list(v, variables, f"{symbol}.{k}") for k, v in _properties(entry).items()}
    assert sorted(fields["dataActions"]) == sorted(KEY_VAULT_DATA_ACTIONS)
    assert {k: v for k, v in fields.items() if k != "dataActions"} == {"actions": [], "notActions": [],
                                                                       "notDataActions": []}
    assert props["assignableScopes"].text.decode().split() == ["[", "subscription().id", "]"]
    assert "resourceToken" in _identifiers(_properties(body)["name"])


def test_the_sandbox_grants_the_remediator_exactly_the_deployed_roles():
    # The sandbox refuses what these roles do not allow, so the end-to-end tests prove the roles suffice.
    from sandbox.state import REMEDIATOR_ARM_ACTIONS, REMEDIATOR_VAULT_DATA_ACTIONS

    assert REMEDIATOR_ARM_ACTIONS == CUSTOM_ROLE_ACTIONS
    assert REMEDIATOR_VAULT_DATA_ACTIONS == KEY_VAULT_DATA_ACTIONS


def test_the_vault_assignment_uses_the_custom_role_and_no_file_names_secrets_officer():
    offenders = [p.relative_to(INFRA) for p in INFRA.rglob("*") if p.is_file()
                 and KEY_VAULT_SECRETS_OFFICER in p.read_text(encoding="utf-8", errors="replace")]
    assert offenders == []
    root = _parse(INFRA / "modules" / "keyvault.bicep")
    (_, assignment), = list(_resources(root, "Microsoft.Authorization/roleAssignments@"))
    assignment = _properties(assignment)
    assert assignment["scope"].text.decode() == "vault"
    assert _properties(assignment["properties"])["roleDefinitionId"].text.decode() == "secretsRoleDefinitionId"
    main, _ = _main()
    params = _properties(_properties(_body(_declarations(main, "module")["keyVault"]))["params"])
    assert params["secretsRoleDefinitionId"].text.decode() == "keyVaultRole.outputs.roleDefinitionId"


# ---------------------------------------------------------------- cloud-aware endpoints


def _cloud_hosts(path: Path, text: str | None = None) -> list[str]:
    root = _parse(path, text)
    allowed = [d for d in root.named_children if d.type == "variable_declaration"
               and d.named_children[0].text.decode() == GRAPH_ENDPOINT_MAP and path.name == "main.bicep"]
    found = []
    for node in _walk(root):
        if node.type != "string" or any(a.start_byte <= node.start_byte < a.end_byte for a in allowed):
            continue
        value = node.text.decode().lower()
        found += [f"{path.name}:{node.start_point[0] + 1}: {node.text.decode()}"
                  for marker in CLOUD_HOST_MARKERS if marker in value][:1]
    return found


def test_no_bicep_file_hard_codes_a_cloud_host():
    files = _bicep_files() + sorted(INFRA.rglob("*.bicepparam"))
    assert [h for path in files for h in _cloud_hosts(path)] == []
    # The check bites: a literal ARM or storage host outside the Graph map is reported.
    planted = "var a = 'https://management.azure.com/'\nvar b = 'x.blob.core.windows.net'\n"
    assert len(_cloud_hosts(INFRA / "x.bicep", planted)) == 2
    main, variables = _main()
    graph = _properties(variables[GRAPH_ENDPOINT_MAP])
    assert set(graph) == {"AzureCloud", "AzureUSGovernment", "AzureChinaCloud"}
    assert variables["effectiveGraphEndpoint"].text.decode() == \
        "empty(graphEndpoint) ? graphEndpoints[environment().name] : graphEndpoint"


def test_endpoint_settings_come_from_the_environment_and_the_storage_account():
    settings = _app_settings()
    for name, param in (("AzureWebJobsStorage__blobServiceUri", "storageBlobEndpoint"),
                        ("AzureWebJobsStorage__queueServiceUri", "storageQueueEndpoint"),
                        ("AzureWebJobsStorage__tableServiceUri", "storageTableEndpoint")):
        assert settings[name].text.decode() == param
    storage = (INFRA / "modules" / "storage.bicep").read_text(encoding="utf-8")
    for service in ("blob", "queue", "table"):
        assert f"account.properties.primaryEndpoints.{service}" in storage
    main, _ = _main()
    params = _declarations(main, "parameter")
    assert params["armEndpoint"].named_children[-1].text.decode() == "environment().resourceManager"
    assert params["authorityHost"].named_children[-1].text.decode() == "environment().authentication.loginEndpoint"


# ---------------------------------------------------------------- replacing a deleted application (issue 10)

def _default_assignable_role_ids() -> list[str]:
    main, _ = _main()
    (declaration,) = [d for d in main.named_children if d.type == "parameter_declaration"
                      and d.named_children[0].text.decode() == "assignableRoleIds"]
    return [_literal(n) for n in _walk(declaration.named_children[-1]) if n.type == "string"]


def test_the_role_delegation_condition_is_one_the_sandbox_enforces_and_names_only_the_assignable_roles():
    # The sandbox refuses what this condition refuses: its parser is the one that judges every role assignment
    # write in the end-to-end replacement tests, so the condition deployed is the one those tests ran under.
    from sandbox.rbac import BUILT_IN_ROLES, parse_condition

    text = (INFRA / "modules" / "role-delegation.bicep").read_text(encoding="utf-8")
    (template,) = re.findall(r"^var condition = '(.*)'$", text, re.MULTILINE)
    defaults = _default_assignable_role_ids()
    condition = parse_condition(template.replace("\\'", "'").replace("${roles}", ", ".join(defaults)))
    assert condition.write.role_ids == condition.delete.role_ids == frozenset(defaults)
    assert condition.write.principal_types == condition.delete.principal_types == frozenset({"serviceprincipal"})
    # Never a role that could widen the remediator's own rights or anyone's beyond an AKS cluster's needs.
    assert {BUILT_IN_ROLES[name] for name in ("Network Contributor", "AcrPull", "Private DNS Zone Contributor")} \
        == set(defaults)
    for wide in ("Contributor", "Role Based Access Control Administrator"):
        assert BUILT_IN_ROLES[wide] not in defaults


def test_role_delegation_is_deployed_only_to_replace_and_on_every_subscription():
    main = (INFRA / "main.bicep").read_text(encoding="utf-8")
    assert "module roleDelegation 'modules/role-delegation.bicep' = if (replaceDeleted == 'replace')" in main
    assert "(replaceDeleted == 'replace' ? extraSubscriptionIds : [])" in main


def test_the_graph_grants_are_the_permissions_the_sandbox_gives_the_remediator():
    from sandbox.state import GRAPH_OWNED_BY, GRAPH_READ_ALL, WorldOptions

    text = (INFRA / "modules" / "graph.bicep").read_text(encoding="utf-8")
    granted = set(re.findall(r"appRoleId: (\w+)", text))
    ids = dict(re.findall(r"^var (\w+) = '([0-9a-f-]{36})'$", text, re.MULTILINE))
    # Microsoft Graph's app role ids (permissions reference).
    known = {"18a4783c-866b-4cc7-a460-3d5e5662c884": GRAPH_OWNED_BY,
             "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30": GRAPH_READ_ALL}
    assert {known[ids[name]] for name in granted} == set(WorldOptions().remediator_graph_permissions)

"""The Bicep in infra/: it parses, checkov passes it, its roles grant no wildcard, and it
sets every app setting the code reads (remediation/settings.py).

Two parsers read the Bicep, and both predate syntax this template uses, so the text is
adjusted first, the same way every time (see `_for_parsers`):
- `extension microsoftGraphV1` (modules/graph.bicep) became a keyword in Bicep 0.30; the
  tree-sitter grammar and checkov's pycep parser reject it. The statement is commented
  out, on its own line, so line numbers (and checkov's skip comments) stay put.
- A .bicepparam `param name = value` has no type, which the grammar requires; it is read
  as `var name = value`, which has the same expression grammar.
"""

from __future__ import annotations

import ast
import functools
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

from remediation.events import CLUSTER_OPERATION_PREFIX, FAILURE_EVENT_TYPES
from remediation.settings import INCIDENT_QUEUE, SETTINGS, TABLE_NAME, WORK_QUEUE

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
SAMPLE_SETTINGS = ROOT / "local.settings.sample.json"

# Exactly what the code calls on ARM (remediation/adapters/aks.py and monitor.py).
CUSTOM_ROLE_ACTIONS = {
    "Microsoft.ContainerService/managedClusters/read",
    "Microsoft.ContainerService/managedClusters/resetServicePrincipalProfile/action",
    # The reset is a long-running operation: the SDK poller GETs its Azure-AsyncOperation
    # and Location URLs under .../providers/Microsoft.ContainerService/locations/{region}/.
    "Microsoft.ContainerService/locations/operations/read",
    "Microsoft.ContainerService/locations/operationresults/read",
    "Microsoft.Insights/eventtypes/values/read",
}
# Settings Flex Consumption rejects, or that would bypass the identity.
FORBIDDEN_APP_SETTINGS = {
    "AzureWebJobsStorage",  # a connection string: the identity-based __accountName form is used
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
}
CHECKOV_TIMEOUT_SECONDS = 120

_EXTENSION_STATEMENT = re.compile(r"^extension[ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]*$", re.MULTILINE)
_BICEPPARAM_PARAM = re.compile(r"^param([ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]*=)", re.MULTILINE)
_SKIP_COMMENT = re.compile(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?")


# ---------------------------------------------------------------- reading the Bicep


def _bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def _for_parsers(path: Path, text: str) -> str:
    """The file's text with the syntax the parsers predate rewritten (module docstring)."""
    text = _EXTENSION_STATEMENT.sub(lambda m: "// " + m.group(0), text)
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
    for name in (TABLE_NAME, WORK_QUEUE, f"{WORK_QUEUE}-poison", INCIDENT_QUEUE, f"{INCIDENT_QUEUE}-poison"):
        assert name in strings, f"storage.bicep does not create {name}"


def test_event_subscription_targets_the_event_grid_function_and_its_filter():
    root = _parse(INFRA / "modules" / "eventgrid.bicep")
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

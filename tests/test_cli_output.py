"""The operator CLI's output in the Azure CLI's shape (remediation/cli/output.py, console.py, completion.py): the
formats and --query against knack's own (the Azure CLI's framework, run from .venv-az), the exit statuses, the
deprecated --json, colour and progress only on a terminal, shell completion in a real bash, and a function app
whose cold import loads none of it."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jmespath
import pytest
import yaml

from remediation.cli import console, output
from remediation.cli.output import OutputError

ROOT = Path(__file__).resolve().parent.parent
AZ_PYTHON = ROOT / ".venv-az" / "bin" / "python"

HEALTH = {
    "at": "2026-12-07T05:00:00+00:00", "counts": {"expired": 1, "healthy": 1, "managedIdentity": 0},
    "applications": 2, "daysToNearestExpiry": 364.9,
    "value": [
        {"clusterResourceId": "/subscriptions/s/resourceGroups/rg-pay/providers/Microsoft.ContainerService/"
                              "managedClusters/aks-pay", "id": "hidden-by-az", "name": "aks-pay", "health": "expired",
         "daysLeft": None, "appId": "app-1", "tags": {"team": "pay"}, "action": None, "migrate": True,
         "endsAt": "2026-01-01T00:00:00+00:00", "note": "Zürich ünïcode"},
        {"clusterResourceId": "/subscriptions/s/resourceGroups/rg-ok/providers/Microsoft.ContainerService/"
                              "managedClusters/aks-ok", "id": "hidden-too", "name": "aks-ok", "health": "healthy",
         "daysLeft": 364.9, "appId": "app-2", "tags": {}, "action": None, "migrate": False,
         "endsAt": "2027-12-06T00:00:00+00:00", "note": "fine"},
    ],
}
QUERIES = [
    None, "value", "value[?health=='expired'].name", "value[].[name, health, daysLeft]",
    "value[].{Name: name, Health: health, Days: daysLeft, Migrate: migrate}", "counts", "applications",
    "value[0].migrate", "value[?health=='nothing']", "value[].tags", "{n: length(value), nearest: daysToNearestExpiry}",
]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def ours(document: Any, query: str | None, fmt: str) -> str:
    args = type("Args", (), {"output": fmt, "query": jmespath.compile(query) if query else None})()
    out = io.StringIO()
    try:
        output.emit(args, out, document, table=lambda result, width, color: "OWN TABLE\n")
    except OutputError as err:
        return f"ERROR {err}"
    return out.getvalue()


def knack(cases: list[dict[str, Any]]) -> list[dict[str, str]]:
    """knack's formatters (azure-cli's own venv) over the same documents and queries, as az applies them."""
    probe = """
import json, sys
from collections import OrderedDict
import jmespath
from jmespath import Options
from knack.output import format_json, format_yaml, format_tsv, format_table
from knack.util import CommandResultItem
answers = []
for case in json.load(sys.stdin):
    result = case["document"]
    if case["query"]:
        result = jmespath.compile(case["query"]).search(result, Options(OrderedDict))
    item = CommandResultItem(result, is_query_active=bool(case["query"]))
    answer = {}
    for name, format_ in (("json", format_json), ("yaml", format_yaml), ("tsv", format_tsv), ("table", format_table)):
        try:
            answer[name] = "" if result is None else format_(item)
        except Exception as err:
            answer[name] = "ERROR " + str(err)
    answers.append(answer)
json.dump(answers, sys.stdout)
"""
    done = subprocess.run([str(AZ_PYTHON), "-c", probe], input=json.dumps(cases), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def cells(table: str) -> list[list[str]]:
    """A table's headings and rows as cells, read by the dashed rule under the headings (az's and ours)."""
    lines = table.rstrip("\n").splitlines()
    rule = lines[1]
    spans, start = [], None
    for index, char in enumerate(rule + " "):
        if char == "-" and start is None:
            start = index
        elif char != "-" and start is not None:
            spans.append((start, index))
            start = None
    spans[-1] = (spans[-1][0], max(len(line) for line in lines))
    return [[line[a:b].strip() for a, b in spans] for line in (lines[0], *lines[2:])]


# ------------------------------------------------------------------------------------------ as az formats


def test_every_format_after_every_query_is_what_the_azure_cli_prints() -> None:
    cases = [{"document": HEALTH, "query": query} for query in QUERIES]
    for case, theirs in zip(cases, knack(cases), strict=True):
        query = case["query"]
        for fmt in ("json", "yaml", "tsv"):
            assert ours(HEALTH, query, fmt) == theirs[fmt], (query, fmt)
        if query is None:
            assert ours(HEALTH, None, "table") == "OWN TABLE\n"  # the command's own table, as az's transformer
        elif theirs["table"].startswith("ERROR") or not theirs["table"].strip():
            assert ours(HEALTH, query, "table").strip() == theirs["table"].strip() or \
                ours(HEALTH, query, "table").startswith("ERROR Table output unavailable"), query
        else:
            assert cells(ours(HEALTH, query, "table")) == cells(theirs["table"]), query


def test_the_automatic_table_skips_what_az_skips_and_keeps_the_querys_order() -> None:
    table = ours(HEALTH, "value", "table")
    headings, *rows = cells(table)
    # id, nested objects and lists, and nulls are not columns; the first letter is capitalised.
    assert headings == ["ClusterResourceId", "Name", "Health", "AppId", "Migrate", "EndsAt", "Note", "DaysLeft"]
    assert rows[0][:3] == [HEALTH["value"][0]["clusterResourceId"], "aks-pay", "expired"]
    assert "hidden-by-az" not in table
    chosen = cells(ours(HEALTH, "value[].{Name: name, Days: daysLeft}", "table"))
    assert chosen == [["Name", "Days"], ["aks-pay", ""], ["aks-ok", "364.9"]]
    # A null is no column for its row, so the columns come in the order the rows first show them (as tabulate's).
    assert cells(ours(HEALTH, "value[].{Days: daysLeft, Name: name}", "table"))[0] == ["Name", "Days"]


def test_a_null_result_and_output_none_print_nothing() -> None:
    for fmt in output.FORMATS:
        assert ours(HEALTH, "value[0].nothing", fmt) == ""
        assert ours(HEALTH, None, "none") == ""


def test_a_query_that_fails_on_the_data_is_an_error_naming_the_query() -> None:
    assert ours(HEALTH, "abs(value)", "json").startswith(
        "ERROR Invalid jmespath query supplied for `--query`: In function abs(), invalid type for value")
    assert ours(HEALTH, "value[].{tags: tags}", "table").startswith("ERROR Table output unavailable.")


def test_values_cannot_forge_a_row_or_move_the_cursor_in_tsv_or_a_table() -> None:
    forged = {"value": [{"name": "a\tb\nforged\trow\x1b[2J", "health": "expired"}]}
    tsv = ours(forged, "value", "tsv")
    assert tsv == "expired\ta b forged row [2J\n"  # an object's values in key order
    table = ours(forged, "value", "table")
    assert "\x1b" not in table and len(table.splitlines()) == 3
    # JSON and YAML escape it themselves.
    assert json.loads(ours(forged, "value", "json"))[0]["name"] == forged["value"][0]["name"]
    assert "\x1b" not in ours(forged, "value", "yaml") and yaml.safe_load(ours(forged, "value", "yaml"))


def test_colour_only_when_stdout_and_stderr_are_terminals(monkeypatch: pytest.MonkeyPatch) -> None:
    args = type("Args", (), {"output": "jsonc", "query": None})()
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys, "stderr", Terminal())
    terminal = Terminal()
    output.emit(args, terminal, HEALTH)
    assert "\x1b[" in terminal.getvalue()
    assert json.loads(_strip_ansi(terminal.getvalue())) == HEALTH
    piped = io.StringIO()
    output.emit(args, piped, HEALTH)
    assert piped.getvalue() == ours(HEALTH, None, "json")  # jsonc piped is json, as az
    monkeypatch.setenv("NO_COLOR", "1")
    plain = Terminal()
    output.emit(args, plain, HEALTH)
    assert "\x1b" not in plain.getvalue()


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# ------------------------------------------------------------------------------------------- the terminal


def test_progress_is_drawn_on_a_terminal_and_nothing_when_piped(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with console.progress("Reading every cluster's credential health"):
        pass
    drawn = terminal.getvalue()
    assert "Reading every cluster's credential health" in drawn and "━" in drawn  # the text and a bar
    assert drawn.endswith("\x1b[?25h\r\x1b[1A\x1b[2K")  # the cursor shown, the line erased: nothing left
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    with console.progress("Reading every cluster's credential health") as shown:
        shown.update("Still reading", 1)
    assert piped.getvalue() == ""


def test_logs_are_redacted_whoever_writes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    args = type("Args", (), {"debug": True, "verbose": False, "only_show_errors": False})()
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    with console.logs(args, lambda: ["the-function-key-123"]):
        logging.getLogger("remediation.cli.api").debug("GET with %s and %s", "the-function-key-123", token)
        logging.getLogger("azure.identity").info("token %s", token)
        logging.getLogger("urllib3.connectionpool").debug("https://x:443 \"GET /api/health HTTP/1.1\" 200 10")
    logging.getLogger("remediation.cli.api").warning("after the command: not ours to show")
    lines = err.getvalue().splitlines()
    assert lines == ["DEBUG: remediation.cli.api: GET with <redacted> and <redacted>",
                     "INFO: azure.identity: token <redacted>",
                     'DEBUG: urllib3.connectionpool: https://x:443 "GET /api/health HTTP/1.1" 200 10']


# ------------------------------------------------------------------------------------------ as a process


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "remediation", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False, env=env)


def test_every_data_command_takes_the_global_arguments() -> None:
    for command in ("list", "show", "decisions", "dry-run", "orphans", "health", "doctor", "preflight"):
        helped = run(command, "--help")
        assert helped.returncode == 0, command
        # Python 3.13's argparse lists an option's names once with its metavar ("-o, --output FORMAT"); 3.11 repeats it.
        named = r"(--output FORMAT, -o FORMAT|--output, -o FORMAT|-o, --output FORMAT)"
        assert re.search(named, helped.stdout), command
        for option in ("--query JMESPATH", "--verbose", "--debug", "--only-show-errors"):
            assert option in helped.stdout, (command, option)
        assert "--json" not in helped.stdout  # deprecated: accepted, not advertised


def test_doctor_without_a_cache_in_each_format(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.json")
    table = run("doctor", "--file", missing)
    assert (table.returncode, table.stderr) == (0, "")
    assert table.stdout == f"No cached AKS service principal in {missing}: `az aks create` will make a new one.\n"
    as_json = run("doctor", "--file", missing, "-o", "json")
    assert (as_json.returncode, as_json.stderr) == (0, "")
    assert as_json.stdout == json.dumps({"file": missing, "findings": []}, indent=2) + "\n"
    assert run("doctor", "--file", missing, "-o", "tsv", "--query", "[[file, length(findings)]]").stdout == \
        f"{missing}\t0\n"
    assert run("doctor", "--file", missing, "-o", "tsv", "--query", "[file, length(findings)]").stdout == \
        f"{missing}\n0\n"  # a list's items are rows
    assert yaml.safe_load(run("doctor", "--file", missing, "-o", "yaml").stdout) == {"file": missing, "findings": []}
    assert run("doctor", "--file", missing, "-o", "jsonc").stdout == as_json.stdout  # piped: no colour


def test_the_deprecated_json_flag_prints_what_output_json_prints_and_says_so(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.json")
    old, new = run("doctor", "--file", missing, "--json"), run("doctor", "--file", missing, "-o", "json")
    assert old.returncode == 0 and old.stdout == new.stdout
    assert old.stderr == "WARNING: --json is deprecated: use --output json (-o json)\n"
    quiet = run("doctor", "--file", missing, "--json", "--only-show-errors")
    assert quiet.stdout == new.stdout and quiet.stderr == ""


def test_exit_statuses_are_the_azure_clis(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.json")
    malformed = run("doctor", "--file", missing, "--query", "value[?")
    assert malformed.returncode == 2 and malformed.stdout == ""
    assert "argument --query: invalid JMESPath query:" in malformed.stderr
    unknown_format = run("doctor", "--file", missing, "-o", "xml")
    assert unknown_format.returncode == 2 and "argument --output/-o: invalid choice: 'xml'" in unknown_format.stderr
    failing = run("doctor", "--file", missing, "--query", "abs(file)")
    assert failing.returncode == 1 and failing.stdout == ""
    assert failing.stderr == ("error: Invalid jmespath query supplied for `--query`: In function abs(), invalid type "
                              "for value: /nonexistent, expected one of: ['number'], received: \"string\"\n"
                              .replace("/nonexistent", missing))
    broken = tmp_path / "broken.json"
    broken.write_text('{"sub": {"service_principal": "x", "client_secret": "s3cr3t-value"')
    unreadable = run("doctor", "--file", str(broken))
    assert unreadable.returncode == 1 and unreadable.stdout == ""
    assert unreadable.stderr == f"error: {broken} is not JSON (line 1)\n"
    env_free = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    usage = run("health", env=env_free)
    assert usage.returncode == 2 and usage.stdout == ""
    assert usage.stderr.startswith("usage: python -m remediation health")
    assert usage.stderr.splitlines()[-1].startswith("python -m remediation health: error: missing --api URL")


def test_help_and_a_function_app_cold_import_load_no_output_library() -> None:
    heavy = ("rich", "jmespath", "argcomplete", "yaml", "pygments", "markdown_it")
    probe = ("import json, sys\nsys.argv = ['remediation', '--help']\nimport runpy\n"
             "try:\n    runpy.run_module('remediation', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})), file=sys.stderr)")
    helped = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False)
    assert helped.returncode == 0 and json.loads(helped.stderr.splitlines()[-1]) == []
    cold = subprocess.run([sys.executable, "-c", "import json, sys\nimport function_app\nprint(json.dumps(sorted("
                           f"m for m in sys.modules if m.split('.')[0] in {heavy!r})))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert cold.returncode == 0, cold.stderr[-2000:]
    assert json.loads(cold.stdout.splitlines()[-1]) == []


# --------------------------------------------------------------------------------------------- completion


def complete(line: str) -> list[str]:
    """What bash offers after `line`, with the code `completion bash` prints loaded (a real bash)."""
    words = f"{sys.executable} {line[line.index(' ') + 1:]}" if line.startswith("python ") else line
    script = run("completion", "bash")
    assert script.returncode == 0, script.stderr
    driver = (script.stdout + "\n"
              + 'COMP_LINE="$LINE"; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<< "$COMP_LINE"\n'
              + '[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")\n'
              + "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
              + 'spec=$(complete -p "$(basename "${COMP_WORDS[0]}")")\n'
              + '[[ "$spec" == *"-F _remediation_python_complete"* ]] || exit 9\n'
              + '_remediation_python_complete "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}"\n'
              + 'printf "%s\\n" "${COMPREPLY[@]}"\n')
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", driver], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "LINE": words})
    assert done.returncode == 0, done.stderr
    return [word.strip() for word in done.stdout.splitlines() if word.strip()]


def test_bash_completes_commands_options_and_their_choices() -> None:
    assert "health" in complete("python -m remediation he") and "list" not in complete("python -m remediation he")
    assert set(complete("python -m remediation ")) >= {"list", "show", "decisions", "dry-run", "orphans", "health",
                                                      "doctor", "preflight", "completion", "classify"}
    assert "--query" in complete("python -m remediation health --q")
    assert set(complete("python -m remediation health -o ")) == set(output.FORMATS)
    assert set(complete("python -m remediation list --as ")) == {"auditor", "operator"}


def test_other_python_command_lines_are_left_alone() -> None:
    assert complete("python -c pri") == []


def test_without_the_clis_packages_doctor_and_preflight_still_run_and_the_rest_says_what_to_install(
        tmp_path: Path) -> None:
    # A deployer's venv holds requirements.txt only (azure.yaml's preprovision hook runs preflight with it).
    missing = str(tmp_path / "none.json")

    def without(*args: str) -> subprocess.CompletedProcess[str]:
        probe = ("import runpy, sys\n"
                 "for name in ('rich', 'jmespath', 'yaml', 'pygments', 'argcomplete'):\n    sys.modules[name] = None\n"
                 f"sys.argv = ['remediation', *{list(args)!r}]\n"
                 "runpy.run_module('remediation', run_name='__main__')\n")
        return subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
                              check=False)

    table = without("doctor", "--file", missing)
    assert (table.returncode, table.stderr) == (0, "") and table.stdout.startswith("No cached AKS service principal")
    assert json.loads(without("doctor", "--file", missing, "-o", "json").stdout) == {"file": missing, "findings": []}
    queried = without("doctor", "--file", missing, "--query", "file")
    assert queried.returncode == 2
    assert "argument --query: --query needs jmespath: pip install -r requirements-cli.txt" in queried.stderr
    as_yaml = without("doctor", "--file", missing, "-o", "yaml")
    assert (as_yaml.returncode, as_yaml.stdout) == (1, "")
    assert as_yaml.stderr == "error: yaml is not installed: pip install -r requirements-cli.txt\n"


def test_on_a_terminal_the_table_colours_what_needs_a_look_and_piped_it_is_plain_text() -> None:
    from remediation.cli.render import health_table

    coloured = health_table(HEALTH, width=160, color=True)
    plain = health_table(HEALTH, width=160)
    assert "\x1b[1;31mexpired" in coloured and "\x1b[32mhealthy" in coloured
    assert "\x1b" not in plain
    assert _strip_ansi(coloured) == plain

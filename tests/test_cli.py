"""`python -m remediation classify` as a user runs it: a real process reading JSON Lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS: list[dict[str, Any]] = json.loads((ROOT / "tests" / "data" / "error_corpus.json").read_text("utf-8"))
SPVCE_ENTRY = next(case["entry"] for case in CORPUS if case["id"] == "entry-spvce-7000215")
QUOTA_STATUS_MESSAGE = json.dumps({"status": "Failed", "error": {
    "code": "ResourceOperationFailure", "message": "The resource operation completed with terminal provisioning state.",
    "details": [{"code": "QuotaExceeded", "message": "Operation results in exceeding quota limits of Core."}]}})


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "remediation", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=60, check=False)


def output_lines(completed: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in completed.stdout.splitlines()]


def test_classify_answers_each_input_line_in_order() -> None:
    lines = [
        # An Entra ID verdict counts only in AKS's service-principal error (classify.py): with AKS's words around it.
        json.dumps({"message": "The credentials in ServicePrincipalProfile were invalid. AADSTS7000222: The provided "
                               "client secret keys for app 'x' are expired."}),
        json.dumps(SPVCE_ENTRY),
        "{this is not json",
        "",  # blank: skipped, no output
        json.dumps({"something": "else"}),
        json.dumps({"statusMessage": QUOTA_STATUS_MESSAGE}),
        json.dumps(["a", "list"]),
        json.dumps({"statusMessage": json.loads(QUOTA_STATUS_MESSAGE)}),  # already parsed
    ]
    completed = run("classify", stdin="\n".join(lines) + "\n")

    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    results = output_lines(completed)
    assert [result["line"] for result in results] == [1, 2, 3, 5, 6, 7, 8]
    expired, entry, not_json, unknown, quota, a_list, quota_parsed = results
    assert (expired["kind"], expired["action"], expired["code"]) == ("expired_secret", "rotate_secret", "AADSTS7000222")
    assert (entry["kind"], entry["action"], entry["code"]) == ("invalid_secret", "rotate_secret", "AADSTS7000215")
    assert (quota["kind"], quota["action"], quota["code"]) == ("not_sp", "none", "QuotaExceeded")
    assert quota_parsed == {**quota, "line": 8}
    for result in (expired, entry, quota):
        assert set(result) == {"line", "kind", "action", "code", "reason", "evidence"}
        assert result["reason"]
    assert not_json["error"]["code"] == "InvalidJson"
    assert unknown["error"]["code"] == a_list["error"]["code"] == "UnrecognizedInput"
    assert "something" in unknown["error"]["message"] and "list" in a_list["error"]["message"]


def test_classify_reads_a_file_given_with_input(tmp_path: Path) -> None:
    failures = tmp_path / "failures.jsonl"
    failures.write_text("".join(json.dumps(case["entry"]) + "\n"
                                for case in CORPUS if "entry" in case), encoding="utf-8")
    completed = run("classify", "--input", str(failures))
    assert completed.returncode == 0, completed.stderr
    expected = [case["expected_kind"] for case in CORPUS if "entry" in case]
    assert [result["kind"] for result in output_lines(completed)] == expected


def test_classify_never_echoes_the_input() -> None:
    marker = "marker-" + "q" * 4000
    message = f"The credentials in ServicePrincipalProfile were invalid. AADSTS7000215: Invalid client secret. {marker}"
    lines = [json.dumps({"message": message}), "{not json " + marker, json.dumps({"other": marker})]
    completed = run("classify", stdin="\n".join(lines))
    assert completed.returncode == 0
    assert "qqqq" not in completed.stdout
    [result, not_json, unknown] = output_lines(completed)
    assert result["kind"] == "invalid_secret" and len(result["evidence"]) <= 200
    assert not_json["error"]["code"] == "InvalidJson" and unknown["error"]["code"] == "UnrecognizedInput"


def test_empty_input_gives_empty_output() -> None:
    completed = run("classify", stdin="\n\n")
    assert (completed.returncode, completed.stdout) == (0, "")


def test_usage_errors_exit_2_with_a_message_on_stderr() -> None:
    for args, says in [((), "required"), (("frobnicate",), "invalid choice"),
                       (("classify", "--input", "/nonexistent/failures.jsonl"), "cannot read"),
                       (("classify", "--bogus"), "unrecognized arguments")]:
        completed = run(*args)
        assert completed.returncode == 2, args
        assert completed.stdout == ""
        assert "usage:" in completed.stderr and says in completed.stderr, args


def test_help_describes_the_command() -> None:
    top = run("--help")
    assert top.returncode == 0 and "classify" in top.stdout
    command = run("classify", "--help")
    assert command.returncode == 0
    assert "--input" in command.stdout and "statusMessage" in command.stdout and "Blank lines" in command.stdout


def test_the_operator_commands_are_listed_and_say_what_they_miss() -> None:
    top = run("--help")
    for command in ("list", "show", "decisions", "dry-run"):
        assert command in top.stdout
    for command in ("list", "show", "decisions", "dry-run"):
        helped = run(command, "--help")
        assert helped.returncode == 0
        assert "--sandbox INFO_FILE" in helped.stdout and "REMEDIATOR_FUNCTION_KEY" in helped.stdout
    # Without --api, --function-key and --app-id-uri (or their variables, or --sandbox): a usage error, not a trace.
    env_free = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    completed = subprocess.run([sys.executable, "-m", "remediation", "list"], cwd=ROOT, capture_output=True,
                               text=True, timeout=60, check=False, env=env_free)
    assert completed.returncode == 2 and completed.stdout == ""
    assert "usage: python -m remediation list" in completed.stderr
    assert "missing --api URL (or REMEDIATOR_API_URL)" in completed.stderr and "Traceback" not in completed.stderr

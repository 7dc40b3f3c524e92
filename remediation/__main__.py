"""Command line: ``python -m remediation classify < failures.jsonl``, and the operator's commands
over the HTTP API (``list``, ``show``, ``decisions``, ``dry-run``: see ``remediation/cli/commands.py``).

``classify`` reads JSON Lines (stdin, or ``--input FILE``) and writes one JSON line per input
line, in order, to stdout. Each input line is one of:

- ``{"message": "<free error text>"}``
- ``{"statusMessage": "<Activity Log properties.statusMessage, JSON string or object>"}``
- an Activity Log entry as the REST API returns it (an object with ``properties``)

Each output line carries the 1-based input ``line`` number and either the classification
(``kind``, ``action``, ``code``, ``reason``, ``evidence``) or ``{"error": {"code", "message"}}``
for a line that is not JSON (``InvalidJson``) or not one of the shapes above
(``UnrecognizedInput``). Blank lines are skipped without output; the ``line`` numbers keep
the outputs aligned with the input. Output never repeats the input: ``evidence`` is a short
excerpt and error messages describe the line, not its content.

Exit status: 0 when all input was read (per-line errors are data, not failures); 2 for usage
errors, including an input file that cannot be opened.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any, TextIO

from remediation.app import logs
from remediation.cli.commands import add_operator_commands
from remediation.decide.classify import (
    Classification,
    classify_activity_log_entry,
    classify_message,
    classify_status_message,
)

SHAPES = ('{"message": str}, {"statusMessage": str | object} or an Activity Log entry (an object with '
          '"properties")')


def classify_line(line: str) -> dict[str, Any]:
    """The output object for one non-blank input line."""
    try:
        document = json.loads(line)
    except (ValueError, RecursionError) as err:
        # The decoder's message names a position, never the content.
        return _error("InvalidJson", f"the line is not JSON: {err}" if isinstance(err, ValueError)
                      else "the line is not JSON: nested too deeply")
    classification = _classify_document(document)
    if classification is None:
        return _error("UnrecognizedInput", f"expected {SHAPES}; got {_describe(document)}")
    return asdict(classification)


def classify_lines(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """One output object per non-blank line, numbered by input line."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield {"line": number, **classify_line(line)}


def _classify_document(document: Any) -> Classification | None:
    if not isinstance(document, dict):
        return None
    if isinstance(document.get("properties"), dict):
        return classify_activity_log_entry(document)
    status_message = document.get("statusMessage")
    if isinstance(status_message, str | dict):
        return classify_status_message(status_message)
    message = document.get("message")
    if isinstance(message, str):
        return classify_message(message)
    return None


def _describe(document: Any) -> str:
    if isinstance(document, dict):
        keys = sorted(str(key) for key in document)[:5]
        return f"an object with keys {keys}" if keys else "an empty object"
    return f"a JSON {type(document).__name__}"


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _run_classify(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.input == "-":
        sys.stdin.reconfigure(encoding="utf-8", errors="replace")
        return _write(classify_lines(sys.stdin), sys.stdout)
    try:
        with open(args.input, encoding="utf-8", errors="replace") as stream:
            return _write(classify_lines(stream), sys.stdout)
    except OSError as err:
        parser.error(f"cannot read --input {args.input}: {err.strerror}")
    return 2  # unreachable: parser.error exits


def _write(results: Iterable[dict[str, Any]], out: TextIO) -> int:
    for result in results:
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
    out.flush()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m remediation",
                                     description="Tools of the AKS service-principal remediator.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    classify = commands.add_parser(
        "classify", help="classify AKS failure texts read as JSON Lines",
        description="Read JSON Lines and write one JSON line per non-blank input line: the classification "
                    "(kind, action, code, reason, evidence) or {\"error\": {\"code\", \"message\"}}.",
        epilog=f"Input lines: {SHAPES}. Blank lines are skipped; every output has the input 'line' number.")
    classify.add_argument("--input", "-i", default="-", metavar="FILE",
                          help="JSON Lines file to read (default: standard input)")
    classify.set_defaults(run=_run_classify)
    add_operator_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    logs.install()  # the app's modules log here too (preflight, doctor): control characters escaped, as in Azure
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.run(args, parser)


if __name__ == "__main__":
    sys.exit(main())

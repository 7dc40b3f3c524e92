"""The operator commands' output in the Azure CLI's shape: `--output/-o` and `--query` on every command, with the
semantics of knack, the Azure CLI's framework (knack/output.py and knack/query.py):

- A command's result is one JSON document: the API's answer as it is (`list`, `show`, `decisions`, `orphans`,
  `health`), or the command's own view (`dry-run`: the remediation with its decision; `doctor` and `preflight`:
  their findings). `-o json` prints exactly that, which is also what the deprecated `--json` printed.
- `--query` is a JMESPath expression (the `jmespath` package az uses) applied to the result before it is
  formatted. A malformed expression is a usage error (exit 2, when the arguments are parsed); one that fails on the
  data (a function given the wrong type) is an error (exit 1). A null result prints nothing, as az prints nothing.
- `json`: indented by 2, keys sorted, non-ASCII as it is. `jsonc` and `yamlc`: the same, coloured by Pygments
  only when stdout and stderr are both terminals (and NO_COLOR is unset); otherwise plain, as az does.
- `yaml`: `yaml.safe_dump` (keys sorted, block style, Unicode as it is).
- `tsv`: one line per item of a list (anything else is one item); a row's values tab-separated, an object's values
  in key order (a `--query` multiselect hash's in the query's order), a list shown as its length, an object as
  nothing, a boolean row as true/false, everything else as Python's `str`: az's `_TsvOutput`, line for line.
- `table`: without `--query`, the command's own table (az's table transformer); with one, az's automatic table of
  the queried result: a row per item, a column per scalar field in the query's order, the first letter of each
  heading capitalised, and `id`, `type` and `etag` skipped, as az skips them (name them otherwise to see them:
  `--query "value[].{Id: id}"`). A result with no scalar field is "Table output unavailable".
- `none`: nothing.

Nothing here adds to what the result holds, and the results hold no secret (the API's views hold none; `doctor`
never prints a cached secret). Text from the API goes to a terminal only through `render.text` or a format that
escapes it (JSON, YAML); tsv and tables replace control characters, so a value cannot forge a line of output or
move the cursor.

Imports of jmespath, PyYAML, Pygments and rich happen when a format needs them: the CLI's other paths (and the
function app, which never imports this) do not load them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import OrderedDict
from collections.abc import Callable
from io import StringIO
from typing import Any, TextIO

from remediation.cli import render

FORMATS = ("json", "jsonc", "yaml", "yamlc", "table", "tsv", "none")
DEFAULT_FORMAT = "table"
# What az's automatic table never shows (knack's _TableOutput.SKIP_KEYS).
SKIP_KEYS = ("id", "type", "etag")
TABLE_UNAVAILABLE = ("Table output unavailable. Use the --query option to specify an appropriate query. "
                     "Use --debug for more info.")

UNBOUNDED = 1_000_000  # the width of an automatic table: as wide as its content
# The CLI's own packages, on the operator's machine (requirements.txt, what is deployed, has none of them).
INSTALL = "pip install -r requirements-cli.txt"
Table = Callable[[Any, int, bool], str]  # (result, width, colour) -> the command's own table, as text


class OutputError(Exception):
    """The result cannot be shown as asked (a query that fails on it; no table to make of it). Exit 1."""


# ------------------------------------------------------------------------------------------- arguments


def _query(expression: str) -> Any:
    """Compile a --query expression when the arguments are parsed: a malformed one is a usage error (exit 2)."""
    try:
        import jmespath
        from jmespath.exceptions import JMESPathError
    except ImportError:
        raise argparse.ArgumentTypeError(f"--query needs jmespath: {INSTALL}") from None
    try:
        return jmespath.compile(expression)
    except (JMESPathError, KeyError, ValueError) as err:
        raise argparse.ArgumentTypeError(f"invalid JMESPath query: {_first_line(err)}") from None


def _output(value: str) -> str:
    return value.lower()


def global_options() -> argparse.ArgumentParser:
    """A parent parser with the options every data command takes, as az groups them ("global arguments"):
    --output/-o, --query, --verbose, --debug, --only-show-errors; and the deprecated --json (hidden: `-o json`,
    and a warning)."""
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("global arguments")
    group.add_argument("--output", "-o", dest="output", type=_output, choices=FORMATS, default=DEFAULT_FORMAT,
                       metavar="FORMAT", help=f"output format: {', '.join(FORMATS)} (default {DEFAULT_FORMAT})")
    group.add_argument("--query", dest="query", type=_query, metavar="JMESPATH",
                       help="JMESPath query applied to the JSON result before it is formatted, as az's --query; "
                            "see https://jmespath.org")
    group.add_argument("--json", dest="output", action=_DeprecatedJson, help=argparse.SUPPRESS)
    group.add_argument("--verbose", action="store_true", help="log more (INFO); --debug for everything")
    group.add_argument("--debug", action="store_true", help="log everything (DEBUG), the HTTP calls included, "
                                                            "never a header, a key or a token")
    group.add_argument("--only-show-errors", action="store_true", help="show errors only, no warnings")
    return options


class _DeprecatedJson(argparse.Action):
    """--json: `-o json`, and a note that it is deprecated (`args.deprecated`, which the edge logs as a warning)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, "json")
        namespace.deprecated = "--json is deprecated: use --output json (-o json)"


# ------------------------------------------------------------------------------------------------ emit


def emit(args: argparse.Namespace, out: TextIO, result: Any, table: Table | None = None) -> None:
    """Write `result` to `out` as `args.output` says, after `args.query`. OutputError when it cannot."""
    query = getattr(args, "query", None)
    fmt = getattr(args, "output", DEFAULT_FORMAT) or DEFAULT_FORMAT
    if query is not None:
        result = search(query, result)
    if result is None or fmt == "none":
        return
    color = color_enabled(out)
    if fmt == "table":
        text = table(result, width(), color) if table is not None and query is None else auto_table(result, color)
    else:
        text = format_result(result, fmt, color=color)
    out.write(text if not text or text.endswith("\n") else text + "\n")


def search(query: Any, result: Any) -> Any:
    """The query's answer, its new objects ordered as the query names their keys (az's Options(OrderedDict))."""
    from jmespath import Options
    from jmespath.exceptions import JMESPathError

    try:
        return query.search(result, Options(dict_cls=OrderedDict))
    except JMESPathError as err:
        raise OutputError(f"Invalid jmespath query supplied for `--query`: {_first_line(err)}") from None


def format_result(result: Any, fmt: str, *, color: bool = False) -> str:
    """json, jsonc, yaml, yamlc or tsv text of a result, as az writes it."""
    if fmt in ("json", "jsonc"):
        text = json.dumps(result, ensure_ascii=False, indent=2, sort_keys=True, separators=(",", ": ")) + "\n"
        return _highlight(text, "json") if fmt == "jsonc" and color else text
    if fmt in ("yaml", "yamlc"):
        import yaml

        text = yaml.safe_dump(json.loads(json.dumps(result)), default_flow_style=False, allow_unicode=True)
        return _highlight(text, "yaml") if fmt == "yamlc" and color else text
    if fmt == "tsv":
        return tsv(result)
    raise ValueError(f"not a text format: {fmt}")


def tsv(result: Any) -> str:
    """knack's _TsvOutput: one line per item; control characters in a value become spaces (a tab or newline in a
    value would shift the columns or forge a row)."""
    stream = StringIO()
    for item in result if isinstance(result, list) else [result]:
        if isinstance(item, dict | list):
            if isinstance(item, OrderedDict):
                values: Any = item.values()
            elif isinstance(item, dict):
                values = [value for _, value in sorted(item.items())]
            else:
                values = item
            stream.write("\t".join(_tsv_cell(value) for value in values))
        elif isinstance(item, bool):
            stream.write(str(item).lower())
        else:
            stream.write(_tsv_cell(item))
        stream.write("\n")
    return stream.getvalue()


def _tsv_cell(value: Any) -> str:
    if isinstance(value, list):
        return str(len(value))
    if isinstance(value, dict):
        return ""
    return render.printable(value if isinstance(value, str) else str(value))


def auto_table(result: Any, color: bool = False) -> str:
    """az's automatic table of a (queried) result: a row per item, a column per scalar field."""
    rows = []
    for item in result if isinstance(result, list) else [result]:
        if isinstance(item, dict):
            rows.append({_capitalise(str(k)): v for k, v in item.items()
                         if k not in SKIP_KEYS and v is not None and not isinstance(v, list | dict | set)})
        elif isinstance(item, list):
            rows.append({f"Column{n}": v for n, v in enumerate(item, start=1)})
        else:
            rows.append({"Result": item})
    if not rows:
        return ""
    headers = list(dict.fromkeys(key for row in rows for key in row))
    if not headers:
        raise OutputError(TABLE_UNAVAILABLE)
    cells = [[_table_cell(row.get(h)) for h in headers] for row in rows]
    # As az's (tabulate's), never cut to the terminal: the query chose these columns to be read whole.
    return render.table(headers, cells, width=UNBOUNDED, widest=UNBOUNDED, color=color) + "\n"


def _table_cell(value: Any) -> str:
    if value is None:
        return ""
    return render.printable(value if isinstance(value, str) else str(value))


def _capitalise(key: str) -> str:
    return key[:1].upper() + key[1:]


def _highlight(text: str, language: str) -> str:
    from pygments import highlight
    from pygments.formatters import TerminalFormatter
    from pygments.lexers import JsonLexer, YamlLexer

    return highlight(text, JsonLexer() if language == "json" else YamlLexer(), TerminalFormatter())


# ----------------------------------------------------------------------------------------- the terminal


def color_enabled(out: TextIO) -> bool:
    """Colour only where az colours: stdout and stderr both terminals, and NO_COLOR (no-color.org) unset."""
    if os.environ.get("NO_COLOR"):
        return False
    return _isatty(out) and _isatty(sys.stderr)


def width() -> int:
    """The terminal's width (COLUMNS, else the terminal's, else 120), at least 60."""
    import shutil

    return max(shutil.get_terminal_size((120, 24)).columns, 60)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _first_line(err: BaseException) -> str:
    return " ".join(str(err).split())

"""Text for the operator CLI: tables and a remediation's timeline, from the HTTP API's JSON views.

Pure functions of the views. They tolerate any shape: a field that is missing, null or of an
unexpected type renders as empty (or as its text), never as an exception, so a view that gains
or loses fields (the fan-out `clusters`, `retiredPasswords`, `mode`) still renders. Text from
the API is shown on one line with control characters replaced, so a reason cannot move the
terminal's cursor or forge lines of output.
"""

from __future__ import annotations

import re
import textwrap
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

ELLIPSIS = "…"
SHORT_ID = 8
_CLUSTER_ID = re.compile(r"/resourceGroups/(?P<rg>[^/]+)/providers/[^/]+/[^/]+/(?P<name>[^/]+)", re.IGNORECASE)


def text(value: Any) -> str:
    """Any JSON value as one line of printable text: None is empty; control characters become spaces."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return printable(value if isinstance(value, str) else str(value)).strip()


def printable(value: str) -> str:
    """`value` with each control character (a tab, a newline, an escape) replaced by a space."""
    return "".join(" " if unicodedata.category(c).startswith("C") else c for c in value)


def field(view: Any, *path: str) -> Any:
    """`view[a][b]...`, or None where a level is missing or not an object."""
    for key in path:
        if not isinstance(view, dict):
            return None
        view = view.get(key)
    return view


def items(value: Any) -> list[Any]:
    """A JSON array's items; anything else is no items."""
    return list(value) if isinstance(value, list) else []


def short_id(value: Any) -> str:
    return text(value)[:SHORT_ID]


def cluster_label(resource_id: Any) -> str:
    """`resourceGroup/name` of an ARM id; the text itself if it is not one."""
    raw = text(resource_id)
    match = _CLUSTER_ID.search(raw)
    return f"{match['rg']}/{match['name']}" if match else raw


def when(value: Any) -> str:
    """An ISO 8601 time as `YYYY-MM-DD HH:MM:SS` in UTC; other text as it is."""
    raw = text(value)
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return raw
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d %H:%M:%S")


def truncate(value: str, width: int) -> str:
    if width <= 0:
        return ""
    return value if len(value) <= width else value[:max(width - 1, 0)] + ELLIPSIS


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, width: int, indent: str = "",
          wrap: bool = False, widest: int = 44, color: bool = False,
          style: Callable[[int, str], str | None] | None = None) -> str:
    """Columns sized to their content (each at most `widest`, cut with an ellipsis), a dashed rule under the
    headings as az's tables have; the last column takes what is left of `width`, cut with an ellipsis, or wrapped
    onto continuation lines with `wrap` (a word longer than the column is folded, never cut). Drawn by rich; cells
    are plain text, never markup. `style(column, cell)` names a rich style for a cell, shown only with `color`."""
    if not rows:
        return ""
    from rich.table import Table
    from rich.text import Text

    # The sizes are chosen here, not by rich (which would shrink every column, or drop one, to fit): each column
    # as wide as its content, at most `widest`; the last one what is left, but never less than 20 (or its
    # content), the line running over `width` rather than a column disappearing.
    last = len(headers) - 1
    sizes = [min(max(len(headers[i]), *(len(row[i]) for row in rows)), widest) for i in range(last)]
    used = len(indent) + sum(size + 2 for size in sizes)
    longest = max(len(headers[last]), *(len(row[last]) for row in rows))
    sizes.append(min(longest, max(width - used, 20)))
    grid = Table(box=_dashed(), show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold",
                 expand=False)
    for index, heading in enumerate(headers):
        grid.add_column(Text(heading), width=sizes[index], no_wrap=index < last or not wrap,
                        overflow="fold" if wrap and index == last else "ellipsis")
    for row in rows:
        grid.add_row(*(Text(cell, style=(style(index, cell) or "") if style else "") for index, cell in enumerate(row)))
    return _draw(grid, width=used + sizes[-1] - len(indent), color=color, indent=indent)


def _draw(renderable: Any, *, width: int, color: bool, indent: str = "") -> str:
    """A rich renderable as text `width` wide (no line cut, trailing spaces dropped); ANSI styles only with
    `color`."""
    from io import StringIO

    from rich.console import Console

    buffer = StringIO()
    console = Console(file=buffer, width=max(width, 20), color_system="standard" if color else None,
                      force_terminal=color, markup=False, highlight=False, emoji=False,
                      legacy_windows=False, soft_wrap=False)
    console.print(renderable, crop=False)
    return "\n".join(indent + line.rstrip() for line in buffer.getvalue().rstrip("\n").split("\n"))


@cache
def _dashed() -> Any:
    from rich.box import Box

    # Under each heading a run of dashes, as az's (tabulate's "simple") tables; no other lines.
    return Box("    \n    \n -  \n    \n    \n -  \n    \n    \n", ascii=True)


# ----------------------------------------------------------------------------------------------- lists


def remediations_table(views: Sequence[Any], *, width: int, color: bool = False) -> str:
    if not views:
        return "No remediations."
    rows = [[short_id(field(v, "id")), _clusters_cell(v), _status_cell(v), text(field(v, "source")),
             when(field(v, "createdAt")), text(field(v, "reason"))] for v in views]
    return table(("ID", "CLUSTER", "STATUS", "SOURCE", "CREATED (UTC)", "REASON"), rows, width=width, color=color,
                 style=_styled(2))


def decisions_table(views: Sequence[Any], *, width: int, color: bool = False) -> str:
    if not views:
        return "No decisions."
    rows = [[when(field(d, "at")), cluster_label(field(d, "clusterResourceId")), text(field(d, "source")),
             text(field(d, "code")), text(field(d, "act")), short_id(field(d, "remediationId")),
             text(field(d, "message"))] for d in views]
    return table(("TIME (UTC)", "CLUSTER", "SOURCE", "CODE", "ACT", "REMEDIATION", "MESSAGE"), rows, width=width,
                 color=color)


def health_table(report: Any, *, width: int, color: bool = False) -> str:
    """The fleet's credential health: one row per cluster, the most urgent first, then the counts."""
    views = sorted(items(field(report, "value")), key=lambda v: (_URGENCY.get(text(field(v, "health")), 9),
                                                               field(v, "daysLeft") or 0, text(field(v, "name"))))
    counts = field(report, "counts") or {}
    summary = ", ".join(f"{text(counts.get(k))} {k}" for k in _URGENCY if isinstance(counts, dict) and k in counts)
    nearest = field(report, "daysToNearestExpiry")
    tail = (f"{len(views)} cluster(s), {text(field(report, 'applications'))} application(s): {summary}."
            + (f" Nearest expiry in {nearest} days." if nearest is not None else ""))
    if not views:
        return "No clusters in scope.\n" + tail
    acted = any(field(v, "action") for v in views)  # the daily check's report says what it did; GET's does not
    rows = [[cluster_label(field(v, "clusterResourceId")), text(field(v, "health")),
             "" if field(v, "daysLeft") is None else text(field(v, "daysLeft")), when(field(v, "endsAt")),
             text(field(v, "appId")), *([text(field(v, "action", "code"))] if acted else []),
             text(field(v, "message"))] for v in views]
    headers = ("CLUSTER", "HEALTH", "DAYS LEFT", "ENDS (UTC)", "APP ID", *(("ACTION",) if acted else ()), "WHY")
    migrate = sum(1 for v in views if field(v, "recommendation"))
    advice = (f"\n{migrate} cluster(s) use a service principal: the permanent fix is a managed identity"
              " (az aks update -g <group> -n <cluster> --enable-managed-identity); -o json shows each command.")
    return table(headers, rows, width=width, color=color, style=_styled(1)) + "\n" + tail + (advice if migrate else "")


_URGENCY = {"expired": 0, "applicationMissing": 1, "unknown": 2, "expiring": 3, "healthy": 4, "managedIdentity": 5}
# On a terminal: what needs a look stands out (rich style names).
_STYLES = {"expired": "bold red", "applicationMissing": "bold red", "Failed": "bold red", "expiring": "yellow",
           "unknown": "yellow", "healthy": "green", "Succeeded": "green", "managedIdentity": "green"}


def _styled(column: int) -> Callable[[int, str], str | None]:
    """The style of a status or health cell in `column`, by its first word."""
    return lambda index, cell: _STYLES.get(cell.split(" ", 1)[0]) if index == column else None


def _status_cell(view: Any) -> str:
    status = text(field(view, "status"))
    return f"{status} (dry run)" if field(view, "dryRun") is True and status != "Planned" else status


def _clusters_cell(view: Any) -> str:
    label = cluster_label(field(view, "clusterResourceId"))
    others = [c for c in items(field(view, "clusters"))
              if text(field(c, "clusterResourceId")).lower() != text(field(view, "clusterResourceId")).lower()]
    return f"{label} +{len(others)}" if others else label


def orphans_text(found: Sequence[Any]) -> str:
    """Each orphaned application: its reasons, its passwords' end dates, the command to delete it."""
    if not found:
        return "No orphaned applications: every application the remediator owns or minted for is in use.\n"
    lines = []
    for orphan in found:
        lines.append(f"{text(field(orphan, 'displayName'))} ({text(field(orphan, 'appId'))}): "
                     f"{', '.join(text(r) for r in items(field(orphan, 'reasons')))}")
        for password in items(field(orphan, "passwords")):
            state = "expired" if field(password, "expired") else "ends"
            lines.append(f"    password {text(field(password, 'keyId'))} {state} "
                         f"{text(field(password, 'endDateTime'))}")
        lines.append(f"    delete: {text(field(orphan, 'deleteCommand'))}")
    return "\n".join(lines) + "\n"


def dry_run_text(result: Any, *, joined: bool, waited: float, width: int, color: bool = False) -> str:
    """A dry run as it ended: the decision, then the plan, or the timeline of a failure, or how to see it later."""
    code, message = text(field(result, "decision", "code")), text(field(result, "decision", "message"))
    remediation_id, status = text(field(result, "id")), text(field(result, "status"))
    lines = [f"Decision {code}: {message}\n" if code else "",
             f"Remediation {remediation_id}{' (joined, already running)' if joined else ''} of "
             f"{cluster_label(field(result, 'clusterResourceId'))}\n"]
    if status not in ("Succeeded", "Failed", "Planned"):
        lines.append(f"Still {status or 'unknown'} after {waited:g} s: `python -m remediation show {remediation_id}` "
                     "shows it once it is planned.\n")
        return "".join(lines)
    lines.append(f"{status}: {text(field(result, 'reason'))}\n\n")
    if status == "Failed":
        lines.append(timeline(result, width=width, color=color))
    else:
        lines.append(plan_text(items(field(result, "plan")), width=width) + "\n")
    return "".join(lines)


# -------------------------------------------------------------------------------------------- timeline


def timeline(view: Any, *, width: int, color: bool = False) -> str:
    """One remediation: a header of who, what and why; its steps in order; the fan-out over the clusters
    sharing the application and the passwords retired; then its error or its plan. Never a secret: the
    view holds none, and this shows only the view."""
    kind = " (dry run)" if field(view, "dryRun") is True else ""
    sections = [f"Remediation {text(field(view, 'id'))}{kind}", _header(view, width)]
    steps = [[when(field(s, "at")), text(field(s, "name")), text(field(s, "code")), text(field(s, "detail"))]
             for s in items(field(view, "steps"))]
    sections.append("Steps\n" + (table(("TIME (UTC)", "STEP", "CODE", "DETAIL"), steps, width=width, indent="  ",
                                       wrap=True, color=color) if steps else "  (none yet)"))
    clusters = [[cluster_label(field(c, "clusterResourceId")), text(field(c, "status")), text(field(c, "code")),
                 text(field(c, "resetAttempts")), when(field(c, "updatedAt")), text(field(c, "detail"))]
                for c in items(field(view, "clusters"))]
    if clusters:
        sections.append("Clusters using this application\n" + table(
            ("CLUSTER", "STATUS", "CODE", "RESETS", "UPDATED (UTC)", "DETAIL"), clusters, width=width, indent="  ",
            wrap=True, color=color, style=_styled(1)))
    retired = [[text(field(p, "keyId")), text(field(p, "hint")), when(field(p, "endDateTime")),
                when(field(p, "removedAt"))] for p in items(field(view, "retiredPasswords"))]
    if retired:
        sections.append("Retired passwords\n" + table(("KEY ID", "HINT", "ENDS (UTC)", "REMOVED (UTC)"), retired,
                                                      width=width, indent="  ", color=color))
    error = field(view, "error")
    if error:
        if isinstance(error, dict):
            code, message = text(error.get("code")), text(error.get("message"))
        else:
            code, message = "", text(error)
        sections.append("Error\n" + _wrapped(": ".join(p for p in (code, message) if p), width, "  "))
    plan = items(field(view, "plan"))
    if plan or "plan" in (view if isinstance(view, dict) else {}):
        sections.append(plan_text(plan, width=width))
    return "\n\n".join(s for s in sections if s) + "\n"


def plan_text(plan: Sequence[Any], *, width: int) -> str:
    if not plan:
        return "Plan (nothing was written)\n  (not recorded yet)"
    return "Plan (nothing was written)\n" + "\n".join(
        _wrapped(text(line), width, f"  {number}. ", "     ") for number, line in enumerate(plan, start=1))


def _header(view: Any, width: int) -> str:
    requested = field(view, "requestedBy")
    requester = ", ".join(f"{label} {text(field(requested, key))}" for key, label in
                          (("objectId", "object"), ("appId", "app")) if field(requested, key)) \
        if isinstance(requested, dict) else text(requested)
    principal = field(view, "servicePrincipal")
    vault = field(view, "keyVault")
    status, reason = text(field(view, "status")), text(field(view, "reason"))
    rows = [
        ("cluster", cluster_label(field(view, "clusterResourceId"))),
        ("resource id", text(field(view, "clusterResourceId"))),
        ("status", f"{status}: {reason}" if status and reason else status or reason),
        ("mode", text(field(view, "mode"))),
        ("source", text(field(view, "source"))),
        ("cause", text(field(view, "cause"))),
        ("requested by", requester),
        ("correlation id", text(field(view, "correlationId"))),
        ("application", _pairs((("appId", field(principal, "clientId")),
                                ("object", field(principal, "applicationObjectId"))))),
        ("new password", _pairs((("keyId", field(principal, "newKeyId")),))),
        ("key vault", _pairs((("secret", field(vault, "secretName")), ("version", field(vault, "version"))))),
        ("reset attempts", text(field(view, "resetAttempts")) if field(view, "resetAttempts") else ""),
        ("created", when(field(view, "createdAt"))),
        ("updated", when(field(view, "updatedAt"))),
        ("finished", when(field(view, "finishedAt"))),
    ]
    shown = [(label, value) for label, value in rows if value]
    size = max(len(label) for label, _ in rows)  # the same layout whichever rows are shown
    return "\n".join(_wrapped(value, width, f"  {label.ljust(size)}  ", " " * (size + 4)) for label, value in shown)


def _pairs(pairs: Sequence[tuple[str, Any]]) -> str:
    return ", ".join(f"{label} {text(value)}" for label, value in pairs if text(value))


def _wrapped(value: str, width: int, first: str, rest: str | None = None) -> str:
    return textwrap.fill(value, max(width, len(first) + 20), initial_indent=first,
                         subsequent_indent=rest if rest is not None else first, break_on_hyphens=False,
                         break_long_words=False) or first  # an id stays whole, to copy

"""The fleet's credential health as one self-contained HTML page (`python -m remediation health --html PATH`).

A pure function of the health report the API returns (`GET /api/health`: `value`, `counts`, `generatedAt`...):
- an expiry timeline: the clusters whose secret ends in each week of the next `HORIZON_DAYS` days, stacked by
  health state, with a column for the secrets that have already ended;
- the count of clusters in each state;
- every cluster, the most urgent first, with its permanent fix (the API's
  `az aks update ... --enable-managed-identity`);
- when the report was taken.

The page fetches nothing: styles are inline, the chart is SVG drawn here (it needs no script, and there is none), and
a Content-Security-Policy of `default-src 'none'` keeps the browser from loading anything even if a value tried to.
Only named fields of the report are shown, each escaped: the report holds no secret, and nothing else reaches the
page. Like the tables (remediation/cli/render.py), a field that is missing or of another type renders as empty.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from remediation.cli.render import cluster_label, field, items, text, when

HORIZON_DAYS = 180
WEEKS = math.ceil(HORIZON_DAYS / 7)  # 26: the last week is cut at the horizon
ENDED = "ended"  # the timeline's first column: secrets that have already ended
# Most urgent first, as the terminal table (render.health_table) orders them.
STATES = ("expired", "applicationMissing", "unknown", "expiring", "healthy", "managedIdentity")
LABELS = {"expired": "expired", "applicationMissing": "application missing", "unknown": "unknown",
          "expiring": "expiring", "healthy": "healthy", "managedIdentity": "managed identity"}
COLOURS = {"expired": "#c62828", "applicationMissing": "#6a1b9a", "unknown": "#757575", "expiring": "#ef6c00",
           "healthy": "#2e7d32", "managedIdentity": "#1565c0"}
OTHER_COLOUR = "#9e9e9e"
_FIX = re.compile(r"az aks update [^()]*?--enable-managed-identity")

# The chart's geometry, in SVG user units (the SVG scales to the page's width).
_WIDTH, _HEIGHT = 960, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 30, 48
_GAP = 0.6  # slots between the ENDED column and the weeks


@dataclass(frozen=True)
class Timeline:
    """Clusters per (column, state): column `ENDED` or a week number from 0 (the report's first 7 days)."""

    start: datetime | None  # when the report was taken: week 0 starts then
    cells: dict[tuple[str, str], int]
    later: int  # secrets ending after the horizon
    undated: int  # service-principal clusters without an end date (application missing, unknown)

    @property
    def columns(self) -> list[str]:
        return [ENDED, *(str(week) for week in range(WEEKS))]

    def total(self, column: str) -> int:
        return sum(n for (c, _), n in self.cells.items() if c == column)


def health_html(report: Any) -> str:
    """The whole page, as text (module docstring)."""
    views = sorted(items(field(report, "value")), key=_urgency)
    taken = _time(field(report, "generatedAt")) or _time(field(report, "at"))
    timeline = expiry_timeline(views, taken)
    taken_text = f"{taken.strftime('%Y-%m-%d %H:%M:%S')} UTC" if taken else "unknown"
    age = field(report, "ageSeconds")
    age_text = f" (the API's scan was {text(age)} s old when read)" if isinstance(age, int) and age > 0 else ""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Fleet credential health, {escape(taken_text)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        "<header>",
        "<h1>Fleet credential health</h1>",
        f'<p class="taken">Taken <time id="taken" datetime="{escape(taken.isoformat() if taken else "")}">'
        f"{escape(taken_text)}</time>{escape(age_text)}. Expiring means a secret the cluster may hold ends within "
        f"{escape(text(field(report, 'expiringWithinDays')) or '?')} days.</p>",
        "</header>",
        _counts_section(report, views),
        _timeline_section(timeline, field(report, "expiringWithinDays")),
        _table_section(views),
        "</body>",
        "</html>",
        "",
    ])


def expiry_timeline(views: Sequence[Any], start: datetime | None) -> Timeline:
    """Each cluster whose credential has an end date, in the week it ends (or `ENDED`), by its health state. A
    cluster's end is `endsAt` measured from `start` (when the report was taken); `daysLeft` when either is missing."""
    cells: Counter[tuple[str, str]] = Counter()
    later = undated = 0
    for view in views:
        health = text(field(view, "health"))
        if health == "managedIdentity":
            continue
        days = _days_left(view, start)
        if days is None:
            undated += 1
        elif days < 0:
            cells[(ENDED, health)] += 1
        elif days < HORIZON_DAYS:
            cells[(str(int(days // 7)), health)] += 1
        else:
            later += 1
    return Timeline(start, dict(cells), later, undated)


# ----------------------------------------------------------------------------------------------- sections


def _counts_section(report: Any, views: Sequence[Any]) -> str:
    counts = field(report, "counts")
    counts = counts if isinstance(counts, dict) else Counter(text(field(v, "health")) for v in views)
    shown = [s for s in STATES if s in counts] + sorted(str(s) for s in counts if s not in STATES)
    cards = "".join(
        f'<li class="count" data-state="{escape(state)}"><span class="swatch" style="background:{_colour(state)}">'
        f'</span><b data-count-of="{escape(state)}">{escape(text(counts.get(state)))}</b> '
        f"{escape(LABELS.get(state, state))}</li>" for state in shown)
    nearest = field(report, "daysToNearestExpiry")
    facts = [f'<span id="clusters">{len(views)}</span> cluster(s) using '
             f'<span id="applications">{escape(text(field(report, "applications")))}</span> application(s).']
    if isinstance(nearest, (int, float)) and not isinstance(nearest, bool):
        facts.append(f'The nearest end of a working secret is in <span id="nearest">{escape(text(nearest))}</span>'
                     " days.")
    return (f'<section id="counts"><h2>Clusters by health</h2><ul class="counts">{cards}</ul>'
            f'<p>{" ".join(facts)}</p></section>')


def _timeline_section(timeline: Timeline, within: Any) -> str:
    notes = []
    if timeline.later:
        notes.append(f'<span id="later">{timeline.later}</span> end after {HORIZON_DAYS} days')
    if timeline.undated:
        notes.append(f'<span id="undated">{timeline.undated}</span> have no end date to show (application missing,'
                     " or not read)")
    note = f"<p>Not in the chart: {'; '.join(notes)}.</p>" if notes else ""
    return (f'<section id="timeline"><h2>When secrets end: clusters per week, next {HORIZON_DAYS} days</h2>'
            f"{_chart(timeline, within)}{_legend(timeline)}{note}</section>")


def _chart(timeline: Timeline, within: Any) -> str:
    columns = timeline.columns
    highest = max((timeline.total(c) for c in columns), default=0)
    top = _nice_top(highest)
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    slot = plot_w / (len(columns) + _GAP)
    bar = slot * 0.72
    baseline = _TOP + plot_h
    parts = [f'<svg id="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" data-scale-top="{top}" '
             f'aria-label="Clusters whose secret ends, per week, by health state">']
    for tick in _ticks(top):  # horizontal grid and the count axis
        y = baseline - plot_h * tick / top
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="axis" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    if isinstance(within, int) and not isinstance(within, bool) and 0 < within < HORIZON_DAYS:
        x = _LEFT + slot * (1 + _GAP + within / 7)  # the warning period's end
        parts.append(f'<line class="warning" x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP - 12}" y2="{baseline}"/>'
                     f'<text class="axis" x="{x + 4:.1f}" y="{_TOP - 14}">expiring: within {within} days</text>')
    divider = _LEFT + slot * (1 + _GAP / 2)
    parts.append(f'<line class="grid" x1="{divider:.1f}" x2="{divider:.1f}" y1="{_TOP}" y2="{baseline}"/>')
    for index, column in enumerate(columns):
        x = _LEFT + slot * (index + (_GAP if index else 0)) + (slot - bar) / 2
        label = _column_label(column, timeline.start)
        y = baseline
        for state in _stack_order(timeline, column):
            count = timeline.cells[(column, state)]
            height = plot_h * count / top
            y -= height
            parts.append(f'<rect class="segment" data-column="{column}" data-state="{escape(state)}" '
                         f'data-count="{count}" x="{x:.1f}" y="{y:.2f}" width="{bar:.1f}" height="{height:.2f}" '
                         f'fill="{_colour(state)}"><title>{escape(label)}: {count} '
                         f"{escape(LABELS.get(state, state))}</title></rect>")
        total = timeline.total(column)
        if total:
            parts.append(f'<text class="total" data-column="{column}" x="{x + bar / 2:.1f}" y="{y - 4:.1f}" '
                         f'text-anchor="middle">{total}</text>')
        if column == ENDED or int(column) % 2 == 0:
            parts.append(f'<text class="axis label" data-column="{column}" x="{x + bar / 2:.1f}" '
                         f'y="{baseline + 16}" text-anchor="middle">{escape(_short_label(column, timeline.start))}'
                         "</text>")
    parts.append(f'<line class="baseline" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{baseline}" y2="{baseline}"/>')
    parts.append(f'<text class="axis" x="{_LEFT + plot_w / 2:.1f}" y="{_HEIGHT - 6}" text-anchor="middle">'
                 "week starting (UTC); the first column: already ended</text>")
    parts.append("</svg>")
    return "".join(parts)


def _legend(timeline: Timeline) -> str:
    present = {state for (_, state) in timeline.cells}
    shown = [s for s in STATES if s in present] + sorted(present - set(STATES))
    return '<ul class="legend">' + "".join(
        f'<li data-state="{escape(s)}"><span class="swatch" style="background:{_colour(s)}"></span>'
        f"{escape(LABELS.get(s, s))}</li>" for s in shown) + "</ul>"


def _table_section(views: Sequence[Any]) -> str:
    if not views:
        return '<section id="clusters-table"><h2>Clusters</h2><p>No clusters in scope.</p></section>'
    rows = []
    for view in views:
        health = text(field(view, "health"))
        days = field(view, "daysLeft")
        fix = _fix(view)
        action = text(field(view, "action", "code"))
        rows.append(
            f'<tr data-state="{escape(health)}">'
            f'<td class="cluster" title="{escape(text(field(view, "clusterResourceId")))}">'
            f"{escape(cluster_label(field(view, 'clusterResourceId')))}{_app_line(view)}</td>"
            f'<td><span class="badge" style="background:{_colour(health)}">{escape(LABELS.get(health, health))}'
            "</span></td>"
            f'<td class="num">{"" if days is None else escape(text(days))}</td>'
            f"<td class=\"when\">{escape(when(field(view, 'endsAt')))}</td>"
            f"<td>{escape(text(field(view, 'message')))}"
            f"{f'<div class=sub>the check acted: {escape(action)}</div>' if action else ''}</td>"
            f'<td class="fix">{f"<code>{escape(fix)}</code>" if fix else "none needed"}</td></tr>')
    return ('<section id="clusters-table"><h2>Clusters, most urgent first</h2><table><thead><tr>'
            "<th>Cluster (application)</th><th>Health</th><th>Days left</th><th>Ends (UTC)</th>"
            "<th>Why</th><th>Permanent fix</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
            "<p class=\"note\">The permanent fix moves a cluster to a managed identity, which has no secret to expire;"
            " it re-images the nodes, and role assignments naming the old principal must be granted to the new"
            " identity. The remediator never applies it.</p></section>")


# ----------------------------------------------------------------------------------------------- helpers


def _urgency(view: Any) -> tuple[int, float, str]:
    health = text(field(view, "health"))
    days = field(view, "daysLeft")
    return (STATES.index(health) if health in STATES else len(STATES),
            days if isinstance(days, (int, float)) and not isinstance(days, bool) else 0.0,
            text(field(view, "name")))


def _time(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _days_left(view: Any, start: datetime | None) -> float | None:
    ends = _time(field(view, "endsAt"))
    if ends is not None and start is not None:
        return (ends - start).total_seconds() / 86400
    days = field(view, "daysLeft")
    return float(days) if isinstance(days, (int, float)) and not isinstance(days, bool) else None


def _fix(view: Any) -> str:
    """The API's migration command out of its recommendation; built from the view's own fields if the wording
    changes; empty for a cluster that needs none (a managed identity)."""
    recommendation = text(field(view, "recommendation"))
    if not recommendation:
        return ""
    found = _FIX.search(recommendation)
    if found:
        return found.group(0)
    group, name, subscription = (text(field(view, k)) for k in ("resourceGroup", "name", "subscriptionId"))
    return f"az aks update -g {group} -n {name} --subscription {subscription} --enable-managed-identity"


def _app_line(view: Any) -> str:
    app_id = text(field(view, "appId"))
    return f'<div class="sub id">application {escape(app_id)}</div>' if app_id else ""


def _stack_order(timeline: Timeline, column: str) -> list[str]:
    """States of one column, bottom up: the most urgent at the bottom."""
    present = {state for (c, state) in timeline.cells if c == column}
    return [s for s in STATES if s in present] + sorted(present - set(STATES))


def _colour(state: str) -> str:
    return COLOURS.get(state, OTHER_COLOUR)


def _column_label(column: str, start: datetime | None) -> str:
    if column == ENDED:
        return "already ended"
    week = int(column)
    if start is None:
        return f"days {week * 7}-{min(week * 7 + 7, HORIZON_DAYS)}"
    return f"week of {(start + timedelta(days=7 * week)).strftime('%Y-%m-%d')}"


def _short_label(column: str, start: datetime | None) -> str:
    if column == ENDED:
        return "ended"
    week = int(column)
    return (start + timedelta(days=7 * week)).strftime("%b %d") if start else f"+{week * 7}d"


def _nice_top(highest: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50... at least `highest`: the count axis's top."""
    top = 1
    while top < highest:
        top = _next_nice(top)
    return top


def _next_nice(value: int) -> int:
    magnitude = 10 ** (len(str(value)) - 1)
    lead = value // magnitude
    return {1: 2, 2: 5, 5: 10}.get(lead, 10) * magnitude


def _ticks(top: int) -> list[int]:
    """0 and four or five evenly spaced whole counts up to `top`."""
    step = max(top // 5 if top % 5 == 0 and top >= 5 else top // 2 if top % 2 == 0 else 1, 1)
    return list(range(0, top + 1, step))


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;color:#1f2328;
background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.taken{color:#57606a;margin:0}
ul.counts,ul.legend{list-style:none;padding:0;margin:0;display:flex;flex-wrap:wrap;gap:8px 18px}
li.count{border:1px solid #d0d7de;border-radius:6px;padding:6px 12px}li.count b{font-size:18px}
.swatch{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px}
svg#chart{width:100%;max-width:960px;height:auto;display:block}
.grid{stroke:#eaeef2}.baseline{stroke:#8c959f}.warning{stroke:#ef6c00;stroke-dasharray:4 3}
.axis{font-size:11px;fill:#57606a}.total{font-size:11px;fill:#1f2328;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #eaeef2;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.cluster,td.num,td.when{white-space:nowrap}
.id,td.fix code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12px}
td.fix{min-width:24em}td.fix code{white-space:normal;word-break:break-word}
.sub{color:#57606a;font-size:11px}
.badge{color:#fff;border-radius:10px;padding:1px 8px;white-space:nowrap;font-size:12px}
.note{color:#57606a}
"""

"""The fleet health report as a page (remediation/cli/report.py, `python -m remediation health --html PATH`), seen in
a real browser: Debian's Chromium, headless, driven by playwright-core (tests/support/browser.mjs).

The fleet is the sandbox's (sandbox/fleets.py), read by the remediator's own health scan through its real adapters
(Resource Graph, Graph `$batch`) over HTTPS; the page is made from the report the API returns (`view()`). What each
week of the chart should hold is worked out here from the fleet's own password end dates, not from the code under
test. The browser's screenshot is kept in .sandbox/artifacts/health-report.png (git-ignored).
"""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import math
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from remediation.cli.commands import health_command
from remediation.cli.report import ENDED, HORIZON_DAYS, STATES, expiry_timeline, health_html
from remediation.decide.guardrails import Guardrails

ROOT = Path(__file__).resolve().parents[1]
BROWSER_SCRIPT = ROOT / "tests" / "support" / "browser.mjs"
ARTIFACTS = ROOT / ".sandbox" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
WARNING_DAYS = Guardrails().rotation.within.days  # REMEDIATOR_EXPIRY_WARNING_DAYS' default: what the scan uses
# One password per application; mid-week values, so seconds between the sandbox's start and the scan move none of
# them across a week. Two have ended, six end within the warning period (one in the same week as a healthy one),
# three end after the 180 days the chart shows.
END_IN_DAYS = (-12.5, -3.5, 2.5, 5.5, 9.5, 13.5, 26.5, 29.5, 33.5, 40.5, 47.5, 54.5, 61.5, 75.5, 89.5, 103.5, 117.5,
               131.5, 145.5, 159.5, 173.5, 190.0, 250.0, 365.0)
MANAGED = 4


def _fleet() -> dict[str, Any]:
    from sandbox.fleets import fleet

    document = fleet(clusters=60, subscriptions=2, applications=len(END_IN_DAYS), expired=0.0,
                     managed_identity=MANAGED, opted_out_clusters=0, opted_out_groups=0, seed=20)
    for app, days in zip(document["applications"], END_IN_DAYS, strict=True):
        app["passwords"][0]["endInDays"] = days
    return document


def _expected(document: dict[str, Any]) -> tuple[Counter[tuple[str, str]], int, Counter[str]]:
    """From the fleet alone: clusters per (chart column, health), those ending after the horizon, counts by health."""
    ends = {a["displayName"]: a["passwords"][0]["endInDays"] for a in document["applications"]}
    cells: Counter[tuple[str, str]] = Counter()
    later = 0
    health: Counter[str] = Counter()
    for cluster in document["clusters"]:
        if cluster.get("managedIdentity"):
            health["managedIdentity"] += 1
            continue
        days = ends[cluster["application"]]
        state = "expired" if days < 0 else "expiring" if days < WARNING_DAYS else "healthy"
        health[state] += 1
        if days >= HORIZON_DAYS:
            later += 1
        else:
            cells[(ENDED if days < 0 else str(math.floor(days / 7)), state)] += 1
    return cells, later, health


def _browse(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node, "node is not on PATH"
    assert Path(CHROMIUM).exists(), (f"{CHROMIUM} is missing: `make setup` installs Debian's chromium (as root), or "
                                     "set CHROMIUM to a Chromium binary")
    assert (ROOT / "node_modules" / "playwright-core").is_dir(), "playwright-core is missing: `npm ci` (make setup)"
    run = subprocess.run([node, str(BROWSER_SCRIPT), json.dumps({"pages": pages})], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "CHROMIUM": CHROMIUM},
                         check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])["pages"]


def _look(folder: Path) -> dict[str, Any]:
    """The sandbox fleet's report, as the API returns it and as Chromium shows it, and a page that does fetch
    something (to show the request check sees one). Whether any of the fleet's secrets shows is checked here, so
    that only the finding is kept, never a secret."""
    from azure.identity import ClientSecretCredential

    from remediation.adapters.graph import GraphDirectory
    from remediation.adapters.resourcegraph import ResourceGraphClusters
    from remediation.intake.health import FleetHealth
    from sandbox import Sandbox

    document = _fleet()
    with Sandbox(fleet=document) as sandbox:
        credential = ClientSecretCredential(sandbox.tenant_id, sandbox.remediator.client_id,
                                            sandbox.remediator.client_secret, authority=sandbox.endpoints["login"],
                                            disable_instance_discovery=True, connection_verify=sandbox.ca_path)
        health = FleetHealth(
            inventory=ResourceGraphClusters(credential, endpoint=sandbox.endpoints["arm"],
                                            connection_verify=sandbox.ca_path),
            directory=GraphDirectory(credential, endpoint=sandbox.endpoints["graph"], ca_bundle=sandbox.ca_path),
            reconciler=None, admission=None, checks=None, guardrails=Guardrails(),
            subscriptions=list(sandbox.subscription_ids))
        report = health.recent_report().view()  # what GET /api/health answers
        secrets = [p._text for app in sandbox.state.applications.values() for p in app.passwords]
        secrets += [sandbox.remediator.client_secret, sandbox.operator.client_secret]
    page = folder / "report.html"
    page.write_text(health_html(report), encoding="utf-8")
    fetching = folder / "fetching.html"  # no policy, an image on a port nothing listens on
    fetching.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/pixel.png"></body></html>',
                        encoding="utf-8")
    blocked = folder / "blocked.html"  # the report with the same image slipped in: its policy refuses it
    blocked.write_text(health_html(report).replace("<body>", '<body><img src="http://127.0.0.1:9/pixel.png">'),
                       encoding="utf-8")
    screenshot = folder / "health-report.png"
    shown, fetched, refused = _browse([{"path": str(page), "screenshot": str(screenshot)}, {"path": str(fetching)},
                                       {"path": str(blocked)}])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot, ARTIFACTS / "health-report.png")
    held = [secret for secret in secrets if secret]
    shown_text = (page.read_text(encoding="utf-8"), shown["html"], shown["text"])
    leaks = [n for n, secret in enumerate(held) if any(secret in where for where in shown_text)]
    return {"document": document, "report": report, "page": str(page), "shown": shown, "fetched": fetched,
            "refused": {"requests": refused["requests"], "failed": refused["failed"], "console": refused["console"]},
            "secretsChecked": len(held), "leaks": leaks, "screenshot": str(screenshot)}


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> dict[str, Any]:
    """`_look`, once per test run: under pytest-xdist the first worker to get here looks, the others read what it
    saw (one sandbox and one Chromium instead of one per worker)."""
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent
    found = shared / "health-report-seen.json"
    with (shared / "health-report.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not found.exists():
            folder = shared / "health-report"
            folder.mkdir(exist_ok=True)
            found.write_text(json.dumps(_look(folder)), encoding="utf-8")
    return json.loads(found.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- in the browser


def test_the_chart_stacks_each_weeks_ending_secrets_by_health_as_the_fleet_says(seen: dict[str, Any]) -> None:
    cells, _, _ = _expected(seen["document"])
    drawn = Counter({(s["column"], s["state"]): s["count"] for s in seen["shown"]["segments"]})
    assert drawn == cells
    # Worked by hand from END_IN_DAYS: applications 0-7 serve three clusters each, the rest two.
    assert drawn[(ENDED, "expired")] == 6
    assert drawn[("0", "expiring")] == 6 and drawn[("1", "expiring")] == 6
    assert drawn[("4", "expiring")] == 3 and drawn[("4", "healthy")] == 2  # 29.5 and 33.5 days: one week, stacked
    columns = Counter()
    for (column, _), count in cells.items():
        columns[column] += count
    assert seen["shown"]["totals"] == dict(columns)


def test_each_bar_is_as_tall_as_its_count_and_the_most_urgent_state_sits_at_the_bottom(seen: dict[str, Any]) -> None:
    shown = seen["shown"]
    segments = shown["segments"]
    per_cluster = {round(s["height"] / s["count"], 3) for s in segments}
    assert len(per_cluster) == 1, per_cluster  # one scale for every bar
    assert all(s["renderedHeight"] > 0 for s in segments)
    assert shown["chart"]["width"] > 500 and shown["chart"]["height"] > 150
    tallest = max(sum(s["count"] for s in segments if s["column"] == c) for c in {s["column"] for s in segments})
    assert shown["chart"]["scaleTop"] >= tallest
    stacked = [s for s in segments if s["column"] == "4"]
    expiring, healthy = (next(s for s in stacked if s["state"] == state) for state in ("expiring", "healthy"))
    assert expiring["y"] > healthy["y"]  # SVG's y grows downwards: expiring is drawn below healthy
    assert math.isclose(healthy["y"] + healthy["height"], expiring["y"], abs_tol=0.02)
    assert {s["fill"] for s in segments if s["state"] == "expired"} != {s["fill"] for s in segments
                                                                        if s["state"] == "healthy"}
    assert shown["legend"] == ["expired", "expiring", "healthy"]
    assert "week of" in stacked[0]["tooltip"]


def test_the_counts_and_the_time_taken_are_the_reports(seen: dict[str, Any]) -> None:
    _, later, health = _expected(seen["document"])
    report, shown = seen["report"], seen["shown"]
    assert shown["counts"] == report["counts"]
    assert {k: v for k, v in shown["counts"].items() if v} == dict(health)
    assert health == Counter({"healthy": 32, "expiring": 18, "expired": 6, "managedIdentity": MANAGED})
    assert shown["taken"] == report["generatedAt"]
    assert f"{later} end after {HORIZON_DAYS} days" in shown["text"] and later == 6
    assert f"{len(seen['document']['clusters'])} cluster(s) using {len(END_IN_DAYS)} application(s)" in shown["text"]


def test_the_table_lists_every_cluster_most_urgent_first_with_its_fix(seen: dict[str, Any]) -> None:
    rows = seen["shown"]["rows"]
    assert len(rows) == len(seen["document"]["clusters"])
    order = [STATES.index(r["state"]) for r in rows]
    assert order == sorted(order)
    days = [float(r["cells"][2]) for r in rows if r["state"] == "expiring"]
    assert days == sorted(days) and days[0] == 2.5
    by_name = {c["name"]: c for c in seen["report"]["value"]}
    for row in rows:
        label, *application = row["cells"][0].splitlines()
        group, name = label.split("/")
        assert application == ([] if row["state"] == "managedIdentity" else
                               [f"application {by_name[name]['appId']}"])
        fix = row["cells"][-1]
        if row["state"] == "managedIdentity":
            assert fix == "none needed"
        else:
            assert fix == (f"az aks update -g {group} -n {name} --subscription {by_name[name]['subscriptionId']} "
                           "--enable-managed-identity")


def test_the_page_fetches_nothing_runs_no_script_and_shows_no_secret(seen: dict[str, Any]) -> None:
    shown = seen["shown"]
    assert shown["requests"] == []
    assert shown["errors"] == [] and [m for m in shown["console"] if m["type"] == "error"] == []
    assert shown["scripts"] == 0
    page = Path(seen["page"]).read_text(encoding="utf-8")
    assert "default-src 'none'" in page and "<script" not in page and "http://" not in page
    # Every password the fleet's applications hold, and the identities' client secrets: in none of the file, the
    # page's markup as Chromium holds it, or its visible text.
    assert seen["secretsChecked"] > len(END_IN_DAYS)
    assert seen["leaks"] == []


def test_the_request_check_sees_a_page_that_does_fetch(seen: dict[str, Any]) -> None:
    assert seen["fetched"]["requests"] == ["http://127.0.0.1:9/pixel.png"]


def test_the_pages_policy_refuses_a_fetch_that_slipped_in(seen: dict[str, Any]) -> None:
    # Chromium reports the attempt, and refuses it before it leaves the browser.
    refused = seen["refused"]
    assert refused["requests"] == ["http://127.0.0.1:9/pixel.png"]
    assert refused["failed"] == {"http://127.0.0.1:9/pixel.png": "csp"}
    assert any("Content Security Policy" in m["text"] and "127.0.0.1:9" in m["text"] for m in refused["console"])
    assert seen["fetched"]["failed"] != {"http://127.0.0.1:9/pixel.png": "csp"}  # without the policy it went out


def test_the_screenshot_is_kept_as_an_artifact(seen: dict[str, Any]) -> None:
    shot = Path(seen["screenshot"]).read_bytes()
    assert (ARTIFACTS / "health-report.png").read_bytes() == shot
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000


# ---------------------------------------------------------------- the page's content, without a browser


def test_weeks_begin_when_the_report_was_taken_and_the_horizon_is_180_days() -> None:
    taken = "2026-12-07T06:00:00+00:00"
    views = [{"health": h, "endsAt": e} for h, e in (
        ("expired", "2026-12-07T05:59:59+00:00"), ("expiring", "2026-12-07T06:00:00+00:00"),
        ("expiring", "2026-12-14T05:59:59+00:00"), ("expiring", "2026-12-14T06:00:00+00:00"),
        ("healthy", "2027-06-05T05:59:59+00:00"), ("healthy", "2027-06-05T06:00:00+00:00"))]
    views += [{"health": "applicationMissing"}, {"health": "unknown"}, {"health": "managedIdentity"},
              {"health": "healthy", "daysLeft": 20.0}]  # no end date: daysLeft stands in
    from remediation.cli.report import _time

    timeline = expiry_timeline(views, _time(taken))
    assert timeline.cells == {(ENDED, "expired"): 1, ("0", "expiring"): 2, ("1", "expiring"): 1,
                              ("25", "healthy"): 1, ("2", "healthy"): 1}
    assert timeline.later == 1 and timeline.undated == 2


def test_text_from_the_api_is_escaped_and_odd_fields_render_empty() -> None:
    report = {"generatedAt": "2026-12-07T06:00:00+00:00", "expiringWithinDays": 30, "applications": "2",
              "counts": {"expired": 1, "unknown": 1}, "value": [
                  {"clusterResourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/"
                                        "managedClusters/aks-<b>", "name": "aks-<b>", "health": "expired",
                   "message": "<script>alert(1)</script>", "daysLeft": "soon", "endsAt": None,
                   "recommendation": "move: az aks update -g rg -n aks-<b> --subscription s --enable-managed-identity"},
                  {"health": "unknown", "message": None, "recommendation": None}, "not an object"]}
    page = health_html(report)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "rg/aks-&lt;b&gt;" in page and "az aks update -g rg -n aks-&lt;b&gt; --subscription s" in page
    assert page.count("<tr data-state=") == 3
    assert "Taken <time id=\"taken\" datetime=\"2026-12-07T06:00:00+00:00\">2026-12-07 06:00:00 UTC" in page


def test_an_empty_fleet_says_so_and_draws_an_empty_chart() -> None:
    page = health_html({"generatedAt": "2026-12-07T06:00:00Z", "counts": {}, "value": []})
    assert "No clusters in scope." in page and 'class="segment"' not in page and '<svg id="chart"' in page


def test_the_health_command_takes_an_html_path() -> None:
    from remediation.__main__ import build_parser

    args = build_parser().parse_args(["health", "--html", "report.html", "--only", "expired"])
    assert args.html == "report.html" and args.only == "expired"


def test_the_html_option_writes_the_page_and_says_where(tmp_path: Path) -> None:
    class Api:  # the one call `health` makes
        def get(self, path: str, params: dict[str, str] | None = None) -> Any:
            assert path == "health" and params is None
            return argparse.Namespace(body={"generatedAt": "2026-12-07T06:00:00+00:00", "counts": {"healthy": 1},
                                            "value": [{"health": "healthy", "name": "aks-a", "daysLeft": 40.0}]})

    out = io.StringIO()
    target = tmp_path / "report.html"
    status = health_command(argparse.Namespace(only=None, json=False, html=str(target)), Api(), out)
    assert status == 0
    assert out.getvalue() == f"Wrote {target}: 1 cluster(s), the report taken 2026-12-07 06:00:00 UTC.\n"
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")

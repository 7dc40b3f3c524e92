"""The Azure Monitor workbook (infra/modules/workbook.bicep, the workbook itself in infra/modules/workbook.json): its
shape as the workbook service reads it, and that every table, metric and attribute its queries name is one the
deployment creates and the app writes.

What it may query is derived, not listed by hand: the tables from how infra/modules/monitoring.bicep makes
Application Insights (workspace-based: the workspace's App* tables); the metrics and their attributes by recording
through remediation/telemetry.py into memory; the refused decisions from the line remediation/run/admission.py logs
and the codes remediation/decide returns.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from remediation import telemetry
from remediation.decide import guardrails, reconcile
from remediation.model import Status
from remediation.record import NewSecret, Remediation, Target, TargetStatus
from remediation.run import admission
from tests.support import bicep
from tests.support.bicep import INFRA, ROOT
from tests.support.otel import install_for_tests

MODULE = INFRA / "modules" / "workbook.bicep"
WORKSPACE_ID = ("/subscriptions/6f1c2d3e-0000-4000-8000-000000000001/resourceGroups/rg-remediator/providers/"
                "Microsoft.OperationalInsights/workspaces/log-abc123")
WORKSPACE_TYPE = "microsoft.operationalinsights/workspaces"
# Where a workspace-based Application Insights resource writes each kind of telemetry (Microsoft Learn, "Migrate to
# workspace-based Application Insights resources", table structure: customMetrics -> AppMetrics, traces ->
# AppTraces, ...), and the columns of the two the remediator fills (Azure Monitor Logs table reference, AppMetrics
# and AppTraces).
WORKSPACE_TABLES = {"customMetrics": "AppMetrics", "traces": "AppTraces", "requests": "AppRequests",
                    "dependencies": "AppDependencies", "exceptions": "AppExceptions", "customEvents": "AppEvents",
                    "pageViews": "AppPageViews", "availabilityResults": "AppAvailabilityResults",
                    "performanceCounters": "AppPerformanceCounters", "browserTimings": "AppBrowserTimings"}
COLUMNS = {"AppMetrics": {"TimeGenerated", "Name", "Sum", "ItemCount", "Min", "Max", "Properties", "AppRoleInstance"},
           "AppTraces": {"TimeGenerated", "Message", "SeverityLevel", "Properties", "OperationName"}}
ITEM_TYPES = {1: "text", 3: "query", 9: "parameters"}
VISUALIZATIONS = {"table", "timechart", "linechart", "areachart", "barchart", "piechart", "tiles"}
_METRIC = re.compile(r'\bName == "([^"]+)"')
_ATTRIBUTE = re.compile(r'\bProperties\["([^"]+)"\]')
_CODES = re.compile(r"\| where code in \(([^)]*)\)")


def _deployed() -> tuple[dict[str, Any], str]:
    """The workbook resource's properties as ARM receives them, and its serializedData parsed."""
    root = bicep.parse(MODULE)
    (_, body), = list(bicep.resources(root, "Microsoft.Insights/workbooks@"))
    props = bicep.properties(bicep.properties(body)["properties"])
    scope = {"workspaceId": WORKSPACE_ID, "resourceToken": "abc123",
             "loadTextContent()": lambda path: (MODULE.parent / path).read_text(encoding="utf-8"),
             "replace()": lambda text, old, new: text.replace(old, new)}
    for name, declaration in bicep.declarations(root, "parameter").items():  # the defaults of the rest
        if name not in scope and "=" in declaration.text.decode():
            scope[name] = bicep.evaluate(declaration.named_children[-1], scope, {})
    values = {name: bicep.evaluate(node, scope, bicep.variables(root)) for name, node in props.items()}
    return values, values["serializedData"]


def _queries(workbook: dict[str, Any]) -> list[dict[str, Any]]:
    return [item["content"] for item in workbook["items"] if item["type"] == 3]


@pytest.fixture(scope="module")
def workbook() -> dict[str, Any]:
    return json.loads(_deployed()[1])


@pytest.fixture(scope="module")
def recorded() -> dict[str, set[str]]:
    """Each metric the app records, with the attribute names it records it with: every recording function of
    remediation/telemetry.py, called with each outcome it knows, into memory."""
    cluster = ("/subscriptions/6f1c2d3e-0000-4000-8000-000000000001/resourceGroups/rg-payments/providers/"
               "Microsoft.ContainerService/managedClusters/aks-payments")
    created = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)

    def finished(status: Status, error: dict[str, str] | None = None) -> Remediation:
        return Remediation(id="0123456789abcdef0123456789abcdef", cluster_id=cluster, dry_run=False, source="event",
                           status=status, created_at=created.isoformat(), updated_at=created.isoformat(),
                           cause_kind="expired_secret", mode="remediate", client_id="11111111-2222-4333-8444-5555",
                           finished_at=(created + timedelta(minutes=20)).isoformat(), error=error,
                           secret=NewSecret(key_id="9e4c2c8a-0000-4000-8000-00000000abcd", vault_name="aks-sp-x"),
                           targets=[Target(cluster, status=TargetStatus.VERIFIED)])

    with install_for_tests() as otel:
        telemetry.record_remediation_finished(finished(Status.SUCCEEDED), failed_at=created - timedelta(minutes=5))
        telemetry.record_remediation_finished(finished(Status.SUCCEEDED))
        telemetry.record_remediation_finished(finished(Status.FAILED, {"code": "ResetFailed"}))
        telemetry.record_remediation_finished(finished(Status.PLANNED))
        telemetry.record_fleet_health({state: 1 for state in telemetry.HEALTH_STATES}, 12.5)
        for outcome in telemetry.FAILURE_EVENT_OUTCOMES:
            telemetry.record_failure_event(outcome)
        return {name: {key for point in metric.data.data_points for key in point.attributes}
                for name, metric in otel.metrics().items()}


# ---------------------------------------------------------------- its shape


def test_the_workbook_resource_is_a_shared_workbook_listed_under_the_workspace() -> None:
    values, data = _deployed()
    assert values["category"] == "workbook"
    assert values["sourceId"] == WORKSPACE_ID.lower()
    assert "__WORKSPACE_RESOURCE_ID__" not in data
    root = bicep.parse(MODULE)
    (symbol, body), = list(bicep.resources(root, "Microsoft.Insights/workbooks@"))
    assert bicep.literal(bicep.properties(body)["kind"]) == "shared"
    # A workbook's name is a GUID, stable for one environment so a re-deployment updates it in place.
    name = bicep.evaluate(bicep.properties(body)["name"], {"resourceToken": "abc123",
                                                           "resourceGroup()": {"id": "/subscriptions/s/rg"}}, {})
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", name)
    assert symbol == "workbook"


def test_the_workbook_is_a_notebook_of_text_parameters_and_log_queries(workbook: dict[str, Any]) -> None:
    assert workbook["version"] == "Notebook/1.0"
    assert workbook["fallbackResourceIds"] == [WORKSPACE_ID]
    items = workbook["items"]
    assert {item["type"] for item in items} <= set(ITEM_TYPES) and len(items) >= 8
    names = [item["name"] for item in items]
    assert len(names) == len(set(names)), "each step needs its own name"
    (parameters,) = [item["content"] for item in items if item["type"] == 9]
    assert parameters["version"] == "KqlParameterItem/1.0"
    declared = {p["name"]: p for p in parameters["parameters"]}
    assert declared["TimeRange"]["type"] == 4 and declared["TimeRange"]["value"]["durationMs"] > 0
    queries = _queries(workbook)
    assert len(queries) >= 6
    for query in queries:
        assert query["version"] == "KqlItem/1.0"
        assert query["queryType"] == 0, "a log (KQL) query"
        assert query["resourceType"] == WORKSPACE_TYPE and query["crossComponentResources"] == [WORKSPACE_ID]
        assert query["timeContextFromParameter"] in declared
        assert query["visualization"] in VISUALIZATIONS
        assert query["title"]
    assert all(re.findall(r"\{(\w+)(?::\w+)?\}", q["query"]) == [] or
               set(re.findall(r"\{(\w+)(?::\w+)?\}", q["query"])) <= set(declared) for q in queries)


def test_it_shows_fleet_health_remediations_repair_times_and_refused_decisions(workbook: dict[str, Any]) -> None:
    named = {m for q in _queries(workbook) for m in _METRIC.findall(q["query"])}
    assert {"remediator.cluster.count", "remediator.remediations", "remediator.failure_to_repair.duration"} <= named
    outcomes = [q for q in _queries(workbook) if "remediator.remediations" in q["query"]]
    assert any('Properties["outcome"]' in q["query"] for q in outcomes)
    assert [q for q in _queries(workbook) if _CODES.search(q["query"])], "no query reads the refused decisions"


# ---------------------------------------------------------------- what it reads is what is there


def test_every_table_is_one_the_workspace_based_application_insights_fills(workbook: dict[str, Any]) -> None:
    monitoring = bicep.parse(INFRA / "modules" / "monitoring.bicep")
    (_, component), = list(bicep.resources(monitoring, "Microsoft.Insights/components@"))
    props = bicep.properties(bicep.properties(component)["properties"])
    # Workspace-based: the telemetry lands in that workspace's own tables, not in a classic component's.
    assert props["WorkspaceResourceId"].text.decode() == "workspace.id"
    assert bicep.literal(props["IngestionMode"]) == "LogAnalytics"
    outputs = bicep.declarations(monitoring, "output")
    assert outputs["workspaceId"].named_children[-1].text.decode() == "workspace.id"
    main = bicep.parse(INFRA / "main.bicep")
    module = bicep.declarations(main, "module")["workbook"]
    params = bicep.properties(bicep.properties(bicep.body(module))["params"])
    assert params["workspaceId"].text.decode() == "monitoring.outputs.workspaceId"
    assert bicep.literal(module.named_children[1]) == "modules/workbook.bicep"

    tables = {q["query"].split()[0] for q in _queries(workbook)}
    assert tables <= set(WORKSPACE_TABLES.values()), tables
    # The app fills two of them: its OpenTelemetry metrics (AppMetrics) and, through the Functions host, its log
    # lines (AppTraces), which host.json keeps out of adaptive sampling, so a count of lines is a count of events.
    assert tables == {"AppMetrics", "AppTraces"}
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    assert sampling["isEnabled"] is False or "trace" in sampling["excludedTypes"].lower().split(";")


def test_every_column_it_reads_is_one_its_table_has(workbook: dict[str, Any]) -> None:
    for query in _queries(workbook):
        table = query["query"].split()[0]
        used = set(re.findall(r"\b(TimeGenerated|Name|Sum|ItemCount|Min|Max|Properties|Message|SeverityLevel|"
                              r"OperationName|AppRoleInstance)\b", query["query"]))
        assert used <= COLUMNS[table], (query["title"], used - COLUMNS[table])


def test_every_metric_and_attribute_it_names_is_one_the_app_records(workbook: dict[str, Any],
                                                                  recorded: dict[str, set[str]]) -> None:
    assert set(recorded) == {"remediator.remediations", "remediator.failure_to_repair.duration",
                             "remediator.cluster.count", "remediator.credential.time_to_expiry",
                             "remediator.failure_events"}
    for query in _queries(workbook):
        metrics = _METRIC.findall(query["query"])
        attributes = set(_ATTRIBUTE.findall(query["query"]))
        if query["query"].startswith("AppMetrics"):
            assert len(metrics) == 1, query["title"]
            assert metrics[0] in recorded, metrics[0]
            assert attributes <= recorded[metrics[0]], (metrics[0], attributes - recorded[metrics[0]])
        else:
            assert not metrics and not attributes, query["title"]
    # Every metric the app records is charted.
    assert {m for q in _queries(workbook) for m in _METRIC.findall(q["query"])} == set(recorded)


def _admission_line() -> str:
    """The format of the line Admission.admit logs for every decision it records."""
    tree = ast.parse(inspect.getsource(admission.Admission.admit).strip().replace("\n    ", "\n"))
    formats = [call.args[0].value for call in ast.walk(tree) if isinstance(call, ast.Call)
               and isinstance(call.func, ast.Attribute) and call.func.attr == "info"
               and call.args and isinstance(call.args[0], ast.Constant)]
    (line,) = formats
    return line


def _parse_pattern(query: str) -> re.Pattern[str]:
    """KQL's `parse Message with a " x " b ...` as a regex: each column matches lazily up to the next literal; the
    last takes the rest."""
    (pattern,) = re.findall(r"\| parse Message with (.+)", query)
    pieces = re.findall(r'"([^"]*)"|(\w+)(?::\w+)?', pattern)
    regex = ""
    for index, (literal, column) in enumerate(pieces):
        if column:
            regex += f"(?P<{column}>.*)" if index == len(pieces) - 1 else f"(?P<{column}>.*?)"
        else:
            regex += re.escape(literal)
    return re.compile(regex + "$")


def _none_codes(source: str) -> set[str]:
    """The reason codes of Act.NONE verdicts in some source, and of (code, message) refusals."""
    tree = ast.parse(source)
    codes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Verdict" and len(node.args) >= 2 \
                and ast.unparse(node.args[0]) == "Act.NONE" and isinstance(node.args[1], ast.Constant):
            codes.add(node.args[1].value)
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and node.value.elts \
                and isinstance(node.value.elts[0], ast.Constant) and isinstance(node.value.elts[0].value, str):
            codes.add(node.value.elts[0].value)
    return codes


def test_refused_decisions_are_read_from_the_line_the_admission_logs(workbook: dict[str, Any]) -> None:
    line = _admission_line()
    assert line == "%s hint for %s: %s (%s)%s"
    for query in [q["query"] for q in _queries(workbook) if _CODES.search(q["query"])]:
        assert query.startswith("AppTraces")
        logged = line % ("rotation", "aks-payments", "OutsideMaintenanceWindow",
                         "outside the cluster's window (default: Sat 01:00-05:00); next opens 2026-12-12T01:00:00",
                         ", remediation 0123")
        assert f'contains "{line.split("%s")[1]}"' in query
        parsed = _parse_pattern(query).match(logged)
        assert parsed and parsed["source"] == "rotation" and parsed["cluster_name"] == "aks-payments"
        assert parsed["code"] == "OutsideMaintenanceWindow"


def test_the_refusal_codes_are_the_guardrails_and_nothing_else(workbook: dict[str, Any]) -> None:
    lists = {tuple(re.findall(r'"(\w+)"', m)) for q in _queries(workbook) for m in _CODES.findall(q["query"])}
    (codes,) = lists  # both refusal queries read the same codes
    decided = _none_codes(Path(reconcile.__file__).read_text()) | _none_codes(Path(guardrails.__file__).read_text())
    assert set(codes) <= decided, set(codes) - decided
    # Every code of the guardrails every write obeys (reconcile.GUARDRAILS, the scope's refusals among them) is read.
    required = _none_codes(inspect.getsource(guardrails.Scope))
    for check in reconcile.GUARDRAILS:
        required |= _none_codes(inspect.getsource(check))
    assert required <= set(codes), required - set(codes)
    # The circuit breaker and the ownership check are operators' limits too; what a failure is, is not.
    assert {"CircuitOpen", "ApplicationNotOwned"} <= set(codes)
    assert not {"NotServicePrincipal", "DuplicateIncident", "StaleBeforeRepair", "Unconfirmed"} & set(codes)

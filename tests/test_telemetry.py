"""remediation/telemetry.py: its instruments' data points, traces across queue hops, no secret in any attribute,
and the import budget of function_app (nothing of the SDK or the distro at import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from remediation import telemetry
from remediation.model import SecretText, Status
from remediation.record import NewSecret, Remediation, Target, TargetStatus
from tests.support.otel import InMemoryTelemetry, install_for_tests

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = "/subscriptions/6f1c2d3e-0000-4000-8000-000000000001/resourceGroups/rg-payments/providers/" \
          "Microsoft.ContainerService/managedClusters/aks-payments"
APP_ID = "11111111-2222-4333-8444-555555555555"
SECRET = "Zq8~not-a-real-secret-but-treated-as-one.1234"
CREATED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def otel() -> Iterator[InMemoryTelemetry]:
    with install_for_tests() as installed:
        yield installed


def finished(status: Status, *, kind: str = "expired_secret", minutes: float = 30, dry_run: bool = False,
             error: dict[str, str] | None = None, mode: str = "remediate") -> Remediation:
    return Remediation(
        id="0123456789abcdef0123456789abcdef", cluster_id=CLUSTER, dry_run=dry_run, source="event", status=status,
        created_at=CREATED.isoformat(), updated_at=(CREATED + timedelta(minutes=minutes)).isoformat(),
        cause_kind=kind, mode=mode, client_id=APP_ID, correlation_id="c0ffee00-0000-4000-8000-000000000001",
        finished_at=(CREATED + timedelta(minutes=minutes)).isoformat(), error=error,
        secret=NewSecret(key_id="9e4c2c8a-0000-4000-8000-00000000abcd", vault_name="aks-sp-x"),
        targets=[Target(CLUSTER, status=TargetStatus.VERIFIED)])


def by_attributes(points: list[Any]) -> dict[tuple[tuple[str, Any], ...], Any]:
    return {tuple(sorted(p.attributes.items())): p for p in points}


# ------------------------------------------------------------------------------------------------ metrics

def test_finished_remediations_are_counted_by_outcome_kind_and_mode(otel: InMemoryTelemetry) -> None:
    telemetry.record_remediation_finished(finished(Status.SUCCEEDED))
    telemetry.record_remediation_finished(finished(Status.SUCCEEDED))
    telemetry.record_remediation_finished(finished(Status.FAILED, kind="invalid_secret",
                                                   error={"code": "ResetFailed", "message": "m", "step": "reset"}))
    telemetry.record_remediation_finished(finished(Status.PLANNED, kind="", dry_run=True))

    metric = otel.metrics()["remediator.remediations"]
    assert metric.unit == "{remediation}"
    assert metric.data.is_monotonic
    points = by_attributes(list(metric.data.data_points))
    common = {"dry_run": False, "mode": "remediate", "credential": "servicePrincipal"}
    assert points[tuple(sorted({**common, "outcome": "succeeded", "kind": "expired_secret"}.items()))].value == 2
    assert points[tuple(sorted({**common, "outcome": "failed", "kind": "invalid_secret",
                                "error.type": "ResetFailed"}.items()))].value == 1
    planned = {**common, "dry_run": True, "outcome": "planned", "kind": "unknown"}
    assert points[tuple(sorted(planned.items()))].value == 1
    assert len(points) == 3


def test_the_outcomes_are_the_terminal_statuses() -> None:
    assert set(telemetry.OUTCOMES) == {s for s in Status if s.terminal}
    assert set(telemetry.OUTCOMES.values()) == {"succeeded", "failed", "planned"}


def test_an_unfinished_remediation_is_refused(otel: InMemoryTelemetry) -> None:
    with pytest.raises(ValueError, match="has not finished"):
        telemetry.record_remediation_finished(finished(Status.RUNNING))
    assert otel.points("remediator.remediations") == []


def test_failure_to_repair_is_measured_from_the_failure_when_known(otel: InMemoryTelemetry) -> None:
    remediation = finished(Status.SUCCEEDED, minutes=30)
    telemetry.record_remediation_finished(remediation, failed_at=CREATED - timedelta(minutes=90))
    telemetry.record_remediation_finished(remediation)  # no failure time: from its acceptance

    metric = otel.metrics()["remediator.failure_to_repair.duration"]
    assert metric.unit == "s"
    points = {p.attributes["since"]: p for p in metric.data.data_points}
    assert (points["failure"].count, points["failure"].sum) == (1, 120 * 60)
    assert (points["accepted"].count, points["accepted"].sum) == (1, 30 * 60)
    assert points["failure"].attributes == {"kind": "expired_secret", "credential": "servicePrincipal",
                                            "since": "failure"}
    # The advisory buckets fit repairs of minutes to days, not the SDK's millisecond-sized defaults.
    assert tuple(points["failure"].explicit_bounds) == telemetry.REPAIR_BUCKETS


def test_only_real_repairs_are_timed(otel: InMemoryTelemetry) -> None:
    telemetry.record_remediation_finished(finished(Status.FAILED, error={"code": "X"}))
    telemetry.record_remediation_finished(finished(Status.PLANNED, dry_run=True))
    telemetry.record_remediation_finished(finished(Status.SUCCEEDED), failed_at=CREATED + timedelta(days=1))
    assert otel.points("remediator.failure_to_repair.duration") == []
    assert sum(p.value for p in otel.points("remediator.remediations")) == 3


def test_fleet_health_sets_every_state_and_the_nearest_expiry(otel: InMemoryTelemetry) -> None:
    telemetry.record_fleet_health({"healthy": 40, "expired": 3, "managed_identity": 5}, 12.5)

    clusters = otel.metrics()["remediator.cluster.count"]
    assert clusters.unit == "{cluster}"
    assert {p.attributes["health"]: p.value for p in clusters.data.data_points} == {
        "healthy": 40, "expiring": 0, "expired": 3, "application_missing": 0, "managed_identity": 5, "unknown": 0}
    expiry = otel.metrics()["remediator.credential.time_to_expiry"]
    assert expiry.unit == "s"
    assert [p.value for p in expiry.data.data_points] == [12.5 * 86400]

    # The next check replaces the values (a gauge keeps the last one), and no expiry leaves the last one standing.
    telemetry.record_fleet_health({"healthy": 41, "expiring": 2}, None)
    values = {p.attributes["health"]: p.value for p in otel.points("remediator.cluster.count")}
    assert values["healthy"] == 41 and values["expiring"] == 2 and values["expired"] == 0
    assert [p.value for p in otel.points("remediator.credential.time_to_expiry")] == [12.5 * 86400]


@pytest.mark.parametrize("counts", [{"broken": 1}, {"healthy": -1}])
def test_fleet_health_refuses_what_it_cannot_chart(otel: InMemoryTelemetry, counts: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        telemetry.record_fleet_health(counts, None)
    assert otel.points("remediator.cluster.count") == []


def test_metric_names_follow_the_prefix_and_attributes_are_low_cardinality(otel: InMemoryTelemetry) -> None:
    telemetry.record_remediation_finished(finished(Status.SUCCEEDED), failed_at=CREATED)
    telemetry.record_fleet_health({"healthy": 1}, 3)
    metrics = otel.metrics()
    assert set(metrics) == {"remediator.remediations", "remediator.failure_to_repair.duration",
                            "remediator.cluster.count", "remediator.credential.time_to_expiry"}
    for metric in metrics.values():
        for point in metric.data.data_points:
            # No ids in metric attributes: a remediation id or cluster id would make every point its own series.
            assert not any(str(v) in (CLUSTER, APP_ID, "0123456789abcdef0123456789abcdef")
                           for v in point.attributes.values())


# ------------------------------------------------------------------------------------------------ traces

def in_another_worker(function: Any) -> Any:
    """Run `function` on a thread of its own: a fresh context, as the queue's consumer has."""
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(function()))
    worker.start()
    worker.join()
    return result[0]


def test_queue_hops_make_one_trace(otel: InMemoryTelemetry) -> None:
    with telemetry.span("event ResourceWriteFailure", kind="consumer") as first:
        to_lookup = telemetry.inject()
    assert set(to_lookup) == {"traceparent"}

    def lookup() -> dict[str, str]:
        with telemetry.span("lookup incident", carrier=to_lookup, kind="consumer"):
            return telemetry.inject()

    to_work = in_another_worker(lookup)

    def work() -> None:
        with telemetry.span("advance remediation", carrier=to_work, kind="consumer"):
            pass

    in_another_worker(work)
    spans = {s.name: s for s in otel.spans()}
    event, hop, work_span = spans["event ResourceWriteFailure"], spans["lookup incident"], spans["advance remediation"]
    trace_id = first.get_span_context().trace_id
    assert {event.context.trace_id, hop.context.trace_id, work_span.context.trace_id} == {trace_id}
    assert event.parent is None
    assert hop.parent.span_id == event.context.span_id and hop.parent.is_remote
    assert work_span.parent.span_id == hop.context.span_id


def test_a_hop_links_the_invocation_it_runs_in(otel: InMemoryTelemetry) -> None:
    with telemetry.span("sender"):
        carrier = telemetry.inject()
    host = otel.tracer_provider.get_tracer("host")
    with host.start_as_current_span("Invoke advance_remediation") as invocation:  # the host's own trace
        with telemetry.span("advance remediation", carrier=carrier):
            pass
    spans = {s.name: s for s in otel.spans()}
    hop, sender = spans["advance remediation"], spans["sender"]
    assert hop.context.trace_id == sender.context.trace_id != invocation.get_span_context().trace_id
    assert [link.context.span_id for link in hop.links] == [invocation.get_span_context().span_id]


def test_without_a_carrier_a_span_is_the_current_spans_child(otel: InMemoryTelemetry) -> None:
    with telemetry.span("outer") as outer, telemetry.span("inner", carrier={}):
        pass
    inner = next(s for s in otel.spans() if s.name == "inner")
    assert inner.parent.span_id == outer.get_span_context().span_id and not inner.links


def test_a_span_records_the_exception_and_lets_it_go(otel: InMemoryTelemetry) -> None:
    with pytest.raises(RuntimeError, match="boom"), telemetry.span("step"):
        raise RuntimeError("boom")
    (recorded,) = otel.spans()
    assert recorded.status.status_code.name == "ERROR"
    assert [e.name for e in recorded.events] == ["exception"]
    assert recorded.events[0].attributes["exception.type"] == "RuntimeError"


def test_unknown_span_kind_is_refused(otel: InMemoryTelemetry) -> None:
    with pytest.raises(ValueError, match="kind"), telemetry.span("x", kind="sideways"):
        pass


def test_with_no_provider_everything_is_a_no_op() -> None:
    from opentelemetry import trace

    telemetry.use_providers()  # the global providers
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        pytest.skip("something in this process installed a global tracer provider")
    with telemetry.span("nothing") as nothing:
        assert not nothing.is_recording()
        assert telemetry.inject() == {}
    telemetry.record_fleet_health({"healthy": 1}, 1.0)


# ------------------------------------------------------------------------------------------------ secrets

def test_secret_text_is_never_a_span_attribute(otel: InMemoryTelemetry) -> None:
    with pytest.raises(TypeError, match="secret"), telemetry.span("x", attributes={"value": SecretText(SECRET)}):
        pass
    with pytest.raises(TypeError, match="secret"), telemetry.span("x", attributes={"v": ["a", SecretText(SECRET)]}):
        pass
    assert otel.spans() == []


def test_no_secret_reaches_any_attribute(otel: InMemoryTelemetry) -> None:
    """A whole remediation's telemetry, with secret text in play (an error carrying SecretText): nothing recorded
    holds the text, and the remediation's attributes are ids, codes and flags."""
    remediation = finished(Status.SUCCEEDED)
    attributes = telemetry.remediation_attributes(remediation)
    assert set(attributes) == {"remediator.remediation.id", "remediator.cluster.resource_id",
                               "remediator.remediation.status", "remediator.remediation.generation",
                               "remediator.remediation.dry_run", "remediator.remediation.mode",
                               "remediator.credential", "remediator.application.id", "remediator.correlation_id"}
    with pytest.raises(ValueError), telemetry.span("advance", attributes=attributes):
        raise ValueError("could not store", SecretText(SECRET))
    telemetry.record_remediation_finished(remediation, failed_at=CREATED)
    telemetry.record_fleet_health({"expired": 1}, 2)

    recorded: list[Any] = []
    for span in otel.spans():
        recorded += [span.attributes, [e.attributes for e in span.events], [link.attributes for link in span.links]]
    for metric in otel.metrics().values():
        recorded += [p.attributes for p in metric.data.data_points]
    text = json.dumps(recorded, default=str)
    assert SECRET not in text
    assert "SecretText(<redacted>)" in text  # the exception was recorded, redacted


# ------------------------------------------------------------------------------------------------ configuration

def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, check=False)


CONFIGURE = """
import json, logging, sys
from remediation import telemetry
from opentelemetry import metrics, trace
KEY = "InstrumentationKey=00000000-0000-4000-8000-000000000000;IngestionEndpoint=https://127.0.0.1:9/"
telemetry.configure(KEY, export_logs=EXPORT_LOGS)
first = (type(trace.get_tracer_provider()).__module__, type(metrics.get_meter_provider()).__module__)
provider = trace.get_tracer_provider()
telemetry.configure(KEY, export_logs=EXPORT_LOGS)
from azure.core.settings import settings
print(json.dumps({"providers": first, "same": trace.get_tracer_provider() is provider,
                  "azure_sdk": settings.tracing_implementation() is not None,
                  "requests": "opentelemetry.instrumentation.requests" in sys.modules,
                  "logs": {name: [type(h).__name__ for h in logging.getLogger(name).handlers]
                           for name in ("remediator", "remediation")}}))
"""


@pytest.mark.parametrize("export_logs", [False, True])
def test_configure_sets_up_the_distro_once_with_only_the_azure_sdk_instrumented(export_logs: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OTEL_LOGS_EXPORTER"}
    done = subprocess.run([sys.executable, "-c", CONFIGURE.replace("EXPORT_LOGS", str(export_logs))], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**env, "PYTHONPATH": str(ROOT), "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true"})
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(module.startswith("opentelemetry.sdk") for module in found["providers"])
    assert found["same"]  # idempotent
    assert found["azure_sdk"] and not found["requests"]
    # Logs stay with the Functions host unless asked for; then both logger trees export them.
    expected = ["LoggingHandler"] if export_logs else []
    assert found["logs"] == {"remediator": expected, "remediation": expected}


WORKER_CONFIGURED = """
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
mine = TracerProvider()
trace.set_tracer_provider(mine)  # as the Functions worker does with PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY
from remediation import telemetry
telemetry.configure("InstrumentationKey=00000000-0000-4000-8000-000000000000")
print(json.dumps({"kept": trace.get_tracer_provider() is mine,
                  "distro": "azure.monitor.opentelemetry" in sys.modules}))
"""


def test_configure_leaves_a_worker_configured_process_alone() -> None:
    done = run_python(WORKER_CONFIGURED)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"kept": True, "distro": False}


NOT_CONFIGURED = """
import json, sys
from opentelemetry import trace
from remediation import telemetry
telemetry.configure(None)
telemetry.configure("")
print(json.dumps({"proxy": isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider),
                  "distro": "azure.monitor.opentelemetry" in sys.modules}))
"""


def test_configure_without_a_connection_string_sets_nothing_up() -> None:
    done = run_python(NOT_CONFIGURED)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"proxy": True, "distro": False}


COLD_IMPORT = """
import json, sys
import function_app
print(json.dumps(sorted(m for m in sys.modules if m.startswith(HEAVY))))
"""
# What made a cold import slow when it was imported at module level: the SDKs and the telemetry distro load at
# bootstrap (the first invocation), never at import. The import's time itself is measured, not asserted:
# `make bench` prints it (benchmarks/run.py, median of 5 fresh processes; budget 0.5 s).
HEAVY = ("opentelemetry", "azure.monitor", "azure.eventgrid", "azure.mgmt", "azure.identity", "azure.keyvault",
         "azure.data", "azure.storage", "azure.core", "msgraph", "kiota", "httpx", "jwt")


def test_a_cold_import_of_function_app_loads_no_sdk_and_no_telemetry() -> None:
    done = run_python(f"HEAVY = {HEAVY!r}" + COLD_IMPORT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []

"""OpenTelemetry for the remediator: one configuration call, four instruments, and spans that follow one incident
across queue hops (event -> lookup queue -> work queue) as one trace.

Import cost: importing this module imports nothing from OpenTelemetry (function_app's cold import must stay under
0.5 s; the API alone costs 50-100 ms there). The API is imported by the first call that needs it; the SDK and the
Azure Monitor distro only by `configure` with a connection string (~0.9 s, once, at bootstrap).

Until `configure` installs providers everything here goes to the OpenTelemetry API's defaults: no-ops that cost
next to nothing. Tests call `use_providers` with SDK providers reading into memory (tests/support/otel.py).

Metrics (meter `remediator`; metric attributes are low-cardinality, never ids):

- `remediator.remediations`, counter of remediations finished, unit `{remediation}`: `outcome` (succeeded, failed,
  planned: the terminal `Status`es), `kind` (the record's `cause_kind`; `unknown` if empty), `dry_run`, `mode`,
  `credential`, and `error.type` (the error's code) when failed.
- `remediator.failure_to_repair.duration`, histogram of the time from a failure to its verified repair, unit `s`:
  `kind`, `credential`, `since` (`failure` when the failure's time was given, else `accepted`: the record's creation).
- `remediator.cluster.count`, gauge of the fleet's clusters by the health of their credential, unit `{cluster}`:
  `health` (one of `HEALTH_STATES`).
- `remediator.credential.time_to_expiry`, gauge of the time to the soonest end among the fleet's credentials that
  have not ended, unit `s`; no attributes.
- `remediator.failure_events`, counter of cluster failure events in scope, unit `{event}`: `outcome` (`queued`: it
  opened its cluster's lookup; `coalesced`: it joined the lookup pending for its cluster; `dropped`: over the bound
  on new lookups, left to the sweep; `out_of_scope`). One of `FAILURE_EVENT_OUTCOMES`.

The gauges are synchronous (`set`): a health check sets every `health` value each time (0 for the absent ones), and
the last value stays until the next check. Each worker instance reports its own last values.

Spans (tracer `remediator`): `span(name, carrier=...)` starts a span as the child of the trace context a message
carried (`inject()` made it on the other side of the queue), or of the current span without one; when the host's
own invocation span is current too, the new span links to it. Exceptions are recorded and set the span's status.
Span attributes are ids, codes and flags: `SecretText` is refused (TypeError), and nothing here reads secret text.

Deployment (the Python worker, azure-functions-python-worker): with the app setting
`PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true` the worker itself calls `configure_azure_monitor` at start and
makes the host's invocation trace context current for each call; `configure` then finds an SDK tracer provider in
place and leaves it alone. Without it, `configure` sets up the distro for metrics and traces; logs stay with the
Functions host (which already sends the worker's log lines to Application Insights) unless `export_logs` asks
otherwise, so no line is sent twice.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from remediation.errors import ConfigurationError
from remediation.model import SecretText, Status

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from opentelemetry.metrics import Counter, Gauge, Histogram, MeterProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from remediation.record import Remediation

log = logging.getLogger(__name__)

NAME = "remediator"  # the meter's and the tracer's
# The loggers whose records `configure(export_logs=True)` exports: function_app's, and every remediation module's.
LOGGER_NAMES = ("remediator", "remediation")
OUTCOMES: dict[Status, str] = {status: status.value.lower() for status in Status if status.terminal}
HEALTH_STATES = ("healthy", "expiring", "expired", "application_missing", "managed_identity", "unknown")
FAILURE_EVENT_OUTCOMES = ("queued", "coalesced", "dropped", "out_of_scope")
# Seconds: a repair takes minutes (a reset, 5-80 minutes) to days (an expiry found by a sweep days later).
REPAIR_BUCKETS = (60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0, 259200.0, 604800.0)
# The distro's instrumentations (azure-monitor-opentelemetry 1.8): only Azure SDK calls matter here (ARM, Key Vault,
# Storage, Event Grid become dependencies); the others would only cost worker start time (or, for requests and
# urllib3 under azure-core, record every call twice).
INSTRUMENTATIONS = ("azure_sdk", "django", "fastapi", "flask", "psycopg2", "requests", "urllib", "urllib3", "httpx",
                    "httpx2")
ENABLED_INSTRUMENTATIONS = frozenset({"azure_sdk"})
_SPAN_KINDS = ("internal", "server", "client", "producer", "consumer")


@dataclass(frozen=True)
class _Instruments:
    remediations: Counter
    repair: Histogram
    clusters: Gauge
    expiry: Gauge
    failure_events: Counter


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.configured = False
        self.meter_provider: MeterProvider | None = None  # None: the global one
        self.tracer_provider: TracerProvider | None = None
        self.instruments: _Instruments | None = None
        self.tracer: Tracer | None = None
        self.propagator: TraceContextTextMapPropagator | None = None


_state = _State()


# ----------------------------------------------------------------------------------------------- configuration

def configure(connection_string: str | None, *, credential: TokenCredential | None = None,
              export_logs: bool = False) -> None:
    """Send metrics and traces to Application Insights through the Azure Monitor distro. Idempotent.

    Without a connection string nothing is set up: telemetry stays the API's no-op. `credential`: for an
    Application Insights resource with local auth disabled (Monitoring Metrics Publisher on it); without one the
    exporter reads `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` (`ClientId=<uami>;Authorization=AAD`). When the
    Functions worker configured the distro already (an SDK tracer provider is installed), this changes nothing.
    `export_logs`: also export the `remediator` and `remediation` loggers' records (with their trace ids). Off by
    default, as the Functions host sends the worker's log lines already; off sets `OTEL_LOGS_EXPORTER=none` (the
    distro's switch) unless the environment sets it. ConfigurationError if the distro refuses the connection string.
    """
    if not connection_string:
        log.debug("no Application Insights connection string: telemetry stays a no-op")
        return
    with _state.lock:
        if _state.configured:
            return
        from opentelemetry import trace

        if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            _state.configured = True
            log.info("OpenTelemetry is configured already (by the Functions worker): leaving it as it is")
            return
        from azure.monitor.opentelemetry import configure_azure_monitor

        options: dict[str, Any] = {
            "connection_string": connection_string,
            "logger_name": LOGGER_NAMES[0],
            "instrumentation_options": {name: {"enabled": name in ENABLED_INSTRUMENTATIONS}
                                        for name in INSTRUMENTATIONS},
            # Both start background threads and collectors at once; Application Insights' own metrics suffice.
            "enable_live_metrics": False,
            "enable_performance_counters": False,
        }
        # Passing credential=None would turn off the exporter's APPLICATIONINSIGHTS_AUTHENTICATION_STRING.
        if credential is not None:
            options["credential"] = credential
        if not export_logs:
            # The distro's documented switch (its disable_logging keyword is overwritten from this variable).
            os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")
        try:
            configure_azure_monitor(**options)
        except ValueError as err:
            raise ConfigurationError(f"Application Insights refused the connection string: {err}") from err
        if export_logs:
            _share_log_handler()
        _state.configured = True
        log.info("OpenTelemetry configured: metrics and traces%s go to Application Insights",
                 " and logs" if export_logs else "")


def use_providers(*, meter_provider: MeterProvider | None = None,
                  tracer_provider: TracerProvider | None = None) -> None:
    """Record this module's metrics and spans through these providers instead of the global ones (None: the global
    ones again). The global providers are left alone (OpenTelemetry lets them be set once per process), so tests can
    install fresh in-memory providers for each test."""
    with _state.lock:
        _state.meter_provider, _state.tracer_provider = meter_provider, tracer_provider
        _state.instruments, _state.tracer = None, None


def _share_log_handler() -> None:
    """The distro attaches its handler to one logger: attach the same one to the others of LOGGER_NAMES."""
    source = logging.getLogger(LOGGER_NAMES[0])
    handlers = [h for h in source.handlers if type(h).__module__.startswith("opentelemetry")]
    for name in LOGGER_NAMES[1:]:
        target = logging.getLogger(name)
        for handler in handlers:
            if handler not in target.handlers:
                target.addHandler(handler)


# ----------------------------------------------------------------------------------------------- metrics

def record_remediation_finished(remediation: Remediation, *, failed_at: datetime | None = None) -> None:
    """Count a finished remediation; for a succeeded one, record the time from the failure (`failed_at`, e.g. the
    Activity Log entry's time; else the remediation's creation) to its repair. ValueError if it has not finished."""
    outcome = OUTCOMES.get(remediation.status)
    if outcome is None:
        raise ValueError(f"remediation {remediation.id} has not finished (status {remediation.status.value})")
    instruments = _instruments()
    kind = remediation.cause_kind or "unknown"
    attributes: dict[str, str | bool] = {"outcome": outcome, "kind": kind, "dry_run": remediation.dry_run,
                                         "mode": remediation.mode, "credential": remediation.credential}
    if remediation.status is Status.FAILED:
        attributes["error.type"] = (remediation.error or {}).get("code") or "unknown"
    instruments.remediations.add(1, attributes)
    if remediation.status is not Status.SUCCEEDED or not remediation.finished_at:
        return
    start = failed_at or datetime.fromisoformat(remediation.created_at)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    seconds = (datetime.fromisoformat(remediation.finished_at) - start).total_seconds()
    if seconds < 0:  # a clock that disagrees, or a failure time from after the repair: not a duration
        log.warning("remediation %s: finished %.0f s before the failure it repaired; not recorded", remediation.id,
                    -seconds)
        return
    instruments.repair.record(seconds, {"kind": kind, "credential": remediation.credential,
                                        "since": "failure" if failed_at else "accepted"})


def record_fleet_health(counts: Mapping[str, int], days_to_nearest_expiry: float | None) -> None:
    """Set the clusters-by-health gauge (every state of HEALTH_STATES; absent ones are 0) and, when given, the time
    to the soonest end among credentials that have not ended (days, recorded in seconds). ValueError for a health
    state not in HEALTH_STATES or a negative count."""
    unknown = sorted(set(counts) - set(HEALTH_STATES))
    if unknown:
        raise ValueError(f"unknown health state(s) {unknown}; use {', '.join(HEALTH_STATES)}")
    if any(count < 0 for count in counts.values()):
        raise ValueError("cluster counts cannot be negative")
    instruments = _instruments()
    for health in HEALTH_STATES:
        instruments.clusters.set(int(counts.get(health, 0)), {"health": health})
    if days_to_nearest_expiry is not None:
        instruments.expiry.set(float(days_to_nearest_expiry) * 86400.0)


def record_failure_event(outcome: str) -> None:
    """Count one cluster failure event by what became of it (one of FAILURE_EVENT_OUTCOMES; else ValueError)."""
    if outcome not in FAILURE_EVENT_OUTCOMES:
        raise ValueError(f"unknown failure event outcome {outcome!r}; use {', '.join(FAILURE_EVENT_OUTCOMES)}")
    _instruments().failure_events.add(1, {"outcome": outcome})


def _instruments() -> _Instruments:
    with _state.lock:
        if _state.instruments is None:
            from opentelemetry import metrics

            provider = _state.meter_provider or metrics.get_meter_provider()
            meter = provider.get_meter(NAME)
            _state.instruments = _Instruments(
                remediations=meter.create_counter(
                    "remediator.remediations", unit="{remediation}",
                    description="Remediations finished, by outcome and kind."),
                repair=meter.create_histogram(
                    "remediator.failure_to_repair.duration", unit="s",
                    description="Time from a cluster's credential failure to its verified repair.",
                    explicit_bucket_boundaries_advisory=REPAIR_BUCKETS),
                clusters=meter.create_gauge(
                    "remediator.cluster.count", unit="{cluster}",
                    description="The fleet's clusters by the health of their credential, at the last health check."),
                expiry=meter.create_gauge(
                    "remediator.credential.time_to_expiry", unit="s",
                    description="Time to the soonest end among the fleet's credentials that have not ended."),
                failure_events=meter.create_counter(
                    "remediator.failure_events", unit="{event}",
                    description="Cluster failure events, by what became of them: queued, coalesced or dropped."),
            )
        return _state.instruments


# ----------------------------------------------------------------------------------------------- traces

def inject() -> dict[str, str]:
    """The current span's W3C trace context (`traceparent`, and `tracestate` if any) to carry in a message; empty
    when no span is recording (telemetry off)."""
    carrier: dict[str, str] = {}
    _propagator().inject(carrier)
    return carrier


def traceparent() -> str | None:
    """The current span's W3C `traceparent`, to carry in a queue message (tracestate is left out: a message is
    small); None when telemetry is off."""
    return inject().get("traceparent")


def carrier_of(traceparent: str | None) -> dict[str, str] | None:
    """What `span(carrier=...)` takes, from a message's `traceparent`."""
    return {"traceparent": traceparent} if traceparent else None


@contextmanager
def span(name: str, *, carrier: Mapping[str, str] | None = None,
         attributes: Mapping[str, Any] | None = None, kind: str = "internal") -> Iterator[Span]:
    """A span around the block: the child of the trace context in `carrier` (what `inject()` gave the sender), or of
    the current span. Exceptions are recorded on it and re-raised. `kind`: internal, server, client, producer,
    consumer. TypeError for a SecretText attribute."""
    from opentelemetry import trace

    if kind not in _SPAN_KINDS:
        raise ValueError(f"kind must be one of {', '.join(_SPAN_KINDS)}")
    clean = _attributes(attributes)
    context, links = None, []
    if carrier:
        extracted = _propagator().extract(dict(carrier))
        parent = trace.get_current_span(extracted).get_span_context()
        if parent.is_valid:
            context = extracted
            current = trace.get_current_span().get_span_context()
            if current.is_valid and current.trace_id != parent.trace_id:
                links.append(trace.Link(current))  # the invocation this hop runs in (the host's trace)
    with _tracer().start_as_current_span(name, context=context, kind=trace.SpanKind[kind.upper()],
                                         attributes=clean, links=links, record_exception=True,
                                         set_status_on_exception=True) as current_span:
        yield current_span


def remediation_attributes(remediation: Remediation) -> dict[str, str | int | bool]:
    """A remediation's span attributes: ids, status and flags, never a secret."""
    found: dict[str, str | int | bool] = {
        "remediator.remediation.id": remediation.id, "remediator.cluster.resource_id": remediation.cluster_id,
        "remediator.remediation.status": remediation.status.value, "remediator.remediation.generation":
        remediation.generation, "remediator.remediation.dry_run": remediation.dry_run,
        "remediator.remediation.mode": remediation.mode, "remediator.credential": remediation.credential}
    if remediation.client_id:
        found["remediator.application.id"] = remediation.client_id
    if remediation.correlation_id:
        found["remediator.correlation_id"] = remediation.correlation_id
    return found


def _attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not attributes:
        return None
    clean: dict[str, Any] = {}
    for key, value in attributes.items():
        values = value if isinstance(value, (list, tuple)) else (value,)
        if any(isinstance(v, SecretText) for v in values):
            raise TypeError(f"span attribute {key!r}: secret text is never recorded")
        if value is not None:
            clean[key] = value
    return clean


def _tracer() -> Tracer:
    with _state.lock:
        if _state.tracer is None:
            from opentelemetry import trace

            _state.tracer = (_state.tracer_provider or trace.get_tracer_provider()).get_tracer(NAME)
        return _state.tracer


def _propagator() -> TraceContextTextMapPropagator:
    # W3C trace context only (not the global propagator, which OTEL_PROPAGATORS may change and loads from entry
    # points): both ends of a queue hop are this app.
    with _state.lock:
        if _state.propagator is None:
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            _state.propagator = TraceContextTextMapPropagator()
        return _state.propagator

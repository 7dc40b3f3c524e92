"""OpenTelemetry SDK providers that read into memory, for tests of remediation/telemetry.py and of what uses it.

    with install_for_tests() as otel:
        ... code that records metrics and spans ...
        otel.points("remediator.remediations")   # the data points of one metric, collected now
        otel.spans()                             # the spans that ended, oldest first

The providers are handed to `telemetry.use_providers`, not set globally (OpenTelemetry allows that once per
process), and are shut down and detached on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from remediation import telemetry


@dataclass
class InMemoryTelemetry:
    reader: InMemoryMetricReader
    exporter: InMemorySpanExporter
    meter_provider: MeterProvider
    tracer_provider: TracerProvider

    def metrics(self) -> dict[str, Any]:
        """Every metric collected now, by name (the SDK's Metric objects: name, unit, data)."""
        data = self.reader.get_metrics_data()
        if data is None:
            return {}
        return {metric.name: metric for resource in data.resource_metrics for scope in resource.scope_metrics
                for metric in scope.metrics}

    def points(self, name: str) -> list[Any]:
        """The data points of metric `name` collected now ([] if it recorded nothing)."""
        metric = self.metrics().get(name)
        return list(metric.data.data_points) if metric else []

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@contextmanager
def install_for_tests() -> Iterator[InMemoryTelemetry]:
    reader, exporter = InMemoryMetricReader(), InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry.use_providers(meter_provider=meter_provider, tracer_provider=tracer_provider)
    try:
        yield InMemoryTelemetry(reader, exporter, meter_provider, tracer_provider)
    finally:
        telemetry.use_providers()
        meter_provider.shutdown()
        tracer_provider.shutdown()

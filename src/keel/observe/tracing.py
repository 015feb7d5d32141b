"""Tracing on the OpenTelemetry SDK: one TracerProvider per Runtime (no process-wide global), spans to
the database through a bounded batch queue, and to any OTLP collector when `observe.otlp_endpoint` is set.
"""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Tracer

from keel import __version__
from keel.config import ObserveSettings
from keel.observe.exporter import DatabaseSpanExporter, RedactingExporter, Redactor
from keel.store.engine import Database


class Tracing:
    def __init__(self, settings: ObserveSettings, database: Database, redact: Redactor | None = None) -> None:
        resource = Resource.create({"service.name": settings.service_name, "service.version": __version__})
        self.provider = TracerProvider(resource=resource)
        if settings.store_traces:
            self.provider.add_span_processor(
                BatchSpanProcessor(
                    DatabaseSpanExporter(database, redact),
                    max_queue_size=settings.trace_queue_size,
                    schedule_delay_millis=500,
                    max_export_batch_size=512,
                )
            )
        if settings.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter: SpanExporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
            if redact is not None:
                exporter = RedactingExporter(exporter, redact)
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer: Tracer = self.provider.get_tracer("keel", __version__)

    def flush(self, timeout_ms: int = 30_000) -> bool:
        return self.provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        """Flushes every queued span, then stops the exporters."""
        self.provider.shutdown()

"""The trace list shows a refused request (4xx) as an error with its status code, not as "ok"."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from keel.observe.attributes import TENANT
from keel.observe.dashboard import recent_traces
from keel.observe.exporter import DatabaseSpanExporter
from keel.store.engine import Database


def test_client_errors_are_listed_as_errors_with_their_status(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'spans.db'}")
    database.migrate()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DatabaseSpanExporter(database)))
    tracer = provider.get_tracer("test")
    for name, status in (("answered", 200), ("refused", 404), ("failed", 500)):
        with tracer.start_as_current_span(name) as span:
            span.set_attribute(TENANT, "acme")
            span.set_attribute("http.response.status_code", status)
            if status >= 500:  # as the request middleware marks a server error
                span.set_status(Status(StatusCode.ERROR))
    provider.shutdown()
    listed = {t.name: (t.status, t.http_status) for t in recent_traces(database, "acme")}
    assert listed == {"answered": ("ok", 200), "refused": ("error", 404), "failed": ("error", 500)}
    errors = {t.name for t in recent_traces(database, "acme", status="error")}
    assert errors == {"refused", "failed"}

"""A span exporter of Keel's own: batches of finished spans written to the database for the dashboard.

It runs behind the SDK's BatchSpanProcessor: spans wait in a bounded queue and are written off the
request path; a clean shutdown flushes the queue, so nothing is lost."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from keel.logs import get_logger
from keel.observe.attributes import TENANT
from keel.store.engine import Database
from keel.store.models import SpanRecord

log = get_logger(__name__)


def _row(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    start, end = span.start_time or 0, span.end_time or span.start_time or 0
    attributes = {k: (list(v) if isinstance(v, tuple) else v) for k, v in (span.attributes or {}).items()}
    return {
        "span_id": f"{context.span_id:016x}",
        "trace_id": f"{context.trace_id:032x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "name": span.name[:200],
        "tenant": attributes.get(TENANT),
        "start_time": datetime.fromtimestamp(start / 1e9, UTC),
        "duration_ms": (end - start) / 1e6,
        "status": "error" if _failed(span.status.status_code, attributes) else "ok",
        "attributes": attributes,
    }


def _failed(code: StatusCode, attributes: Mapping[str, Any]) -> bool:
    """An error span, or a request Keel refused (4xx): the OpenTelemetry status leaves client errors
    unset on a server span, but the dashboard lists a refused request as an error, not as "ok"."""
    status = attributes.get("http.response.status_code")
    return code == StatusCode.ERROR or (isinstance(status, int) and status >= 400)


# Each span's attributes as they may be stored: personal data removed (the guard's redactor, wired by the
# runtime). It takes a whole batch, so that the name model reads the batch's texts in one pass.
Redactor = Callable[[Sequence[Mapping[str, Any]]], list[dict[str, Any]]]


class DatabaseSpanExporter(SpanExporter):
    def __init__(self, database: Database, redact: Redactor | None = None) -> None:
        self._database = database
        self._redact = redact

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            rows = [_row(span) for span in spans]
            if self._redact is not None:
                for row, attributes in zip(
                    rows, self._redact([row["attributes"] for row in rows]), strict=True
                ):
                    row["attributes"] = attributes
            with self._database.session() as session:
                session.bulk_insert_mappings(SpanRecord, rows)
        except Exception:
            log.exception("span_export_failed", spans=len(spans))
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class RedactingExporter(SpanExporter):
    """Hands another exporter (OTLP) copies of the spans with their attributes redacted; events, which
    may carry exception messages, are left out."""

    def __init__(self, inner: SpanExporter, redact: Redactor) -> None:
        self._inner = inner
        self._redact = redact

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        redacted = self._redact([span.attributes or {} for span in spans])
        return self._inner.export(
            [
                ReadableSpan(
                    name=span.name,
                    context=span.context,
                    parent=span.parent,
                    resource=span.resource,
                    attributes=attributes,
                    links=span.links,
                    kind=span.kind,
                    status=span.status,
                    start_time=span.start_time,
                    end_time=span.end_time,
                    instrumentation_scope=span.instrumentation_scope,
                )
                for span, attributes in zip(spans, redacted, strict=True)
            ]
        )

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)

"""A span exporter of Keel's own: batches of finished spans written to the database for the dashboard.

It runs behind the SDK's BatchSpanProcessor: spans wait in a bounded queue and are written off the
request path; a clean shutdown flushes the queue, so nothing is lost."""

from __future__ import annotations

from collections.abc import Sequence
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
        "status": "error" if span.status.status_code == StatusCode.ERROR else "ok",
        "attributes": attributes,
    }


class DatabaseSpanExporter(SpanExporter):
    def __init__(self, database: Database) -> None:
        self._database = database

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            with self._database.session() as session:
                session.bulk_insert_mappings(SpanRecord, [_row(span) for span in spans])
        except Exception:
            log.exception("span_export_failed", spans=len(spans))
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

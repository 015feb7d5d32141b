"""The span exporter under load: 1,000 requests give 1,000 stored traces, none lost, once flushed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from keel.runtime import Runtime
from keel.store.models import SpanRecord
from tests.integration.conftest import Keys


def test_a_thousand_requests_a_thousand_traces(client: TestClient, keys: Keys, runtime: Runtime) -> None:
    headers = keys.header(keys.viewer)

    def one(_: int) -> str:
        response = client.get("/v1/models", headers=headers)
        assert response.status_code == 200
        return response.headers["x-keel-trace-id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        trace_ids = set(pool.map(one, range(1000)))
    assert len(trace_ids) == 1000
    assert runtime.tracing.flush()
    with runtime.database.session() as session:
        stored = set(
            session.scalars(
                select(SpanRecord.trace_id).where(
                    SpanRecord.trace_id.in_(trace_ids), SpanRecord.parent_id.is_(None)
                )
            )
        )
        roots = session.scalar(
            select(func.count()).select_from(SpanRecord).where(SpanRecord.trace_id.in_(trace_ids))
        )
    assert stored == trace_ids
    assert roots == 1000

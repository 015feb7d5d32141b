"""Traces: a copilot request yields one trace with the expected span tree, stored in the database,
with personal data redacted from captured content."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from keel.demo.loader import load_demo
from keel.runtime import Runtime
from keel.store.models import SpanRecord
from tests.integration.conftest import Keys


def spans_of(runtime: Runtime, trace_id: str) -> list[SpanRecord]:
    assert runtime.tracing.flush()
    with runtime.database.session() as session:
        return list(session.scalars(select(SpanRecord).where(SpanRecord.trace_id == trace_id)))


def test_a_support_reply_is_one_trace_with_its_steps(
    client: TestClient, keys: Keys, runtime: Runtime
) -> None:
    load_demo(runtime.database, runtime.ingestion, tenant="acme")
    message = "How long does delivery to Germany take? Mail me at jonas.weber@example.com"
    response = client.post(
        "/v1/support/replies",
        headers=keys.header(keys.app),
        json={"message": message, "customer_id": "C-1002"},
    )
    assert response.status_code == 200
    reply = response.json()
    spans = spans_of(runtime, reply["trace_id"])
    by_name = {s.name: s for s in spans}
    for expected in (
        "POST /v1/support/replies",
        "support.reply",
        "intent",
        "retrieve",
        "tool lookup_customer",
        "tool lookup_orders",
    ):
        assert expected in by_name, (expected, sorted(by_name))
    root = by_name["POST /v1/support/replies"]
    assert root.parent_id is None and root.attributes["keel.tenant"] == "acme"
    assert root.attributes["http.response.status_code"] == 200
    reply_span = by_name["support.reply"]
    assert reply_span.parent_id == root.span_id
    assert reply_span.attributes["keel.reply.status"] == reply["status"]
    retrieve = by_name["retrieve"]
    assert retrieve.parent_id == reply_span.span_id and retrieve.attributes["keel.retrieval.chunk_ids"]
    model_calls = [s for s in spans if s.name.startswith("chat ")]
    if model_calls:  # a declined question never reaches the model
        chat = model_calls[0]
        assert chat.attributes["gen_ai.usage.input_tokens"] > 0
        prompt = "\n".join(chat.attributes["gen_ai.prompt"])
        assert "jonas.weber@example.com" not in prompt and "<EMAIL>" in prompt
        assert len(chat.attributes["gen_ai.prompt.roles"]) == len(chat.attributes["gen_ai.prompt"])
        assert any(s.name == "model local" and s.parent_id == chat.span_id for s in spans)
    assert all("jonas.weber@example.com" not in str(s.attributes) for s in spans)


def test_every_request_is_traced(client: TestClient, keys: Keys, runtime: Runtime) -> None:
    response = client.get("/v1/models", headers=keys.header(keys.viewer))
    assert response.status_code == 200
    assert runtime.tracing.flush()
    with runtime.database.session() as session:
        names = set(session.scalars(select(SpanRecord.name)))
    assert "GET /v1/models" in names

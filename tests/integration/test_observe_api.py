"""Metrics, feedback and usage reports over HTTP."""

from __future__ import annotations

import csv
import io
import re
import time

from fastapi.testclient import TestClient
from sqlalchemy import select

from keel.runtime import Runtime
from keel.store.models import Feedback, UsageRecord
from tests.integration.conftest import Keys


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_move_with_traffic(client: TestClient, keys: Keys) -> None:
    before = client.get("/metrics").text
    body = {"model": "keel-local", "messages": [{"role": "user", "content": "Metrics?"}], "max_tokens": 4}
    for _ in range(2):
        assert (
            client.post("/v1/chat/completions", headers=keys.header(keys.app), json=body).status_code == 200
        )
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    route = {"route": "/v1/chat/completions", "status": "200"}
    assert (
        metric(text, "keel_http_requests_total", **route)
        - metric(before, "keel_http_requests_total", **route)
        == 2
    )
    assert metric(text, "keel_model_calls_total", cache="exact") >= 1
    assert metric(text, "keel_model_tokens_total", kind="output") > 0
    assert 'keel_breaker_state{deployment="local"} 0.0' in text
    assert re.search(r"^keel_queue_depth \d", text, re.M)
    assert metric(text, "keel_http_request_duration_seconds_count", route="/v1/chat/completions") >= 2


def test_feedback_links_to_the_trace_and_prompt_version(
    client: TestClient, keys: Keys, runtime: Runtime
) -> None:
    body = {
        "model": "keel-local",
        "messages": [{"role": "user", "content": "Rate me"}],
        "max_tokens": 4,
        "prompt_version": "greeting@3",
        "cache": False,
    }
    answered = client.post("/v1/chat/completions", headers=keys.header(keys.app), json=body)
    trace_id = answered.headers["x-keel-trace-id"]
    # The usage ledger is written off the request path: wait until the call's record is there.
    for _ in range(100):
        with runtime.database.session() as session:
            if session.scalars(select(UsageRecord).where(UsageRecord.trace_id == trace_id)).first():
                break
        time.sleep(0.05)
    response = client.post(
        "/v1/feedback",
        headers=keys.header(keys.app),
        json={"trace_id": trace_id, "score": 4, "comment": "good"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["score"] == 0.75 and response.json()["prompt_version"] == "greeting@3"
    with runtime.database.session() as session:
        stored = session.scalars(select(Feedback).where(Feedback.trace_id == trace_id)).one()
        assert (stored.source, stored.comment) == ("user", "good")
    thumbs = client.post(
        "/v1/feedback", headers=keys.header(keys.reviewer), json={"trace_id": trace_id, "score": "down"}
    )
    assert thumbs.json()["score"] == 0.0
    for bad in ({"trace_id": "nope", "score": 1}, {"trace_id": trace_id, "score": 9}, {"trace_id": trace_id}):
        assert client.post("/v1/feedback", headers=keys.header(keys.app), json=bad).status_code in (400, 422)
    assert (
        client.post(
            "/v1/feedback", headers=keys.header(keys.viewer), json={"trace_id": trace_id, "score": "up"}
        ).status_code
        == 403
    )


def test_usage_report_and_csv(client: TestClient, keys: Keys) -> None:
    body = {"model": "keel-local", "messages": [{"role": "user", "content": "Usage?"}], "max_tokens": 4}
    client.post("/v1/chat/completions", headers=keys.header(keys.app), json=body)
    report = client.get(
        "/v1/usage?group_by=day&group_by=model&group_by=feature", headers=keys.header(keys.admin)
    )
    assert report.status_code == 200
    rows = report.json()["rows"]
    local = [r for r in rows if r["group"]["model"] == "keel-local" and r["group"]["feature"] == "api"]
    assert local and local[0]["requests"] >= 1 and local[0]["completion_tokens"] > 0
    assert re.match(r"\d{4}-\d{2}-\d{2}$", local[0]["group"]["day"])
    exported = client.get("/v1/usage?group_by=key&format=csv", headers=keys.header(keys.admin))
    assert exported.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(exported.text)))
    assert table[0][:2] == ["key", "requests"] and len(table) >= 2
    assert client.get("/v1/usage", headers=keys.header(keys.app)).status_code == 403
    assert client.get("/v1/usage?group_by=color", headers=keys.header(keys.admin)).status_code == 422

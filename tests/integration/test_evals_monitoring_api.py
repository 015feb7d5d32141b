"""Online evaluation and drift over HTTP and the CLI, with the real local models on the demo data: a
sampled reply is scored off the request path, stored per trace, exported to Prometheus and shown on the
dashboard; the drift report answers on both tiers."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from keel.cli import app
from keel.config import DriftMonitors
from keel.evals.drift_watch import MONITORS
from keel.runtime import Runtime
from tests.integration.conftest import Keys, demo_documents


@pytest.fixture(scope="module")
def demo(runtime: Runtime, client: TestClient) -> Iterator[None]:
    with demo_documents(runtime):
        yield


def scored(client: TestClient, keys: Keys, trace_id: str) -> dict[str, Any] | None:
    online = client.get("/v1/evals/online?hours=1&recent=200", headers=keys.header(keys.viewer))
    assert online.status_code == 200, online.text
    return next((s for s in online.json()["recent"] if s["trace_id"] == trace_id), None)


def test_a_sampled_reply_is_scored_and_exported(
    client: TestClient, keys: Keys, runtime: Runtime, demo: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.monitoring.online, "sample_rate", 1.0)
    reply = client.post(
        "/v1/support/replies",
        headers=keys.header(keys.app),
        json={"message": "How long does delivery to Germany take?"},
    ).json()
    assert reply["citations"], reply
    score = None
    deadline = time.monotonic() + 180
    while score is None and time.monotonic() < deadline:
        score = scored(client, keys, reply["trace_id"])
        time.sleep(0.5)
    assert score is not None, "the sampled reply was not scored"
    assert score["reply_id"] == reply["id"] and score["status"] == reply["status"]
    assert 0 <= score["groundedness"] <= 1 and 0 <= score["citation_precision"] <= 1
    assert score["citations"] == len(reply["citations"])
    assert 0.15 <= score["retrieval_top_score"] <= 1

    summary = client.get("/v1/evals/online?hours=1", headers=keys.header(keys.admin)).json()
    assert summary["scored"] >= 1 and summary["metrics"]["groundedness"]["count"] >= 1
    metrics = client.get("/metrics").text
    # The exposition writes labels in alphabetical order.
    count = re.search(r'keel_online_score_count\{metric="groundedness",tenant="acme"\} (\S+)', metrics)
    assert count is not None and float(count.group(1)) >= 1
    assert re.search(r'keel_online_score\{metric="retrieval_top_score",tenant="acme"\} 0\.\d+', metrics)


def test_the_drift_report_answers_administrators_and_viewers(
    client: TestClient, keys: Keys, demo: None
) -> None:
    for key in (keys.viewer, keys.admin):
        response = client.get("/v1/evals/drift", headers=keys.header(key))
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["object"] == "evals.drift" and report["tenant"] == "acme"
        assert [m["monitor"] for m in report["monitors"]] == list(MONITORS)
        by_name = {m["monitor"]: m for m in report["monitors"]}
        # A test session's handful of replies is far below any monitor's minimum window.
        assert by_name["escalation_rate"]["verdict"] == "insufficient_data"
        assert by_name["escalation_rate"]["min_samples"] == DriftMonitors().escalation_rate.min_samples
        assert all(0 <= m["p_value"] <= 1 for m in report["monitors"])
    assert client.get("/v1/evals/drift", headers=keys.header(keys.app)).status_code == 403
    bad = client.get("/v1/evals/online?hours=0", headers=keys.header(keys.viewer))
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "query.hours"


def test_the_cli_checks_and_records_drift_and_the_dashboard_shows_it(
    client: TestClient, keys: Keys, runtime: Runtime, demo: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = runtime.settings
    monkeypatch.setenv("KEEL_DATA_DIR", str(settings.data_dir))
    for name, value in (("KEEL_DATABASE_URL", settings.database_url), ("KEEL_REDIS_URL", settings.redis_url)):
        if value:
            monkeypatch.setenv(name, value)
    cli = CliRunner()
    checked = cli.invoke(app, ["eval", "drift", "--tenant", "acme", "--json"])
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.output)
    assert [m["monitor"] for m in report["monitors"]] == list(MONITORS) and report["alerted"] == []

    recorded = cli.invoke(app, ["eval", "drift", "--tenant", "acme", "--record"])
    assert recorded.exit_code == 0, recorded.output
    assert "escalation_rate" in recorded.output and "insufficient_data" in recorded.output
    states = runtime.monitoring.drift.states("acme")
    assert {s.monitor for s in states} == set(MONITORS)
    assert all(s.checked_at.replace(tzinfo=UTC) >= datetime.now(UTC) - timedelta(minutes=5) for s in states)

    # A client of its own keeps the session cookie away from the other tests (no lifespan: not entered).
    browser = TestClient(client.app)
    assert browser.post("/ui/login", data={"api_key": keys.viewer}, follow_redirects=False).status_code == 303
    page = browser.get("/ui/").text
    assert 'id="online-scores"' in page and 'id="drift"' in page
    assert "escalation rate" in page and "insufficient data" in page

"""The drift monitors over a real SQLite database: windows read from replies, feedback and online
scores; verdicts recorded; an alert (and its signed webhook) exactly once per crossing into drift."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from keel.config import DriftSettings
from keel.evals.drift_watch import DriftWatch, MonitorState
from keel.evals.drift_windows import DriftObservations, windows
from keel.review.webhooks import WebhookSender, sign
from keel.store.engine import Database
from keel.store.models import Feedback, SupportReply
from keel.store.online_eval_models import OnlineScore

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SECRET = "drift-secret"


@pytest.fixture
def database(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'keel.db'}")
    database.migrate()
    return database


def add_replies(
    database: Database, when: datetime, n: int, escalated: float, rng: np.random.Generator
) -> None:
    with database.session() as session:
        for i in range(n):
            status = "escalated" if rng.random() < escalated else "answered"
            session.add(
                SupportReply(
                    tenant="acme",
                    conversation_id="conv",
                    question="q",
                    status=status,
                    reply="r",
                    intent=["order_status", "returns", "warranty"][i % 3],
                    trace_id=uuid.uuid4().hex,
                    created_at=when - timedelta(minutes=int(rng.integers(1, 600))),
                )
            )


def add_scores(database: Database, when: datetime, top: float, n: int, rng: np.random.Generator) -> None:
    with database.session() as session:
        for _ in range(n):
            vector = rng.normal(size=8).astype(np.float32)
            session.add(
                OnlineScore(
                    tenant="acme",
                    reply_id=f"rep_{uuid.uuid4().hex[:20]}",
                    trace_id=uuid.uuid4().hex,
                    status="answered",
                    groundedness=None,
                    retrieval_top_score=float(rng.normal(top, 0.05)),
                    query_embedding=(vector / np.linalg.norm(vector)).tobytes(),
                    embedding_model="model-a",
                    created_at=when - timedelta(minutes=int(rng.integers(1, 600))),
                )
            )


class Hook:
    def __init__(self) -> None:
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        return httpx.Response(204)


def watch(
    database: Database, hook: Hook, clock: list[datetime], settings: DriftSettings | None = None
) -> DriftWatch:
    sender = WebhookSender("https://ops.example/drift", SECRET, transport=httpx.MockTransport(hook))
    return DriftWatch(
        database,
        settings or DriftSettings(),
        DriftObservations(database, "model-a"),
        sender,
        lambda: clock[0],
    )


def test_windows_split_at_the_recent_window() -> None:
    baseline, recent = windows(NOW, 24, 168)
    assert (recent.start, recent.end) == (NOW - timedelta(hours=24), NOW)
    assert (baseline.start, baseline.end) == (NOW - timedelta(hours=192), recent.start)


def test_a_rise_in_escalations_alerts_once_with_a_signed_webhook_and_resolves(database: Database) -> None:
    rng = np.random.default_rng(1)
    baseline_time, recent_time = NOW - timedelta(days=3), NOW
    add_replies(database, baseline_time, 1100, 0.2, rng)
    add_replies(database, recent_time, 1100, 0.4, rng)
    hook, clock = Hook(), [NOW]
    drift = watch(database, hook, clock)

    report = drift.check("acme")
    verdicts = {m.monitor: m.verdict for m in report.monitors}
    assert verdicts["escalation_rate"] == "drift" and verdicts["status_mix"] == "drift"
    assert verdicts["intent_mix"] == "ok"
    # No online scores or feedback yet: those monitors say so instead of guessing.
    for monitor in ("query_embeddings", "retrieval_top_score", "groundedness", "negative_feedback_rate"):
        assert verdicts[monitor] == "insufficient_data"
    escalation = next(m for m in report.monitors if m.monitor == "escalation_rate")
    assert escalation.effect == pytest.approx(0.2, abs=0.05)
    assert escalation.detail["recent_rate"] > escalation.detail["baseline_rate"]

    assert sorted(drift.record(report)) == ["escalation_rate", "status_mix"]
    assert len(hook.calls) == 2
    request = hook.calls[0]
    body = request.content
    assert request.headers["X-Keel-Event"] == "drift.alert"
    assert request.headers["X-Keel-Signature"] == sign(SECRET, request.headers["X-Keel-Timestamp"], body)
    assert request.headers["X-Keel-Signature"] != sign("wrong", request.headers["X-Keel-Timestamp"], body)
    assert json.loads(body)["data"]["monitor"]["monitor"] in ("escalation_rate", "status_mix")

    # The next check finds the same drift: recorded, not announced again.
    assert drift.record(drift.check("acme")) == []
    assert len(hook.calls) == 2
    states = {s.monitor: s for s in drift.states("acme")}
    assert states["escalation_rate"].verdict == "drift" and states["escalation_rate"].recent_n == 1100

    # Once the baseline window holds only the new level (here: a day on, with a one-day baseline),
    # nothing differs any more and each monitor announces that it is back to ok.
    clock[0] = NOW + timedelta(days=1)
    add_replies(database, clock[0], 1100, 0.4, rng)
    recovered = watch(database, hook, clock, DriftSettings(baseline_hours=24))
    assert recovered.record(recovered.check("acme")) == []
    resolved = hook.calls[2:]
    assert {r.headers["X-Keel-Event"] for r in resolved} == {"drift.resolved"}
    assert {json.loads(r.content)["data"]["monitor"]["monitor"] for r in resolved} == {
        "escalation_rate",
        "status_mix",
    }


def test_a_second_consumer_recording_the_same_drift_sends_nothing(database: Database) -> None:
    rng = np.random.default_rng(2)
    add_replies(database, NOW - timedelta(days=3), 1100, 0.2, rng)
    add_replies(database, NOW, 1100, 0.4, rng)
    first_hook, second_hook = Hook(), Hook()
    first, second = watch(database, first_hook, [NOW]), watch(database, second_hook, [NOW])
    report = first.check("acme")
    assert first.record(report) and second.record(report) == []
    assert first_hook.calls and not second_hook.calls


def test_scores_and_embeddings_of_the_current_model_are_read(database: Database) -> None:
    rng = np.random.default_rng(3)
    add_scores(database, NOW - timedelta(days=3), 0.6, 150, rng)
    add_scores(database, NOW, 0.45, 150, rng)
    drift = watch(database, Hook(), [NOW])
    verdicts = {m.monitor: m for m in drift.check("acme").monitors}
    assert verdicts["retrieval_top_score"].verdict == "drift"
    assert verdicts["retrieval_top_score"].detail["mean_shift"] == pytest.approx(-0.15, abs=0.03)
    # Same distribution of query vectors in both windows.
    assert verdicts["query_embeddings"].verdict == "ok"
    assert verdicts["query_embeddings"].recent_n == 150
    other_model = DriftWatch(database, DriftSettings(), DriftObservations(database, "model-b"))
    assert {m.monitor: m.recent_n for m in other_model.check("acme").monitors}["query_embeddings"] == 0


def test_negative_feedback_and_disabled_monitors(database: Database) -> None:
    rng = np.random.default_rng(4)
    with database.session() as session:
        for when, negative in ((NOW - timedelta(days=2), 0.1), (NOW, 0.35)):
            for _ in range(600):
                session.add(
                    Feedback(
                        tenant="acme",
                        trace_id=uuid.uuid4().hex,
                        source="user",
                        score=0.0 if rng.random() < negative else 1.0,
                        created_at=when - timedelta(minutes=int(rng.integers(1, 600))),
                    )
                )
    settings = DriftSettings()
    settings.monitors.query_embeddings.enabled = False
    drift = watch(database, Hook(), [NOW], settings)
    verdicts = {m.monitor: m.verdict for m in drift.check("acme").monitors}
    assert verdicts["negative_feedback_rate"] == "drift"
    assert "query_embeddings" not in verdicts


def test_the_periodic_check_covers_tenants_with_traffic(database: Database) -> None:
    rng = np.random.default_rng(5)
    add_replies(database, NOW, 10, 0.2, rng)
    drift = watch(database, Hook(), [NOW])
    reports = drift.watch()
    assert [r.tenant for r in reports] == ["acme"]
    assert {s.monitor for s in drift.states()} == {m.monitor for m in reports[0].monitors}
    assert all(isinstance(s, MonitorState) and s.verdict == "insufficient_data" for s in drift.states())

"""Drift alerts on PostgreSQL: consumers recording the same drift at once (every consumer runs the
periodic check) send exactly one alert per monitor, whether the monitor's state row exists yet or not."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import numpy as np
import pytest

from keel.config import DriftSettings
from keel.evals.drift_watch import DriftWatch
from keel.evals.drift_windows import DriftObservations
from keel.review.webhooks import WebhookSender
from keel.store.engine import Database
from tests.unit.evals.test_drift_watch import NOW, Hook, add_replies

CONSUMERS = 8


@pytest.fixture
def database(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url)
    database.migrate()
    yield database
    database.dispose()


def consumers(database: Database, hooks: list[Hook]) -> list[DriftWatch]:
    return [
        DriftWatch(
            database,
            DriftSettings(),
            DriftObservations(database, "model-a"),
            WebhookSender("https://ops.example/drift", "s", transport=httpx.MockTransport(hook)),
            lambda: NOW,
        )
        for hook in hooks
    ]


@pytest.mark.parametrize("state_exists", [False, True])
def test_simultaneous_checks_alert_once(database: Database, state_exists: bool) -> None:
    rng = np.random.default_rng(6)
    add_replies(database, NOW - timedelta(days=3), 1100, 0.2, rng)
    add_replies(database, NOW, 1100, 0.4, rng)
    hooks = [Hook() for _ in range(CONSUMERS)]
    watches = consumers(database, hooks)
    report = watches[0].check("acme")
    assert sorted(report.alerting) == ["escalation_rate", "status_mix"]
    if state_exists:
        # Each monitor already has a row from an earlier check that found nothing.
        earlier = report.model_copy(
            update={"monitors": [m.model_copy(update={"verdict": "ok"}) for m in report.monitors]}
        )
        watches[0].record(earlier)
    barrier = threading.Barrier(CONSUMERS)

    def record(watch: DriftWatch) -> list[str]:
        barrier.wait()
        return watch.record(report)

    with ThreadPoolExecutor(CONSUMERS) as pool:
        alerted = [monitor for found in pool.map(record, watches) for monitor in found]
    assert sorted(alerted) == ["escalation_rate", "status_mix"]
    assert sum(len(hook.calls) for hook in hooks) == 2
    assert {s.monitor: s.verdict for s in watches[0].states("acme")}["escalation_rate"] == "drift"

"""Online evaluation and drift watching, built together for the runtime: the scoring job and the
periodic drift check on the queue, their Prometheus gauges, and the copilot's hook."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from huey import Huey

from keel.config import Settings
from keel.copilot.grounding import GroundingChecker
from keel.evals.drift_watch import DriftWatch
from keel.evals.drift_windows import DriftObservations
from keel.evals.judge import Judge
from keel.evals.online import OnlineEvaluation, OnlineScorer
from keel.gateway.providers.base import EmbeddingProvider
from keel.gateway.service import Gateway
from keel.jobs.online_jobs import register_online_jobs
from keel.observe.metrics import KeelMetrics
from keel.review.webhooks import WebhookSender
from keel.store.engine import Database

# The Prometheus gauges of online scores cover this much recent time.
GAUGE_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Monitoring:
    online: OnlineEvaluation
    scorer: OnlineScorer
    drift: DriftWatch


def build_drift_watch(settings: Settings, database: Database, embedding_model: str) -> DriftWatch:
    """The drift monitors alone (the CLI checks without loading any model)."""
    drift = settings.evals.drift
    secret_env = drift.webhook_secret_env
    webhook = WebhookSender(drift.webhook_url, os.environ.get(secret_env) if secret_env else None)
    return DriftWatch(database, drift, DriftObservations(database, embedding_model), webhook)


def build_monitoring(
    settings: Settings,
    database: Database,
    queue: Huey,
    embedder: EmbeddingProvider,
    gateway: Gateway,
    metrics: KeelMetrics,
) -> Monitoring:
    drift = build_drift_watch(settings, database, embedder.model_id)
    judge_alias = settings.evals.judge_alias
    judge = Judge(gateway, judge_alias) if judge_alias and settings.evals.online_judge else None
    scorer = OnlineScorer(database, GroundingChecker(embedder), embedder, judge)
    enqueue = register_online_jobs(queue, scorer.score, drift.watch, drift.settings.check_every_minutes)
    online = OnlineEvaluation(database, settings.evals.online_sample_rate, enqueue)

    def online_means() -> dict[str, dict[str, tuple[float | None, int]]]:
        since = datetime.now(UTC) - GAUGE_WINDOW
        return {
            tenant: {name: (m.mean, m.count) for name, m in by_metric.items()}
            for tenant, by_metric in online.means_by_tenant(since).items()
        }

    metrics.watch_evaluation(
        online_means,
        lambda: [(s.tenant, s.monitor, s.verdict, s.p_value, s.effect) for s in drift.states()],
    )
    return Monitoring(online=online, scorer=scorer, drift=drift)

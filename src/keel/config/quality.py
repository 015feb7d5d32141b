"""Settings of evaluation and drift monitoring."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator


class DriftMonitorSettings(BaseModel):
    """When one drift monitor alerts: both windows hold at least `min_samples` observations (fewer:
    "insufficient data", never an alert), the test's p-value is below `p_value`, and the change is at
    least `min_effect` in the monitor's own unit (docs/evals.md#drift)."""

    enabled: bool = True
    min_samples: int = Field(100, ge=2)
    p_value: float = Field(0.01, gt=0, lt=1)
    min_effect: float = Field(0.0, ge=0)


# Each monitor's own defaults: the smallest window in which bench/drift.py's tuning half detected the
# shift the monitor exists for in 95 % of window pairs (docs/evals.md#drift). A keel.toml or environment
# variable that sets one field of one monitor keeps that monitor's other defaults.
DRIFT_MONITOR_DEFAULTS: dict[str, dict[str, float]] = {
    "query_embeddings": {"min_samples": 75},
    # Effects: Wasserstein distance in score units; Cramér's V; the absolute change of the rate.
    "retrieval_top_score": {"min_samples": 50, "min_effect": 0.02},
    "groundedness": {"min_samples": 500, "min_effect": 0.02},
    "intent_mix": {"min_samples": 50, "min_effect": 0.05},
    "status_mix": {"min_samples": 1000, "min_effect": 0.05},
    "escalation_rate": {"min_samples": 1000, "min_effect": 0.03},
    "negative_feedback_rate": {"min_samples": 600, "min_effect": 0.03},
}


def _monitor(name: str) -> DriftMonitorSettings:
    return DriftMonitorSettings.model_validate(DRIFT_MONITOR_DEFAULTS[name])


class DriftMonitors(BaseModel):
    query_embeddings: DriftMonitorSettings = _monitor("query_embeddings")
    retrieval_top_score: DriftMonitorSettings = _monitor("retrieval_top_score")
    groundedness: DriftMonitorSettings = _monitor("groundedness")
    intent_mix: DriftMonitorSettings = _monitor("intent_mix")
    status_mix: DriftMonitorSettings = _monitor("status_mix")
    escalation_rate: DriftMonitorSettings = _monitor("escalation_rate")
    negative_feedback_rate: DriftMonitorSettings = _monitor("negative_feedback_rate")

    @model_validator(mode="before")
    @classmethod
    def _keep_monitor_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {
            name: {**DRIFT_MONITOR_DEFAULTS.get(name, {}), **value} if isinstance(value, dict) else value
            for name, value in data.items()
        }


class DriftSettings(BaseModel):
    """Drift monitors: a recent window of traffic against the baseline window right before it."""

    recent_hours: float = Field(24.0, gt=0)
    baseline_hours: float = Field(168.0, gt=0)
    # Each window uses at most this many of its observations, a uniform sample (bounds a check's cost).
    max_samples: int = Field(2000, ge=10)
    # The embedding test (MMD) uses at most this many vectors per window, and this many permutations.
    embedding_samples: int = Field(300, ge=10, le=5000)
    permutations: int = Field(500, ge=50, le=10_000)
    # How often the server's (or a worker's) periodic job checks every tenant with recent traffic.
    check_every_minutes: int = Field(15, ge=1, le=60)
    # Alerts and recoveries are POSTed here, signed like review decisions (HMAC-SHA256 under the secret
    # in the environment variable `webhook_secret_env`).
    webhook_url: str | None = None
    webhook_secret_env: str | None = None
    monitors: DriftMonitors = DriftMonitors()


class EvalSettings(BaseModel):
    """Evaluation runs (`keel eval run`, `POST /v1/evals/runs`); a run's `--config` file may set these too."""

    # Items scored at once in a run; each trial of an item is one unit of work.
    concurrency: int = Field(2, ge=1, le=64)
    # How many passages the retrieval target asks for; recall@k and nDCG@k look at the first k of them.
    retrieval_k: int = Field(10, ge=1, le=100)
    retrieval_mode: Literal["keyword", "vector", "hybrid"] = "hybrid"
    # A model alias that judges correctness and faithfulness (its tokens are counted in the run's cost);
    # None: no judge, only the metrics that need no model.
    judge_alias: str | None = None
    # Bootstrap resamples behind every confidence interval; more is steadier and slower.
    bootstrap_resamples: int = Field(2000, ge=200, le=100_000)
    confidence_level: float = Field(0.95, gt=0.5, lt=1)
    # A run whose worker has not beaten this long has lost it; its claimed items go back to pending.
    stale_after_s: float = Field(120.0, ge=4)
    # Share of live copilot replies scored online (groundedness, citation precision, retrieval top
    # score), chosen by a hash of the trace id so every replica samples the same traces.
    online_sample_rate: float = Field(0.1, ge=0, le=1)
    # Also grade each sampled reply's faithfulness with the judge (`judge_alias`): one model call each.
    online_judge: bool = False
    drift: DriftSettings = DriftSettings()

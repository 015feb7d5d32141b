"""Prometheus metrics, in a registry of the Runtime's own (no process-wide global), served at /metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from keel.logs import get_logger

log = get_logger(__name__)


class ModelCall(Protocol):
    """What the metrics read of one gateway call (the gateway's `CallRecord` has these fields): observe
    sits below the gateway, so it names the shape instead of importing the gateway's type."""

    alias: str
    deployment: str | None
    outcome: str
    cache: str
    latency_ms: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    retries: int
    fallback_used: bool


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class _Gauges(Collector):
    """Values read when Prometheus scrapes: breaker states and queue depth."""

    def __init__(self, breakers: Callable[[], dict[str, str]], queue_depth: Callable[[], int]) -> None:
        self._breakers = breakers
        self._queue_depth = queue_depth

    def collect(self) -> Iterator[GaugeMetricFamily]:
        breaker = GaugeMetricFamily(
            "keel_breaker_state",
            "Circuit breaker per deployment: 0 closed, 1 half-open, 2 open.",
            labels=["deployment"],
        )
        for deployment, state in self._breakers().items():
            breaker.add_metric([deployment], BREAKER_STATES[state])
        yield breaker
        yield GaugeMetricFamily("keel_queue_depth", "Jobs waiting in the queue.", value=self._queue_depth())


# Per tenant, per metric: (mean, count) of the online scores of the last hour.
OnlineMeans = Callable[[], Mapping[str, Mapping[str, tuple[float | None, int]]]]
# (tenant, monitor, verdict, p-value, effect) of each drift monitor's last check.
DriftVerdicts = Callable[[], Iterable[tuple[str, str, str, float, float]]]


class _EvaluationGauges(Collector):
    """Online scores and drift verdicts, read from the database when Prometheus scrapes: the scores are
    computed by whichever consumer ran the job, and every replica reports the same values."""

    def __init__(self, online: OnlineMeans, drift: DriftVerdicts) -> None:
        self._online = online
        self._drift = drift

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            online = self._online()
            drift = list(self._drift())
        except SQLAlchemyError as exc:
            # A scrape must not fail with the database: the other metrics still report.
            log.warning("evaluation_metrics_unavailable", error=type(exc).__name__)
            return
        mean = GaugeMetricFamily(
            "keel_online_score",
            "Mean online score of sampled copilot replies over the last hour.",
            labels=["tenant", "metric"],
        )
        count = GaugeMetricFamily(
            "keel_online_score_count",
            "Sampled copilot replies with this online score over the last hour.",
            labels=["tenant", "metric"],
        )
        for tenant, metrics in online.items():
            for metric, (value, scored) in metrics.items():
                count.add_metric([tenant, metric], scored)
                if value is not None:
                    mean.add_metric([tenant, metric], value)
        alert = GaugeMetricFamily(
            "keel_drift_alert", "1 while a drift monitor alerts, else 0.", labels=["tenant", "monitor"]
        )
        p_value = GaugeMetricFamily(
            "keel_drift_p_value", "P-value of a drift monitor's last check.", labels=["tenant", "monitor"]
        )
        effect = GaugeMetricFamily(
            "keel_drift_effect",
            "Size of the change a drift monitor measured (in its own unit).",
            labels=["tenant", "monitor"],
        )
        for tenant, monitor, verdict, p, size in drift:
            alert.add_metric([tenant, monitor], 1 if verdict == "drift" else 0)
            p_value.add_metric([tenant, monitor], p)
            effect.add_metric([tenant, monitor], size)
        yield from (mean, count, alert, p_value, effect)


class KeelMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "keel_http_requests", "HTTP requests.", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "keel_http_request_duration_seconds",
            "HTTP request latency.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.model_calls = Counter(
            "keel_model_calls", "Gateway calls.", ["alias", "deployment", "outcome", "cache"], registry=r
        )
        self.model_latency = Histogram(
            "keel_model_call_duration_seconds",
            "Gateway call latency.",
            ["alias"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "keel_model_tokens", "Tokens through the gateway.", ["alias", "kind"], registry=r
        )
        self.cost = Counter("keel_model_cost", "Model cost, in the gateway currency.", ["alias"], registry=r)
        self.retries = Counter("keel_model_retries", "Retries of model calls.", ["alias"], registry=r)
        self.fallbacks = Counter(
            "keel_model_fallbacks", "Calls served by a fallback deployment.", ["alias"], registry=r
        )
        self.replies = Counter("keel_support_replies", "Copilot replies.", ["status"], registry=r)
        self.escalations = Counter(
            "keel_escalations", "Escalations to the review queue.", ["reason"], registry=r
        )
        self.grounding_failures = Counter(
            "keel_grounding_failures", "Replies replaced because they were not grounded.", registry=r
        )
        self.feedback = Histogram(
            "keel_feedback_score",
            "Feedback scores (0-1).",
            ["source"],
            buckets=(0, 0.25, 0.5, 0.75, 1),
            registry=r,
        )
        self.model_queue = Histogram(
            "keel_model_queue_seconds",
            "Time a turn at a local model waited: an embedding batch, a generation's wait for a context, "
            "or one step of a generation.",
            ["model", "turn"],
            buckets=(0.001, *_LATENCY_BUCKETS),
            registry=r,
        )

    def queue_observer(self, model: str) -> Callable[[str, float], None]:
        """What a model's turns report each wait to, with the kind of turn."""

        def observe(turn: str, seconds: float) -> None:
            self.model_queue.labels(model, turn).observe(seconds)

        return observe

    def watch(self, breakers: Callable[[], dict[str, str]], queue_depth: Callable[[], int]) -> None:
        self.registry.register(_Gauges(breakers, queue_depth))

    def watch_evaluation(self, online: OnlineMeans, drift: DriftVerdicts) -> None:
        self.registry.register(_EvaluationGauges(online, drift))

    def observe_call(self, record: ModelCall) -> None:
        outcome = "ok" if record.outcome == "ok" else "error"
        self.model_calls.labels(record.alias, record.deployment or "", outcome, record.cache).inc()
        self.model_latency.labels(record.alias).observe(record.latency_ms / 1000)
        self.tokens.labels(record.alias, "input").inc(record.prompt_tokens)
        self.tokens.labels(record.alias, "output").inc(record.completion_tokens)
        self.cost.labels(record.alias).inc(float(record.cost))
        self.retries.labels(record.alias).inc(record.retries)
        if record.fallback_used:
            self.fallbacks.labels(record.alias).inc()

    def observe_reply(self, status: str, reasons: list[str]) -> None:
        self.replies.labels(status).inc()
        for reason in reasons:
            self.escalations.labels(reason.split(":")[0]).inc()
            if reason == "ungrounded":
                self.grounding_failures.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

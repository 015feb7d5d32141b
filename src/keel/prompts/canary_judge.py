"""The canary's decision at one step, as a pure function of what each version did in the step's window.

A step is judged once both versions have `min_requests` calls in it and it has lasted `min_duration_s`.
Each metric is then tested one-sided ("is the canary worse?") with an exact test (keel.stats), never by a
raw threshold: 3 errors in 60 calls against 1 % is not yet evidence. The chance of rolling back a canary
that is no worse is held to `false_rollback_rate` over the whole release: each test gets an equal share
of it (Bonferroni over steps x metrics), so more steps or metrics make each test stricter, not the
release noisier. p95 latency must also be slower by more than `latency_tolerance` to count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from keel.prompts.arm_metrics import ArmSample
from keel.stats import compare_rates, compare_tails

Metric = Literal[
    "error_rate", "escalation_rate", "grounding_failure_rate", "negative_feedback", "p95_latency"
]
METRICS: tuple[Metric, ...] = (
    "error_rate",
    "escalation_rate",
    "grounding_failure_rate",
    "negative_feedback",
    "p95_latency",
)
Decision = Literal["hold", "advance", "promote", "rollback"]

# (hits, n) of a rate metric in a sample.
_RATES: dict[str, Callable[[ArmSample], tuple[int, int]]] = {
    "error_rate": lambda s: (s.errors, s.requests),
    "escalation_rate": lambda s: (s.escalations, s.replies),
    "grounding_failure_rate": lambda s: (s.grounding_failures, s.replies),
    "negative_feedback": lambda s: (s.negative_feedback, len(s.feedback)),
}


class CanaryRule(BaseModel):
    """How a canary is released and judged; fixed when it starts."""

    steps: list[float] = Field(min_length=1, max_length=10)
    min_requests: int = Field(ge=10)
    min_duration_s: float = Field(ge=0)
    false_rollback_rate: float = Field(gt=0, lt=0.5)
    latency_tolerance: float = Field(0.1, ge=0)
    metrics: list[Metric] = Field(default_factory=lambda: list(METRICS), min_length=1)

    @field_validator("steps")
    @classmethod
    def _rising_shares(cls, steps: list[float]) -> list[float]:
        if any(not 0 < s < 100 for s in steps) or any(b <= a for a, b in pairwise(steps)):
            raise ValueError("steps are rising percentages between 0 and 100 (passing the last promotes)")
        return steps

    @property
    def test_alpha(self) -> float:
        return self.false_rollback_rate / (len(self.steps) * len(self.metrics))


@dataclass(frozen=True)
class MetricCheck:
    metric: str
    stable: float | None
    canary: float | None
    stable_n: int
    canary_n: int
    p_value: float
    regressed: bool


@dataclass(frozen=True)
class StepVerdict:
    decision: Decision
    step: int
    percent: float
    reason: str
    stable_requests: int
    canary_requests: int
    elapsed_s: float
    alpha: float
    checks: tuple[MetricCheck, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _value(value: float) -> float | None:
    return None if value != value else round(value, 6)


def check_metric(rule: CanaryRule, metric: Metric, stable: ArmSample, canary: ArmSample) -> MetricCheck:
    alpha = rule.test_alpha
    if metric == "p95_latency":
        tail = compare_tails(stable.latencies_ms, canary.latencies_ms, 0.95)
        slower = tail.candidate > tail.baseline * (1 + rule.latency_tolerance)
        return MetricCheck(
            metric,
            _value(tail.baseline),
            _value(tail.candidate),
            tail.baseline_n,
            tail.candidate_n,
            tail.p_value,
            tail.p_value < alpha and bool(slower),
        )
    rate = _RATES[metric]
    found = compare_rates(*rate(stable), *rate(canary), alternative="greater")
    regressed = found.p_value < alpha and found.candidate > found.baseline
    return MetricCheck(
        metric,
        _value(found.baseline),
        _value(found.candidate),
        found.baseline_n,
        found.candidate_n,
        found.p_value,
        regressed,
    )


def judge(rule: CanaryRule, step: int, stable: ArmSample, canary: ArmSample, elapsed_s: float) -> StepVerdict:
    percent = rule.steps[step]
    base = {
        "step": step,
        "percent": percent,
        "stable_requests": stable.requests,
        "canary_requests": canary.requests,
        "elapsed_s": round(elapsed_s, 3),
        "alpha": rule.test_alpha,
    }
    short = min(stable.requests, canary.requests) < rule.min_requests
    if short or elapsed_s < rule.min_duration_s:
        waiting = (
            f"{min(stable.requests, canary.requests)} of {rule.min_requests} calls"
            if short
            else f"{elapsed_s:.0f} of {rule.min_duration_s:.0f} s"
        )
        return StepVerdict("hold", reason=f"step {step + 1} at {percent:g} %: {waiting}", **base)  # type: ignore[arg-type]
    checks = tuple(check_metric(rule, metric, stable, canary) for metric in rule.metrics)
    regressed = [c for c in checks if c.regressed]
    if regressed:
        reason = "; ".join(
            f"{c.metric} {c.canary} against {c.stable} (p={c.p_value:.2g} < {rule.test_alpha:.2g}, "
            f"{c.canary_n} and {c.stable_n} calls)"
            for c in regressed
        )
        return StepVerdict("rollback", reason=f"regressed at {percent:g} %: {reason}", checks=checks, **base)  # type: ignore[arg-type]
    last = step == len(rule.steps) - 1
    decision: Decision = "promote" if last else "advance"
    reason = f"no regression at {percent:g} % over {canary.requests} canary calls"
    return StepVerdict(decision, reason=reason, checks=checks, **base)  # type: ignore[arg-type]

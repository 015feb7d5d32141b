"""The release gate: a metric fails only when it got worse by more than allowed with confidence, that is
when the whole confidence interval of the worsening lies beyond the allowance."""

from __future__ import annotations

import math
from dataclasses import dataclass

from keel.errors import InvalidRequestError
from keel.evals.compare import Comparison
from keel.evals.metrics import METRICS


@dataclass(frozen=True)
class Allowance:
    metric: str
    max_drop: float


@dataclass(frozen=True)
class GateCheck:
    metric: str
    max_drop: float
    # How much worse the candidate is (positive: worse; for latency and cost, higher is worse).
    worsening: float
    low: float
    high: float
    failed: bool
    reason: str


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: list[GateCheck]


def parse_allowance(text: str) -> Allowance:
    """`groundedness=0.02` → Allowance("groundedness", 0.02)."""
    name, _, value = text.partition("=")
    name = name.strip()
    if name not in METRICS:
        raise InvalidRequestError(f"Unknown metric '{name}' in --max-drop; known: {', '.join(METRICS)}.")
    try:
        allowed = float(value)
    except ValueError as exc:
        raise InvalidRequestError(f"--max-drop {text!r}: expected METRIC=NUMBER.") from exc
    if allowed < 0 or math.isnan(allowed):
        raise InvalidRequestError(f"--max-drop {text!r}: the allowance is a number of at least 0.")
    return Allowance(name, allowed)


def gate(comparison: Comparison, allowances: list[Allowance]) -> GateResult:
    by_name = {m.metric: m for m in comparison.metrics}
    checks = []
    for allowance in allowances:
        change = by_name.get(allowance.metric)
        if change is None:
            raise InvalidRequestError(
                f"'{allowance.metric}' was not measured on the same items in both runs: nothing to gate on."
            )
        sign = -1.0 if change.higher_is_better else 1.0
        # Adding 0.0 turns -0.0 into 0.0, so an unchanged metric does not read "worse by -0".
        worsening = sign * change.difference + 0.0
        low, high = sorted((sign * change.low + 0.0, sign * change.high + 0.0))
        failed = low > allowance.max_drop
        level = f"{comparison.confidence_level:.0%}"
        if failed:
            reason = (
                f"worse by {worsening:.4g} ({level} CI {low:.4g} to {high:.4g}): "
                f"the whole interval is beyond the allowed {allowance.max_drop:g}"
            )
        elif worsening > allowance.max_drop:
            reason = (
                f"worse by {worsening:.4g}, past the allowed {allowance.max_drop:g}, but the {level} CI "
                f"({low:.4g} to {high:.4g}) reaches within it: not significant"
            )
        else:
            reason = (
                f"worse by {worsening:.4g} ({level} CI {low:.4g} to {high:.4g}), "
                f"within the allowed {allowance.max_drop:g}"
            )
        checks.append(GateCheck(allowance.metric, allowance.max_drop, worsening, low, high, failed, reason))
    return GateResult(not any(c.failed for c in checks), checks)

"""Comparison and gate on synthetic runs: a real drop fails the gate, noise and an identical run pass,
and the CLI's exit codes say so."""

from __future__ import annotations

import numpy as np
import pytest

from keel.errors import InvalidRequestError
from keel.evals.compare import compare
from keel.evals.gate import gate, parse_allowance
from keel.evals.summary import ScoredTrial


def synthetic(scores: np.ndarray, passed: np.ndarray, latency: np.ndarray) -> list[ScoredTrial]:
    return [
        ScoredTrial(
            f"item{i}", 0, ["t"], {"answer_f1": float(s), "answerability": float(p), "latency": float(t)}
        )
        for i, (s, p, t) in enumerate(zip(scores, passed, latency, strict=True))
    ]


@pytest.fixture
def baseline() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    return rng.uniform(0.3, 0.9, 150), (rng.random(150) < 0.8).astype(float), rng.uniform(1, 3, 150)


def test_a_real_drop_fails_the_gate(baseline: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    scores, passed, latency = baseline
    rng = np.random.default_rng(6)
    worse_passed = passed.copy()
    worse_passed[:40] = 0.0
    a = synthetic(scores, passed, latency)
    b = synthetic(scores - 0.1 + rng.normal(0, 0.02, 150), worse_passed, latency + 1.0)
    comparison = compare("run_a", a, "run_b", b)
    by = {m.metric: m for m in comparison.metrics}
    assert by["answer_f1"].high < -0.05 and by["answer_f1"].p_value < 1e-6
    assert by["answerability"].test == "mcnemar" and by["answerability"].p_value < 1e-6
    assert by["latency_p95"].low > 0.5
    assert comparison.most_changed and comparison.most_changed[0].metric == "answer_f1"
    result = gate(comparison, [parse_allowance("answer_f1=0.03"), parse_allowance("latency_p50=0.2")])
    assert not result.passed and all(c.failed for c in result.checks)
    # A drop within a generous allowance passes, and says why.
    lenient = gate(comparison, [parse_allowance("answer_f1=0.5")])
    assert lenient.passed and "within the allowed" in lenient.checks[0].reason


def test_noise_and_an_identical_run_pass(baseline: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    scores, passed, latency = baseline
    rng = np.random.default_rng(8)
    a = synthetic(scores, passed, latency)
    assert gate(
        compare("a", a, "a", a), [parse_allowance("answer_f1=0"), parse_allowance("answerability=0")]
    ).passed
    noisy = synthetic(np.clip(scores - 0.01 + rng.normal(0, 0.1, 150), 0, 1), passed, latency)
    result = gate(compare("a", a, "b", noisy), [parse_allowance("answer_f1=0.0")])
    # The point estimate is a small drop, past the zero allowance, but its interval reaches zero.
    check = result.checks[0]
    assert (result.passed and check.low <= 0.0 and "not significant" in check.reason) or check.worsening <= 0


def test_items_only_in_one_run_are_left_out() -> None:
    a = [ScoredTrial("x", 0, [], {"answer_f1": 1.0}), ScoredTrial("y", 0, [], {"answer_f1": 0.0})]
    b = [ScoredTrial("x", 0, [], {"answer_f1": 0.5})]
    comparison = compare("a", a, "b", b)
    assert comparison.paired_items == 1 and comparison.metrics[0].difference == -0.5


def test_allowances_are_checked() -> None:
    assert parse_allowance("groundedness=0.02").max_drop == 0.02
    for bad in ("nope=1", "answer_f1=x", "answer_f1=-1"):
        with pytest.raises(InvalidRequestError):
            parse_allowance(bad)
    with pytest.raises(InvalidRequestError, match="not measured"):
        gate(compare("a", [], "b", []), [parse_allowance("answer_f1=0.1")])

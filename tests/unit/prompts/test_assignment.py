"""Sticky assignment: the same user always lands in the same arm, and shares follow the weights (the
statistics behind experiment reports and canary judgements are tested in tests/unit/stats)."""

from __future__ import annotations

import numpy as np

from keel.prompts.assignment import bucket, in_canary, pick


def test_assignment_is_sticky_and_follows_the_weights() -> None:
    weights = [0.5, 0.3, 0.2]
    users = [f"user-{i}" for i in range(10_000)]
    first = [pick(weights, bucket("exp-tone", u)) for u in users]
    again = [pick(weights, bucket("exp-tone", u)) for u in users]
    assert first == again, "the same user always gets the same arm"
    shares = np.bincount(first, minlength=3) / len(users)
    assert np.all(np.abs(shares - np.array(weights)) <= 0.01)
    other = [pick(weights, bucket("exp-other", u)) for u in users]
    assert sum(a != b for a, b in zip(first, other, strict=True)) > 4000, "experiments assign independently"


def test_a_rising_canary_only_adds_users() -> None:
    users = [f"customer-{i}" for i in range(5000)]
    at_5 = {u for u in users if in_canary("cny_1", u, 5)}
    at_25 = {u for u in users if in_canary("cny_1", u, 25)}
    assert at_5 <= at_25 and abs(len(at_25) / 5000 - 0.25) < 0.02

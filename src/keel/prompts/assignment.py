"""Sticky assignment: the same end user always lands in the same arm of an experiment or canary.

A unit (an end user, customer or conversation id) is hashed with the experiment's key to a point in
[0, 1); arms own consecutive slices of that interval in proportion to their weights. No state is kept,
so every replica assigns alike, and a canary's rising share only adds users: a user in the canary at
5 % is still in it at 25 %. Different experiments hash differently, so their arms are independent.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence


def bucket(key: str, unit: str | None) -> float:
    """The unit's point in [0, 1) for this key; a call without a unit gets a fresh random point (it
    cannot be sticky: nothing says who made it)."""
    if not unit:
        return random.random()
    digest = hashlib.sha256(f"{key}\x1f{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick(weights: Sequence[float], point: float) -> int:
    """The index of the arm whose slice holds `point`; weights need not sum to 1."""
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("at least one arm needs a positive weight")
    edge = 0.0
    for index, weight in enumerate(weights):
        edge += weight / total
        if point < edge:
            return index
    # Rounding can leave the last edge a hair below 1.
    return len(weights) - 1


def in_canary(key: str, unit: str | None, percent: float) -> bool:
    return bucket(key, unit) < percent / 100.0

"""Combined calls: concurrent callers' texts share batches, each caller gets its own results."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from keel.guard.combined_calls import CombinedCalls


class _SlowModel:
    """Upper-cases texts; a batch can be held at a gate while other callers queue behind it."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, texts: list[str]) -> list[str]:
        self.batches.append(list(texts))
        assert self.gate.wait(10)
        time.sleep(0.01)
        if "boom" in texts:
            raise ValueError("the model failed")
        return [t.upper() for t in texts]


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_a_lone_caller_runs_its_texts_as_one_batch_at_once() -> None:
    model = _SlowModel()
    calls = CombinedCalls(model)
    assert calls(["a", "b"]) == ["A", "B"]
    assert model.batches == [["a", "b"]]


def test_callers_that_queue_while_the_model_runs_share_the_next_batch() -> None:
    model = _SlowModel()
    calls = CombinedCalls(model)
    results: dict[int, list[str]] = {}

    def caller(i: int) -> None:
        results[i] = calls([f"t{i}", f"u{i}"])

    model.gate.clear()  # the first batch waits until the others have queued
    first = threading.Thread(target=caller, args=(0,))
    first.start()
    _wait_for(lambda: len(model.batches) == 1)
    others = [threading.Thread(target=caller, args=(i,)) for i in range(1, 6)]
    for thread in others:
        thread.start()
    _wait_for(lambda: len(calls._queued) == 10)
    model.gate.set()
    for thread in [first, *others]:
        thread.join()
    assert results == {i: [f"T{i}", f"U{i}"] for i in range(6)}
    assert model.batches[0] == ["t0", "u0"]
    assert len(model.batches) == 2  # the five later callers' ten texts ran as one batch
    assert sorted(model.batches[1]) == sorted(f"{p}{i}" for i in range(1, 6) for p in "tu")


def test_batches_keep_to_their_bounds_and_every_text_is_answered() -> None:
    model = _SlowModel()
    calls = CombinedCalls(model, max_items=3, max_chars=8)
    assert calls(["aaaa", "bbbb", "cc", "dd", "ee", "f" * 20]) == ["AAAA", "BBBB", "CC", "DD", "EE", "F" * 20]
    assert model.batches == [["aaaa", "bbbb"], ["cc", "dd", "ee"], ["f" * 20]]  # a long text alone


def test_a_failed_batch_fails_only_the_callers_whose_texts_were_in_it() -> None:
    model = _SlowModel()
    calls = CombinedCalls(model, max_items=1)
    with pytest.raises(ValueError, match="the model failed"):
        calls(["ok", "boom"])
    assert calls(["fine"]) == ["FINE"]

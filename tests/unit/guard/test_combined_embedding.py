"""Concurrent callers' texts embedded in one call: each gets its own rows, errors stay in their batch,
a caller that gives up costs the others nothing, and another event loop is served apart."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from keel.guard.combined_embedding import CombinedEmbedding, Vectors


class HeldModel:
    """Embeds a text as [its length, its first letter's code]; the first call waits until released, so
    that the callers after it queue up meanwhile."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.release = asyncio.Event()
        self._fail_on = fail_on

    async def aembed(self, texts: list[str]) -> Vectors:
        self.calls.append(texts)
        if len(self.calls) == 1:
            await self.release.wait()
        if self._fail_on in texts:
            raise RuntimeError("the model failed")
        return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)


def expected(texts: list[str]) -> Vectors:
    return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_lone_caller_is_embedded_at_once() -> None:
    async def scenario() -> None:
        model = HeldModel()
        model.release.set()
        combined = CombinedEmbedding(model.aembed)
        np.testing.assert_array_equal(await combined(["alpha", "be"]), expected(["alpha", "be"]))
        assert model.calls == [["alpha", "be"]]

    asyncio.run(scenario())


def test_callers_that_queue_meanwhile_share_the_next_call() -> None:
    async def scenario() -> None:
        model = HeldModel()
        combined = CombinedEmbedding(model.aembed)
        first = asyncio.create_task(combined(["first"]))
        await settle()
        others = [asyncio.create_task(combined([f"{n}-a", f"{n}-bb"])) for n in "xyz"]
        await settle()
        model.release.set()
        np.testing.assert_array_equal(await first, expected(["first"]))
        for task, n in zip(others, "xyz", strict=True):
            np.testing.assert_array_equal(await task, expected([f"{n}-a", f"{n}-bb"]))
        assert model.calls == [["first"], ["x-a", "x-bb", "y-a", "y-bb", "z-a", "z-bb"]]

    asyncio.run(scenario())


def test_a_batch_keeps_to_its_bounds() -> None:
    async def scenario() -> None:
        model = HeldModel()
        combined = CombinedEmbedding(model.aembed, max_texts=3, max_chars=12)
        first = asyncio.create_task(combined(["go"]))
        await settle()
        rest = [asyncio.create_task(combined([text])) for text in ["aaaa", "bbbb", "cccc", "dd", "e" * 20]]
        await settle()
        model.release.set()
        await asyncio.gather(first, *rest)
        # 12 characters at most (4 + 4 + 4), 3 texts at most; a text longer than the bound goes alone.
        assert model.calls == [["go"], ["aaaa", "bbbb", "cccc"], ["dd"], ["e" * 20]]

    asyncio.run(scenario())


def test_an_error_reaches_the_callers_of_its_batch_only() -> None:
    async def scenario() -> None:
        model = HeldModel(fail_on="bad")
        combined = CombinedEmbedding(model.aembed, max_texts=2)
        first = asyncio.create_task(combined(["first"]))
        await settle()
        failing = asyncio.create_task(combined(["bad", "b2"]))
        fine = asyncio.create_task(combined(["good"]))
        await settle()
        model.release.set()
        await first
        with pytest.raises(RuntimeError, match="the model failed"):
            await failing
        np.testing.assert_array_equal(await fine, expected(["good"]))
        assert model.calls == [["first"], ["bad", "b2"], ["good"]]

    asyncio.run(scenario())


def test_a_caller_that_gives_up_leaves_the_batch_to_the_others() -> None:
    async def scenario() -> None:
        model = HeldModel()
        combined = CombinedEmbedding(model.aembed)
        first = asyncio.create_task(combined(["first"]))
        await settle()
        gone = asyncio.create_task(combined(["gone"]))
        kept = asyncio.create_task(combined(["kept"]))
        await settle()
        gone.cancel()
        await settle()
        model.release.set()
        await first
        np.testing.assert_array_equal(await kept, expected(["kept"]))
        assert gone.cancelled()
        assert model.calls == [["first"], ["kept"]]

    asyncio.run(scenario())


def test_a_caller_on_another_event_loop_is_served_apart() -> None:
    async def scenario() -> None:
        model = HeldModel()
        combined = CombinedEmbedding(model.aembed)
        first = asyncio.create_task(combined(["first"]))
        await settle()
        elsewhere: list[Vectors] = []
        # While this loop's batch is in hand, a call from another thread's loop goes straight to the model.
        other = threading.Thread(target=lambda: elsewhere.append(asyncio.run(combined(["other"]))))
        other.start()
        other.join(10)
        model.release.set()
        await first
        np.testing.assert_array_equal(elsewhere[0], expected(["other"]))
        assert model.calls == [["first"], ["other"]]
        # The loop's runner is gone once the queue is empty: the next call starts afresh.
        np.testing.assert_array_equal(await combined(["again"]), expected(["again"]))

    asyncio.run(scenario())


def test_rows_that_do_not_match_the_texts_fail_the_batch_not_the_runner() -> None:
    async def scenario() -> None:
        calls: list[list[str]] = []

        async def short_by_one(texts: list[str]) -> Vectors:
            calls.append(texts)
            return expected(texts)[: len(texts) - 1] if texts[0] == "broken" else expected(texts)

        combined = CombinedEmbedding(short_by_one)
        with pytest.raises(ValueError):
            await combined(["broken", "pair"])
        np.testing.assert_array_equal(await combined(["next"]), expected(["next"]))
        assert calls == [["broken", "pair"], ["next"]]

    asyncio.run(scenario())

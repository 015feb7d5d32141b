"""The low-priority worker thread: it runs at the nice value asked for, threads it starts inherit it, and
the rest of the process keeps its priority."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from keel.gateway.providers.cpu_priority import low_priority_workers, lower_this_thread
from keel.gateway.providers.turns import ModelTurns, requested_by

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def nice_of_a_thread_started_here() -> int:
    """What a thread this one starts runs at (PyTorch's OpenMP team is started this way)."""
    seen: list[int] = []
    child = threading.Thread(target=lambda: seen.append(nice_of_this_thread()))
    child.start()
    child.join()
    return seen[0]


@linux
def test_the_worker_and_the_threads_it_starts_run_at_its_nice_value_and_the_caller_is_untouched() -> None:
    before = nice_of_this_thread()
    worker = low_priority_workers("test-low", 7)
    try:
        assert worker.submit(nice_of_this_thread).result() == max(before, 7)
        assert worker.submit(nice_of_a_thread_started_here).result() == max(before, 7)
    finally:
        worker.shutdown()
    assert nice_of_this_thread() == before


@linux
def test_a_thread_already_lower_is_not_raised() -> None:
    def lowered_twice() -> tuple[int, int]:
        return lower_this_thread(12), lower_this_thread(3)

    worker = low_priority_workers("test-twice", 0)
    try:
        first, second = worker.submit(lowered_twice).result()
    finally:
        worker.shutdown()
    assert first == second == max(12, nice_of_this_thread())


def test_a_nice_value_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        lower_this_thread(20)
    with pytest.raises(ValueError):
        lower_this_thread(-1)


@linux
def test_a_turns_work_runs_on_the_executor_it_is_given() -> None:
    async def scenario() -> tuple[int, int]:
        turns = ModelTurns()
        worker = low_priority_workers("test-turns", 9)
        try:
            with requested_by("A"):
                given = await turns.run(lambda _: nice_of_this_thread(), executor=worker)
                default = await turns.run(lambda _: nice_of_this_thread())
        finally:
            worker.shutdown()
        assert turns.holders() == [] and turns.waiting() == []
        return given, default

    given, default = asyncio.run(scenario())
    assert given == max(9, nice_of_this_thread())
    assert default == nice_of_this_thread()

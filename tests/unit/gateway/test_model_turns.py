"""Fair turns at a local model: round robin across requesters, arrival order within one, lanes, and
cancellation that neither loses nor doubles a turn."""

from __future__ import annotations

import asyncio
import threading

import pytest

from keel.gateway.providers.turns import ModelTurns, requested_by


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def enter_async(turns: ModelTurns, requester: str) -> asyncio.Task[object]:
    async def wait() -> object:
        with requested_by(requester):
            return await turns.aacquire()

    return asyncio.ensure_future(wait())


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_requesters_take_turns_in_round_robin_and_their_own_work_in_order() -> None:
    async def scenario() -> list[str]:
        turns = ModelTurns()
        served: list[str] = []
        holder = await enter(turns, "A", served, "a0")
        # A queues three more pieces of work before B and C arrive with one each.
        tasks = [enter_async(turns, requester) for requester in ("A", "A", "A", "B", "C")]
        labels = ["a1", "a2", "a3", "b1", "c1"]
        await settle()
        assert turns.waiting() == ["A", "B", "C"]
        turn = holder
        for _ in labels:
            turn.release()
            await settle()
            done = [(task, label) for task, label in zip(tasks, labels, strict=True) if task.done()]
            newest = next((task, label) for task, label in done if label not in served)
            served.append(newest[1])
            turn = newest[0].result()  # type: ignore[assignment]
        turn.release()
        return served

    async def enter(turns: ModelTurns, requester: str, served: list[str], label: str) -> object:
        served.append(label)
        with requested_by(requester):
            return await turns.aacquire()

    # A was first to queue, then B and C: one turn each, then A's remaining work.
    assert asyncio.run(scenario()) == ["a0", "a1", "b1", "c1", "a2", "a3"]


def test_a_request_of_many_batches_lets_a_newcomer_in_after_one_batch() -> None:
    """A's batches each queue after the previous one ends; B, arriving during A's first batch, runs
    next, however many batches A has left."""
    turns = ModelTurns()
    order: list[str] = []
    b_queued = threading.Event()

    def tenant_a() -> None:
        with requested_by("A"):
            for batch in range(5):
                with turns.acquire():
                    order.append(f"A{batch}")
                    if batch == 0:
                        b_queued.wait(timeout=30)

    def tenant_b() -> None:
        with requested_by("B"), turns.acquire():
            order.append("B")

    first = threading.Thread(target=tenant_a)
    first.start()
    while turns.holders() != ["A"]:
        threading.Event().wait(0.001)
    second = threading.Thread(target=tenant_b)
    second.start()
    while turns.waiting() != ["B"]:
        threading.Event().wait(0.001)
    b_queued.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert order == ["A0", "B", "A1", "A2", "A3", "A4"]


def test_lanes_let_that_many_turns_run_at_once() -> None:
    async def scenario() -> None:
        turns = ModelTurns(lanes=2)
        first, second, third = (enter_async(turns, r) for r in ("A", "A", "B"))
        await settle()
        assert first.done() and second.done() and not third.done()
        assert turns.holders() == ["A", "A"] and turns.waiting() == ["B"]
        first.result().release()  # type: ignore[attr-defined]
        await settle()
        assert third.done() and turns.holders() == ["A", "B"]

    asyncio.run(scenario())
    with pytest.raises(ValueError):
        ModelTurns(lanes=0)


def test_a_cancelled_wait_leaves_the_queue_and_a_late_grant_is_passed_on() -> None:
    async def scenario() -> None:
        turns = ModelTurns()
        holder = await ModelTurns.aacquire(turns)
        waiting, after = enter_async(turns, "B"), enter_async(turns, "C")
        await settle()
        waiting.cancel()
        await settle()
        assert turns.waiting() == ["C"]
        holder.release()
        await settle()
        assert after.done() and turns.holders() == ["C"]

        # Granted and cancelled in the same moment: the turn goes on to the next waiter, not lost.
        late, last = enter_async(turns, "D"), enter_async(turns, "E")
        await settle()
        after.result().release()  # type: ignore[attr-defined]
        late.cancel()
        await settle()
        assert last.done() and turns.holders() == ["E"]
        last.result().release()  # type: ignore[attr-defined]
        assert turns.holders() == [] and turns.waiting() == []

    asyncio.run(scenario())


def test_work_of_a_cancelled_caller_never_starts_and_running_work_is_told_to_stop() -> None:
    async def scenario() -> None:
        turns = ModelTurns()
        started, stopped, release = threading.Event(), threading.Event(), threading.Event()
        ran: list[str] = []

        def long_work(cancelled: threading.Event) -> str:
            started.set()
            while not cancelled.wait(0.01):  # a generation checking its flag between tokens
                pass
            stopped.set()
            release.wait(5)
            return "stopped"

        def queued_work(_: threading.Event) -> str:
            ran.append("queued")
            return "ran"

        with requested_by("A"):
            first = asyncio.ensure_future(turns.run(long_work))
        await asyncio.to_thread(started.wait, 5)
        with requested_by("B"):
            queued = asyncio.ensure_future(turns.run(queued_work))
        await settle()
        assert turns.waiting() == ["B"]
        first.cancel()  # A's client went away
        await asyncio.to_thread(stopped.wait, 5)
        assert stopped.is_set()
        # B is still waiting: the model is held until the stopped work has returned.
        assert turns.holders() == ["A"] and not queued.done()
        queued.cancel()  # and B's client goes away before its turn
        release.set()
        for _ in range(500):
            if not turns.holders():
                break
            await asyncio.sleep(0.01)
        assert ran == [] and turns.holders() == [] and turns.waiting() == []

    asyncio.run(scenario())


def test_each_turn_reports_how_long_it_waited() -> None:
    clock, waits = Clock(), []
    turns = ModelTurns(on_wait=waits.append, clock=clock)

    async def scenario() -> float:
        first = await turns.aacquire()
        second = enter_async(turns, "B")
        await settle()
        clock.now = 2.5
        first.release()
        turn = await second
        turn.release()  # type: ignore[attr-defined]
        return turn.waited_s  # type: ignore[attr-defined,no-any-return]

    assert asyncio.run(scenario()) == 2.5
    assert waits == [0.0, 2.5]

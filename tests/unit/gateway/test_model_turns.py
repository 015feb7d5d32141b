"""Fair turns at a local model: round robin across requesters, arrival order within one, lanes, and
cancellation that neither loses nor doubles a turn."""

from __future__ import annotations

import asyncio
import threading

import pytest

from keel.gateway.providers.turn_order import HEAD_START_S
from keel.gateway.providers.turns import ModelTurns, Turn, requested_by


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


def serve_in_turn(pieces: dict[str, list[str]], lead_s: float, held_s: float) -> list[str]:
    """A's piece `a0` is granted first, and A queues its other pieces; `lead_s` later B and C queue
    theirs. Each piece after `a0` holds the model for `held_s`. Returns the order the pieces ran in."""

    async def scenario() -> list[str]:
        clock = Clock()
        turns = ModelTurns(clock=clock)
        served = ["a0"]
        with requested_by("A"):
            turn = await turns.aacquire()
        labels = [label for requester in "ABC" for label in pieces.get(requester, [])]
        tasks = {label: enter_async(turns, label[0].upper()) for label in labels if label[0] == "a"}
        await settle()
        clock.now += lead_s
        tasks |= {label: enter_async(turns, label[0].upper()) for label in labels if label[0] != "a"}
        await settle()
        for _ in labels:
            clock.now += held_s
            turn.release()
            await settle()
            label = next(label for label in labels if tasks[label].done() and label not in served)
            served.append(label)
            turn = tasks[label].result()  # type: ignore[assignment]
        turn.release()
        return served

    return asyncio.run(scenario())


def test_requesters_with_equal_model_time_take_turns_in_round_robin_and_their_own_work_in_order() -> None:
    # No time passes: A (first to queue), B and C have had the same model time; one turn each in the
    # order they first queued, then A's remaining work.
    pieces = {"A": ["a1", "a2", "a3"], "B": ["b1"], "C": ["c1"]}
    assert serve_in_turn(pieces, lead_s=0.0, held_s=0.0) == ["a0", "a1", "b1", "c1", "a2", "a3"]


def test_newcomers_go_ahead_of_a_requester_that_has_had_the_model() -> None:
    pieces = {"A": ["a1", "a2", "a3"], "B": ["b1"], "C": ["c1"]}
    assert serve_in_turn(pieces, lead_s=0.5, held_s=0.5) == ["a0", "b1", "c1", "a1", "a2", "a3"]


def test_a_newcomer_runs_ahead_for_its_head_start_then_they_alternate() -> None:
    # A's first piece has had the model 5 s when B queues five pieces of 1 s: B runs ahead for its head
    # start of 2 s (A's piece in hand goes on 1 s more), then the two alternate by model time.
    assert HEAD_START_S == 2.0
    pieces = {"A": ["a1", "a2", "a3"], "B": ["b1", "b2", "b3", "b4", "b5"]}
    order = serve_in_turn(pieces, lead_s=5.0, held_s=1.0)
    assert order[:5] == ["a0", "b1", "b2", "b3", "a1"]
    assert order[5:] in (["b4", "a2", "b5", "a3"], ["a2", "b4", "a3", "b5"])


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
    clock, waits = Clock(), list[float]()
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


def queue_on_thread(turns: ModelTurns, requester: str, ran: list[str]) -> threading.Thread:
    """`requester` queues for one turn on a thread of its own, and records when it runs."""

    def work() -> None:
        with requested_by(requester), turns.acquire():
            ran.append(requester)

    thread = threading.Thread(target=work)
    thread.start()
    while requester not in turns.waiting():
        threading.Event().wait(0.001)
    return thread


def test_a_held_turn_is_kept_at_checkpoints_until_a_waiting_requester_is_owed_the_model() -> None:
    clock, ran = Clock(), list[str]()
    turns = ModelTurns(clock=clock)
    with requested_by("A"):
        turn = turns.acquire()
    clock.now = 5.0
    turn.checkpoint()  # nobody waits: A keeps the model
    assert turns.holders() == ["A"]

    newcomer = queue_on_thread(turns, "B", ran)
    turn.checkpoint()  # B has had less model time: B runs, then A has the model again
    newcomer.join(timeout=30)
    assert ran == ["B"] and turns.holders() == ["A"] and turns.waiting() == []

    same = queue_on_thread(turns, "A", ran)
    turn.checkpoint()  # A's own other work, in arrival order: it runs between two of A's steps
    same.join(timeout=30)
    assert ran == ["B", "A"] and turns.holders() == ["A"]
    turn.release()
    assert turns.holders() == []


def test_a_requester_ahead_keeps_the_model_at_checkpoints_while_the_others_have_had_more() -> None:
    clock, ran = Clock(), list[str]()
    turns = ModelTurns(clock=clock)
    with requested_by("A"):
        first = turns.acquire()
    taken: list[Turn] = []

    def take_as_b() -> None:
        with requested_by("B"):
            taken.append(turns.acquire())

    b = threading.Thread(target=take_as_b)
    b.start()
    while turns.waiting() != ["B"]:
        threading.Event().wait(0.001)
    clock.now = 5.0  # A has had 5 s of model time while B waited
    first.release()
    b.join(timeout=30)
    turn = taken[0]
    waiting = queue_on_thread(turns, "A", ran)
    clock.now = 6.0
    turn.checkpoint()  # B has had 1 s: it keeps the model
    assert turns.holders() == ["B"] and turns.waiting() == ["A"] and ran == []
    turn.release()
    waiting.join(timeout=30)
    assert ran == ["A"]


def test_checkpoint_is_for_a_thread_turn() -> None:
    async def scenario() -> None:
        turn = await ModelTurns().aacquire()
        with pytest.raises(RuntimeError):
            turn.checkpoint()
        turn.release()

    asyncio.run(scenario())


def test_a_requester_whose_last_work_ran_alone_is_not_placed_behind_a_later_newcomer() -> None:
    clock, ran = Clock(), list[str]()
    turns = ModelTurns(clock=clock)
    with requested_by("B"), turns.acquire():
        clock.now = 3.0  # B's earlier request, alone at the model
    with requested_by("A"):
        turn = turns.acquire()  # A's large request, at the idle model: a new busy period
    clock.now = 3.7
    waiting = queue_on_thread(turns, "B", ran)
    try:
        turn.checkpoint()  # B's small request has had less of this period: it runs at A's next checkpoint
        waiting.join(timeout=5)
        assert ran == ["B"] and turns.holders() == ["A"]
    finally:
        turn.release()
        waiting.join(timeout=30)

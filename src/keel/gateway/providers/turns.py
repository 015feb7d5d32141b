"""Fair turns at one local model: who runs the next bounded piece of work on it (an embedding batch, a
generation) when several requests want it at once.

Work is grouped by requester: the tenant a call is made for, which the gateway names with
`requested_by` (work started without one, such as an ingestion job, is a requester of its own). The next
turn goes to the waiting requester that has had the least model time (`turn_order.py`: a newcomer gets a
bounded head start, so its small request runs ahead of a large one in progress); among equals, round the
waiting requesters in the order they first queued; and to each requester's own work in arrival order. A
request of many batches takes one turn per batch and queues again, so a request from someone else waits
for at most the piece of work in hand.

A turn is held by one caller at a time; the holder releases it when its piece of work is done (a thread
running the work releases it itself, so a cancelled request never leaves the model held or doubly used).
A thread running a sequence of pieces (a generation's steps) may hold one turn across them and call
`checkpoint()` between pieces: it keeps the model while no one waiting is owed it, so a request that runs
ahead of the others is not slowed by a handover at every step.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from opentelemetry import trace

from keel.gateway.providers.turn_order import TurnOrder
from keel.observe.attributes import MODEL_QUEUE_SECONDS

T = TypeVar("T")

_REQUESTER: contextvars.ContextVar[str | None] = contextvars.ContextVar("keel_model_requester", default=None)


@contextmanager
def requested_by(requester: str) -> Iterator[None]:
    """Model work started inside this block (threads it starts included) is `requester`'s."""
    token = _REQUESTER.set(requester)
    try:
        yield
    finally:
        _REQUESTER.reset(token)


def current_requester() -> str | None:
    return _REQUESTER.get()


def add_queue_time(seconds: float) -> None:
    """Adds to the current span's model queue time: one request may queue several times (its checks,
    its batches, its retries), and the span reports the sum."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    recorded = getattr(span, "attributes", None) or {}
    span.set_attribute(MODEL_QUEUE_SECONDS, float(recorded.get(MODEL_QUEUE_SECONDS, 0.0)) + seconds)


@dataclass(eq=False)
class Turn:
    """One caller's claim on the model: waiting until granted, then held until released."""

    turns: ModelTurns
    requester: str
    queued_at: float
    waited_s: float = 0.0
    granted_at: float = 0.0
    granted: threading.Event = field(default_factory=threading.Event)
    # Set for a caller waiting on an event loop: the grant resolves it there.
    future: asyncio.Future[None] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    released: bool = False

    def release(self) -> None:
        self.turns.release(self)

    def checkpoint(self) -> None:
        """Between two pieces of work under this turn (a thread's turn, from `acquire`): passes the model
        to a waiting requester owed it, or to this requester's own next work, and waits to get it back."""
        self.turns.checkpoint(self)

    def __enter__(self) -> Turn:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class ModelTurns:
    """Turns across requesters, least model time first, `lanes` of them held at once (1: the model runs
    one piece of work at a time). `on_wait(seconds)` hears how long each turn waited."""

    def __init__(
        self,
        lanes: int = 1,
        on_wait: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        order: TurnOrder | None = None,
    ) -> None:
        if lanes < 1:
            raise ValueError("a model needs at least one lane")
        self.lanes = lanes
        self._on_wait = on_wait
        self._clock = clock
        self._lock = threading.Lock()
        self._holders: list[Turn] = []
        # Requesters with turns waiting, in the order they will be served; each with its own queue.
        self._waiting: OrderedDict[str, deque[Turn]] = OrderedDict()
        self._order = order or TurnOrder()
        self._anonymous = 0

    def holders(self) -> list[str]:
        """The requesters holding turns now."""
        with self._lock:
            return [turn.requester for turn in self._holders]

    def waiting(self) -> list[str]:
        """The requesters waiting, in the order they will be served."""
        with self._lock:
            return list(self._waiting)

    def acquire(self) -> Turn:
        """Blocks this thread until the turn is granted; the caller releases it (or uses `with`)."""
        turn = self._enter(None, None)
        turn.granted.wait()
        add_queue_time(turn.waited_s)
        return turn

    async def aacquire(self) -> Turn:
        """Waits on the event loop, occupying no thread; a cancelled wait gives up its place."""
        loop = asyncio.get_running_loop()
        turn = self._enter(loop, loop.create_future())
        assert turn.future is not None
        try:
            await turn.future
        except asyncio.CancelledError:
            self.release(turn)  # leaves the queue, or passes the turn on if it was granted meanwhile
            raise
        return turn

    async def run(
        self,
        work: Callable[[threading.Event], T],
        cancelled: threading.Event | None = None,
        executor: Executor | None = None,
    ) -> T:
        """Waits for a turn, then runs `work(cancelled)` in a worker thread during it (of `executor`, else
        the event loop's default); the current span hears how long the turn waited. When the awaiting
        task is cancelled, `cancelled` is set: work not yet started never starts, and work that checks
        the flag (between tokens) stops early; the model goes on to the next turn when the work returns."""
        turn = await self.aacquire()
        add_queue_time(turn.waited_s)
        stop = cancelled or threading.Event()

        def in_turn() -> T:
            with turn:
                if stop.is_set():
                    raise _Skipped  # its caller is gone: nothing to compute for
                return work(stop)

        context = contextvars.copy_context()
        try:
            running = asyncio.get_running_loop().run_in_executor(executor, context.run, in_turn)
        except BaseException:
            turn.release()
            raise
        try:
            # Shielded: cancelling the caller must not cancel a queued executor item that would release.
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            stop.set()
            raise

    def release(self, turn: Turn) -> None:
        """Hands the model to the requester owed the next turn; a turn still queued leaves the queue."""
        with self._lock:
            if turn.released:
                return
            turn.released = True
            if turn not in self._holders:
                queue = self._waiting.get(turn.requester)
                if queue is not None and turn in queue:
                    queue.remove(turn)
                    if not queue:
                        del self._waiting[turn.requester]
                return
            self._order.charge(turn.requester, self._clock() - turn.granted_at, self._busy())
            self._holders.remove(turn)
            granted = self._grant_next()
        if granted is not None:
            self._signal(granted)

    def checkpoint(self, turn: Turn) -> None:
        """See `Turn.checkpoint`: blocks this thread while others have the model."""
        if turn.future is not None:
            raise RuntimeError("checkpoint() is for a thread's turn, taken with acquire()")
        with self._lock:
            now = self._clock()
            self._order.charge(turn.requester, now - turn.granted_at, self._busy())
            turn.granted_at = now
            others = [requester for requester in self._waiting if requester != turn.requester]
            if turn.requester not in self._waiting and not self._order.owed_before(turn.requester, others):
                return
            self._holders.remove(turn)
            turn.granted.clear()
            turn.queued_at = now
            self._waiting.setdefault(turn.requester, deque()).append(turn)
            granted = self._grant_next()
        if granted is not None:
            self._signal(granted)
        turn.granted.wait()
        add_queue_time(turn.waited_s)

    def _enter(self, loop: asyncio.AbstractEventLoop | None, future: asyncio.Future[None] | None) -> Turn:
        requester = current_requester()
        with self._lock:
            if requester is None:
                self._anonymous += 1
                requester = f"anonymous-{self._anonymous}"
            turn = Turn(self, requester, self._clock(), future=future, loop=loop)
            if requester not in self._busy():
                self._charge_holders()  # the newcomer is placed against model time used up to now
                self._order.arrive(requester, self._busy())
            if len(self._holders) < self.lanes and not self._waiting:
                self._holders.append(turn)
                turn.granted_at = turn.queued_at
                granted: Turn | None = turn
            else:
                self._waiting.setdefault(requester, deque()).append(turn)
                granted = None
        if granted is not None:
            self._signal(granted)
        return turn

    def _charge_holders(self) -> None:
        """Under the lock: the holders' model time up to now."""
        now = self._clock()
        for holder in self._holders:
            self._order.charge(holder.requester, now - holder.granted_at, self._busy())
            holder.granted_at = now

    def _busy(self) -> set[str]:
        """Under the lock: the requesters holding or waiting for turns."""
        return {turn.requester for turn in self._holders} | set(self._waiting)

    def _grant_next(self) -> Turn | None:
        """Under the lock: the oldest turn of the waiting requester owed the next one (the first of equals);
        that requester goes to the back of the rotation."""
        if not self._waiting:
            return None
        requester = self._order.first(self._waiting)
        queue = self._waiting[requester]
        turn = queue.popleft()
        if queue:
            self._waiting.move_to_end(requester)
        else:
            del self._waiting[requester]
        self._holders.append(turn)
        turn.granted_at = self._clock()  # under the lock: a newcomer may charge the holders at once
        return turn

    def _signal(self, turn: Turn) -> None:
        turn.waited_s = max(0.0, turn.granted_at - turn.queued_at)
        if self._on_wait is not None:
            self._on_wait(turn.waited_s)
        turn.granted.set()
        if turn.future is not None and turn.loop is not None:
            try:
                turn.loop.call_soon_threadsafe(_resolve, turn)
            except RuntimeError:  # its event loop is closed: nobody will use the turn
                self.release(turn)


class _Skipped(Exception):
    pass


def _resolve(turn: Turn) -> None:
    assert turn.future is not None
    if not turn.future.done():
        turn.future.set_result(None)
    elif not turn.released:
        turn.release()  # the waiter was cancelled just as the turn came: pass it on

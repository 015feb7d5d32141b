"""Calls to a batch-capable model from many threads, combined into batches as they queue up.

A model like spaCy's costs far less per text in one batch than in one call per text (its per-call
overhead is most of the work on a short message), but the guard's callers are request threads that
each hold one or two texts. Here a caller queues its items; whichever caller holds the model takes
everything queued so far as one batch (bounded by `max_items` and `max_chars`), and the others find
their results done when their turn comes. A lone caller pays no wait at all: nothing is delayed on
the chance that more arrives. Calls to the model stay serialised, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Result = TypeVar("Result")


@dataclass(eq=False)
class _Slot(Generic[Result]):
    text: str
    done: bool = False
    result: Result | None = None
    error: BaseException | None = field(default=None, repr=False)


class CombinedCalls(Generic[Result]):
    def __init__(
        self, run: Callable[[list[str]], Sequence[Result]], *, max_items: int = 16, max_chars: int = 16_000
    ) -> None:
        self._run = run
        self._max_items = max_items
        self._max_chars = max_chars
        self._queued: list[_Slot[Result]] = []
        self._queue_lock = threading.Lock()
        self._model_lock = threading.Lock()  # held while the model runs a batch

    def __call__(self, texts: Sequence[str]) -> list[Result]:
        slots = [_Slot[Result](text) for text in texts]
        with self._queue_lock:
            self._queued.extend(slots)
        for slot in slots:
            while not slot.done:
                with self._model_lock:
                    if not slot.done:  # else a batch taken by another caller held it
                        self._run_batch(self._take())
        for slot in slots:
            if slot.error is not None:
                raise slot.error
        return [slot.result for slot in slots]  # type: ignore[misc]

    def _take(self) -> list[_Slot[Result]]:
        """The oldest queued slots, up to the bounds (always at least one)."""
        with self._queue_lock:
            count = batch_size([len(slot.text) for slot in self._queued], self._max_items, self._max_chars)
            batch, self._queued = self._queued[:count], self._queued[count:]
        return batch

    def _run_batch(self, batch: list[_Slot[Result]]) -> None:
        try:
            results = self._run([slot.text for slot in batch])
            for slot, result in zip(batch, results, strict=True):
                slot.result = result
        except Exception as exc:  # each caller whose text was in the batch raises it, no one else
            for slot in batch:
                slot.error = exc
        finally:
            for slot in batch:
                if slot.result is None and slot.error is None:  # interrupted by a BaseException
                    slot.error = RuntimeError("the batch this text was in did not finish")
                slot.done = True


def batch_size(lengths: Sequence[int], max_items: int, max_chars: int) -> int:
    """How many of the oldest queued texts (of these lengths) make the next batch: at most `max_items`
    and `max_chars`, but always one, so a text longer than the bound still gets a batch of its own."""
    count = chars = 0
    for length in lengths:
        if count and (count >= max_items or chars + length > max_chars):
            break
        count += 1
        chars += length
    return count

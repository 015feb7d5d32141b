"""Whose turn at a local model comes next: the waiting requester that has had the least model time.

Model time is the seconds a requester's turns held the model. A requester that starts waiting after a
pause (or for the first time) is placed `head_start_s` below the line (the least model time among the
requesters busy at the model, as last seen; the line never moves back), unless it has had more than
that already. So a newcomer's small request runs ahead of a large request in progress for up to
`head_start_s` of model time, and then they alternate: requesters that keep the model busy share it
equally, none is starved, and a burst of newcomers delays a request in progress by what they use. It is
the rule of Linux's CFS for a task that wakes up.

Model time counts over a busy period only: a requester that arrives at an idle model (nobody holding or
waiting) starts a new one, and every earlier record is dropped. Nobody waited meanwhile, so nobody is owed
anything; a record kept from a period in which its requester had the model to itself would otherwise
place it at the line, behind a large request that arrived after it with a fresh head start.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

# Long enough for a small request (a short chat answer, a query's embedding) to run whole on two busy
# cores; short enough that a newcomer cannot hold up work in progress for long.
HEAD_START_S = 2.0


class TurnOrder:
    """Model time per requester; not thread-safe (`ModelTurns` calls it under its lock)."""

    def __init__(self, head_start_s: float = HEAD_START_S) -> None:
        if head_start_s < 0:
            raise ValueError("a head start cannot be negative")
        self.head_start_s = head_start_s
        self._used: dict[str, float] = {}
        self._line = 0.0

    def used(self, requester: str) -> float:
        """Model time on the shared scale (a newcomer's starts below the line, so it can be negative)."""
        return self._used.get(requester, self._line - self.head_start_s)

    def arrive(self, requester: str, busy: Collection[str]) -> None:
        """`requester` starts waiting, and was not among the `busy` requesters (holding or waiting)."""
        if not busy:
            self._used.clear()  # a new busy period
        self._advance(busy)
        placed = self._line - self.head_start_s
        self._used[requester] = max(self._used.get(requester, placed), placed)
        # Requesters gone from the model and at or below the placement would be placed there anyway.
        for gone in [
            r for r, used in self._used.items() if used <= placed and r != requester and r not in busy
        ]:
            del self._used[gone]

    def charge(self, requester: str, seconds: float, busy: Collection[str]) -> None:
        """`requester`'s turn held the model for `seconds`."""
        self._used[requester] = self.used(requester) + max(0.0, seconds)
        self._advance(busy)

    def first(self, waiting: Iterable[str]) -> str:
        """The waiting requester owed the next turn; among equals, the first (the caller's rotation)."""
        return min(waiting, key=self.used)

    def owed_before(self, holder: str, waiting: Iterable[str]) -> bool:
        """Whether a waiting requester has had less model time than `holder`."""
        mine = self.used(holder)
        return any(self.used(requester) < mine for requester in waiting)

    def _advance(self, busy: Collection[str]) -> None:
        known = [self._used[r] for r in busy if r in self._used]
        if known:
            self._line = max(self._line, min(known))

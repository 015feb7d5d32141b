"""A circuit breaker per deployment: stop calling a deployment that keeps failing, probe it later.

closed ──N failures within the window──▶ open ──cooldown elapsed──▶ half-open (one probe at a time)
half-open ──probe succeeds──▶ closed;  half-open ──probe fails──▶ open (cooldown starts again)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum

from keel.config import BreakerSettings


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._failures: deque[float] = deque()
        self._opened_at: float | None = None
        self._probe_in_flight = False
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self._settings.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """Whether a call may go to the deployment now; in half-open, only one probe at a time."""
        with self._lock:
            state = self._state()
            if state == BreakerState.CLOSED:
                return True
            if state == BreakerState.HALF_OPEN and not self._probe_in_flight:
                self._probe_in_flight = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._failures.clear()
            self._opened_at = None
            self._probe_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            now = self._clock()
            if self._state() != BreakerState.CLOSED:
                # A failed probe (or a call let through just before opening): open for a new cooldown.
                self._opened_at = now
                self._probe_in_flight = False
                return
            self._failures.append(now)
            while self._failures and now - self._failures[0] > self._settings.window_s:
                self._failures.popleft()
            if len(self._failures) >= self._settings.failures:
                self._opened_at = now
                self._failures.clear()

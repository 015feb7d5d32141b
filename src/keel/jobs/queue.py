"""The job queue on huey: SQLite storage embedded, Redis for scale-out; a consumer that shares a process.

huey was chosen because it is small, well kept, and has both an SQLite and a Redis storage behind one
API, which is exactly Keel's two tiers. The queue only carries job ids: a job's items, payloads and
progress live in Keel's database, so a message lost with a killed worker costs nothing — the job is
found unfinished and enqueued again on the next start.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from huey import Huey, RedisHuey, SqliteHuey
from huey.consumer import Consumer

# How long a stopping consumer waits for the batch in hand; under Kubernetes' default 30 s grace period.
DRAIN_TIMEOUT_S = 25.0


def build_queue(data_dir: Path, redis_url: str | None = None, *, name: str = "keel") -> Huey:
    if redis_url:
        return RedisHuey(name=name, url=redis_url, results=False, utc=True)
    return SqliteHuey(name=name, filename=str(data_dir / "queue.db"), results=False, utc=True)


class EmbeddedConsumer(Consumer):  # type: ignore[misc]
    """A consumer that runs beside the API server in one process: the server owns the signals."""

    def _set_signal_handlers(self) -> None:
        pass


def start_embedded_consumer(queue: Huey, workers: int = 1) -> EmbeddedConsumer:
    consumer = EmbeddedConsumer(
        queue,
        workers=workers,
        worker_type="thread",
        periodic=True,
        initial_delay=0.05,
        max_delay=0.5,
        check_worker_health=False,
        shutdown_timeout=DRAIN_TIMEOUT_S,
    )
    consumer.start()
    return consumer


class DrainingConsumer(Consumer):  # type: ignore[misc]
    """`keel worker`'s consumer. SIGTERM (what Docker and Kubernetes send) and Ctrl-C both drain: the
    batch in hand finishes and `on_stop` lets the jobs hand the rest back to the queue; a second signal,
    or `DRAIN_TIMEOUT_S`, stops at once."""

    def __init__(self, queue: Huey, on_stop: Callable[[], None], workers: int = 1) -> None:
        super().__init__(
            queue,
            workers=workers,
            worker_type="thread",
            periodic=True,
            graceful_signal="TERM",
            shutdown_timeout=DRAIN_TIMEOUT_S,
        )
        self._on_stop = on_stop
        # huey makes SIGINT the immediate stop once SIGTERM is the graceful one: drain on both.
        self._signal_actions[signal.SIGINT] = (False, True)

    def _handle_signal(self, signum: int, frame: FrameType | None) -> None:
        super()._handle_signal(signum, frame)
        self._on_stop()
        # Whichever signal comes second (Ctrl-C after SIGTERM too) interrupts the drain.
        for stop in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop, signal.default_int_handler)


def workers_alive(consumer: Consumer) -> bool:
    """After a graceful stop: True when the drain timed out and a worker is still inside a task."""
    return any(thread.is_alive() for _, thread in consumer.worker_threads)

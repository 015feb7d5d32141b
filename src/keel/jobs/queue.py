"""The job queue on huey: SQLite storage embedded, Redis for scale-out; a consumer that shares a process.

huey was chosen because it is small, well kept, and has both an SQLite and a Redis storage behind one
API, which is exactly Keel's two tiers. The queue only carries job ids: a job's items, payloads and
progress live in Keel's database, so a message lost with a killed worker costs nothing — the job is
found unfinished and enqueued again on the next start.
"""

from __future__ import annotations

from pathlib import Path

from huey import Huey, RedisHuey, SqliteHuey
from huey.consumer import Consumer


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
    )
    consumer.start()
    return consumer

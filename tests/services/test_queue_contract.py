"""One contract for the job queue: the same tests run on huey over SQLite (embedded) and over Redis
(scale-out). Each test opens the queue through `build_queue`, as the runtime does; a second `open()`
is what a restarted process or another worker host sees of the same queue."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from huey import Huey

from keel.jobs.queue import build_queue, start_embedded_consumer

# A database of its own: other suites flush theirs, and this one removes only its own queue's keys.
REDIS_URL = "redis://127.0.0.1:6379/13"
TASK = "keel.test.record"


@dataclass
class QueueBackend:
    name: str
    data_dir: Path
    redis_url: str | None
    queue_name: str = field(default_factory=lambda: f"keel-contract-{uuid.uuid4().hex[:8]}")
    opened: list[Huey] = field(default_factory=list)

    def open(self, task: Callable[[str], None], *, retries: int = 0) -> tuple[Huey, Callable[[str], None]]:
        """The queue as one process sees it, with the test's task registered under one shared name."""
        queue = build_queue(self.data_dir, self.redis_url, name=self.queue_name)
        if self.redis_url:
            # Wake up often, so that a graceful stop does not wait out a long blocking read.
            queue.storage.read_timeout = 0.2
        self.opened.append(queue)
        enqueue = queue.task(name=TASK, context=False, retries=retries, retry_delay=0)(task)
        return queue, enqueue


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueBackend]:
    redis_url = None
    if request.param == "redis":
        try:
            redis.Redis.from_url(REDIS_URL).ping()
        except redis.ConnectionError as exc:
            pytest.fail(f"Redis is not running at {REDIS_URL}: {exc}")
        redis_url = REDIS_URL
    built = QueueBackend(request.param, tmp_path, redis_url)
    yield built
    for queue in built.opened:
        queue.storage.flush_all()
        queue.storage.close()


class Record:
    """What the task saw, shared by every consumer thread of the test."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        with self._lock:
            self.values.append(value)

    def wait_for(self, count: int, limit_s: float = 20.0) -> None:
        deadline = time.monotonic() + limit_s
        while len(self.values) < count:
            assert time.monotonic() < deadline, f"only {len(self.values)} of {count} tasks ran"
            time.sleep(0.02)


def test_a_queued_task_is_consumed_with_its_argument(backend: QueueBackend) -> None:
    seen = Record()
    queue, record = backend.open(seen.add)
    record("hello")
    assert len(queue) == 1
    consumer = start_embedded_consumer(queue)
    try:
        seen.wait_for(1)
    finally:
        consumer.stop(graceful=True)
    assert seen.values == ["hello"]
    assert len(queue) == 0


def test_a_failing_task_is_retried(backend: QueueBackend) -> None:
    seen = Record()

    def flaky(value: str) -> None:
        seen.add(value)
        if len(seen.values) == 1:
            raise RuntimeError("the first attempt fails")

    queue, record = backend.open(flaky, retries=1)
    consumer = start_embedded_consumer(queue)
    try:
        record("again")
        seen.wait_for(2)
        time.sleep(0.3)
    finally:
        consumer.stop(graceful=True)
    assert seen.values == ["again", "again"], "retried once, and not after it succeeded"


def test_queued_tasks_outlive_a_consumer_restart(backend: QueueBackend) -> None:
    seen = Record()
    before, record = backend.open(seen.add)
    stopped = start_embedded_consumer(before)
    stopped.stop(graceful=True)
    for i in range(3):
        record(f"task-{i}")
    before.storage.close()

    after, _ = backend.open(seen.add)
    assert len(after) == 3, "the queue is in its storage, not in the process that filled it"
    consumer = start_embedded_consumer(after)
    try:
        seen.wait_for(3)
    finally:
        consumer.stop(graceful=True)
    assert sorted(seen.values) == ["task-0", "task-1", "task-2"]


def test_two_consumers_take_each_task_once(backend: QueueBackend) -> None:
    seen = Record()

    def slowish(value: str) -> None:
        time.sleep(0.005)  # Long enough for both consumers to be reading at once.
        seen.add(value)

    first, record = backend.open(slowish)
    second, _ = backend.open(slowish)
    tasks = [f"task-{i}" for i in range(60)]
    for value in tasks:
        record(value)
    consumers = [start_embedded_consumer(first, workers=2), start_embedded_consumer(second, workers=2)]
    try:
        seen.wait_for(len(tasks))
        time.sleep(0.3)  # A task taken twice would show up now.
    finally:
        for consumer in consumers:
            consumer.stop(graceful=True)
    assert Counter(seen.values) == Counter(tasks)


def test_a_stopping_consumer_finishes_its_task_and_leaves_the_rest_queued(backend: QueueBackend) -> None:
    seen = Record()
    started = threading.Event()

    def slow(value: str) -> None:
        started.set()
        time.sleep(0.5)
        seen.add(value)

    queue, record = backend.open(slow)
    record("in-hand")
    consumer = start_embedded_consumer(queue)
    try:
        assert started.wait(10), "the consumer took the task"
        record("left-over")
    finally:
        consumer.stop(graceful=True)
    assert seen.values == ["in-hand"], "the task in hand finished before the stop returned"
    assert len(queue) == 1, "the next task stays queued for whoever consumes next"

"""The local models under hostile load, through a real server (uvicorn on a socket, the real models):
a large embedding request shares the model batch by batch, work stops when its client goes away, and a
shutdown does not wait for a large request to finish. Each is checked by what ran (a record of the
model's batches and turns), never by the clock."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from keel.config import Settings
from keel.gateway.providers.turn_order import HEAD_START_S
from keel.gateway.providers.turns import current_requester
from keel.keys import Role
from keel.runtime import Runtime
from keel.server.app import create_app
from tests.integration.live import free_port

BATCH = 4
# 16 batches of 4; long enough texts that each batch is real work.
LARGE = [
    f"Order {i} arrived with a cracked screen and a missing charger; the box was dented. " * 4
    for i in range(64)
]
# Waits below are hang guards for a broken build, never measurements.
GUARD_S = 120


@dataclass
class BatchLog:
    """Wraps the embedding model's batch step: who each batch ran for, and a hook run at each batch."""

    requesters: list[str | None] = field(default_factory=list)
    # Whether each batch (numbered from 1 in start order) saw its request cancelled; batches in the
    # bulk and the small lane run side by side, so they may finish in either order.
    cancelled: dict[int, bool] = field(default_factory=dict)
    # The nice value of the thread each batch ran on, and whether it ran on the small lane's path.
    nice: dict[int, int] = field(default_factory=dict)
    traced: dict[int, bool] = field(default_factory=dict)
    on_batch: Callable[[int, threading.Event], None] | None = None
    _numbering: threading.Lock = field(default_factory=threading.Lock)

    def install(self, runtime: Runtime) -> None:
        provider = runtime.embedding_model
        original = provider._encode

        def spy(batch: list[str], traced: bool, cancelled: threading.Event | None = None) -> Any:
            with self._numbering:  # the two lanes' threads may start batches at once
                self.requesters.append(current_requester())
                number = len(self.requesters)
            self.nice[number] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            self.traced[number] = traced
            if self.on_batch is not None and cancelled is not None:
                self.on_batch(number, cancelled)
            self.cancelled[number] = cancelled is not None and cancelled.is_set()
            return original(batch, traced, cancelled)

        provider._encode = spy  # type: ignore[method-assign,assignment]


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + GUARD_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting (hang guard)")
        time.sleep(0.005)


@dataclass
class Server:
    url: str
    runtime: Runtime
    keys: dict[str, str]
    server: uvicorn.Server
    thread: threading.Thread


@contextmanager
def serving(tmp_path: Path) -> Iterator[Server]:
    settings = Settings(
        data_dir=tmp_path,
        preload_models=False,
        serve_jobs=False,
        embedding={"batch_size": BATCH},
        guard={"injection_api": "off"},
        shutdown_grace_s=1,
    )
    runtime = Runtime.build(settings)
    runtime.prepare()
    runtime.embedding_model.warm_up()
    runtime.chat_model.warm_up()
    keys = {tenant: runtime.keys.create(tenant, Role.APP).secret for tenant in ("tenant-a", "tenant-b")}
    port = free_port()
    config = uvicorn.Config(
        create_app(runtime=runtime),
        host="127.0.0.1",
        port=port,
        log_config=None,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started)
    try:
        yield Server(f"http://127.0.0.1:{port}", runtime, keys, server, thread)
    finally:
        server.should_exit = True
        thread.join(timeout=GUARD_S)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("fair")) as server:
        yield server


def embeddings(live: Server, tenant: str, texts: list[str]) -> dict[str, Any]:
    return {
        "url": f"{live.url}/v1/embeddings",
        "headers": {"Authorization": f"Bearer {live.keys[tenant]}"},
        "json": {"model": "keel-embed", "input": texts},
        "timeout": GUARD_S,
    }


def large_and_other(live: Server, log: BatchLog, other: list[str]) -> tuple[httpx.Response, httpx.Response]:
    """A's large request, and once its first batch runs, B's request of `other`."""

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient() as client:
            large = asyncio.ensure_future(client.post(**embeddings(live, "tenant-a", LARGE)))
            await asyncio.to_thread(wait_until, lambda: len(log.requesters) == 1)
            small = await client.post(**embeddings(live, "tenant-b", other))
            return await large, small

    large, small = asyncio.run(scenario())
    assert large.status_code == 200 and small.status_code == 200
    return large, small


def test_a_small_request_runs_beside_a_large_ones_batch(live: Server) -> None:
    log = BatchLog()

    def hold_first_batch_until_b_has_run(number: int, _: threading.Event) -> None:
        if number == 1:
            wait_until(lambda: "tenant-b" in log.requesters)

    log.on_batch = hold_first_batch_until_b_has_run
    log.install(live.runtime)
    large, _ = large_and_other(live, log, ["refund"])
    # B's call of one short text took the small lane while A's first batch held the bulk lane.
    assert log.requesters == ["tenant-a", "tenant-b", *["tenant-a"] * 15]
    # A's batches ran at the bulk lane's nice value, so B's, computing beside one, had the CPU.
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    bulk_nice = live.runtime.settings.embedding.bulk_nice
    assert log.traced[2] and not log.traced[1]
    assert log.nice[2] == base and {log.nice[n] for n in log.nice if n != 2} == {max(base, bulk_nice)}
    # Batched and interleaved, A's vectors are still the ones its texts get alone, in its order.
    rows = np.array([item["embedding"] for item in large.json()["data"]], dtype=np.float32)
    alone = live.runtime.embedding_model.embed([LARGE[0], LARGE[37], LARGE[63]])
    assert np.allclose(rows[[0, 37, 63]], alone, atol=1e-5)
    assert large.json()["usage"]["prompt_tokens"] > len(LARGE) * 64


def test_a_request_in_the_bulk_lane_waits_for_at_most_one_batch_of_a_large_one(live: Server) -> None:
    log = BatchLog()
    turns = live.runtime.embedding_model.turns

    def hold_first_batch_until_b_queues(number: int, _: threading.Event) -> None:
        if number == 1:
            wait_until(lambda: turns.waiting() == ["tenant-b"])

    log.on_batch = hold_first_batch_until_b_queues
    log.install(live.runtime)
    # Nine texts: more than a small call has, so B queues in the bulk lane, behind A's first batch only.
    large_and_other(live, log, [f"refund {i}" for i in range(9)])
    assert log.requesters[:2] == ["tenant-a", "tenant-b"]
    # B's other batches come no later than every other batch: A never runs two while B waits.
    last_b = len(log.requesters) - 1 - log.requesters[::-1].index("tenant-b")
    assert log.requesters.count("tenant-b") == 3 and last_b <= 5


def test_an_embedding_request_stops_when_its_client_goes_away(live: Server) -> None:
    log = BatchLog()

    def hold_first_batch_until_cancelled(number: int, cancelled: threading.Event) -> None:
        if number == 1:
            # The batch in hand runs on; the request's cancellation reaches it through this flag.
            cancelled.wait(GUARD_S)

    log.on_batch = hold_first_batch_until_cancelled
    log.install(live.runtime)

    async def scenario() -> httpx.Response:
        async with httpx.AsyncClient() as client:
            large = asyncio.ensure_future(client.post(**embeddings(live, "tenant-a", LARGE)))
            await asyncio.to_thread(wait_until, lambda: len(log.requesters) == 1)
            large.cancel()  # the client gives up: its connection closes
            with pytest.raises(asyncio.CancelledError):
                await large
            return await client.post(**embeddings(live, "tenant-b", ["refund"]))

    assert asyncio.run(scenario()).status_code == 200
    turns = live.runtime.embedding_model.turns
    wait_until(lambda: turns.holders() == [])  # the abandoned batch returns, and the lane is free
    # No batch of the abandoned request ran after the one in hand.
    assert log.requesters == ["tenant-a", "tenant-b"]
    assert log.cancelled == {1: True, 2: False}
    assert turns.waiting() == []
    metrics = httpx.get(f"{live.url}/metrics").text
    assert 'keel_model_queue_seconds_count{model="keel-embed",turn="batch"}' in metrics


@dataclass
class EndlessGenerations:
    tokens: int = 0
    started: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


@contextmanager
def endless_generations_for(runtime: Runtime, tenant: str) -> Iterator[EndlessGenerations]:
    """`tenant`'s generations cannot end by themselves (end-of-text is never sampled): they run to
    max_tokens unless something stops them. Counts their tokens."""
    from llama_cpp import LogitsProcessorList

    record = EndlessGenerations()
    contexts = list(runtime.chat_model._idle)
    originals = [llama.create_completion for llama in contexts]

    def endless(llama: Any, original: Any) -> Any:
        def create_completion(*args: Any, **kwargs: Any) -> Any:
            if current_requester() != tenant:
                return original(*args, **kwargs)

            def forbid_end(_: Any, logits: Any) -> Any:
                record.tokens += 1
                record.started.set()
                logits[llama.token_eos()] = -np.inf
                return logits

            stream = original(*args, logits_processor=LogitsProcessorList([forbid_end]), **kwargs)

            def watched() -> Iterator[Any]:
                try:
                    yield from stream
                finally:
                    record.finished.set()

            return watched()

        return create_completion

    for llama, original in zip(contexts, originals, strict=True):
        llama.create_completion = endless(llama, original)
    try:
        yield record
    finally:
        for llama, original in zip(contexts, originals, strict=True):
            llama.create_completion = original


def chat_body(live: Server, tenant: str, content: str, max_tokens: int) -> dict[str, Any]:
    return {
        "url": f"{live.url}/v1/chat/completions",
        "headers": {"Authorization": f"Bearer {live.keys[tenant]}"},
        "json": {
            "model": "keel-local",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
        },
        "timeout": GUARD_S,
    }


def test_a_generation_stops_between_tokens_when_its_client_goes_away(live: Server) -> None:
    chat = live.runtime.chat_model
    with endless_generations_for(live.runtime, "tenant-a") as record:

        async def scenario() -> None:
            async with httpx.AsyncClient() as client:
                request = asyncio.ensure_future(
                    client.post(**chat_body(live, "tenant-a", "Tell me a story.", 3000))
                )
                await asyncio.to_thread(record.started.wait, GUARD_S)
                request.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await request

        asyncio.run(scenario())
        assert record.finished.wait(GUARD_S)
    # Stopped long before the 3,000 tokens it was told to write and could not end by itself.
    assert 0 < record.tokens < 3000
    wait_until(lambda: chat.contexts.holders() == [])
    assert chat.steps.holders() == [] and chat.steps.waiting() == []


def test_a_short_generation_runs_ahead_of_a_long_one(live: Server) -> None:
    chat = live.runtime.chat_model
    steps: list[str | None] = []
    times: list[float] = []
    nice: set[int] = set()
    checkpoint = chat.steps.checkpoint

    def recording_checkpoint(turn: Any) -> None:
        checkpoint(turn)
        steps.append(current_requester())  # the turn is held again: the list is the order of steps
        times.append(time.perf_counter())
        nice.add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    chat.steps.checkpoint = recording_checkpoint  # type: ignore[method-assign]
    try:
        with endless_generations_for(live.runtime, "tenant-a") as record:

            async def scenario() -> httpx.Response:
                async with httpx.AsyncClient() as client:
                    long = asyncio.ensure_future(
                        client.post(**chat_body(live, "tenant-a", "Tell me a story.", 3000))
                    )
                    # A has had far more model time than B's short request needs (and B's head start
                    # is capped at a couple of seconds of it).
                    await asyncio.to_thread(wait_until, lambda: record.tokens >= 200)
                    short = await client.post(**chat_body(live, "tenant-b", "Say hello.", 8))
                    # A's generation of 3,000 tokens is still going: B did not wait for it.
                    assert not record.finished.is_set()
                    await asyncio.to_thread(wait_until, lambda: steps[-1] == "tenant-a")
                    long.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await long
                    return short

            short = asyncio.run(scenario())
            assert record.finished.wait(GUARD_S)
    finally:
        del chat.steps.checkpoint
    assert short.status_code == 200 and short.json()["usage"]["completion_tokens"] > 0
    # B, the newcomer, took the model at A's next step and kept it to its end (then A went on), or at
    # least until it had used its head start: on a machine slowed by other work B's steps take longer,
    # and past its head start B and A alternate, as they should.
    first, last = steps.index("tenant-b"), len(steps) - 1 - steps[::-1].index("tenant-b")
    run = first
    while run <= last and steps[run] == "tenant-b":
        run += 1
    if run <= last:  # A stepped in: B had held the model for its head start first
        assert times[run] - times[first - 1] >= HEAD_START_S, (steps, times)
    assert steps[first : last + 1].count("tenant-b") >= short.json()["usage"]["completion_tokens"]
    assert "tenant-a" in steps[:first] and "tenant-a" in steps[last + 1 :]
    # Every step ran on a generation thread at `chat.nice`, below the request path's priority.
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert nice == {max(base, live.runtime.settings.chat.nice)}


def test_shutdown_cancels_a_large_request_after_the_grace_period(tmp_path: Path) -> None:
    """What SIGTERM does to `keel serve` (uvicorn sets `should_exit`): requests in flight get
    `shutdown_grace_s`, then are cancelled; the large request's remaining batches never run."""
    log = BatchLog()
    huge = LARGE * 8  # 128 batches
    with serving(tmp_path) as live:
        log.install(live.runtime)
        outcome: dict[str, Any] = {}

        def send() -> None:
            try:
                outcome["status"] = httpx.post(**embeddings(live, "tenant-a", huge)).status_code
            except httpx.HTTPError as exc:
                outcome["error"] = type(exc).__name__

        client = threading.Thread(target=send)
        client.start()
        wait_until(lambda: len(log.requesters) >= 1)
        live.server.should_exit = True
        live.thread.join(timeout=GUARD_S)
        assert not live.thread.is_alive()
        client.join(timeout=GUARD_S)
    assert outcome.get("status") != 200
    assert 1 <= len(log.requesters) < len(huge) // BATCH
    turns = live.runtime.embedding_model.turns
    # The batch in hand runs on (at the bulk lane's low priority, it may outlast the server's thread).
    wait_until(lambda: turns.holders() == [])
    assert turns.waiting() == []


def test_the_early_context_window_count_is_a_lower_bound_that_stops_at_the_window(live: Server) -> None:
    chat = live.runtime.chat_model
    short = "Where is my order? It was due on Monday. " * 20
    assert chat.count_tokens_up_to(short, chat.context_window) == chat.count_tokens(short)
    longer = "The parcel went through the sorting centre and was scanned again. " * 300
    assert chat.count_tokens_up_to(longer, 100_000) == chat.count_tokens(longer)
    # A text far past the window: its bytes show it (a floor no larger than its real count), untokenized.
    huge = "word " * 200_000
    floor = chat.count_tokens_up_to(huge, chat.context_window)
    assert chat.context_window <= floor <= chat.count_tokens(huge)
    assert chat.count_tokens_up_to(huge[:2000], chat.context_window) == chat.count_tokens(huge[:2000])


def test_a_batch_is_bounded_in_tokens_as_well_as_texts(live: Server) -> None:
    provider = live.runtime.embedding_model
    provider.batch_size, provider.batch_tokens = 32, 1024
    try:
        # Texts past the model's 256-token window cost the window: four to a batch; short ones, 32.
        _, _, batches = provider._batches(["word " * 800] * 10 + ["refund"] * 40)
        # One long sentence among short ones (a passage): it is not run with 31 texts padded to it.
        _, _, passage = provider._batches(["word " * 800] + ["refund policy"] * 31)
    finally:
        provider.batch_size = BATCH
    # Longest first, the padding counted: 4 + 4 long ones; the last 2 with 2 short ones, padded to the
    # window; then 32 short ones and the other 6.
    assert [len(batch) for batch in batches] == [4, 4, 4, 32, 6]
    assert [len(batch) for batch in passage] == [4, 28]

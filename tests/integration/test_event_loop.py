"""Async routes never block the event loop while ordinary requests are served: no SQL statement runs on
the loop's thread, and no step of the loop takes longer than SLOW_S (asyncio's debug mode reports every
slower callback). Model work runs on worker threads, so requests that use the models are included."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from keel.runtime import Runtime
from tests.integration.conftest import Keys

SLOW_S = 0.1


@dataclass
class LoopWatch:
    statements: list[str] = field(default_factory=list)
    slow_steps: list[str] = field(default_factory=list)


class _SlowSteps(logging.Handler):
    def __init__(self, watch: LoopWatch) -> None:
        super().__init__(logging.WARNING)
        self._watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing"):  # "Executing <Task ...> took 0.123 seconds"
            self._watch.slow_steps.append(message)


@contextmanager
def watched_loop(client: TestClient, runtime: Runtime) -> Iterator[LoopWatch]:
    """Watches the loop the app runs on (the test client's) while the block runs."""
    assert client.portal is not None
    watch = LoopWatch()

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # a worker thread: where synchronous work belongs
        watch.statements.append(statement)

    def debug(on: bool) -> None:
        loop = asyncio.get_running_loop()
        loop.set_debug(on)
        loop.slow_callback_duration = SLOW_S

    engines = {runtime.database.engine, runtime.database.read_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", on_statement)
    asyncio_log = logging.getLogger("asyncio")
    handler, level = _SlowSteps(watch), asyncio_log.level
    asyncio_log.addHandler(handler)
    asyncio_log.setLevel(logging.WARNING)
    client.portal.call(debug, True)
    try:
        yield watch
    finally:
        client.portal.call(debug, False)
        asyncio_log.removeHandler(handler)
        asyncio_log.setLevel(level)
        for engine in engines:
            event.remove(engine, "before_cursor_execute", on_statement)


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content and status != 204 else None


def test_ordinary_requests_never_block_the_event_loop(
    client: TestClient, runtime: Runtime, keys: Keys
) -> None:
    app, admin, reviewer = keys.header(keys.app), keys.header(keys.admin), keys.header(keys.reviewer)
    with watched_loop(client, runtime) as watch:
        ok(client.get("/healthz"))
        ok(client.get("/readyz"))
        assert client.get("/metrics").status_code == 200
        body = {"source": "loop/returns.md", "text": "# Returns\n\nReturns are accepted within 30 days."}
        job = ok(client.post("/v1/documents", headers=app, json=body), 202)
        deadline = time.monotonic() + 120
        while job["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
            job = ok(client.get(f"/v1/jobs/{job['id']}", headers=app))
        document_id = job["items"][0]["document_id"]
        ok(client.get("/v1/documents", headers=app))
        ok(client.get(f"/v1/documents/{document_id}", headers=app))
        ok(client.post("/v1/search", headers=app, json={"query": "how long to return", "k": 3}))
        ok(client.get("/v1/reviews", headers=reviewer))
        ok(client.post("/v1/admin/keys", headers=admin, json={"role": "viewer", "name": "loop"}), 201)
        ok(client.get("/v1/admin/keys", headers=admin))
        ok(client.get("/v1/admin/audit", headers=admin))
        ok(client.get("/v1/prompts", headers=app))
        chat = {"model": "keel-local", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        ok(client.post("/v1/chat/completions", headers=app, json=chat))
        ok(client.delete(f"/v1/documents/{document_id}", headers=app), 204)
    assert watch.statements == [], "SQL ran on the event loop's thread"
    assert watch.slow_steps == [], f"the event loop was blocked for more than {SLOW_S} s"

"""Request-body limits: refused with a 413 in OpenAI's error shape, before the body is read whole."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.types import Message

from keel.config import KnowledgeSettings, LimitSettings, Settings
from keel.server.body_limits import BodyLimitMiddleware
from keel.server.errors import install_error_handlers

MiB = 1024 * 1024


class Item(BaseModel):
    text: str


def make_app(tmp_path: Path, **limits: Any) -> tuple[FastAPI, list[str]]:
    settings = Settings(
        data_dir=tmp_path,
        limits=LimitSettings(max_json_body_bytes=1024, **limits),
        knowledge=KnowledgeSettings(max_document_bytes=2048),
    )
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, settings=settings, api=app)
    ran: list[str] = []

    @app.post("/items")
    def add_item(item: Item) -> dict[str, int]:
        ran.append("items")
        return {"chars": len(item.text)}

    @app.post("/items/{item_id}/notes")
    def add_note(item_id: str, item: Item) -> dict[str, int]:
        ran.append("notes")
        return {"chars": len(item.text)}

    @app.post("/v1/documents")
    async def upload(request: Request) -> dict[str, int]:
        form = await request.form()
        ran.append("upload")
        return {"fields": len(form)}

    return app, ran


def assert_refused(response: Any, limit: int) -> None:
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large"
    assert error["type"] == "payload_too_large"
    assert str(limit) in error["message"]


def test_a_body_within_the_limit_passes(tmp_path: Path) -> None:
    app, ran = make_app(tmp_path)
    with TestClient(app) as client:
        assert client.post("/items", json={"text": "x" * 900}).json() == {"chars": 900}
    assert ran == ["items"]


def test_a_body_over_the_limit_is_413_and_the_route_never_runs(tmp_path: Path) -> None:
    app, ran = make_app(tmp_path)
    with TestClient(app) as client:
        assert_refused(client.post("/items", json={"text": "x" * 2000}), 1024)
    assert ran == []


def test_a_per_route_limit_from_settings_overrides_the_default(tmp_path: Path) -> None:
    app, ran = make_app(tmp_path, route_body_bytes={"/items/{item_id}/notes": 4096})
    with TestClient(app) as client:
        assert client.post("/items/7/notes", json={"text": "x" * 3000}).status_code == 200
        assert_refused(client.post("/items/7/notes", json={"text": "x" * 5000}), 4096)
        assert_refused(client.post("/items", json={"text": "x" * 3000}), 1024)
    assert ran == ["notes"]


def test_uploads_take_twice_the_document_limit_plus_room_for_the_form(tmp_path: Path) -> None:
    app, ran = make_app(tmp_path)
    limit = 2 * 2048 + MiB
    with TestClient(app) as client:
        small = client.post("/v1/documents", files={"file": ("a.txt", b"x" * 4000)})
        assert small.status_code == 200
        # A multipart body the route reads itself (request.form()) is refused the same way.
        assert_refused(client.post("/v1/documents", files={"file": ("a.txt", b"x" * (limit + 1))}), limit)
    assert ran == ["upload"]


def test_a_setting_that_names_no_route_fails_the_start(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, route_body_bytes={"/itemz": 4096})
    with pytest.raises(ValueError, match="/itemz"), TestClient(app):
        pass


def raw_call(
    app: FastAPI, headers: list[tuple[bytes, bytes]], chunks: int, chunk_bytes: int
) -> tuple[int, int]:
    """Drives the ASGI app directly: returns the response status and how many body chunks it read."""
    read = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": b"x" * chunk_bytes, "more_body": read < chunks}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/items",
        "raw_path": b"/items",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }

    async def run() -> None:
        # The lifespan is not run: build the middleware stack the way the first request would.
        await app(scope, receive, send)

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], read


def test_a_declared_length_over_the_limit_is_refused_before_any_byte_is_read(tmp_path: Path) -> None:
    app, ran = make_app(tmp_path)
    status, read = raw_call(
        app, [(b"content-length", str(20 * MiB).encode())], chunks=320, chunk_bytes=64 * 1024
    )
    assert (status, read) == (413, 0)
    assert ran == []


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(tmp_path: Path) -> None:
    app, ran = make_app(tmp_path)
    # 20 MiB in 1 KiB chunks without a Content-Length: refused after the second chunk, not the 20,480th.
    status, read = raw_call(app, [(b"transfer-encoding", b"chunked")], chunks=20 * 1024, chunk_bytes=1024)
    assert (status, read) == (413, 2)
    assert ran == []

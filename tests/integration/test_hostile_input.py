"""Hostile input against the real app: oversized bodies, prompts and embedding batches, unusable JSON
schemas, out-of-range numbers and bad upload fields each get a 4xx in OpenAI's error shape, refused at
the HTTP boundary before any guardrail, classifier or model sees the request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from keel.keys import Role
from keel.runtime import Runtime
from keel.store.models import Job
from tests.integration.conftest import Keys

MiB = 1024 * 1024


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    return error


def chat(client: TestClient, keys: Keys, content: str, **extra: Any) -> Any:
    body = {"model": "keel-local", "messages": [{"role": "user", "content": content}], "max_tokens": 4}
    return client.post("/v1/chat/completions", headers=keys.header(keys.app), json={**body, **extra})


class CountingGuard:
    """Stands in for the gateway's inbound guard and records every method called on it, whatever the
    guard's methods are named, before handing the call to the real guard."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if not callable(value):
            return value

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return value(*args, **kwargs)

        return counted


@pytest.fixture
def guard_calls(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the inbound guard's methods called during a test (its injection classifier)."""
    dispatcher = runtime.gateway.dispatcher
    assert dispatcher.guard is not None
    spy = CountingGuard(dispatcher.guard)
    monkeypatch.setattr(dispatcher, "guard", spy)
    yield spy.calls


def test_a_20_mb_chat_body_is_413(client: TestClient, keys: Keys, guard_calls: list[str]) -> None:
    error = error_of(chat(client, keys, "x" * (20 * MiB)), 413)
    assert error["code"] == "request_too_large"
    assert guard_calls == []


def test_a_20_mb_chunked_body_without_content_length_is_413(client: TestClient, keys: Keys) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "keel-local", "messages": [{"role": "user", "content": "'
        for _ in range(20 * 16):
            yield b"x" * (64 * 1024)
        yield b'"}]}'

    response = client.post(
        "/v1/chat/completions",
        headers={**keys.header(keys.app), "Content-Type": "application/json"},
        content=chunks(),
    )
    assert error_of(response, 413)["code"] == "request_too_large"


def test_a_20_mb_search_body_is_413(client: TestClient, keys: Keys) -> None:
    response = client.post("/v1/search", headers=keys.header(keys.app), json={"query": "x" * (20 * MiB)})
    assert error_of(response, 413)["code"] == "request_too_large"


def test_a_100k_token_message_is_400_before_the_guard_runs(
    client: TestClient, keys: Keys, guard_calls: list[str]
) -> None:
    # About 100,000 tokens of ordinary words, under the body limit: the context-window check refuses it.
    message = "please check my order status today " * 17_000
    assert len(message) < 1 * MiB
    error = error_of(chat(client, keys, message), 400)
    assert (error["code"], error["param"]) == ("context_length_exceeded", "messages")
    assert "limits.chars_per_token" in error["message"]  # the HTTP boundary's check, not the gateway's
    assert guard_calls == []
    # The spy does see the guard when a request gets that far (so the assertion above can fail).
    assert chat(client, keys, "What is your returns window?", cache=False).status_code == 200
    assert guard_calls != []


def test_message_count_and_length_bounds(client: TestClient, keys: Keys, runtime: Runtime) -> None:
    limits = runtime.settings.limits
    too_many = [{"role": "user", "content": "hi"}] * (limits.max_messages + 1)
    response = client.post(
        "/v1/chat/completions",
        headers=keys.header(keys.app),
        json={"model": "keel-local", "messages": too_many},
    )
    error = error_of(response, 400)
    assert (error["code"], error["param"]) == ("array_above_max_length", "messages")
    assert "limits.max_messages" in error["message"]


def test_embedding_bounds(client: TestClient, keys: Keys) -> None:
    def embed(inputs: Any) -> Any:
        return client.post(
            "/v1/embeddings", headers=keys.header(keys.app), json={"model": "keel-embed", "input": inputs}
        )

    error = error_of(embed(["x"] * 2049), 400)
    assert (error["code"], error["param"]) == ("array_above_max_length", "input")
    # 9,000 words: about 9,000 tokens of the model's own tokenizer, over the 8,192 of one input.
    error = error_of(embed(["short", "word " * 9_000]), 400)
    assert (error["code"], error["param"]) == ("string_above_max_length", "input[1]")
    # 40 inputs of 7,900 words each fit one by one, but not together (300,000 per request).
    error = error_of(embed(["word " * 7_900] * 40), 400)
    assert (error["code"], error["param"]) == ("max_tokens_per_request", "input")
    # Long inputs within every bound are counted and accepted.
    assert embed(["word " * 3_000, "hello"]).status_code == 200


UNUSABLE_SCHEMAS: dict[str, Any] = {
    "not": {"not": {}},
    "dangling-ref": {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
    "recursive-ref": {
        "$defs": {"a": {"$ref": "#/$defs/a"}},
        "type": "object",
        "properties": {"x": {"$ref": "#/$defs/a"}},
    },
    "root-ref": {"$ref": "#"},
    "garbage-type": {"type": 12},
    "too-long-to-unroll": {"type": "string", "maxLength": 5000},
}


@pytest.mark.parametrize("schema", UNUSABLE_SCHEMAS.values(), ids=UNUSABLE_SCHEMAS.keys())
@pytest.mark.parametrize("stream", [False, True])
def test_unusable_json_schemas_are_400(client: TestClient, keys: Keys, schema: Any, stream: bool) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    error = error_of(chat(client, keys, "hi", response_format=response_format, stream=stream), 400)
    assert (error["code"], error["param"]) == ("invalid_json_schema", "response_format")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/reviews", {"older_than_s": "86524249351"}),
        ("/v1/documents", {"offset": "1e20"}),
        ("/v1/documents", {"offset": str(10**20)}),
        ("/v1/documents", {"limit": "100000"}),
        ("/v1/admin/audit", {"limit": str(10**30)}),
    ],
)
def test_out_of_range_numbers_are_422(
    client: TestClient, keys: Keys, path: str, params: dict[str, str]
) -> None:
    response = client.get(path, headers=keys.header(keys.admin), params=params)
    error = error_of(response, 422)
    assert error["param"] == f"query.{next(iter(params))}"


@pytest.mark.parametrize("body", [{"max_tokens": 10**30}, {"seed": 2**70}, {"max_completion_tokens": 2**40}])
def test_out_of_range_generation_numbers_are_422(
    client: TestClient, keys: Keys, body: dict[str, Any]
) -> None:
    error_of(chat(client, keys, "hi", **body), 422)


def jobs(runtime: Runtime) -> int:
    with runtime.database.session() as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


@pytest.mark.parametrize(
    "fields",
    [
        {"metadata": "[1, 2]"},
        {"metadata": "not json"},
        {"metadata": '{"nested": {"a": 1}}'},
        {"metadata": '{"n": NaN}'},
        {"doc_type": "t" * 40},
        {"acl": ",".join(f"g{i}" for i in range(201))},
    ],
)
def test_bad_upload_fields_are_400_and_nothing_is_queued(
    client: TestClient, keys: Keys, runtime: Runtime, fields: dict[str, str]
) -> None:
    before = jobs(runtime)
    response = client.post(
        "/v1/documents",
        headers=keys.header(keys.app),
        files={"file": ("notes.txt", b"Opening hours are 9 to 5.")},
        data=fields,
    )
    error = error_of(response, 400)
    assert error["param"] == next(iter(fields))
    assert jobs(runtime) == before


def test_json_upload_metadata_must_be_a_flat_object(client: TestClient, keys: Keys, runtime: Runtime) -> None:
    before = jobs(runtime)
    response = client.post(
        "/v1/documents",
        headers=keys.header(keys.app),
        json={"source": "a.txt", "text": "hello", "metadata": [1, 2]},
    )
    assert error_of(response, 400)["param"] == "documents.0.metadata"
    assert jobs(runtime) == before


def test_invalid_json_is_400_and_a_wrong_shape_422(client: TestClient, keys: Keys) -> None:
    headers = {**keys.header(keys.app), "Content-Type": "application/json"}
    assert (
        error_of(client.post("/v1/search", headers=headers, content=b"{nope"), 400)["code"] == "invalid_json"
    )
    assert (
        error_of(client.post("/v1/search", headers=headers, content=b'{"query": 5}'), 422)["param"] == "query"
    )


@pytest.mark.parametrize(
    "form",
    [
        {"action": "dance"},
        {"action": "edit"},
        {"action": "approve", "note": "n" * 5000},
    ],
)
def test_a_bad_dashboard_decision_is_400(client: TestClient, runtime: Runtime, form: dict[str, str]) -> None:
    issued = runtime.keys.create("acme", Role.REVIEWER)
    # A client of its own keeps the session cookie away from the other tests.
    browser = TestClient(client.app)
    login = browser.post("/ui/login", data={"api_key": issued.secret}, follow_redirects=False)
    assert login.status_code == 303
    csrf = client.app.state.ui_sessions.csrf_token(issued.record.id)  # type: ignore[attr-defined]
    response = browser.post(
        "/ui/reviews/rev_nothere/decision", data={"csrf": csrf, **form}, follow_redirects=False
    )
    assert error_of(response, 400)["type"] == "invalid_request_error"


def test_the_openapi_document_declares_the_error_shape_and_the_413(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    responses = spec["paths"]["/v1/chat/completions"]["post"]["responses"]
    error_schema = {"$ref": "#/components/schemas/ErrorResponse"}
    for status in ("413", "4XX", "5XX"):
        assert responses[status]["content"]["application/json"]["schema"] == error_schema, status
    # FastAPI's own 422 shape ({"detail": [...]}) is not what Keel sends: it must not be declared.
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    upload = spec["paths"]["/v1/documents"]["post"]["requestBody"]["content"]
    assert set(upload) == {"application/json", "multipart/form-data"}

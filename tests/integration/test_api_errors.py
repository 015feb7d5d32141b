"""The error contract of the OpenAI-compatible routes: the right status and OpenAI's error shape."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import Keys

GOOD = {"model": "keel-local", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def post(client: TestClient, body: Any, key: str | None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post("/v1/chat/completions", headers=headers, json=body)


def test_missing_key_is_401(client: TestClient) -> None:
    response = post(client, GOOD, None)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("key", ["keel_not-a-real-key", "sk-123", "keel_"])
def test_unknown_key_is_401(client: TestClient, key: str) -> None:
    assert post(client, GOOD, key).status_code == 401


def test_revoked_key_is_401(client: TestClient, keys: Keys) -> None:
    assert post(client, GOOD, keys.revoked).status_code == 401


def test_viewer_may_list_models_but_not_call_them(client: TestClient, keys: Keys) -> None:
    assert post(client, GOOD, keys.viewer).status_code == 403
    listing = client.get("/v1/models", headers=keys.header(keys.viewer))
    assert listing.status_code == 200
    assert {m["id"] for m in listing.json()["data"]} == {"keel-local", "keel-embed"}


def test_unknown_model_is_404(client: TestClient, keys: Keys) -> None:
    response = post(client, {**GOOD, "model": "gpt-7"}, keys.app)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    streamed = post(client, {**GOOD, "model": "gpt-7", "stream": True}, keys.app)
    assert streamed.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"model": "keel-local", "messages": []},
        {"model": "keel-local"},
        {"messages": [{"role": "user", "content": "hi"}]},
        {**GOOD, "messages": [{"role": "wizard", "content": "hi"}]},
        {**GOOD, "temperature": 5},
        {**GOOD, "max_tokens": 0},
        {**GOOD, "n": 3},
        {**GOOD, "response_format": {"type": "json_schema"}},
        [1, 2, 3],
    ],
)
def test_malformed_bodies_are_422(client: TestClient, keys: Keys, body: Any) -> None:
    response = post(client, body, keys.app)
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_invalid_json_is_400(client: TestClient, keys: Keys) -> None:
    response = client.post(
        "/v1/chat/completions",
        headers={**keys.header(keys.app), "Content-Type": "application/json"},
        content=b'{"model": "keel-local", ',
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_invalid_json_schema_is_400(client: TestClient, keys: Keys) -> None:
    body = {**GOOD, "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 12}}}}
    assert post(client, body, keys.app).status_code == 400


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "database": True,
        "chat_model": True,
        "embedding_model": True,
        "copilot": True,
    }


def test_responses_carry_a_request_id(client: TestClient) -> None:
    first, second = client.get("/healthz"), client.get("/healthz")
    assert len(first.headers["x-request-id"]) == 32
    assert first.headers["x-request-id"] != second.headers["x-request-id"]

"""The OpenAI-compatible embedding provider against httpx.MockTransport: request shape, order, retries
with the gateway's policy, and refusals of answers that break the contract."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from keel.config import LocalEmbeddingSettings, RetrySettings
from keel.errors import InvalidRequestError
from keel.gateway.providers.base import ProviderError
from keel.gateway.providers.embedding import build_embedding_model
from keel.gateway.providers.openai_embedding import OpenAICompatibleEmbeddingProvider

Handler = Callable[[httpx.Request], httpx.Response]
NO_WAIT = RetrySettings(attempts=3, base_delay_s=0, max_delay_s=0)


def answer(request: httpx.Request, *, reverse: bool = False, tokens: int = 3) -> httpx.Response:
    texts = json.loads(request.content)["input"]
    rows = [
        {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0]} for i, t in enumerate(texts)
    ]
    body = {"data": rows[::-1] if reverse else rows, "usage": {"prompt_tokens": tokens * len(texts)}}
    return httpx.Response(200, json=body)


def provider(handler: Handler, **options: Any) -> OpenAICompatibleEmbeddingProvider:
    return OpenAICompatibleEmbeddingProvider(
        "http://upstream.test/v1/",
        "bge-small",
        api_key="sk-test",
        transport=httpx.MockTransport(handler),
        sync_transport=httpx.MockTransport(handler),
        **{"retry": NO_WAIT, **options},
    )


def test_batches_go_in_order_with_the_key_and_come_back_as_unit_vectors() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request, reverse=True)

    embedded = provider(handler, batch_size=2).embed_with_usage(["a", "bbb", "cc"])
    assert [json.loads(r.content)["input"] for r in seen] == [["a", "bbb"], ["cc"]]
    assert {r.url.path for r in seen} == {"/v1/embeddings"}
    assert seen[0].headers["authorization"] == "Bearer sk-test"
    assert json.loads(seen[0].content)["model"] == "bge-small"
    expected = np.array([[1, 1], [3, 1], [2, 1]], dtype=np.float32)
    assert np.allclose(embedded.vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True))
    assert embedded.tokens == 9


@pytest.mark.parametrize("status", [500, 429, 503])
def test_a_retryable_failure_is_retried_sync_and_async(status: int) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return (
            httpx.Response(status, json={"error": {"message": "busy"}}) if len(calls) % 2 else answer(request)
        )

    model = provider(handler)
    assert model.embed(["x"]).shape == (1, 2)
    assert asyncio.run(model.aembed(["x"])).shape == (1, 2)
    assert len(calls) == 4


def test_a_bad_request_is_not_retried() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(400, json={"error": {"message": "bad input"}})

    with pytest.raises(ProviderError, match="bad input") as raised:
        provider(handler).embed(["x"])
    assert not raised.value.retryable and len(calls) == 1


def test_retries_stop_after_the_configured_attempts() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("refused")

    with pytest.raises(ProviderError, match="ConnectError"):
        provider(handler).embed(["x"])
    assert len(calls) == NO_WAIT.attempts


@pytest.mark.parametrize(
    "body",
    [
        {"data": [{"index": 0, "embedding": [1.0, 0.0]}]},  # one vector for two texts
        {"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 0.0]}]},
        {"data": [{"index": 0, "embedding": [0.0, 0.0]}, {"index": 1, "embedding": [1.0, 0.0]}]},
        {"nothing": True},
    ],
)
def test_an_answer_that_breaks_the_contract_is_an_error(body: dict[str, Any]) -> None:
    with pytest.raises(ProviderError):
        provider(lambda request: httpx.Response(200, json=body), retry=RetrySettings(attempts=1)).embed(
            ["a", "b"]
        )


def test_dimensions_come_from_settings_or_one_call() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return answer(request)

    assert provider(handler, dimensions=2).declared_dimensions() == 2 and not calls
    asked = provider(handler)
    assert asked.dimensions == asked.dimensions == 2 and len(calls) == 1


def test_the_registry_builds_by_name_and_refuses_an_unknown_one() -> None:
    remote = build_embedding_model(
        LocalEmbeddingSettings(provider="openai", base_url="http://upstream.test/v1", model="m", dimensions=8)
    )
    assert isinstance(remote, OpenAICompatibleEmbeddingProvider) and remote.declared_dimensions() == 8
    with pytest.raises(InvalidRequestError, match=r"embedding\.base_url"):
        build_embedding_model(LocalEmbeddingSettings(provider="openai"))
    with pytest.raises(InvalidRequestError, match="Unknown embedding provider 'nope'"):
        build_embedding_model(LocalEmbeddingSettings(provider="nope"))

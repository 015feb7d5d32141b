"""The size bounds on chat and embedding requests: each refusal is a 400 naming the limit and the param."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from keel.config import AliasSettings, BreakerSettings, DeploymentSettings, LimitSettings
from keel.errors import InvalidRequestError
from keel.gateway.breaker import CircuitBreaker
from keel.gateway.deployments import Deployment
from keel.gateway.protocol import ChatCompletionRequest, EmbeddingRequest
from keel.gateway.request_limits import (
    check_chat_request,
    check_embedding_request,
    reachable_context_window,
    token_upper_bound,
)
from tests.unit.gateway.doubles import ScriptedModel

LIMITS = LimitSettings(max_messages=4, max_message_chars=100, chars_per_token=4)


def chat(*texts: str) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="m", messages=[{"role": "user", "content": t} for t in texts])


def refusal(call: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        call()
    assert caught.value.status_code == 400
    return caught.value


def test_a_request_within_every_bound_passes() -> None:
    check_chat_request(chat("hello", "world"), LIMITS, context_window=256)


def test_too_many_messages() -> None:
    error = refusal(lambda: check_chat_request(chat(*["hi"] * 5), LIMITS, None))
    assert (error.code, error.param) == ("array_above_max_length", "messages")
    assert "limits.max_messages" in error.message


def test_a_message_over_its_length() -> None:
    error = refusal(lambda: check_chat_request(chat("ok", "x" * 101), LIMITS, None))
    assert (error.code, error.param) == ("string_above_max_length", "messages[1].content")
    assert "limits.max_message_chars" in error.message


def test_content_parts_count_too() -> None:
    request = ChatCompletionRequest(
        model="m", messages=[{"role": "user", "content": [{"type": "text", "text": "y" * 60}] * 2}]
    )
    error = refusal(lambda: check_chat_request(request, LIMITS, None))
    assert error.param == "messages[0].content"


def test_the_total_against_the_context_window() -> None:
    # 3 messages of 90 characters: 270 > 64 tokens x 4 characters.
    error = refusal(lambda: check_chat_request(chat(*["z" * 90] * 3), LIMITS, context_window=64))
    assert (error.code, error.param) == ("context_length_exceeded", "messages")
    assert "limits.chars_per_token" in error.message
    check_chat_request(chat(*["z" * 90] * 3), LIMITS, context_window=68)


def deployment(name: str, window: int) -> Deployment:
    return Deployment(
        name=name,
        settings=DeploymentSettings(provider="local", context_window=window),
        provider=ScriptedModel(["ok"]),
        breaker=CircuitBreaker(BreakerSettings()),
    )


def test_the_reachable_window_is_the_largest_of_the_alias_and_its_fallbacks() -> None:
    deployments = {"small": deployment("small", 4096), "big": deployment("big", 128_000)}
    aliases = {
        "a": AliasSettings(deployments=["small"], fallbacks=["b"]),
        "b": AliasSettings(deployments=["big"]),
        "c": AliasSettings(deployments=["small"]),
    }
    assert reachable_context_window(aliases, deployments, "a") == 128_000
    assert reachable_context_window(aliases, deployments, "c") == 4096
    assert reachable_context_window(aliases, deployments, "nope") is None


class CountingTokenizer:
    """Counts whitespace words as tokens, and records which texts it was asked about."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    async def __call__(self, texts: list[str]) -> list[int]:
        self.asked.append(list(texts))
        return [len(t.split()) + 2 for t in texts]


EMBED_LIMITS = LimitSettings(
    max_embedding_inputs=3, max_embedding_input_tokens=20, max_embedding_request_tokens=40
)


def embed_check(texts: list[str], tokenizer: CountingTokenizer) -> None:
    request = EmbeddingRequest(model="e", input=texts)
    asyncio.run(check_embedding_request(request, EMBED_LIMITS, tokenizer))


def test_short_inputs_pass_without_tokenizing() -> None:
    tokenizer = CountingTokenizer()
    embed_check(["a short one", "another"], tokenizer)
    assert tokenizer.asked == []


def test_too_many_inputs() -> None:
    error = refusal(lambda: embed_check(["a"] * 4, CountingTokenizer()))
    assert (error.code, error.param) == ("array_above_max_length", "input")
    assert "limits.max_embedding_inputs" in error.message


def test_a_long_input_is_counted_and_passes_when_its_tokens_fit() -> None:
    tokenizer = CountingTokenizer()
    long_words = "extraordinarily " * 10  # 160 bytes, but 12 tokens by this tokenizer
    embed_check([long_words, "short"], tokenizer)
    assert tokenizer.asked == [[long_words]]


def test_an_input_over_its_tokens() -> None:
    error = refusal(lambda: embed_check(["ok", "word " * 30], CountingTokenizer()))
    assert (error.code, error.param) == ("string_above_max_length", "input[1]")
    assert "limits.max_embedding_input_tokens" in error.message


def test_a_request_over_its_tokens() -> None:
    tokenizer = CountingTokenizer()
    texts = ["word " * 15] * 3  # 17 tokens each, 51 in all
    error = refusal(lambda: embed_check(texts, tokenizer))
    assert (error.code, error.param) == ("max_tokens_per_request", "input")
    assert "51 tokens" in error.message


def test_the_upper_bound_never_undercounts_bytes() -> None:
    assert token_upper_bound("") == 2
    assert token_upper_bound("héllo") == len("héllo".encode()) + 2

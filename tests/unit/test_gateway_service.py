from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from keel.errors import InvalidRequestError, ModelNotFoundError, UpstreamError
from keel.gateway.protocol import ChatCompletionRequest, EmbeddingRequest, Usage
from keel.gateway.providers.base import (
    Generation,
    GenerationRequest,
    StreamEnd,
    StreamEvent,
    TextDelta,
)
from keel.gateway.service import Gateway


class ScriptedModel:
    """A chat model that answers with a fixed text, whole or in pieces."""

    is_ready = True

    def __init__(self, text: str, finish: Any = "stop") -> None:
        self.text, self.finish = text, finish
        self.requests: list[GenerationRequest] = []

    async def complete(self, request: GenerationRequest) -> Generation:
        self.requests.append(request)
        return Generation(self.text, self.finish, Usage.of(7, 3))

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        self.requests.append(request)
        for piece in self.text.split(" "):
            yield TextDelta(piece + " ")
        yield StreamEnd(self.finish, Usage.of(7, 3))


class FixedEmbedder:
    is_ready = True
    dimensions = 3

    async def aembed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return np.array([[1.0, 0.0, 0.0] for _ in texts], dtype=np.float32)

    async def acount_tokens(self, texts: list[str]) -> int:
        return 2 * len(texts)


def chat_request(**extra: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    )


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_unknown_alias_is_model_not_found() -> None:
    gateway = Gateway({"m": ScriptedModel("x")}, {})
    with pytest.raises(ModelNotFoundError):
        run(gateway.chat(chat_request(model="other")))


def test_request_settings_reach_the_provider() -> None:
    model = ScriptedModel("x")
    run(Gateway({"m": model}, {}).chat(chat_request(max_completion_tokens=9, stop="END", temperature=0)))
    sent = model.requests[0]
    assert (sent.max_tokens, sent.stop, sent.temperature) == (9, ["END"], 0)


def test_schema_output_is_validated() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    ok = run(Gateway({"m": ScriptedModel('{"n": 1}')}, {}).chat(chat_request(response_format=fmt)))
    assert ok.choices[0].message.content == '{"n": 1}'
    with pytest.raises(UpstreamError, match="schema"):
        run(Gateway({"m": ScriptedModel('{"n": "one"}')}, {}).chat(chat_request(response_format=fmt)))
    with pytest.raises(UpstreamError, match="not valid JSON"):
        run(Gateway({"m": ScriptedModel("n is 1")}, {}).chat(chat_request(response_format=fmt)))


def test_json_object_mode_needs_an_object() -> None:
    fmt = {"type": "json_object"}
    with pytest.raises(UpstreamError, match="not an object"):
        run(Gateway({"m": ScriptedModel("[1, 2]")}, {}).chat(chat_request(response_format=fmt)))


def test_invalid_schema_is_a_client_error() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "nonsense"}}}
    with pytest.raises(InvalidRequestError):
        run(Gateway({"m": ScriptedModel("{}")}, {}).chat(chat_request(response_format=fmt)))


def test_stream_order_role_deltas_finish_and_usage() -> None:
    async def collect() -> list[Any]:
        gateway = Gateway({"m": ScriptedModel("a b c")}, {})
        return [
            c
            async for c in gateway.chat_stream(
                chat_request(stream=True, stream_options={"include_usage": True})
            )
        ]

    chunks = run(collect())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b c "
    finish = chunks[-2]
    assert finish.choices[0].finish_reason == "stop"
    assert finish.usage == Usage.of(7, 3)
    assert chunks[-1].choices == [] and chunks[-1].usage == Usage.of(7, 3)
    assert len({c.id for c in chunks}) == 1


def test_embeddings_as_floats_or_base64() -> None:
    gateway = Gateway({}, {"e": FixedEmbedder()})
    floats = run(gateway.embed(EmbeddingRequest(model="e", input=["a", "b"])))
    assert [d.embedding for d in floats.data] == [[1.0, 0.0, 0.0]] * 2
    assert floats.usage.prompt_tokens == 4
    encoded = run(gateway.embed(EmbeddingRequest(model="e", input="a", encoding_format="base64")))
    import base64

    vector = np.frombuffer(base64.b64decode(str(encoded.data[0].embedding)), dtype="<f4")
    assert vector.tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("payload", [[], ["ok", ""]])
def test_empty_embedding_inputs_are_refused(payload: list[str]) -> None:
    with pytest.raises(InvalidRequestError):
        run(Gateway({}, {"e": FixedEmbedder()}).embed(EmbeddingRequest(model="e", input=payload)))


def test_dimension_mismatch_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="dimensions"):
        run(Gateway({}, {"e": FixedEmbedder()}).embed(EmbeddingRequest(model="e", input="a", dimensions=2)))

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from keel.config import GatewaySettings
from keel.errors import InvalidRequestError, ModelNotFoundError, UpstreamError
from keel.gateway.protocol import EmbeddingRequest, Usage
from keel.gateway.service import Caller, Gateway
from tests.unit.gateway.doubles import FixedEmbedder, ScriptedModel, chat_request, local, make_gateway

CALLER = Caller(tenant="acme", key_id="key_1")


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def gateway_with(tmp_path: Path, text: str, **settings: Any) -> Gateway:
    return make_gateway(
        tmp_path, {"d": (ScriptedModel([text]), local())}, settings=GatewaySettings(**settings)
    )


def test_unknown_alias_is_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        run(gateway_with(tmp_path, "x").chat(chat_request(model="other"), CALLER))


def test_request_settings_reach_the_provider(tmp_path: Path) -> None:
    model = ScriptedModel(["x"])
    gateway = make_gateway(tmp_path, {"d": (model, local())})
    run(gateway.chat(chat_request(max_completion_tokens=9, stop="END", temperature=0), CALLER))
    sent = model.requests[0]
    assert (sent.max_tokens, sent.stop, sent.temperature) == (9, ["END"], 0)


def test_schema_output_is_validated(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    ok, _ = run(gateway_with(tmp_path / "a", '{"n": 1}').chat(chat_request(response_format=fmt), CALLER))
    assert ok.choices[0].message.content == '{"n": 1}'
    with pytest.raises(UpstreamError, match="schema"):
        run(gateway_with(tmp_path / "b", '{"n": "one"}').chat(chat_request(response_format=fmt), CALLER))
    with pytest.raises(UpstreamError, match="not valid JSON"):
        run(gateway_with(tmp_path / "c", "n is 1").chat(chat_request(response_format=fmt), CALLER))


def test_json_object_mode_needs_an_object(tmp_path: Path) -> None:
    fmt = {"type": "json_object"}
    with pytest.raises(UpstreamError, match="not an object"):
        run(gateway_with(tmp_path, "[1, 2]").chat(chat_request(response_format=fmt), CALLER))


def test_invalid_schema_is_a_client_error(tmp_path: Path) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "nonsense"}}}
    with pytest.raises(InvalidRequestError):
        run(gateway_with(tmp_path, "{}").chat(chat_request(response_format=fmt), CALLER))


def test_stream_order_role_deltas_finish_and_usage(tmp_path: Path) -> None:
    async def collect() -> list[Any]:
        gateway = gateway_with(tmp_path, "a b c")
        request = chat_request(stream=True, stream_options={"include_usage": True})
        return [c async for c in gateway.chat_stream(request, CALLER)]

    chunks = run(collect())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b c "
    finish = chunks[-2]
    assert finish.choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == Usage.of(7, 3)
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]], "usage is sent once"
    assert len({c.id for c in chunks}) == 1


def test_stream_sends_no_usage_unless_asked(tmp_path: Path) -> None:
    async def collect() -> list[Any]:
        gateway = gateway_with(tmp_path, "a b c")
        return [c async for c in gateway.chat_stream(chat_request(stream=True), CALLER)]

    chunks = run(collect())
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_embeddings_as_floats_or_base64(tmp_path: Path) -> None:
    gateway = gateway_with(tmp_path, "x")
    floats = run(gateway.embed(EmbeddingRequest(model="e", input=["a", "b"])))
    assert [d.embedding for d in floats.data] == [[1.0, 0.0, 0.0]] * 2
    assert floats.usage.prompt_tokens == 4
    assert FixedEmbedder.dimensions == 3
    encoded = run(gateway.embed(EmbeddingRequest(model="e", input="a", encoding_format="base64")))
    import base64

    vector = np.frombuffer(base64.b64decode(str(encoded.data[0].embedding)), dtype="<f4")
    assert vector.tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("payload", [[], ["ok", ""]])
def test_empty_embedding_inputs_are_refused(tmp_path: Path, payload: list[str]) -> None:
    with pytest.raises(InvalidRequestError):
        run(gateway_with(tmp_path, "x").embed(EmbeddingRequest(model="e", input=payload)))


def test_dimension_mismatch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="dimensions"):
        run(gateway_with(tmp_path, "x").embed(EmbeddingRequest(model="e", input="a", dimensions=2)))

"""Keel as a drop-in for the official `openai` SDK, against a live `keel serve` on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import AuthenticationError, BadRequestError, NotFoundError, OpenAI

from tests.integration.live import create_key, free_port, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    data_dir: Path = tmp_path_factory.mktemp("keel-live")
    key = create_key(data_dir, "sdk", "app")
    port = free_port()
    process = start_server(data_dir, port)
    try:
        yield f"http://127.0.0.1:{port}/v1", key
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def sdk(server: tuple[str, str]) -> OpenAI:
    base_url, key = server
    return OpenAI(base_url=base_url, api_key=key, max_retries=0)


def test_models(sdk: OpenAI) -> None:
    assert {model.id for model in sdk.models.list()} == {"keel-local", "keel-embed"}


def test_chat(sdk: OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="keel-local", messages=[{"role": "user", "content": "Say hello."}], max_tokens=16
    )
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_stream(sdk: OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="keel-local",
        messages=[{"role": "user", "content": "Tell me about bicycles."}],
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert len(pieces) > 3 and "".join(pieces).strip()
    assert usage is not None and usage.completion_tokens > 0


def test_embeddings(sdk: OpenAI) -> None:
    # The SDK asks for base64 by default and decodes it itself.
    result = sdk.embeddings.create(model="keel-embed", input=["one", "two"])
    assert [len(item.embedding) for item in result.data] == [384, 384]


def test_sdk_errors(server: tuple[str, str], sdk: OpenAI) -> None:
    with pytest.raises(NotFoundError):
        sdk.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=server[0], api_key="keel_wrong", max_retries=0).models.list()


def test_parameters_keel_does_not_honour_are_refused_by_name(sdk: OpenAI) -> None:
    function: Any = {"name": "lookup", "parameters": {"type": "object"}}
    question: Any = [{"role": "user", "content": "Look it up."}]
    with pytest.raises(BadRequestError) as functions:
        sdk.chat.completions.create(model="keel-local", messages=question, functions=[function])
    assert functions.value.param == "functions" and functions.value.code == "unsupported_parameter"
    with pytest.raises(BadRequestError) as logprobs:
        sdk.chat.completions.create(model="keel-local", messages=question, logprobs=True, stream=True)
    assert logprobs.value.param == "logprobs"

"""Tool calling through Keel's API with the real clients (the openai SDK, langchain-openai, llama-index),
on the local model (constrained generation), on an OpenAI-compatible deployment and on an Anthropic one
(both the fault upstream, which answers with a tool call): calls, streamed calls, and a tool result
answered in text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi.testclient import TestClient
from openai import OpenAI
from pydantic import BaseModel

from keel.config import AliasSettings, DeploymentSettings, GatewaySettings, Settings
from keel.keys import Role
from keel.runtime import Runtime
from keel.server.app import create_app
from tests.support.fault_upstream import FaultPlan, FaultUpstream

MODELS = ["keel-local", "upstream", "claude"]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city's name", "maxLength": 40}},
            "required": ["city"],
        },
    },
}
QUESTION: Any = [{"role": "user", "content": "What is the weather in Paris?"}]


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return "sunny"


def langchain_chat(app: tuple[TestClient, str], model: str) -> Any:
    from langchain_openai import ChatOpenAI

    client, key = app
    return ChatOpenAI(
        model=model, base_url="http://testserver/v1", api_key=key, http_client=client, temperature=0
    )


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str
    age: int


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultUpstream]:
    with FaultUpstream.running(FaultPlan(tool_arguments={"city": "Paris"})) as server:
        yield server


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, upstream: FaultUpstream, tier_settings: dict[str, str]
) -> Iterator[tuple[TestClient, str]]:
    gateway = GatewaySettings(
        deployments={
            "local": DeploymentSettings(provider="local", timeout_s=600),
            "echo": DeploymentSettings(
                provider="openai", base_url=upstream.base_url, model="echo", timeout_s=10
            ),
            "messages": DeploymentSettings(
                provider="anthropic", base_url=upstream.root_url, model="echo", timeout_s=10
            ),
        },
        aliases={
            "keel-local": AliasSettings(deployments=["local"]),
            "upstream": AliasSettings(deployments=["echo"]),
            "claude": AliasSettings(deployments=["messages"]),
        },
    )
    data_dir: Path = tmp_path_factory.mktemp("keel-tools")
    runtime = Runtime.build(
        Settings(data_dir=data_dir, preload_models=False, gateway=gateway, **tier_settings)  # type: ignore[arg-type]
    )
    with TestClient(create_app(runtime=runtime)) as client:
        yield client, runtime.keys.create("acme", Role.APP).secret
    runtime.close()


@pytest.fixture(autouse=True)
def _calls_the_weather(upstream: FaultUpstream) -> None:
    upstream.set_plan(FaultPlan(tool_arguments={"city": "Paris"}))


@pytest.fixture
def sdk(app: tuple[TestClient, str]) -> OpenAI:
    client, key = app
    # The app's TestClient is an httpx client: the SDK talks to the app in process.
    http_client = cast(httpx.Client, client)
    return OpenAI(base_url="http://testserver/v1", api_key=key, http_client=http_client, max_retries=0)


@pytest.mark.parametrize("model", MODELS)
def test_a_required_tool_is_called_with_arguments_that_match_its_schema(sdk: OpenAI, model: str) -> None:
    completion = sdk.chat.completions.create(
        model=model,
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call: Any = choice.message.tool_calls[0]
    assert call.type == "function" and call.id and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


@pytest.mark.parametrize("model", MODELS)
def test_a_streamed_tool_call_arrives_in_openais_delta_shape(sdk: OpenAI, model: str) -> None:
    stream = sdk.chat.completions.create(
        model=model,
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts: list[Any] = []
    finish, usage = None, None
    for chunk in stream:
        usage = chunk.usage or usage
        if chunk.choices:
            parts.extend(chunk.choices[0].delta.tool_calls or [])
            finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and usage is not None and usage.completion_tokens > 0
    first: Any = parts[0]
    assert first.index == 0 and first.id and first.type == "function" and first.function.name == "get_weather"
    assert all(part.id is None and part.function.name is None for part in parts[1:])
    arguments = "".join(part.function.arguments or "" for part in parts if part.index == 0)
    assert isinstance(json.loads(arguments)["city"], str)


@pytest.mark.parametrize("model", MODELS)
def test_a_tool_result_is_answered_in_text(sdk: OpenAI, model: str, upstream: FaultUpstream) -> None:
    call: Any = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    messages: Any = [
        *QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 18 degrees."},
    ]
    completion = sdk.chat.completions.create(
        model=model, messages=messages, tools=[WEATHER], max_tokens=24, temperature=0
    )
    choice = completion.choices[0]
    assert choice.message.tool_calls is None and choice.message.content
    sent = upstream.received[-1].body["messages"] if upstream.received else []
    if model == "upstream":  # passed through as OpenAI's messages
        assert sent[1]["tool_calls"] == [call] and sent[2]["tool_call_id"] == "call_1"
    if model == "claude":  # translated into Anthropic's blocks
        assert sent[1]["content"][0] == {
            "type": "tool_use",
            "id": "call_1",
            "name": "get_weather",
            "input": {"city": "Paris"},
        }
        assert (
            sent[2]["content"][0]["type"] == "tool_result"
            and sent[2]["content"][0]["tool_use_id"] == "call_1"
        )


@pytest.mark.parametrize("model", MODELS)
def test_langchain_bind_tools_calls_the_tool(app: tuple[TestClient, str], model: str) -> None:
    from langchain_openai import ChatOpenAI

    client, key = app

    chat = ChatOpenAI(
        model=model, base_url="http://testserver/v1", api_key=key, http_client=client, temperature=0
    )
    message = chat.bind_tools([get_weather], parallel_tool_calls=False).invoke(
        "What is the weather in Paris?"
    )
    assert [call["name"] for call in message.tool_calls] == ["get_weather"]
    assert isinstance(message.tool_calls[0]["args"]["city"], str)


@pytest.mark.parametrize("model", MODELS)
def test_langchain_structured_output_by_function_calling_returns_the_object(
    app: tuple[TestClient, str], upstream: FaultUpstream, model: str
) -> None:
    upstream.set_plan(FaultPlan(tool_arguments={"name": "Ada", "age": 36}))
    person = (
        langchain_chat(app, model)
        .with_structured_output(Person, method="function_calling")
        .invoke("Ada is 36 years old.")
    )
    assert isinstance(person, Person)


@pytest.mark.parametrize("model", MODELS)
def test_llama_index_function_calling_model_calls_the_tool(app: tuple[TestClient, str], model: str) -> None:
    from llama_index.core.tools import FunctionTool
    from llama_index.llms.openai_like import OpenAILike  # type: ignore[import-untyped]

    client, key = app

    llm = OpenAILike(
        model=model,
        api_base="http://testserver/v1",
        api_key=key,
        is_chat_model=True,
        is_function_calling_model=True,
        http_client=client,
        temperature=0,
        max_retries=0,
    )
    tool = FunctionTool.from_defaults(fn=get_weather)
    response = llm.chat_with_tools([tool], user_msg="What is the weather in Paris?", tool_required=True)
    calls = llm.get_tool_calls_from_response(response)
    assert [call.tool_name for call in calls] == ["get_weather"]
    assert isinstance(calls[0].tool_kwargs["city"], str)

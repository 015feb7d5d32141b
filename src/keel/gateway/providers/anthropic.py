"""A chat provider for Anthropic's Messages API (`POST {base_url}/v1/messages`) over httpx.

Anthropic has no `response_format`: a JSON schema or JSON mode becomes an instruction in the system
prompt, and the gateway validates (and repairs) the output as it does for every provider. It has no
seed and no penalties either; those are dropped. Tools are translated (`anthropic_tools.py`): OpenAI's
tool definitions, choice, assistant `tool_calls` and `tool` messages become Anthropic's tools,
`tool_choice`, `tool_use` and `tool_result` blocks, and `tool_use` blocks come back as tool calls.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from pydantic import BaseModel, Field, ValidationError

from keel.gateway.protocol import FinishReason, Usage
from keel.gateway.providers.anthropic_tools import (
    tool_calls,
    tool_options,
    wire_messages,
)
from keel.gateway.providers.base import (
    Generation,
    GenerationRequest,
    ProviderError,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallPart,
)
from keel.gateway.providers.openai_compat import (
    UpstreamHttp,
    error_from_response,
    invalid_answer,
    sse_data,
    stream_error,
    transport_errors,
)

ANTHROPIC_VERSION = "2023-06-01"
# Anthropic's own endpoint; the path /v1/messages is added to whatever base URL is configured.
DEFAULT_BASE_URL = "https://api.anthropic.com"
# OpenAI's temperature runs to 2, Anthropic's to 1.
MAX_TEMPERATURE = 1.0


def stop_reason(raw: str | None) -> FinishReason:
    if raw in ("max_tokens", "model_context_window_exceeded"):
        return "length"
    if raw == "tool_use":
        return "tool_calls"
    return "content_filter" if raw == "refusal" else "stop"


def json_instruction(request: GenerationRequest) -> str | None:
    if request.json_schema is not None:
        schema = json.dumps(request.json_schema, indent=2)
        return (
            "Answer with one JSON value that conforms to this JSON schema, and nothing else: "
            f"no prose, no Markdown fences.\n{schema}"
        )
    if request.json_mode:
        return "Answer with one JSON object and nothing else: no prose, no Markdown fences."
    return None


class _Usage(BaseModel):
    input_tokens: int | None = None
    output_tokens: int | None = None
    # Prompt-cache reads and writes are counted apart from `input_tokens`; the prompt is all three.
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None

    def prompt_tokens(self) -> int | None:
        if self.input_tokens is None:
            return None
        return (
            self.input_tokens + (self.cache_creation_input_tokens or 0) + (self.cache_read_input_tokens or 0)
        )


class _Block(BaseModel):
    type: str
    text: str | None = None
    # A tool_use block.
    id: str | None = None
    name: str | None = None
    input: Any = None


class _Message(BaseModel):
    content: list[_Block]
    stop_reason: str | None = None
    usage: _Usage


class _EventDelta(BaseModel):
    type: str | None = None
    text: str | None = None
    partial_json: str | None = None  # input_json_delta
    stop_reason: str | None = None


class _StartedMessage(BaseModel):
    usage: _Usage = Field(default_factory=_Usage)


class _Event(BaseModel):
    type: str
    message: _StartedMessage | None = None  # message_start
    index: int | None = None  # content_block_start, content_block_delta
    content_block: _Block | None = None  # content_block_start
    delta: _EventDelta | None = None  # content_block_delta, message_delta
    usage: _Usage | None = None  # message_delta
    error: dict[str, Any] | None = None  # error


class AnthropicProvider:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        default_max_tokens: int = 1024,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        self.default_max_tokens = default_max_tokens
        self._upstream = f"The upstream {model!r} at {base_url}"
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        self._http = UpstreamHttp(
            lambda: httpx.AsyncClient(
                base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
            ),
            base_url,
        )

    @property
    def is_ready(self) -> bool:
        return True  # a remote API: whether it answers shows on the first call, not before

    async def aclose(self) -> None:
        await self._http.aclose()

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        system = [m.text() for m in request.messages if m.role in ("system", "developer")]
        if (instruction := json_instruction(request)) is not None:
            system.append(instruction)
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens or self.default_max_tokens,
            "messages": wire_messages(request.messages),
            **tool_options(request),
        }
        if system:
            body["system"] = "\n\n".join(system)
        if request.temperature is not None:
            body["temperature"] = min(request.temperature, MAX_TEMPERATURE)
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = request.stop
        return body

    async def complete(self, request: GenerationRequest) -> Generation:
        with transport_errors(self._upstream):
            response = await self._http.post_json("/v1/messages", self._body(request))
        if not response.is_success:
            raise error_from_response(response, self._upstream)
        try:
            message = _Message.model_validate_json(response.content)
        except ValidationError as exc:
            raise invalid_answer(self._upstream, "a message", exc) from exc
        prompt_tokens = message.usage.prompt_tokens()
        if prompt_tokens is None or message.usage.output_tokens is None:
            raise ProviderError(f"{self._upstream} sent a message without its usage.", retryable=True)
        uses = [
            (block.id or "", block.name or "", block.input)
            for block in message.content
            if block.type == "tool_use"
        ]
        return Generation(
            text="".join(block.text or "" for block in message.content if block.type == "text"),
            finish_reason=stop_reason(message.stop_reason),
            usage=Usage.of(prompt_tokens, message.usage.output_tokens),
            tool_calls=tool_calls(uses),
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        body = {**self._body(request), "stream": True}
        prompt_tokens: int | None = None
        output_tokens: int | None = None
        reason: str | None = None
        stopped = False
        deltas = 0
        # Anthropic numbers all content blocks; OpenAI numbers tool calls alone.
        call_index: dict[int, int] = {}
        argued: set[int] = set()
        with transport_errors(self._upstream):
            async with self._http.stream_json("/v1/messages", body) as response:
                if not response.is_success:
                    await response.aread()
                    raise error_from_response(response, self._upstream)
                async for data in sse_data(response):
                    try:
                        event = _Event.model_validate_json(data)
                    except ValidationError as exc:
                        raise invalid_answer(self._upstream, "a stream event", exc) from exc
                    if event.type == "error":
                        raise stream_error(event.error, self._upstream)
                    if event.type == "message_start" and event.message is not None:
                        prompt_tokens = event.message.usage.prompt_tokens()
                    elif event.type == "content_block_start" and event.content_block is not None:
                        block = event.content_block
                        if block.type == "tool_use":
                            call_index[event.index or 0] = index = len(call_index)
                            yield ToolCallPart(index, id=block.id, name=block.name)
                    elif (
                        event.type == "content_block_delta"
                        and event.delta
                        and event.delta.type == "input_json_delta"
                        and (event.index or 0) in call_index
                    ):
                        if event.delta.partial_json:
                            deltas += 1
                            argued.add(event.index or 0)
                            yield ToolCallPart(call_index[event.index or 0], event.delta.partial_json)
                    elif event.type == "content_block_stop" and (event.index or 0) in call_index:
                        if (event.index or 0) not in argued:  # a call without arguments sends no delta
                            yield ToolCallPart(call_index[event.index or 0], "{}")
                    elif (
                        event.type == "content_block_delta"
                        and event.delta
                        and event.delta.type == "text_delta"
                    ):
                        if event.delta.text:
                            deltas += 1
                            yield TextDelta(event.delta.text)
                    elif event.type == "message_delta":
                        reason = (event.delta.stop_reason if event.delta else None) or reason
                        if event.usage is not None:
                            # Counts here are cumulative; a newer API may restate the prompt too.
                            output_tokens = event.usage.output_tokens or output_tokens
                            prompt_tokens = event.usage.prompt_tokens() or prompt_tokens
                    elif event.type == "message_stop":
                        stopped = True
                        break
        if reason is None and not stopped:
            raise ProviderError(f"{self._upstream} ended the stream before it finished.", retryable=True)
        # Without a count from the API, deltas stand in for tokens and an uncounted prompt stays 0,
        # as in the OpenAI-compatible provider.
        usage = Usage.of(prompt_tokens or 0, deltas if output_tokens is None else output_tokens)
        yield StreamEnd(stop_reason(reason), usage)

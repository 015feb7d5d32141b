"""A chat provider for any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, OpenAI) over httpx.

The HTTP plumbing both remote providers share lives here too: one client per event loop, the mapping of
transport failures and error statuses onto `ProviderError`, Retry-After parsing and server-sent events.
`anthropic.py` imports it from this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import re
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pydantic_core
from pydantic import BaseModel, Field, ValidationError

from keel.gateway.protocol import ChatMessage, FinishReason, ToolCall, Usage
from keel.gateway.providers.base import (
    ContextWindowExceeded,
    Generation,
    GenerationRequest,
    ProviderError,
    ProviderTimeout,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallPart,
)

# Besides 429 and 5xx: 408 is a timeout and 409 a lock conflict; the OpenAI SDK retries both too.
RETRYABLE_STATUSES = frozenset({408, 409, 429})
# How OpenAI, vLLM, llama.cpp and Anthropic word a prompt that does not fit the model's window.
CONTEXT_EXCEEDED = re.compile(
    r"context[_ ]length|maximum context|context window|context size|context limit|exceed_context_size"
    r"|prompt is too long",
    re.IGNORECASE,
)
MAX_DETAIL_CHARS = 500
FINISH_REASONS: dict[str, FinishReason] = {
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}


class UpstreamHttp:
    """An `httpx.AsyncClient` per event loop: pooled connections belong to the loop that opened them, and
    a provider built once may serve several loops (a test's `asyncio.run`, a TestClient's portal).

    Requests go to absolute URLs parsed once (httpx parses and merges a relative one on every request,
    ~70 us) with bodies encoded by pydantic-core (4x faster than `json=` on a 64 KB conversation)."""

    def __init__(self, make_client: Callable[[], httpx.AsyncClient], base_url: str) -> None:
        self._make_client = make_client
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._base_url = base_url.rstrip("/")
        self._urls: dict[str, httpx.URL] = {}

    def client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A client left on a finished loop cannot be closed from this one; its sockets go with it.
            self._client, self._loop = self._make_client(), loop
        return self._client

    def url(self, path: str) -> httpx.URL:
        """`path` under the base URL, as httpx would merge it, parsed on first use."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self._base_url + "/" + path.lstrip("/"))
        return url

    async def post_json(self, path: str, body: Any) -> httpx.Response:
        return await self.client().post(self.url(path), content=json_bytes(body), headers=JSON_CONTENT)

    def stream_json(self, path: str, body: Any) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
        return self.client().stream("POST", self.url(path), content=json_bytes(body), headers=JSON_CONTENT)

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None
        self._loop = None


JSON_CONTENT = {"Content-Type": "application/json"}


def json_bytes(body: Any) -> bytes:
    """A request body as compact UTF-8 JSON, as httpx's `json=` writes it."""
    return pydantic_core.to_json(body)


@contextlib.contextmanager
def transport_errors(upstream: str) -> Iterator[None]:
    """Turns httpx's transport failures into provider errors; every one of them is worth a retry."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(f"{upstream} did not answer in time ({type(exc).__name__}).") from exc
    except httpx.RequestError as exc:
        raise ProviderError(f"{upstream} failed: {type(exc).__name__}: {exc}", retryable=True) from exc


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait, from `retry-after-ms` (OpenAI) or `Retry-After` as seconds or an HTTP date."""
    with contextlib.suppress(ValueError):
        if (millis := headers.get("retry-after-ms")) is not None and math.isfinite(float(millis)):
            return max(0.0, float(millis) / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def error_detail(payload: Any) -> str:
    """The message, code and type of an error body in OpenAI's, vLLM's, llama.cpp's or Anthropic's shape."""
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    if not isinstance(error, dict):
        return str(error)[:MAX_DETAIL_CHARS]
    parts = [str(error[key]) for key in ("message", "code", "type") if error.get(key) is not None]
    return " | ".join(parts)[:MAX_DETAIL_CHARS] or json.dumps(error)[:MAX_DETAIL_CHARS]


def error_from_response(response: httpx.Response, upstream: str) -> ProviderError:
    """Maps a non-2xx answer: 429, 408, 409 and 5xx may be retried; a full context window may fall back."""
    try:
        detail = error_detail(response.json())
    except (ValueError, UnicodeDecodeError):
        detail = response.text[:MAX_DETAIL_CHARS]
    status = response.status_code
    message = f"{upstream} answered {status}: {detail}"
    if status == 400 and CONTEXT_EXCEEDED.search(detail):
        return ContextWindowExceeded(message)
    retryable = status in RETRYABLE_STATUSES or status >= 500
    return ProviderError(
        message, retryable=retryable, status=status, retry_after=parse_retry_after(response.headers)
    )


def stream_error(payload: Any, upstream: str) -> ProviderError:
    """An error sent as an event after a 200 began the stream: the server failed mid-generation."""
    detail = error_detail(payload)
    if CONTEXT_EXCEEDED.search(detail):
        return ContextWindowExceeded(f"{upstream} failed mid-stream: {detail}")
    return ProviderError(f"{upstream} failed mid-stream: {detail}", retryable=True)


def invalid_answer(upstream: str, what: str, exc: Exception) -> ProviderError:
    # A 200 that does not parse is most likely a proxy or server glitch; another attempt may be fine.
    return ProviderError(f"{upstream} sent {what} that is not valid: {exc}", retryable=True)


async def sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The `data` of each server-sent event; `event:`, `id:` and comment lines carry nothing we need."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
        elif line.startswith("data:"):
            value = line[len("data:") :]
            lines.append(value[1:] if value.startswith(" ") else value)
    if lines:  # a last event without its blank line; a truncated one fails to parse downstream
        yield "\n".join(lines)


def finish_reason(raw: str | None) -> FinishReason:
    return FINISH_REASONS.get(raw or "", "stop")  # eos, end_turn, ... all mean the answer is done


class _Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class _Text(BaseModel):
    content: str | None = None
    tool_calls: list[ToolCall] | None = None


class _FunctionPart(BaseModel):
    name: str | None = None
    arguments: str | None = None


class _ToolCallPart(BaseModel):
    index: int = 0
    id: str | None = None
    function: _FunctionPart = Field(default_factory=_FunctionPart)


class _DeltaIn(BaseModel):
    content: str | None = None
    tool_calls: list[_ToolCallPart] | None = None


class _Choice(BaseModel):
    message: _Text
    finish_reason: str | None = None


class _Completion(BaseModel):
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage


class _ChunkChoice(BaseModel):
    index: int = 0
    delta: _DeltaIn = Field(default_factory=_DeltaIn)
    finish_reason: str | None = None


class _Chunk(BaseModel):
    choices: list[_ChunkChoice] = Field(default_factory=list)
    usage: _Usage | None = None
    error: dict[str, Any] | str | None = None


class OpenAICompatibleProvider:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        self._upstream = f"The upstream {model!r} at {base_url}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = UpstreamHttp(
            lambda: httpx.AsyncClient(
                base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
            ),
            base_url,
        )

    @property
    def is_ready(self) -> bool:
        return True  # a remote server: whether it answers shows on the first call, not before

    async def aclose(self) -> None:
        await self._http.aclose()

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        messages = [_wire_message(m) for m in request.messages]
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if request.tools:
            body["tools"] = [tool.model_dump(exclude_none=True) for tool in request.tools]
            choice = request.tool_choice
            body["tool_choice"] = choice if isinstance(choice, str) else choice.model_dump()
            if not request.parallel_tool_calls:
                body["parallel_tool_calls"] = False
        optional = {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed,
            "presence_penalty": request.presence_penalty,
            "frequency_penalty": request.frequency_penalty,
            "stop": request.stop or None,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": request.json_schema},
            }
        elif request.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    async def complete(self, request: GenerationRequest) -> Generation:
        with transport_errors(self._upstream):
            response = await self._http.post_json("/chat/completions", self._body(request))
        if not response.is_success:
            raise error_from_response(response, self._upstream)
        try:
            completion = _Completion.model_validate_json(response.content)
        except ValidationError as exc:
            raise invalid_answer(self._upstream, "a completion", exc) from exc
        choice = completion.choices[0]
        return Generation(
            text=choice.message.content or "",
            finish_reason=finish_reason(choice.finish_reason),
            usage=Usage.of(completion.usage.prompt_tokens, completion.usage.completion_tokens),
            tool_calls=choice.message.tool_calls or [],
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        body = {**self._body(request), "stream": True, "stream_options": {"include_usage": True}}
        usage: _Usage | None = None
        finish: str | None = None
        done = False
        deltas = 0
        with transport_errors(self._upstream):
            async with self._http.stream_json("/chat/completions", body) as response:
                if not response.is_success:
                    await response.aread()
                    raise error_from_response(response, self._upstream)
                async for data in sse_data(response):
                    if data.strip() == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = _Chunk.model_validate_json(data)
                    except ValidationError as exc:
                        raise invalid_answer(self._upstream, "a stream chunk", exc) from exc
                    if chunk.error is not None:
                        raise stream_error(chunk.error, self._upstream)
                    usage = chunk.usage or usage
                    for choice in chunk.choices:
                        if choice.index != 0:
                            continue
                        if choice.delta.content:
                            deltas += 1
                            yield TextDelta(choice.delta.content)
                        for part in choice.delta.tool_calls or []:
                            deltas += 1
                            yield ToolCallPart(
                                part.index, part.function.arguments or "", id=part.id, name=part.function.name
                            )
                        finish = choice.finish_reason or finish
        if finish is None and not done:
            raise ProviderError(f"{self._upstream} ended the stream before it finished.", retryable=True)
        if usage is None:
            # The server ignored `include_usage`. Servers send about one token per delta, so the deltas
            # count the completion; the prompt was never counted by anyone, and 0 says so honestly
            # rather than guessing with a tokenizer that is not the model's.
            usage = _Usage(prompt_tokens=0, completion_tokens=deltas)
        yield StreamEnd(finish_reason(finish), Usage.of(usage.prompt_tokens, usage.completion_tokens))


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    # "developer" is OpenAI's newer name for "system"; vLLM, Ollama and llama.cpp know only the latter.
    wire: dict[str, Any] = {"role": "system" if message.role == "developer" else message.role}
    wire["content"] = message.text() if message.content is not None or not message.tool_calls else None
    if message.tool_calls:
        wire["tool_calls"] = [call.model_dump() for call in message.tool_calls]
    if message.tool_call_id is not None:
        wire["tool_call_id"] = message.tool_call_id
    return wire

"""The contract every chat provider implements: a whole completion, or a stream of text and tool-call
deltas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from keel.errors import UpstreamError
from keel.gateway.protocol import ChatMessage, FinishReason, Tool, ToolCall, ToolChoice, Usage

# Re-exported for the gateway's callers; guard and knowledge import it from the bottom module.
from keel.llm_types import EmbeddingProvider as EmbeddingProvider


class ProviderError(UpstreamError):
    """A model call that failed. `retryable` says whether the same deployment may be tried again;
    `retry_after` carries the upstream's `Retry-After` in seconds when it sent one."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
        code: str = "provider_error",
    ) -> None:
        super().__init__(message, code=code)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    def __init__(self, message: str = "The model did not answer in time.") -> None:
        super().__init__(message, retryable=True, code="provider_timeout")


class ContextWindowExceeded(ProviderError):
    """The prompt does not fit this deployment; a fallback with a larger window may take it."""

    status_code = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, status=400, code="context_length_exceeded")


@dataclass(frozen=True)
class GenerationRequest:
    """What a provider needs to generate, free of any one wire format."""

    messages: list[ChatMessage]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    # A JSON schema constrains the output to it; json_mode alone asks for any JSON object.
    json_schema: dict[str, Any] | None = None
    json_mode: bool = False
    # Tools the model may call (`gateway/tools.py` has checked them and the choice).
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: FinishReason
    usage: Usage
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallPart:
    """A piece of tool call `index`: its first piece carries the call's id and function name, every piece
    more of its arguments (JSON text, concatenated in order)."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class StreamEnd:
    finish_reason: FinishReason
    usage: Usage


StreamEvent = TextDelta | ToolCallPart | StreamEnd


class ChatProvider(Protocol):
    """A chat model. `stream` yields text deltas and tool-call parts and ends with exactly one
    `StreamEnd`."""

    @property
    def is_ready(self) -> bool: ...

    async def complete(self, request: GenerationRequest) -> Generation: ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]: ...

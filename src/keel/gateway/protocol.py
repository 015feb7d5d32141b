"""OpenAI-compatible request and response models for chat completions, embeddings and model listings."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from keel.ids import opaque_id


class ContentPart(BaseModel):
    type: Literal["text"]
    text: str


class FunctionCall(BaseModel):
    name: str = Field(max_length=64)
    # A JSON object, as text (OpenAI's wire form).
    arguments: str


class ToolCall(BaseModel):
    id: str = Field(max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    # Unknown fields (refusal, audio, ...) are accepted and ignored, as OpenAI clients send them.
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    # An assistant turn that called tools, and a tool turn answering one of those calls.
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _tool_turns(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs the 'tool_call_id' of the call it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only an 'assistant' message carries 'tool_calls'")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class JsonSchemaSpec(BaseModel):
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None
    description: str | None = None


class FunctionDefinition(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = Field(None, max_length=4000)
    # The arguments' JSON schema; a function without one takes no arguments.
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class Tool(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format.type 'json_schema' needs a 'json_schema' object")
        return self


class StreamOptions(BaseModel):
    include_usage: bool = False


# More than any model's output limit.
MAX_COMPLETION_TOKENS = 1_000_000


class PromptReference(BaseModel):
    """Keel's extension: a prompt from the registry, rendered into the messages before the call."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    # The label to resolve ("production" when neither is given), or a pinned version; not both.
    label: str | None = Field(None, min_length=1, max_length=64)
    version: int | None = Field(None, ge=1)
    variables: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _label_or_version(self) -> PromptReference:
        if self.label is not None and self.version is not None:
            raise ValueError("name a 'label' or a 'version' of the prompt, not both")
        return self


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"model": "keel-local", "messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 16}
            ]
        },
    )

    # Both may be left out when `prompt` is given: its version names the model and renders the messages.
    model: str = Field("", max_length=200)
    messages: list[ChatMessage] = Field(default_factory=list)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    # Bounded so that rate-limit counters (Redis integers) and cost estimates stay in range.
    max_tokens: int | None = Field(None, ge=1, le=MAX_COMPLETION_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_COMPLETION_TOKENS)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    n: int = Field(1, ge=1, le=1)  # one choice per request: n > 1 is refused naming `n`
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    user: str | None = Field(None, max_length=256)
    # Tool calling (`gateway/tools.py`): passed through, translated, or constrained generation locally.
    tools: list[Tool] | None = Field(None, max_length=128)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # OpenAI parameters Keel does not honour: declared so that asking for one is a 400 naming it
    # (`unhonoured.py`) instead of being dropped without a word; their neutral values pass.
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    logit_bias: dict[str, float] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None
    # Keel's extensions (the OpenAI SDK sends them through `extra_body`).
    cache: bool = True
    prompt_version: str | None = Field(None, max_length=200)
    # A registry prompt: its rendered messages come first, then any `messages` of the request.
    prompt: PromptReference | None = None

    @model_validator(mode="after")
    def _messages_or_prompt(self) -> ChatCompletionRequest:
        if self.prompt is None and not self.model:
            raise ValueError("'model' is required (or a 'prompt' whose version names the model)")
        if self.prompt is None and not self.messages:
            raise ValueError("'messages' needs at least one message (or send a 'prompt')")
        return self

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]


def _without_none(keys: tuple[str, ...]) -> Any:
    """A serializer that leaves out the named fields while they are None, as OpenAI does."""

    def serialize(self: BaseModel, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if not (k in keys and v is None)}

    return model_serializer(mode="wrap")(serialize)


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None

    _serialize = _without_none(("tool_calls",))


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


def completion_id() -> str:
    return f"chatcmpl-{opaque_id()}"


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage


class FunctionCallDelta(BaseModel):
    name: str | None = None
    arguments: str | None = None

    _serialize = _without_none(("name", "arguments"))


class ToolCallDelta(BaseModel):
    """A piece of a streamed tool call: the first names it (id, type, function name), later ones carry
    more of its arguments, as OpenAI streams them."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta

    _serialize = _without_none(("id", "type"))


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None

    _serialize = _without_none(("tool_calls",))


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"model": "keel-embed", "input": ["How long does shipping take?"]}]},
    )

    model: str = Field(min_length=1)
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, le=65536)
    user: str | None = Field(None, max_length=256)

    # The number of inputs and their tokens are bounded by `limits.*` (keel.gateway.request_limits).
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    # A list of floats, or base64 of little-endian float32 when the caller asks for base64.
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "keel"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]

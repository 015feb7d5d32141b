"""The gateway: resolves a model alias to its provider and speaks the OpenAI protocol around it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jsonschema

from keel.errors import InvalidRequestError, ModelNotFoundError, UpstreamError
from keel.gateway.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    Embedding,
    EmbeddingList,
    EmbeddingRequest,
    EmbeddingUsage,
    ModelCard,
    ModelList,
    completion_id,
)
from keel.gateway.providers.base import (
    ChatProvider,
    EmbeddingProvider,
    GenerationRequest,
    StreamEnd,
    TextDelta,
)


def generation_request(request: ChatCompletionRequest) -> GenerationRequest:
    response_format = request.response_format
    schema = None
    if response_format is not None and response_format.type == "json_schema":
        assert response_format.json_schema is not None
        schema = response_format.json_schema.schema_
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise InvalidRequestError(
                f"response_format.json_schema.schema is not a valid JSON schema: {exc.message}",
                param="response_format",
            ) from exc
    return GenerationRequest(
        messages=request.messages,
        max_tokens=request.token_limit(),
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop_sequences(),
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        json_schema=schema,
        json_mode=response_format is not None and response_format.type == "json_object",
    )


def check_structured_output(text: str, request: GenerationRequest) -> None:
    """Raise when the output does not honour the JSON mode or schema the caller asked for."""
    if request.json_schema is None and not request.json_mode:
        return
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UpstreamError(
            f"The model's output is not valid JSON ({exc.msg}); it may have hit max_tokens.",
            code="invalid_model_output",
        ) from exc
    if request.json_schema is not None:
        errors = sorted(
            jsonschema.Draft202012Validator(request.json_schema).iter_errors(value), key=lambda e: e.path
        )
        if errors:
            raise UpstreamError(
                f"The model's output does not match the requested schema: {errors[0].message}",
                code="invalid_model_output",
            )
    elif not isinstance(value, dict):
        raise UpstreamError("The model's output is JSON but not an object.", code="invalid_model_output")


class Gateway:
    def __init__(
        self, chat_models: dict[str, ChatProvider], embedding_models: dict[str, EmbeddingProvider]
    ) -> None:
        self._chat_models = chat_models
        self._embedding_models = embedding_models
        self._created = int(time.time())

    @property
    def is_ready(self) -> bool:
        providers: list[ChatProvider | EmbeddingProvider] = [
            *self._chat_models.values(),
            *self._embedding_models.values(),
        ]
        return all(provider.is_ready for provider in providers)

    def models(self) -> ModelList:
        aliases = [*self._chat_models, *self._embedding_models]
        return ModelList(data=[ModelCard(id=alias, created=self._created) for alias in aliases])

    def chat_model(self, alias: str) -> ChatProvider:
        try:
            return self._chat_models[alias]
        except KeyError:
            raise ModelNotFoundError(alias) from None

    def embedding_model(self, alias: str) -> EmbeddingProvider:
        try:
            return self._embedding_models[alias]
        except KeyError:
            raise ModelNotFoundError(alias) from None

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        provider = self.chat_model(request.model)
        generation_input = generation_request(request)
        generation = await provider.complete(generation_input)
        if generation.finish_reason != "length":
            check_structured_output(generation.text, generation_input)
        return ChatCompletion(
            model=request.model,
            choices=[
                Choice(
                    message=AssistantMessage(content=generation.text), finish_reason=generation.finish_reason
                )
            ],
            usage=generation.usage,
        )

    async def chat_stream(self, request: ChatCompletionRequest) -> AsyncIterator[ChatCompletionChunk]:
        """Chunks in OpenAI's order: the role, content deltas, then the finish reason with usage."""
        provider = self.chat_model(request.model)
        generation_input = generation_request(request)
        stream_id, created = completion_id(), int(time.time())

        def chunk(delta: Delta, finish: Any = None, **extra: Any) -> ChatCompletionChunk:
            choices = [ChunkChoice(delta=delta, finish_reason=finish)]
            return ChatCompletionChunk(
                id=stream_id, created=created, model=request.model, choices=choices, **extra
            )

        yield chunk(Delta(role="assistant", content=""))
        pieces: list[str] = []
        async for event in provider.stream(generation_input):
            if isinstance(event, TextDelta):
                pieces.append(event.text)
                yield chunk(Delta(content=event.text))
            elif isinstance(event, StreamEnd):
                if event.finish_reason != "length":
                    check_structured_output("".join(pieces), generation_input)
                yield chunk(Delta(), event.finish_reason, usage=event.usage)
                if request.stream_options is not None and request.stream_options.include_usage:
                    yield ChatCompletionChunk(
                        id=stream_id, created=created, model=request.model, choices=[], usage=event.usage
                    )

    async def embed(self, request: EmbeddingRequest) -> EmbeddingList:
        provider = self.embedding_model(request.model)
        texts = request.texts()
        if not texts:
            raise InvalidRequestError("'input' must not be empty.", param="input")
        if any(not text for text in texts):
            raise InvalidRequestError("'input' must not contain empty strings.", param="input")
        if request.dimensions is not None and request.dimensions != provider.dimensions:
            raise InvalidRequestError(
                f"'{request.model}' returns {provider.dimensions} dimensions; it cannot shorten them.",
                param="dimensions",
            )
        vectors = await provider.aembed(texts)
        tokens = await provider.acount_tokens(texts)
        data = [
            Embedding(
                index=i,
                embedding=(
                    base64.b64encode(vector.astype("<f4").tobytes()).decode()
                    if request.encoding_format == "base64"
                    else vector.tolist()
                ),
            )
            for i, vector in enumerate(vectors)
        ]
        return EmbeddingList(
            data=data, model=request.model, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
        )

"""The OpenAI-compatible surface: chat completions (plain and streamed), embeddings, models."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from keel.errors import KeelError
from keel.gateway.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
    ModelList,
)
from keel.logs import get_logger
from keel.server.deps import AnyCaller, ModelCaller, RuntimeDep
from keel.server.errors import error_body

router = APIRouter(prefix="/v1", tags=["openai"])
log = get_logger(__name__)


async def _server_sent_events(
    first: ChatCompletionChunk, rest: AsyncIterator[ChatCompletionChunk]
) -> AsyncIterator[str]:
    yield f"data: {first.model_dump_json()}\n\n"
    try:
        async for chunk in rest:
            yield f"data: {chunk.model_dump_json(exclude_none=False)}\n\n"
    except KeelError as exc:
        # Headers are gone by now: the error travels as an event, as OpenAI's streams do.
        yield f"data: {_json(error_body(exc.message, exc.error_type, exc.code, exc.param))}\n\n"
    except Exception as exc:
        log.exception("stream_failed", error_type=type(exc).__name__)
        yield f"data: {_json(error_body('Internal server error.', 'internal_error', 'internal_error'))}\n\n"
    yield "data: [DONE]\n\n"


def _json(value: object) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


@router.post("/chat/completions", response_model=ChatCompletion)
async def create_chat_completion(
    body: ChatCompletionRequest, runtime: RuntimeDep, _caller: ModelCaller
) -> ChatCompletion | StreamingResponse:
    if not body.stream:
        return await runtime.gateway.chat(body)
    chunks = runtime.gateway.chat_stream(body)
    # The first chunk is produced after the request is checked, so a bad request still gets its status.
    first = await anext(chunks)
    return StreamingResponse(
        _server_sent_events(first, chunks),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/embeddings", response_model=EmbeddingList)
async def create_embeddings(
    body: EmbeddingRequest, runtime: RuntimeDep, _caller: ModelCaller
) -> EmbeddingList:
    return await runtime.gateway.embed(body)


@router.get("/models", response_model=ModelList)
async def list_models(runtime: RuntimeDep, _caller: AnyCaller) -> ModelList:
    return runtime.gateway.models()

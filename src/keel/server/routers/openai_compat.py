"""The OpenAI-compatible surface: chat completions (plain and streamed), embeddings, models."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse

from keel.errors import KeelError
from keel.gateway.ledger import PromptUse
from keel.gateway.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
    ModelList,
)
from keel.gateway.request_limits import check_chat_request, check_embedding_request, reachable_context_window
from keel.gateway.service import Caller, response_headers
from keel.logs import get_logger
from keel.server.deps import AnyCaller, ModelCaller
from keel.server.errors import error_body
from keel.server.services import GatewayDep, LimitsDep, PromptRendererDep

router = APIRouter(prefix="/v1", tags=["openai"])
log = get_logger(__name__)


async def _server_sent_events(
    opening: list[ChatCompletionChunk], rest: AsyncIterator[ChatCompletionChunk]
) -> AsyncIterator[str]:
    for chunk in opening:
        yield f"data: {chunk.model_dump_json()}\n\n"
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
    body: ChatCompletionRequest,
    gateway: GatewayDep,
    limits: LimitsDep,
    renderer: PromptRendererDep,
    caller: ModelCaller,
) -> Response:
    # A registry prompt becomes ordinary messages first, so every check below sees what the model will.
    use = None
    if body.prompt is not None:
        body, use = await asyncio.to_thread(renderer.apply, body, caller.tenant)
    # The cheapest refusals first, before the gateway's cache, guardrails or model see the request.
    dispatcher = gateway.dispatcher
    check_chat_request(
        body,
        limits,
        reachable_context_window(dispatcher.aliases, dispatcher.deployments, body.model),
    )
    who = Caller(tenant=caller.tenant, key_id=caller.key_id, prompt=use)
    if not body.stream:
        completion, record = await gateway.chat(body, who)
        # Serialised straight from the model by pydantic-core (no dict in between).
        return Response(
            completion.model_dump_json(),
            media_type="application/json",
            headers=response_headers(record) | _prompt_headers(use),
        )
    chunks = gateway.chat_stream(body, who)
    # The role chunk comes after the request is checked and the limits charged, the next one after a
    # deployment answered (or the cache did): errors before that still get their own status, and the
    # response headers can say which deployment serves the stream.
    opening = [await anext(chunks)]
    with contextlib.suppress(StopAsyncIteration):
        opening.append(await anext(chunks))
    return StreamingResponse(
        _server_sent_events(opening, chunks),
        media_type="text/event-stream",
        headers={
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **response_headers(chunks.record),
            **_prompt_headers(use),
        },
    )


def _prompt_headers(use: PromptUse | None) -> dict[str, str]:
    """Which registry prompt version (and experiment arm) served the call, for the client to log."""
    if use is None:
        return {}
    return {"x-keel-prompt-version": use.tag, "x-keel-prompt-arm": use.arm or ""}


@router.post("/embeddings", response_model=EmbeddingList)
async def create_embeddings(
    body: EmbeddingRequest, gateway: GatewayDep, limits: LimitsDep, _caller: ModelCaller
) -> EmbeddingList:
    provider = gateway.embedding_model(body.model)
    await check_embedding_request(body, limits, provider.acount_input_tokens)
    return await gateway.embed(body, Caller(tenant=_caller.tenant, key_id=_caller.key_id))


@router.get("/models", response_model=ModelList)
async def list_models(gateway: GatewayDep, _caller: AnyCaller) -> ModelList:
    return gateway.models()

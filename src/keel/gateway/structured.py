"""Structured outputs: turn `response_format` into a generation constraint, check the output against
it, and build the one repair request that shows the model its mistake."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import jsonschema

from keel.errors import UpstreamError
from keel.gateway.protocol import ChatCompletionRequest, ChatMessage
from keel.gateway.providers.base import GenerationRequest
from keel.gateway.schema_check import check_response_schema
from keel.gateway.tools import check_tools


def generation_request(request: ChatCompletionRequest) -> GenerationRequest:
    response_format = request.response_format
    schema = None
    if response_format is not None and response_format.type == "json_schema":
        assert response_format.json_schema is not None
        schema = response_format.json_schema.schema_
        check_response_schema(schema)
    check_tools(request)
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
        tools=request.tools or [],
        tool_choice=request.tool_choice or "auto",
        parallel_tool_calls=request.parallel_tool_calls is not False,
    )


def wants_json(request: GenerationRequest) -> bool:
    return request.json_schema is not None or request.json_mode


def check_structured_output(text: str, request: GenerationRequest) -> None:
    """Raise when the output does not honour the JSON mode or schema the caller asked for."""
    if not wants_json(request):
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


def repair_request(request: GenerationRequest, bad_output: str, problem: str) -> GenerationRequest:
    """The original conversation, the invalid answer, and what was wrong with it."""
    instruction = f"{problem}\nAnswer again with only the JSON value, nothing else."
    if request.json_schema is not None:
        instruction += f"\nThe JSON schema: {json.dumps(request.json_schema)}"
    messages = [
        *request.messages,
        ChatMessage(role="assistant", content=bad_output),
        ChatMessage(role="user", content=instruction),
    ]
    return replace(request, messages=messages)

"""Parameters Keel accepts but does not honour are a 400 naming them, never dropped; neutral values pass."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from keel.errors import UnsupportedError
from keel.gateway.service import Caller
from tests.unit.gateway.doubles import ScriptedModel, chat_request, local, make_gateway

CALLER = Caller(tenant="acme", key_id="key_1")
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"logprobs": True, "top_logprobs": 3}, "logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"functions": [TOOL["function"]]}, "functions"),
        ({"function_call": {"name": "lookup"}}, "function_call"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"verbosity": "low"}, "verbosity"),
    ],
)
def test_an_unhonoured_parameter_is_refused_by_name(tmp_path: Path, body: dict[str, Any], param: str) -> None:
    model = ScriptedModel(["x"])
    gateway = make_gateway(tmp_path, {"d": (model, local())})
    with pytest.raises(UnsupportedError) as refused:
        asyncio.run(gateway.chat(chat_request(**body), CALLER))
    assert refused.value.param == param and refused.value.status_code == 400
    assert f"'{param}'" in refused.value.message
    assert model.requests == []  # refused before any model saw it


@pytest.mark.parametrize(
    "body",
    [
        {"logprobs": False, "top_logprobs": 0, "logit_bias": {}},
        {"tools": [], "parallel_tool_calls": True},
        {"tools": [TOOL], "tool_choice": "none"},
        {"modalities": ["text"], "function_call": "auto"},
    ],
)
def test_neutral_values_pass(tmp_path: Path, body: dict[str, Any]) -> None:
    gateway = make_gateway(tmp_path, {"d": (ScriptedModel(["fine"]), local())})
    completion, _ = asyncio.run(gateway.chat(chat_request(**body), CALLER))
    assert completion.choices[0].message.content == "fine"

"""Tools are part of the prompt: their definitions and earlier turns' calls count towards the token
estimate and the budget's reservation, and earlier calls' arguments leave for an external provider
pseudonymised like the messages' text."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from keel.config import BudgetSettings, GatewaySettings, GuardSettings, RateLimitSettings
from keel.errors import RateLimitError
from keel.gateway.budgets import BudgetLedger
from keel.gateway.limits import RateLimiter
from keel.gateway.model import collect
from keel.gateway.protocol import ChatMessage, FunctionCall, Tool, ToolCall
from keel.gateway.providers.base import GenerationRequest
from keel.gateway.router import estimate_tokens, prompt_token_bound
from keel.gateway.wrappers.admission import RateLimited
from keel.gateway.wrappers.budgeting import Budgeted
from keel.guard.inbound import InboundGuard
from keel.guard.injection import InjectionDetector
from keel.guard.pii import PiiDetector
from keel.store.engine import Database
from tests.unit.gateway.doubles import ScriptedModel, local, make_gateway
from tests.unit.gateway.wrappers.fakes import FakeModel, call_of

pytestmark = pytest.mark.unit

DESCRIPTION = "Looks up the weather for a city. " * 40  # a tool definition of about 1,300 bytes
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": DESCRIPTION,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
QUESTION = ChatMessage(role="user", content="Weather?")


def test_the_tools_and_earlier_calls_count_towards_the_prompt() -> None:
    tools = [Tool.model_validate(WEATHER)]
    definition = len(tools[0].model_dump_json(exclude_none=True))
    assert prompt_token_bound([QUESTION], tools) >= prompt_token_bound([QUESTION]) + definition
    assert estimate_tokens([QUESTION], tools) >= estimate_tokens([QUESTION]) + definition // 4
    call = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))
    called = ChatMessage(role="assistant", tool_calls=[call])
    assert prompt_token_bound([QUESTION, called]) > prompt_token_bound(
        [QUESTION, called.model_copy(update={"tool_calls": None})]
    )


def test_the_rate_limit_counts_the_tools_offered() -> None:
    settings = GatewaySettings(key_limits=RateLimitSettings(tokens_per_minute=200))
    inner = FakeModel()
    limited = RateLimited(inner, RateLimiter(settings), default_completion_tokens=16)

    async def opened(**extra: Any) -> None:
        await collect(await limited.open(call_of(**extra)))

    asyncio.run(opened())  # the question alone fits the minute's tokens
    with pytest.raises(RateLimitError):
        asyncio.run(opened(tools=[WEATHER]))
    assert len(inner.calls) == 1


def test_the_budget_reserves_for_the_tools_offered(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'budget.db'}")
    db.migrate()
    # A price of 1 per thousand prompt tokens: the bare question reserves well under the budget of 1,
    # with the tool's definition (and the template's room around it) more than it.
    settings = GatewaySettings(key_budget=BudgetSettings(daily=Decimal("1")))
    dispatcher = make_gateway(
        tmp_path, {"d": (ScriptedModel(["x"]), local(input_price=Decimal("1000")))}
    ).dispatcher
    inner = FakeModel()
    budgeted = Budgeted(inner, BudgetLedger(db, settings), dispatcher, default_completion_tokens=16)

    async def opened(**extra: Any) -> None:
        await collect(await budgeted.open(call_of(**extra)))

    asyncio.run(opened())
    with pytest.raises(RateLimitError) as refused:
        asyncio.run(opened(tools=[WEATHER]))
    assert refused.value.code == "budget_exceeded"
    assert len(inner.calls) == 1


def guard(pii_external: str) -> InboundGuard:
    settings = GuardSettings(pii_external=pii_external)
    return InboundGuard(settings, InjectionDetector(None), PiiDetector(ner=False))


def conversation() -> GenerationRequest:
    call = ToolCall(
        id="call_1",
        function=FunctionCall(
            name="send_mail", arguments='{"to": ["a@b.io"], "body": "Hi c@d.io", "urgent": true}'
        ),
    )
    return GenerationRequest(
        messages=[
            ChatMessage(role="user", content="Mail a@b.io for me"),
            ChatMessage(role="assistant", tool_calls=[call]),
            ChatMessage(role="tool", tool_call_id="call_1", content="Sent to a@b.io"),
        ]
    )


def test_earlier_calls_arguments_are_pseudonymised_with_the_messages_placeholders() -> None:
    outbound, restore = guard("pseudonymise").outbound("openai", conversation())
    user, assistant, result = outbound.messages
    assert user.text() == "Mail <EMAIL_1> for me" and result.text() == "Sent to <EMAIL_1>"
    assert assistant.content is None and assistant.tool_calls is not None
    sent = json.loads(assistant.tool_calls[0].function.arguments)
    assert sent == {"to": ["<EMAIL_1>"], "body": "Hi <EMAIL_2>", "urgent": True}
    assert assistant.tool_calls[0].id == "call_1" and result.tool_call_id == "call_1"
    assert restore("Done: <EMAIL_2>") == "Done: c@d.io"


@pytest.mark.parametrize(("pii_external", "reversible"), [("redact", True), ("pseudonymise", False)])
def test_earlier_calls_arguments_are_redacted_where_the_messages_are(
    pii_external: str, reversible: bool
) -> None:
    outbound, _ = guard(pii_external).outbound("openai", conversation(), reversible=reversible)
    assert outbound.messages[1].tool_calls is not None
    sent = json.loads(outbound.messages[1].tool_calls[0].function.arguments)
    assert sent == {"to": ["<EMAIL>"], "body": "Hi <EMAIL>", "urgent": True}

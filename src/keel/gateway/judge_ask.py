"""The injection judge's model calls (`guard.injection_judge`): through the gateway, so each is
rate-limited, traced and costed in the usage ledger (feature `guard_judge`), as the tenant whose
request is being screened."""

from __future__ import annotations

from keel.gateway.protocol import ChatCompletionRequest, ChatMessage
from keel.gateway.providers.turns import current_requester
from keel.gateway.service import INTERNAL, Caller, Gateway
from keel.guard.judge import Ask

# The judge answers one word; a few tokens leave room for a model that starts with a space or a quote.
MAX_TOKENS = 4


def gateway_ask(gateway: Gateway, alias: str) -> Ask:
    async def ask(instructions: str, text: str) -> str:
        request = ChatCompletionRequest(
            model=alias,
            messages=[
                ChatMessage(role="system", content=instructions),
                ChatMessage(role="user", content=text),
            ],
            max_tokens=MAX_TOKENS,
            temperature=0.0,
        )
        caller = Caller(
            tenant=current_requester() or "keel", key_id="guard-judge", feature="guard_judge", policy=INTERNAL
        )
        completion, _ = await gateway.chat(request, caller)
        return completion.choices[0].message.content or ""

    return ask

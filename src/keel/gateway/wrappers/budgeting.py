"""Budgets: the worst-case cost is reserved before the model is asked, settled to the actual cost after."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from keel.gateway.budgets import BudgetLedger, Reservation
from keel.gateway.cost import cost_of
from keel.gateway.dispatch import Dispatcher
from keel.gateway.model import Answer, ChatCall, ChatModel
from keel.gateway.router import prompt_token_bound
from keel.gateway.structured import wants_json


class Budgeted:
    def __init__(
        self, inner: ChatModel, budgets: BudgetLedger, dispatcher: Dispatcher, default_completion_tokens: int
    ) -> None:
        self.inner = inner
        self._budgets = budgets
        self._dispatcher = dispatcher
        self._default_completion_tokens = default_completion_tokens

    async def open(self, call: ChatCall) -> Answer:
        caller = call.caller
        if not self._budgets.applies(caller.key_id, caller.tenant):
            return await self.inner.open(call)  # no budget configured: no database round trip
        reservation = await asyncio.to_thread(self._reserve, call)

        async def settle(_: BaseException | None) -> None:
            await asyncio.to_thread(self._budgets.settle, reservation, call.record.cost)

        try:
            answer = await self.inner.open(call)
        except BaseException:
            await settle(None)
            raise
        return Answer(answer, finish=settle)

    def _reserve(self, call: ChatCall) -> Reservation:
        request, generation = call.request, call.generation
        prompt = prompt_token_bound(request.messages, generation.tools)
        completion = request.token_limit() or self._default_completion_tokens
        chain = self._dispatcher.chain(request.model, generation)
        worst = max((cost_of(d.settings, prompt, completion) for d in chain), default=Decimal(0))
        # A schema may cost one repair: the conversation again, plus the first answer.
        if wants_json(generation):
            worst = worst * 2 + max((cost_of(d.settings, completion, 0) for d in chain), default=Decimal(0))
        return self._budgets.reserve(call.caller.key_id, call.caller.tenant, worst)

"""Guardrails on what goes into a model: prompt injection in the user's message, and personal data in
prompts bound for an external provider (replaced by placeholders, put back in the answer)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from opentelemetry import trace

from keel.config import GuardSettings
from keel.errors import InvalidRequestError
from keel.guard.injection import InjectionDetector, InjectionVerdict
from keel.guard.json_strings import json_strings, map_json_strings
from keel.guard.passages import ScreenedPassage, decide, record
from keel.guard.pii import PiiDetector, restore
from keel.llm_types import ChatTurn, ModelRequest, ToolCallTurn

RequestT = TypeVar("RequestT", bound=ModelRequest)
TurnT = TypeVar("TurnT", bound=ChatTurn)
CallT = TypeVar("CallT", bound=ToolCallTurn)


def _identity(text: str) -> str:
    return text


def _last_user(messages: Sequence[ChatTurn]) -> str:
    return next((m.text() for m in reversed(messages) if m.role == "user"), "")


class InboundGuard:
    def __init__(self, settings: GuardSettings, injection: InjectionDetector, pii: PiiDetector) -> None:
        self.settings = settings
        self.injection = injection
        self.pii = pii

    def screen(self, messages: Sequence[ChatTurn]) -> InjectionVerdict | None:
        last_user = _last_user(messages)
        return self.injection.check(last_user) if last_user else None

    async def ascreen(self, messages: Sequence[ChatTurn]) -> InjectionVerdict | None:
        """`screen` for event loops: the rules on a worker thread (they read every character of a long
        message), the classifier's embedding in turns at the model like any other request's."""
        last_user = _last_user(messages)
        return await self.injection.acheck(last_user) if last_user else None

    @staticmethod
    def acts_on(verdict: InjectionVerdict, score: float) -> bool:
        """Rule hits are precise enough to act on; the classifier must be surer than its threshold."""
        return verdict.is_injection and (verdict.tier == "rules" or verdict.score >= score)

    @property
    def block_score(self) -> float:
        """From this classifier score the API refuses: the setting, else the model's tuned threshold."""
        configured = self.settings.injection_block_score
        return configured if configured is not None else self.injection.thresholds.block

    @property
    def escalate_score(self) -> float:
        """From this classifier score the copilot escalates: the setting, else the model's tuned one."""
        configured = self.settings.injection_escalate_score
        return configured if configured is not None else self.injection.thresholds.escalate

    def escalates(self, verdict: InjectionVerdict) -> bool:
        return self.acts_on(verdict, self.escalate_score)

    async def ascreen_passages(self, texts: list[str]) -> list[ScreenedPassage]:
        """Retrieved passages as they may reach a prompt (`guard.injection_in_sources`): an instruction
        to the reader is cut out ("neutralise") or its passage dropped ("drop"); each decision is
        recorded on the current span."""
        policy = self.settings.injection_in_sources
        if policy == "off" or not texts:
            return [ScreenedPassage(text, "kept", None) for text in texts]
        verdicts = await self.injection.acheck_passages(texts)
        screened = [decide(text, verdict, policy) for text, verdict in zip(texts, verdicts, strict=True)]
        record(screened)
        return screened

    def enforce_on_api(self, messages: Sequence[ChatTurn]) -> None:
        """The OpenAI-compatible route: refuse (or flag) a message that tries to override instructions."""
        if self.settings.injection_api != "off":
            self._enforce(self.screen(messages))

    async def aenforce_on_api(self, messages: Sequence[ChatTurn]) -> None:
        if self.settings.injection_api != "off":
            self._enforce(await self.ascreen(messages))

    def _enforce(self, verdict: InjectionVerdict | None) -> None:
        if verdict is None:
            return
        span = trace.get_current_span()
        span.set_attribute("keel.guard.injection_score", verdict.score)
        span.set_attribute("keel.guard.injection_tier", verdict.tier)  # each tier scores on its own scale
        if verdict.is_injection:
            span.set_attribute("keel.guard.injection_reason", verdict.reason)
            if self.settings.injection_api == "block" and self.acts_on(verdict, self.block_score):
                raise InvalidRequestError(
                    f"The message looks like a prompt injection ({verdict.reason}); no answer was given.",
                    code="prompt_injection",
                )

    def outbound(
        self, provider: str, request: RequestT, *, reversible: bool = True
    ) -> tuple[RequestT, Callable[[str], str]]:
        """The request as an external provider may see it, and how to restore its answer. Not
        `reversible` (a stream, whose placeholders could be split across deltas): redaction only."""
        if provider == "local" or self.settings.pii_external == "off":
            return request, _identity
        # The messages' texts and the string values of earlier turns' tool-call arguments, with one
        # numbering: the same person gets the same placeholder wherever they appear.
        texts = [m.text() for m in request.messages]
        calls = [call for m in request.messages for call in m.tool_calls or ()]
        texts += [value for call in calls for value in json_strings(call.function.arguments)]
        mapping: dict[str, str]
        if self.settings.pii_external == "redact" or not reversible:
            masked_texts, mapping = [self.pii.redact(text) for text in texts], {}
        else:
            masked_texts, mapping = self.pii.pseudonymise_many(texts)
        values = iter(masked_texts[len(request.messages) :])
        own = masked_texts[: len(request.messages)]
        messages = [_masked(m, text, values) for m, text in zip(request.messages, own, strict=True)]
        return replace(request, messages=messages), (
            lambda text: restore(text, mapping)
        ) if mapping else _identity


def _masked(message: TurnT, text: str, values: Iterator[str]) -> TurnT:
    """A copy keeps what else a message carries (the call a tool result answers); its tool calls take
    their masked argument values in the order they were collected."""
    update: dict[str, Any] = {"content": text if message.content is not None else None}
    if message.tool_calls:
        update["tool_calls"] = [_masked_call(call, values) for call in message.tool_calls]
    return message.model_copy(update=update)


def _masked_call(call: CallT, values: Iterator[str]) -> CallT:
    arguments = map_json_strings(call.function.arguments, lambda _: next(values))
    if arguments == call.function.arguments:
        return call
    return call.model_copy(update={"function": call.function.model_copy(update={"arguments": arguments})})

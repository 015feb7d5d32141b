"""The model's draft of a support reply: a prompt from the registry (or the shipped file), written from
the passages' best sentences only (a short prompt is a fast one), asked through the gateway with a JSON
schema, and checked by the grounding checker against the whole passages it cites."""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import replace
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Tracer

from keel.config import CopilotSettings
from keel.copilot.answering import passages_of
from keel.copilot.compose import Composer, Composition, focus
from keel.copilot.grounding import GroundingChecker, GroundingVerdict
from keel.copilot.prompt import reply_variables
from keel.errors import KeelError
from keel.gateway.ledger import PromptUse
from keel.gateway.protocol import ChatCompletionRequest
from keel.gateway.service import INTERNAL, Caller, Gateway
from keel.knowledge.retrieval import SearchResult
from keel.logs import get_logger
from keel.observe import attributes
from keel.prompts.source import PromptSource

log = get_logger(__name__)

# The conversation a model's draft sees: the last turns, each cut short (the passages carry the answer).
_HISTORY_TURNS, _HISTORY_CHARS = 2, 300


class Drafter:
    def __init__(
        self,
        settings: CopilotSettings,
        model: str,
        gateway: Gateway,
        grounding: GroundingChecker,
        composer: Composer,
        prompts: PromptSource,
        tracer: Tracer,
    ) -> None:
        self._settings = settings
        self._model = model
        self._gateway = gateway
        self._grounding = grounding
        self._composer = composer
        self._prompts = prompts
        self._tracer = tracer
        # An evaluation run's copy (`for_evaluation`): no cached answers, no canary or experiment arms.
        self._evaluating = False

    def served(self, tenant: str) -> PromptUse | None:
        """The reply prompt's version an evaluation run gets (its label's own, outside any rollout)."""
        return self._prompts.served(tenant)

    def for_evaluation(self, settings: CopilotSettings, model: str) -> Drafter:
        variant = copy.copy(self)
        variant._settings = settings
        variant._model = model
        variant._evaluating = True
        return variant

    async def draft(
        self,
        question: str,
        sources: list[SearchResult],
        composition: Composition,
        customer: dict[str, Any] | None,
        orders: list[dict[str, Any]],
        history: list[tuple[str, str]],
        caller: Caller,
        unit: str | None,
    ) -> tuple[GroundingVerdict, float | None, str] | None:
        """The model's draft, written from the passages' best sentences only (a short prompt is a fast
        one), with the grounding check's verdict on it against the whole passages it cites, how surely it
        answers the question when all of it is supported, and the instructions it was given."""
        focused = focus(sources, composition)
        recent = [(role, text[:_HISTORY_CHARS]) for role, text in history[-_HISTORY_TURNS:]]
        try:
            answer = await asyncio.wait_for(
                self._ask_model(question, focused, customer, orders, recent, caller, unit),
                self._settings.draft_timeout_s,
            )
        except TimeoutError:
            log.warning("copilot_draft_timeout", timeout_s=self._settings.draft_timeout_s)
            return None
        if answer is None:
            return None
        text, cited, instructions = answer
        by_id = {s.chunk_id: s for s in sources}
        grounds = [by_id[s.chunk_id] for s in cited if s.chunk_id in by_id] or sources
        with self._tracer.start_as_current_span("grounding") as span:
            verdict = await asyncio.to_thread(self._grounding.check, text, passages_of(grounds), question)
            span.set_attribute(attributes.GROUNDED_SHARE, verdict.supported_ratio)
            span.set_attribute("keel.grounding.sentences", len(verdict.sentences))
        evidence = None
        if verdict.fully_supported:
            claims = [s.sentence for s in verdict.sentences]
            evidence = await asyncio.to_thread(self._composer.evidence, question, claims)
        return verdict, evidence, instructions

    async def _ask_model(
        self,
        question: str,
        sources: list[SearchResult],
        customer: dict[str, Any] | None,
        orders: list[dict[str, Any]],
        history: list[tuple[str, str]],
        caller: Caller,
        unit: str | None = None,
    ) -> tuple[str, list[SearchResult], str] | None:
        """The model's draft and the sources it cites, with the instructions it was given."""
        variables = reply_variables(self._settings.company, question, sources, customer, orders, history)
        try:
            prompt = await asyncio.to_thread(
                self._prompts.render,
                caller.tenant,
                variables,
                unit=unit,
                model=self._model,
                max_tokens=self._settings.max_tokens,
                # An evaluation run is not traffic of a canary or experiment: the label's own version.
                rollouts=not self._evaluating,
            )
            params = prompt.params
            request = ChatCompletionRequest.model_validate(
                {
                    "model": prompt.model or self._model,
                    "messages": prompt.messages,
                    "max_tokens": params.max_tokens or self._settings.max_tokens,
                    "temperature": 0.1 if params.temperature is None else params.temperature,
                    **params.model_dump(exclude_none=True, exclude={"max_tokens", "temperature"}),
                    "prompt_version": prompt.tag,
                    "cache": not self._evaluating,
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {
                            "name": "reply",
                            "schema": prompt.output_schema or {"type": "object"},
                        },
                    },
                }
            )
            if prompt.use is not None:
                trace.get_current_span().set_attributes(prompt.use.span_attributes())
            # The copilot screens its customers' messages itself (and escalates instead of refusing).
            support = replace(caller, feature="support", prompt=prompt.use, policy=INTERNAL)
            completion, _ = await self._gateway.chat(request, support)
            parsed = json.loads(completion.choices[0].message.content or "")
        except (KeelError, json.JSONDecodeError) as exc:
            log.warning("copilot_model_failed", error=getattr(exc, "code", type(exc).__name__))
            return None
        if completion.choices[0].finish_reason == "length":
            return None
        # An operator's prompt version may ask for another shape: without a reply it is a failed answer.
        if not isinstance(parsed, dict) or not isinstance(parsed.get("reply"), str):
            return None
        numbers = [n for n in parsed.get("sources", []) if isinstance(n, int)]
        cited = [sources[n - 1] for n in dict.fromkeys(numbers) if 1 <= n <= len(sources)]
        return str(parsed["reply"]).strip(), cited, prompt.instructions

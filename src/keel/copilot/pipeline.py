"""The support reply pipeline: memory → intent → retrieval → tools → prompt → model → grounding →
confidence → escalation. Each step is a small unit; this module only runs them in order and decides.

Never confidently wrong: when the model fails, answers out of shape, or says things its sources do not
support, the reply becomes the best cited extract from the knowledge base and a person reviews it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NoOpTracer, Tracer
from sqlalchemy import select

from keel.config import CopilotSettings
from keel.copilot.answering import choose_reply, extract, passages_of
from keel.copilot.compose import Composer, Composition, focus
from keel.copilot.grounding import GroundingChecker, GroundingVerdict
from keel.copilot.intents import IntentClassifier
from keel.copilot.memory import ConversationMemory, rewrite_query
from keel.copilot.policy import (
    ANSWER_EVIDENCE,
    Signals,
    asks_for_person,
    confidence,
    escalation_reasons,
    relevance_from_cosine,
    standing_reasons,
)
from keel.copilot.prompt import SHIPPED_PROMPT, reply_variables
from keel.copilot.tools.answers import answer_from_records, wants_tickets
from keel.copilot.tools.base import ToolBox
from keel.copilot.types import Citation, ReplyRequest, ReplyResponse, ReplyStatus, StoredReply
from keel.copilot.vectors import SentenceVectors
from keel.errors import KeelError, NotFoundError
from keel.gateway.ledger import PromptUse
from keel.gateway.protocol import ChatCompletionRequest
from keel.gateway.service import INTERNAL, Caller, Gateway
from keel.guard.inbound import InboundGuard
from keel.guard.output import OutputPolicy
from keel.knowledge.index.base import SearchScope
from keel.knowledge.retrieval import Retriever, SearchRequest, SearchResult
from keel.logs import get_logger
from keel.observe import attributes
from keel.prompts.source import PromptSource, ShippedPrompt
from keel.review.queue import ReviewQueue
from keel.store.engine import Database
from keel.store.models import ReviewItem, SupportReply

log = get_logger(__name__)

DECLINE = "I can help with {scope}. Could you tell me what you need help with?"
HANDOVER = "I'm passing your message to a colleague, who will reply shortly."
REFUSAL = "I can't act on that message as it is written. A colleague will look at it and reply."
# Below this relevance nothing in the knowledge base is about the question.
NO_KNOWLEDGE = 0.15
# The intent model knows the shop's topics only; a question it calls out of scope is still answered
# when the knowledge base holds something this close to it (the knowledge decides, not the intent list).
TOPIC_RELEVANCE = 0.5
# The conversation a model's draft sees: the last turns, each cut short (the passages carry the answer).
_HISTORY_TURNS, _HISTORY_CHARS = 2, 300


class Copilot:
    def __init__(
        self,
        settings: CopilotSettings,
        chat_alias: str,
        database: Database,
        gateway: Gateway,
        retriever: Retriever,
        intents: IntentClassifier,
        tools: ToolBox,
        grounding: GroundingChecker,
        memory: ConversationMemory,
        reviews: ReviewQueue,
        tracer: Tracer | None = None,
        on_reply: Callable[[str, list[str]], None] | None = None,
        guard: InboundGuard | None = None,
        output: OutputPolicy | None = None,
        prompts: PromptSource | None = None,
        on_stored: Callable[[StoredReply], object] | None = None,
        composer: Composer | None = None,
    ) -> None:
        # Composition and grounding embed the same passage sentences: one cache serves both.
        embedder = grounding.embedder
        vectors = embedder if isinstance(embedder, SentenceVectors) else SentenceVectors(embedder)
        self._composer = composer or Composer(vectors)
        self._ready = False
        self._guard = guard
        self._output = output
        # The reply prompt: the registry's (runtime) or the shipped file as it is (no registry wired in).
        self._prompts = prompts or ShippedPrompt(SHIPPED_PROMPT)
        self._tracer = tracer or NoOpTracer()
        self._on_reply = on_reply
        self._on_stored = on_stored
        self._settings = settings
        self._model = settings.model or chat_alias
        self._chat_alias = chat_alias
        # An evaluation run's copy (`for_evaluation`): no cached answers, no review queue.
        self._evaluating = False
        self._database = database
        self._gateway = gateway
        self._retriever = retriever
        self._intents = intents
        self._tools = tools
        self._grounding = grounding
        self._memory = memory
        self._reviews = reviews

    def warm_up(self) -> None:
        """Fits (or loads) the intent classifier and runs the embedding model's first passes, which are
        slower than the rest (the traced encoder specialises on its first calls)."""
        self._intents.warm_up()
        for _ in range(2):
            self._composer.evidence("How long does delivery take?", ["Delivery takes 3 working days."])
        self._ready = True

    @property
    def is_ready(self) -> bool:
        """The copilot can answer at once: its classifier is fitted and its models have run."""
        return self._ready

    async def reply(self, request: ReplyRequest, caller: Caller) -> ReplyResponse:
        with self._tracer.start_as_current_span("support.reply") as span:
            context = span.get_span_context()
            # The trace id links the reply, its review and its feedback to the trace.
            trace_id = f"{context.trace_id:032x}" if context.is_valid else uuid.uuid4().hex
            response = await self._reply(request, caller, trace_id)
            span.set_attribute(attributes.TENANT, caller.tenant)
            span.set_attribute(attributes.INTENT, response.intent)
            span.set_attribute(attributes.CONFIDENCE, response.confidence)
            span.set_attribute(attributes.STATUS, response.status)
            span.set_attribute(attributes.ESCALATION_REASONS, response.escalation_reasons)
            span.set_attribute("keel.reply_id", response.id)
            if self._on_reply is not None:
                self._on_reply(response.status, response.escalation_reasons)
            return response

    async def _reply(self, request: ReplyRequest, caller: Caller, trace_id: str) -> ReplyResponse:
        conversation_id = await asyncio.to_thread(
            self._memory.open, caller.tenant, request.conversation_id, request.customer_id, request.channel
        )
        history = await asyncio.to_thread(self._memory.history, conversation_id)
        await asyncio.to_thread(self._memory.append, conversation_id, "user", request.message)
        query = rewrite_query(request.message, history)
        with self._tracer.start_as_current_span("intent") as intent_span:
            intent = await asyncio.to_thread(self._intents.classify, query)
            intent_span.set_attribute(attributes.INTENT, intent.intent)
            intent_span.set_attribute(attributes.INTENT_PROBABILITY, intent.probability)

        injected = await self._screen_message(request.message)
        sources = await self._retrieve(query, caller.tenant)
        relevance = relevance_from_cosine(sources[0].scores["vector"].score) if sources else 0.0
        top_score = max((s.scores["vector"].score for s in sources if "vector" in s.scores), default=None)
        customer, orders = await self._crm(caller.tenant, request.customer_id)
        tickets = await self._tickets(caller.tenant, customer) if wants_tickets(request.message) else None

        citations: list[Citation] = []
        model_failed = ungrounded = False
        status: ReplyStatus = "answered"
        signals = Signals(relevance, 0.0, intent.probability, True)
        guard_reasons: list[str] = []
        if injected:
            # Never sent to the model; a person reads it (or, by policy, it is refused outright).
            text = REFUSAL
            if self._guard is not None and self._guard.settings.injection_copilot == "escalate":
                guard_reasons.append("guardrail:prompt_injection")
            else:
                status = "needs_clarification"
        elif asks_for_person(intent.intent, request.message):
            text = HANDOVER
        else:
            records = answer_from_records(request.message, intent.intent, customer, orders, tickets)
            with self._tracer.start_as_current_span("compose") as compose_span:
                composition = await asyncio.to_thread(self._composer.compose, request.message, sources)
                compose_span.set_attribute("keel.compose.evidence", composition.evidence)
                compose_span.set_attribute("keel.compose.sentences", len(composition.sentences))
            if records is None and self._declines(intent.intent, relevance, composition):
                scope = self._settings.scope.replace("{company}", self._settings.company)
                text, status = DECLINE.format(scope=scope), "needs_clarification"
            else:
                draft, draft_evidence, instructions = None, None, ""
                # A person answers anyway (a refund over the limit, a sensitive intent): no draft for it.
                standing = standing_reasons(
                    self._settings, intent=intent.intent, message=request.message, orders=orders
                )
                if records is None and not standing and self._wants_draft(composition):
                    # Sticky experiment and canary arms follow the customer, or else the conversation.
                    unit = request.customer_id or conversation_id
                    drafted = await self._draft(
                        request.message, sources, composition, customer, orders, history, caller, unit
                    )
                    model_failed = drafted is None
                    if drafted is not None:
                        draft, draft_evidence, instructions = drafted
                chosen = choose_reply(query, sources, composition, records, draft, draft_evidence)
                blocked = self._output_problems(chosen.text, customer, instructions)
                if blocked:
                    guard_reasons.extend(f"guardrail:{reason}" for reason in blocked)
                    chosen = extract(query, sources, composition)
                # A failed or unsupported draft matters only when nothing else answered.
                model_failed = model_failed and chosen.origin == "extract"
                ungrounded = chosen.ungrounded
                text, citations = chosen.text, chosen.citations
                signals = Signals(
                    relevance if chosen.evidence is not None else 1.0,
                    chosen.grounded,
                    intent.probability,
                    not model_failed,
                    chosen.evidence,
                )

        score = confidence(signals, self._settings.confidence_threshold)
        reasons = escalation_reasons(
            self._settings,
            intent=intent.intent,
            message=request.message,
            orders=orders,
            score=score,
            model_failed=model_failed,
            ungrounded=ungrounded,
        )
        if reasons == ["low_confidence"] and (status == "needs_clarification" or text in (REFUSAL, HANDOVER)):
            # Confidence is about an answer: a decline, a refusal or a hand-over gives none to doubt.
            reasons = []
        reasons = [*guard_reasons, *reasons]
        if reasons:
            status = "escalated"
        response = await asyncio.to_thread(
            self._store,
            caller.tenant,
            conversation_id,
            request.message,
            text,
            citations,
            score,
            status,
            intent.intent,
            reasons,
            trace_id,
        )
        if self._on_stored is not None:
            await asyncio.to_thread(self._on_stored, StoredReply(caller.tenant, response, top_score))
        return response

    async def _screen_message(self, message: str) -> bool:
        if self._guard is None:
            return False
        with self._tracer.start_as_current_span("guard.injection") as span:
            verdict = await self._guard.injection.acheck(message)
            span.set_attribute("keel.guard.injection_score", verdict.score)
            span.set_attribute("keel.guard.injection_tier", verdict.tier)
            return self._guard.escalates(verdict)

    def _output_problems(self, text: str, customer: dict[str, Any] | None, instructions: str) -> list[str]:
        if self._output is None:
            return []
        email = str(customer.get("email", "")).lower() if customer else ""
        allowed = frozenset({email} - {""})
        verdict = self._output.check(text, system_prompt=instructions, allowed_emails=allowed)
        return verdict.reasons

    async def _retrieve(self, query: str, tenant: str) -> list[SearchResult]:
        scope = SearchScope(tenant=tenant, acl_groups=frozenset(self._settings.acl_groups))
        found = await self._retriever.search(SearchRequest(query=query, k=self._settings.sources), scope)
        results = [r for r in found.results if "vector" in r.scores] or found.results
        if self._guard is None or self._guard.settings.injection_in_sources == "off" or not results:
            return results
        # Indirect injection: an instruction to the reader inside a passage never reaches the prompt; the
        # guard cuts it out (or drops the passage) and records each decision on this span.
        with self._tracer.start_as_current_span("guard.sources"):
            screened = await self._guard.ascreen_passages([r.text for r in results])
        return [
            r if s.text == r.text else r.model_copy(update={"text": s.text})
            for r, s in zip(results, screened, strict=True)
            if s.text is not None
        ]

    async def _crm(
        self, tenant: str, customer_id: str | None
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        if not customer_id:
            return None, []
        try:
            customer = (
                await self._tools.call(tenant, "lookup_customer", {"customer_id": customer_id})
            ).result
            orders = (await self._tools.call(tenant, "lookup_orders", {"customer_id": customer_id})).result
        except KeelError as exc:
            log.warning("crm_lookup_failed", code=exc.code)
            return None, []
        return customer, orders or []

    def _declines(self, intent: str, relevance: float, composition: Composition) -> bool:
        """Nothing in the knowledge base is about the question; or the intent model calls it out of scope
        and neither the passages nor their sentences answer it (the knowledge decides, not the intent
        list, so another company's questions are not declined for being unlike a bicycle shop's)."""
        if relevance < NO_KNOWLEDGE:
            return True
        answered = composition.evidence >= ANSWER_EVIDENCE
        return intent == "out_of_scope" and relevance < TOPIC_RELEVANCE and not answered

    def _wants_draft(self, composition: Composition) -> bool:
        mode = self._settings.model_drafts
        return mode == "always" or (mode == "when_unsure" and composition.evidence < ANSWER_EVIDENCE)

    async def _draft(
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

    async def _tickets(self, tenant: str, customer: dict[str, Any] | None) -> list[dict[str, Any]] | None:
        if customer is None:
            return None
        try:
            call = await self._tools.call(tenant, "ticket_history", {"customer_id": customer["customer_id"]})
        except KeelError as exc:
            log.warning("crm_lookup_failed", code=exc.code)
            return None
        return list(call.result or [])

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

    def _store(
        self,
        tenant: str,
        conversation_id: str,
        question: str,
        text: str,
        citations: list[Citation],
        score: float,
        status: ReplyStatus,
        intent: str,
        reasons: list[str],
        trace_id: str,
    ) -> ReplyResponse:
        # An evaluation's escalations are scored, not sent to reviewers.
        escalate = bool(reasons) and not self._evaluating
        # The reply and its review commit together: neither is ever stored without the other.
        with self._database.session() as session:
            record = SupportReply(
                tenant=tenant,
                conversation_id=conversation_id,
                question=question,
                status=status,
                reply=text,
                citations=[c.model_dump() for c in citations],
                confidence=score,
                intent=intent,
                trace_id=trace_id,
            )
            session.add(record)
            session.flush()
            reply_id = record.id
            review_id = self._reviews.open_for(session, tenant, reply_id, text, reasons) if escalate else None
            record.review_id = review_id
        self._memory.append(conversation_id, "assistant", text)
        return ReplyResponse(
            id=reply_id,
            reply=text,
            citations=citations,
            confidence=score,
            status=status,
            review_id=review_id,
            trace_id=trace_id,
            conversation_id=conversation_id,
            intent=intent,
            escalation_reasons=reasons,
        )

    def get(self, tenant: str, reply_id: str) -> ReplyResponse:
        with self._database.session() as session:
            record = session.scalar(
                select(SupportReply).where(SupportReply.id == reply_id, SupportReply.tenant == tenant)
            )
            if record is None:
                raise NotFoundError(f"No reply '{reply_id}'.", code="reply_not_found")
            review = session.get(ReviewItem, record.review_id) if record.review_id else None
            return ReplyResponse(
                id=record.id,
                reply=record.reply,
                citations=[Citation(**c) for c in record.citations],
                confidence=record.confidence,
                status="answered" if review and review.final_reply is not None else record.status,
                review_id=record.review_id,
                trace_id=record.trace_id,
                conversation_id=record.conversation_id,
                intent=record.intent,
                escalation_reasons=review.reasons if review else [],
                # The final answer is the review's: a reviewer's approval or edit answers the question.
                final_reply=review.final_reply if review else None,
                question=record.question,
                review_status=review.status if review else None,
            )

    def served_prompt(self, tenant: str) -> PromptUse | None:
        """The reply prompt's version an evaluation run gets (its label's own, outside any rollout)."""
        return self._prompts.served(tenant)

    def for_evaluation(self, settings: CopilotSettings, retriever: Retriever) -> Copilot:
        """This pipeline under another configuration, for an evaluation run: every trial is a real model
        call (no cached answers), an escalation reaches no reviewer, and replies feed no live metrics."""
        variant = copy.copy(self)
        variant._settings = settings
        variant._model = settings.model or self._chat_alias
        variant._retriever = retriever
        variant._on_reply = None
        # Nor are they sampled for online scoring: they are scored by the run itself.
        variant._on_stored = None
        variant._evaluating = True
        return variant

    def get_by_trace(self, tenant: str, trace_id: str) -> ReplyResponse:
        """The reply a trace produced (evaluation datasets are built from traces)."""
        with self._database.reading() as session:
            reply_id = session.scalar(
                select(SupportReply.id).where(
                    SupportReply.trace_id == trace_id, SupportReply.tenant == tenant
                )
            )
        if reply_id is None:
            raise NotFoundError(f"No support reply in trace '{trace_id}'.", code="trace_not_found")
        return self.get(tenant, reply_id)

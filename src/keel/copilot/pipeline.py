"""The support reply pipeline: memory → intent → retrieval → tools → prompt → model → grounding →
confidence → escalation. Each step is a small unit; this module only runs them in order and decides.

Never confidently wrong: when the model fails, answers out of shape, or says things its sources do not
support, the reply becomes the best cited extract from the knowledge base and a person reviews it.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import NoOpTracer, Tracer

from keel.config import CopilotSettings
from keel.copilot.answering import choose_reply, extract
from keel.copilot.compose import Composer, Composition
from keel.copilot.drafting import Drafter
from keel.copilot.grounding import GroundingChecker
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
from keel.copilot.prompt import SHIPPED_PROMPT
from keel.copilot.replies import ReplyRecords
from keel.copilot.tools.answers import answer_from_records, wants_tickets
from keel.copilot.tools.base import ToolBox
from keel.copilot.types import Citation, ReplyRequest, ReplyResponse, ReplyStatus, StoredReply
from keel.copilot.vectors import SentenceVectors
from keel.errors import KeelError
from keel.gateway.ledger import PromptUse
from keel.gateway.service import Caller, Gateway
from keel.guard.inbound import InboundGuard
from keel.guard.output import OutputPolicy
from keel.knowledge.index.base import SearchScope
from keel.knowledge.retrieval import Retriever, SearchRequest, SearchResult
from keel.logs import get_logger
from keel.observe import attributes
from keel.prompts.source import PromptSource, ShippedPrompt
from keel.review.queue import ReviewQueue
from keel.store.engine import Database

log = get_logger(__name__)

DECLINE = "I can help with {scope}. Could you tell me what you need help with?"
HANDOVER = "I'm passing your message to a colleague, who will reply shortly."
REFUSAL = "I can't act on that message as it is written. A colleague will look at it and reply."
# Below this relevance nothing in the knowledge base is about the question.
NO_KNOWLEDGE = 0.15
# The intent model knows the shop's topics only; a question it calls out of scope is still answered
# when the knowledge base holds something this close to it (the knowledge decides, not the intent list).
TOPIC_RELEVANCE = 0.5


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
        self._tracer = tracer or NoOpTracer()
        self._on_reply = on_reply
        self._on_stored = on_stored
        self._settings = settings
        self._chat_alias = chat_alias
        # An evaluation run's copy (`for_evaluation`): no cached answers, no review queue.
        self._evaluating = False
        self._retriever = retriever
        self._intents = intents
        self._tools = tools
        self._memory = memory
        # The reply prompt: the registry's (runtime) or the shipped file as it is (no registry wired in).
        self._drafter = Drafter(
            settings,
            settings.model or chat_alias,
            gateway,
            grounding,
            self._composer,
            prompts or ShippedPrompt(SHIPPED_PROMPT),
            self._tracer,
        )
        self._replies = ReplyRecords(database, memory, reviews)

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
                    drafted = await self._drafter.draft(
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
            self._replies.store,
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
            # An evaluation's escalations are scored, not sent to reviewers.
            bool(reasons) and not self._evaluating,
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

    async def _tickets(self, tenant: str, customer: dict[str, Any] | None) -> list[dict[str, Any]] | None:
        if customer is None:
            return None
        try:
            call = await self._tools.call(tenant, "ticket_history", {"customer_id": customer["customer_id"]})
        except KeelError as exc:
            log.warning("crm_lookup_failed", code=exc.code)
            return None
        return list(call.result or [])

    def served_prompt(self, tenant: str) -> PromptUse | None:
        """The reply prompt's version an evaluation run gets (its label's own, outside any rollout)."""
        return self._drafter.served(tenant)

    def get(self, tenant: str, reply_id: str) -> ReplyResponse:
        return self._replies.get(tenant, reply_id)

    def get_by_trace(self, tenant: str, trace_id: str) -> ReplyResponse:
        """The reply a trace produced (evaluation datasets are built from traces)."""
        return self._replies.get_by_trace(tenant, trace_id)

    def for_evaluation(self, settings: CopilotSettings, retriever: Retriever) -> Copilot:
        """This pipeline under another configuration, for an evaluation run: every trial is a real model
        call (no cached answers), an escalation reaches no reviewer, and replies feed no live metrics."""
        variant = copy.copy(self)
        variant._settings = settings
        variant._drafter = self._drafter.for_evaluation(settings, settings.model or self._chat_alias)
        variant._retriever = retriever
        variant._on_reply = None
        # Nor are they sampled for online scoring: they are scored by the run itself.
        variant._on_stored = None
        variant._evaluating = True
        return variant

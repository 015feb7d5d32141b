"""The whole reply pipeline with doubles for what lies outside it: the model (scripted), the search
(fixed results), the intent classifier (fixed answers) and the embedding model (word vectors); the
database, tools, grounding, composition and review queue are real."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from keel.config import CopilotSettings
from keel.copilot.grounding import GroundingChecker
from keel.copilot.intents import IntentPrediction
from keel.copilot.memory import ConversationMemory
from keel.copilot.pipeline import Copilot
from keel.copilot.tools.base import ToolBox
from keel.copilot.tools.crm import crm_tools
from keel.copilot.types import ReplyRequest
from keel.errors import UpstreamError
from keel.gateway.service import Caller
from keel.knowledge.index.base import SearchScope
from keel.knowledge.retrieval import SearchRequest, SearchResponse, SearchResult, StageScore
from keel.review.queue import ReviewQueue
from keel.review.webhooks import WebhookSender
from keel.store.engine import Database
from keel.store.models import Customer, Order
from tests.unit.copilot.doubles import DistinctEmbedder, WordEmbedder
from tests.unit.gateway.doubles import ScriptedModel, local, make_gateway

CHARGING = "A full charge of the 540 Wh battery takes about 4.5 hours with the standard charger."
# For tests elsewhere that need an embedder under which only a sentence's words count.
LexicalOnlyEmbedder = DistinctEmbedder
CALLER = Caller(tenant="acme", key_id="key_app")
# Answered by the passage's sentence itself; the other is about charging, but the passage does not say.
ANSWERED = "How long does a full charge take?"
UNSURE = "Does fast charging wear out the cells?"


def source(text: str = CHARGING, cosine: float = 0.7) -> SearchResult:
    return SearchResult(
        chunk_id="chk_1",
        document_id="doc_1",
        title="Battery care",
        source="help/battery.md",
        doc_type="markdown",
        heading_path="Battery care > Charging",
        ordinal=0,
        text=text,
        meta={},
        score=0.9,
        scores={"vector": StageScore(score=cosine, rank=1), "keyword": StageScore(score=3.0, rank=1)},
    )


@dataclass
class FixedSearch:
    results: list[SearchResult]
    scopes: list[SearchScope]

    async def search(self, request: SearchRequest, scope: SearchScope) -> SearchResponse:
        self.scopes.append(scope)
        return SearchResponse(query=request.query, mode=request.mode, results=self.results)


@dataclass
class FixedIntent:
    intent: str
    probability: float = 0.9

    def classify(self, text: str) -> IntentPrediction:
        return IntentPrediction(self.intent, self.probability)

    def warm_up(self) -> None:
        pass


def answer(text: str, sources: list[int] | None = None) -> str:
    return json.dumps({"reply": text, "sources": sources or [1]})


def make_copilot(
    tmp_path: Path,
    model: ScriptedModel,
    intent: str = "battery_charging",
    results: list[SearchResult] | None = None,
    settings: CopilotSettings | None = None,
) -> tuple[Copilot, Database]:
    gateway = make_gateway(tmp_path, {"local": (model, local())}, aliases=None)
    database = Database(f"sqlite:///{tmp_path / 'gateway.db'}")
    copilot = Copilot(
        settings or CopilotSettings(),
        "m",
        database,
        gateway,
        FixedSearch(results if results is not None else [source()], []),  # type: ignore[arg-type]
        FixedIntent(intent),  # type: ignore[arg-type]
        ToolBox(crm_tools(database)),
        GroundingChecker(WordEmbedder()),
        ConversationMemory(database),
        ReviewQueue(database, WebhookSender(None, None)),
    )
    return copilot, database


def always(**extra: Any) -> CopilotSettings:
    return CopilotSettings(model_drafts="always", **extra)


def ask(copilot: Copilot, message: str, **extra: Any) -> Any:
    return asyncio.run(copilot.reply(ReplyRequest(message=message, **extra), CALLER))


def test_a_confident_composed_answer_is_answered_without_the_model(tmp_path: Path) -> None:
    model = ScriptedModel([answer("never asked")])
    copilot, _ = make_copilot(tmp_path, model)
    reply = ask(copilot, ANSWERED)
    assert (reply.status, reply.reply, reply.review_id, reply.escalation_reasons) == (
        "answered",
        CHARGING,
        None,
        [],
    )
    assert [(c.source, c.quote) for c in reply.citations] == [("help/battery.md", CHARGING)]
    assert reply.confidence >= 0.55
    assert model.requests == [], "the passage answers by itself: no model call"
    assert copilot.get("acme", reply.id).reply == reply.reply


def test_a_grounded_draft_is_the_reply(tmp_path: Path) -> None:
    model = ScriptedModel([answer("A full charge takes about 4.5 hours.")])
    copilot, _ = make_copilot(tmp_path, model, settings=always())
    reply = ask(copilot, ANSWERED)
    assert (reply.status, reply.reply) == ("answered", "A full charge takes about 4.5 hours.")
    assert reply.citations[0].quote == CHARGING
    prompt = model.requests[0].messages[-1].content
    assert CHARGING in prompt, "the model writes from the passage's best sentences"


def test_an_ungrounded_draft_gives_way_to_the_composed_answer(tmp_path: Path) -> None:
    model = ScriptedModel([answer("Charging takes 20 minutes and is free on Mondays.")])
    copilot, _ = make_copilot(tmp_path, model, settings=always())
    reply = ask(copilot, ANSWERED)
    assert (reply.status, reply.reply, reply.escalation_reasons) == ("answered", CHARGING, [])
    assert "20 minutes" not in reply.reply


def test_a_failing_model_does_not_matter_when_the_passages_answer(tmp_path: Path) -> None:
    copilot, _ = make_copilot(tmp_path, ScriptedModel([UpstreamError("model down")]), settings=always())
    reply = ask(copilot, ANSWERED)
    assert (reply.status, reply.reply, reply.escalation_reasons) == ("answered", CHARGING, [])


def test_when_nothing_answers_surely_a_person_checks_the_extract(tmp_path: Path) -> None:
    model = ScriptedModel([answer("Fast charging wears out the cells in 20 days.")])
    copilot, _ = make_copilot(tmp_path, model, settings=CopilotSettings(model_drafts="when_unsure"))
    reply = ask(copilot, UNSURE)
    assert model.requests, "unsure: the model is asked for a draft"
    assert reply.status == "escalated" and reply.escalation_reasons == ["ungrounded"]
    assert CHARGING in reply.reply and "20 days" not in reply.reply
    assert reply.citations[0].quote == CHARGING and reply.review_id is not None


@pytest.mark.parametrize("failure", [UpstreamError("model down"), "not json at all"])
def test_a_failing_model_and_no_sure_answer_escalate_as_model_failure(tmp_path: Path, failure: Any) -> None:
    copilot, _ = make_copilot(tmp_path, ScriptedModel([failure]), settings=always())
    reply = ask(copilot, UNSURE)
    assert reply.status == "escalated" and reply.escalation_reasons == ["model_failure"]
    assert CHARGING in reply.reply


def test_a_draft_past_its_deadline_is_given_up(tmp_path: Path) -> None:
    slow = ScriptedModel([answer("A full charge takes about 4.5 hours.")], delay_s=30)
    copilot, _ = make_copilot(tmp_path, slow, settings=always(draft_timeout_s=0.2))
    reply = ask(copilot, UNSURE)
    assert slow.requests, "the model was asked"
    assert reply.status == "escalated" and reply.escalation_reasons == ["model_failure"]
    assert CHARGING in reply.reply


def test_without_a_draft_an_unsure_answer_is_low_confidence(tmp_path: Path) -> None:
    model = ScriptedModel([answer("never asked")])
    copilot, _ = make_copilot(tmp_path, model)  # the default: no drafts
    reply = ask(copilot, UNSURE)
    assert reply.status == "escalated" and reply.escalation_reasons == ["low_confidence"]
    assert model.requests == []


def test_out_of_scope_and_unknown_questions_are_declined(tmp_path: Path) -> None:
    model = ScriptedModel([answer("Lima.")])
    copilot, _ = make_copilot(tmp_path, model, intent="out_of_scope", results=[source(cosine=0.35)])
    reply = ask(copilot, "What is the capital of Peru?")
    assert (reply.status, reply.citations, reply.review_id) == ("needs_clarification", [], None)
    assert model.requests == [], "a declined question never reaches the model"
    assert reply.reply.startswith("I can help with questions about Larkspur Cycles products")
    unrelated, _ = make_copilot(tmp_path / "b", ScriptedModel([answer("x")]), results=[source(cosine=0.05)])
    assert ask(unrelated, "Tell me about bananas").status == "needs_clarification"


def test_the_decline_names_the_configured_scope(tmp_path: Path) -> None:
    settings = CopilotSettings(
        company="Harbour Council", scope="{company} services: permits, waste and parking"
    )
    copilot, _ = make_copilot(
        tmp_path, ScriptedModel([]), intent="out_of_scope", results=[source(cosine=0.05)], settings=settings
    )
    reply = ask(copilot, "Who won the cup final?")
    assert reply.reply.startswith("I can help with Harbour Council services: permits, waste and parking.")


def test_an_out_of_scope_intent_is_answered_when_the_knowledge_answers(tmp_path: Path) -> None:
    # Another company's question: unlike any shop intent, retrieval only middling, the passage answers.
    copilot, _ = make_copilot(
        tmp_path, ScriptedModel([answer("x")]), "out_of_scope", results=[source(cosine=0.35)]
    )
    reply = ask(copilot, ANSWERED)
    assert (reply.status, reply.reply) == ("answered", CHARGING)


def test_sensitive_requests_go_to_a_person_even_when_answered(tmp_path: Path) -> None:
    copilot, _ = make_copilot(tmp_path, ScriptedModel([answer("x")]), "legal")
    reply = ask(copilot, ANSWERED)
    assert reply.status == "escalated" and reply.escalation_reasons == ["sensitive_intent:legal"]


def test_a_hand_over_needs_the_customer_to_ask_for_a_person(tmp_path: Path) -> None:
    copilot, _ = make_copilot(tmp_path, ScriptedModel([answer("x")]), "human_handoff")
    handed = ask(copilot, "Can I talk to a person about charging?")
    assert handed.status == "escalated" and handed.escalation_reasons == ["human_requested"]
    # "Sorry, I want to ask ..." sounds like a hand-over to the intent model; it is a question.
    asked = ask(copilot, "Sorry, I want to ask: how long does a full charge take?")
    assert "human_requested" not in asked.escalation_reasons and CHARGING in asked.reply


def add_customer(database: Database) -> None:
    with database.session() as session:
        customer = Customer(tenant="acme", external_id="C-7", name="Ada", email="ada@example.com", plan="")
        session.add(customer)
        session.flush()
        for external_id, status, item, day in [
            ("LC-1", "shipped", "Trek 540 e-bike", 17),
            ("LC-2", "processing", "Folding lock", 20),
        ]:
            session.add(
                Order(
                    tenant="acme",
                    external_id=external_id,
                    customer_id=customer.id,
                    status=status,
                    total=Decimal("10.00"),
                    currency="EUR",
                    items=[{"name": item}],
                    placed_at=datetime(2026, 11, day, tzinfo=UTC),
                )
            )


def test_order_questions_are_answered_from_the_customers_orders(tmp_path: Path) -> None:
    model = ScriptedModel([answer("never asked")])
    copilot, database = make_copilot(tmp_path, model, "order_status")
    add_customer(database)
    reply = ask(copilot, "Where is my order?", customer_id="C-7")
    assert reply.status == "answered" and reply.escalation_reasons == []
    assert "Order LC-1 (Trek 540 e-bike; placed 2026-11-17) has the status shipped." in reply.reply
    assert "Order LC-2 (Folding lock; placed 2026-11-20) has the status processing." in reply.reply
    assert reply.citations[0].source == "crm/lookup_orders" and reply.citations[0].quote in reply.reply
    assert model.requests == []
    # Without a known customer the same question is answered from the knowledge base, if at all.
    anonymous = ask(copilot, "Where is my order?")
    assert "LC-1" not in anonymous.reply


def test_account_questions_are_answered_from_the_customer_record(tmp_path: Path) -> None:
    copilot, database = make_copilot(tmp_path, ScriptedModel([answer("x")]), "billing_subscription")
    add_customer(database)
    reply = ask(copilot, "Which plan is my account on?", customer_id="C-7")
    assert reply.reply.startswith("Your account is on no plan") and reply.status == "answered"
    assert reply.citations[0].source == "crm/lookup_customer"


def test_a_grounded_draft_is_never_surer_than_the_passages(tmp_path: Path) -> None:
    # The draft restates the passage, but the passage does not answer the question surely.
    model = ScriptedModel([answer("A full charge takes about 4.5 hours.")])
    copilot, _ = make_copilot(tmp_path, model, settings=always())
    reply = ask(copilot, UNSURE)
    assert reply.reply == "A full charge takes about 4.5 hours."
    assert reply.status == "escalated" and reply.escalation_reasons == ["low_confidence"]


def test_the_conversation_carries_the_earlier_question(tmp_path: Path) -> None:
    copilot, database = make_copilot(
        tmp_path, ScriptedModel([answer("A full charge takes about 4.5 hours.")])
    )
    first = ask(copilot, "How long does charging the battery take?")
    follow_up = ask(copilot, "And with the fast one?", conversation_id=first.conversation_id)
    assert follow_up.conversation_id == first.conversation_id
    search: FixedSearch = copilot._retriever  # type: ignore[assignment]
    assert search.scopes[-1].tenant == "acme"
    assert ConversationMemory(database).history(first.conversation_id, 10)[0] == (
        "user",
        "How long does charging the battery take?",
    )

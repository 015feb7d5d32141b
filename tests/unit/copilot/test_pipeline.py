"""The whole reply pipeline with doubles for what lies outside it: the model (scripted), the search
(fixed results) and the intent classifier (fixed answers); the database, tools and review queue are real."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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
from tests.unit.gateway.doubles import FixedEmbedder, ScriptedModel, local, make_gateway

CHARGING = "A full charge of the 540 Wh battery takes about 4.5 hours with the standard charger."
CALLER = Caller(tenant="acme", key_id="key_app")


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


class LexicalOnlyEmbedder(FixedEmbedder):
    """Orthogonal vectors: only the lexical and number tests decide grounding."""

    def embed(self, texts: list[str]) -> Any:
        return np.eye(len(texts), 3 * len(texts), dtype=np.float32)


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
        GroundingChecker(LexicalOnlyEmbedder()),
        ConversationMemory(database),
        ReviewQueue(database, WebhookSender(None, None)),
    )
    return copilot, database


def ask(copilot: Copilot, message: str, **extra: Any) -> Any:
    return asyncio.run(copilot.reply(ReplyRequest(message=message, **extra), CALLER))


def test_a_grounded_answer_is_answered_with_citations(tmp_path: Path) -> None:
    copilot, _ = make_copilot(tmp_path, ScriptedModel([answer("A full charge takes about 4.5 hours.")]))
    reply = ask(copilot, "How long does charging take?")
    assert (reply.status, reply.reply, reply.review_id) == (
        "answered",
        "A full charge takes about 4.5 hours.",
        None,
    )
    assert [c.source for c in reply.citations] == ["help/battery.md"]
    assert reply.confidence >= 0.55
    assert copilot.get("acme", reply.id).reply == reply.reply


def test_a_hallucinating_model_gives_the_cited_extract_and_escalates(tmp_path: Path) -> None:
    copilot, _ = make_copilot(
        tmp_path, ScriptedModel([answer("Charging takes 20 minutes and is free on Mondays.")])
    )
    reply = ask(copilot, "How long does charging take?")
    assert reply.status == "escalated" and "ungrounded" in reply.escalation_reasons
    assert CHARGING in reply.reply and "20 minutes" not in reply.reply
    assert reply.citations[0].quote == CHARGING
    assert reply.review_id is not None


@pytest.mark.parametrize("failure", [UpstreamError("model down"), "not json at all"])
def test_a_failing_model_gives_the_cited_extract_and_escalates(tmp_path: Path, failure: Any) -> None:
    copilot, _ = make_copilot(tmp_path, ScriptedModel([failure]))
    reply = ask(copilot, "How long does charging take?")
    assert reply.status == "escalated" and "model_failure" in reply.escalation_reasons
    assert CHARGING in reply.reply


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


def test_an_out_of_scope_intent_with_close_knowledge_is_still_answered(tmp_path: Path) -> None:
    copilot, _ = make_copilot(
        tmp_path, ScriptedModel([answer("A full charge takes about 4.5 hours.")]), "out_of_scope"
    )
    assert ask(copilot, "How long to fill up the accumulator?").status == "answered"


def test_sensitive_requests_go_to_a_person_even_when_grounded(tmp_path: Path) -> None:
    copilot, _ = make_copilot(
        tmp_path, ScriptedModel([answer("A full charge takes about 4.5 hours.")]), "legal"
    )
    reply = ask(copilot, "My lawyer asks how long charging takes")
    assert reply.status == "escalated" and reply.escalation_reasons == ["sensitive_intent:legal"]


def test_the_conversation_carries_the_earlier_question(tmp_path: Path) -> None:
    copilot, _ = make_copilot(tmp_path, ScriptedModel([answer("A full charge takes about 4.5 hours.")]))
    first = ask(copilot, "How long does charging the battery take?")
    follow_up = ask(copilot, "And with the fast one?", conversation_id=first.conversation_id)
    assert follow_up.conversation_id == first.conversation_id
    search: FixedSearch = copilot._retriever  # type: ignore[assignment]
    assert search.scopes[-1].tenant == "acme"
    assert ConversationMemory(copilot._database).history(first.conversation_id, 10)[0] == (
        "user",
        "How long does charging the battery take?",
    )

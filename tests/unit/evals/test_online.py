"""Online evaluation: the sampling rule, the reference-free scores, the scoring job on a real SQLite
database, and the copilot's hook."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from keel.config import CopilotSettings, RetentionSettings
from keel.copilot.grounding import GroundingChecker
from keel.copilot.memory import ConversationMemory
from keel.copilot.pipeline import Copilot
from keel.copilot.tools.base import ToolBox
from keel.copilot.tools.crm import crm_tools
from keel.copilot.types import ReplyRequest, ReplyResponse, StoredReply
from keel.evals.metrics import score_reference_free
from keel.evals.online import OnlineEvaluation, OnlineScorer, sampled
from keel.governance.audit import AuditLog
from keel.governance.retention import purge
from keel.governance.subjects import SubjectRequests
from keel.review.queue import ReviewQueue
from keel.review.webhooks import WebhookSender
from keel.store.engine import Database
from keel.store.models import Chunk, Conversation, Document, SupportReply
from keel.store.online_eval_models import OnlineScore
from tests.unit.copilot.test_pipeline import (
    CALLER,
    CHARGING,
    FixedIntent,
    FixedSearch,
    LexicalOnlyEmbedder,
    answer,
    source,
)
from tests.unit.gateway.doubles import ScriptedModel, local, make_gateway

RETURNS = "Returns are accepted within 30 days of delivery."


def test_sampling_is_a_deterministic_share_of_traces() -> None:
    traces = [uuid.uuid4().hex for _ in range(20_000)]
    tenth = [t for t in traces if sampled(t, 0.1)]
    assert 0.09 < len(tenth) / len(traces) < 0.11
    # Every replica decides alike, and raising the rate keeps the traces already in the sample.
    assert [t for t in traces if sampled(t, 0.1)] == tenth
    assert set(tenth) <= {t for t in traces if sampled(t, 0.3)}
    assert not any(sampled(t, 0.0) for t in traces[:100])
    assert all(sampled(t, 1.0) for t in traces[:100])


def test_a_passage_that_supports_a_sentence_another_supports_better_still_counts() -> None:
    checker = GroundingChecker(LexicalOnlyEmbedder())
    shorter = "A full charge of the battery takes about 4.5 hours."
    scores = score_reference_free(
        checker, "A full charge takes about 4.5 hours.", [("chk_1", CHARGING), ("chk_2", shorter)]
    )
    assert scores["citation_precision"] == 1.0


class CountingEmbedder(LexicalOnlyEmbedder):
    model_id = "counting"


def store_reply(database: Database, citations: list[dict[str, Any]], text: str) -> str:
    with database.session() as session:
        reply = SupportReply(
            tenant="acme",
            conversation_id="conv_1",
            question="How long does charging take?",
            status="answered",
            reply=text,
            citations=citations,
            confidence=0.8,
            intent="battery_charging",
            trace_id=uuid.uuid4().hex,
        )
        session.add(reply)
        session.flush()
        return reply.id


def test_the_scoring_job_stores_one_score_per_reply(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'keel.db'}")
    database.migrate()
    with database.session() as session:
        document = Document(tenant="acme", source="help/battery.md", doc_type="markdown", content_hash="h")
        session.add(document)
        session.flush()
        session.add(
            Chunk(
                id="chk_1", document_id=document.id, tenant="acme", ordinal=0, text=CHARGING, content_hash="c"
            )
        )
    cite = {"chunk_id": "chk_1", "document_id": "d", "title": "t", "source": "s", "quote": "A full charge"}
    # chk_gone was deleted after the reply: its quote stands in for it.
    gone = {**cite, "chunk_id": "chk_gone", "quote": RETURNS}
    reply_id = store_reply(database, [cite, gone], "A full charge takes about 4.5 hours.")
    scorer = OnlineScorer(database, GroundingChecker(LexicalOnlyEmbedder()), CountingEmbedder())

    score_id = scorer.score("acme", reply_id, 0.71)
    assert score_id is not None
    assert scorer.score("acme", reply_id, 0.71) == score_id  # a job delivered twice scores once
    with database.reading() as session:
        row = session.get_one(OnlineScore, score_id)
    assert (row.groundedness, row.citation_precision, row.retrieval_top_score) == (1.0, 0.5, 0.71)
    assert (row.sentences, row.citations, row.embedding_model) == (1, 2, "counting")
    vector = np.frombuffer(row.query_embedding or b"", np.float32)
    assert len(vector) == CountingEmbedder.dimensions
    assert scorer.score("other-tenant", reply_id, 0.5) is None  # another tenant's reply is not found
    assert scorer.score("acme", "rep_missing", 0.5) is None


def response(trace_id: str) -> ReplyResponse:
    return ReplyResponse(
        id="rep_1",
        reply="Hello.",
        citations=[],
        confidence=0.9,
        status="answered",
        trace_id=trace_id,
        conversation_id="conv_1",
        intent="greeting",
    )


def test_only_sampled_replies_are_queued_and_a_queue_failure_costs_only_the_sample(tmp_path: Path) -> None:
    queued: list[tuple[str, str, float | None]] = []
    database = Database(f"sqlite:///{tmp_path / 'keel.db'}")
    online = OnlineEvaluation(database, 0.5, lambda *job: queued.append(job))
    traces = [uuid.uuid4().hex for _ in range(200)]
    submitted = [online.submit(StoredReply("acme", response(t), 0.6)) for t in traces]
    assert submitted == [sampled(t, 0.5) for t in traces]
    assert queued == [("acme", "rep_1", 0.6)] * sum(submitted)

    def broken(*_: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    failing = OnlineEvaluation(database, 1.0, broken)
    assert failing.submit(StoredReply("acme", response(traces[0]), None)) is False


def test_the_copilot_hands_each_stored_reply_to_its_hook(tmp_path: Path) -> None:
    gateway = make_gateway(
        tmp_path, {"local": (ScriptedModel([answer("A full charge takes about 4.5 hours.")]), local())}
    )
    database = Database(f"sqlite:///{tmp_path / 'gateway.db'}")
    stored: list[StoredReply] = []
    copilot = Copilot(
        CopilotSettings(),
        "m",
        database,
        gateway,
        FixedSearch([source(cosine=0.7)], []),  # type: ignore[arg-type]
        FixedIntent("battery_charging"),  # type: ignore[arg-type]
        ToolBox(crm_tools(database)),
        GroundingChecker(LexicalOnlyEmbedder()),
        ConversationMemory(database),
        ReviewQueue(database, WebhookSender(None, None)),
        on_stored=stored.append,
    )
    reply = asyncio.run(copilot.reply(ReplyRequest(message="How long does charging take?"), CALLER))
    assert len(stored) == 1
    assert (stored[0].tenant, stored[0].reply.id, stored[0].retrieval_top_score) == ("acme", reply.id, 0.7)
    assert copilot.get("acme", reply.id).trace_id == stored[0].reply.trace_id


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_extreme_rates(rate: float) -> None:
    assert sampled("0" * 32, rate) is bool(rate)


def test_online_scores_go_with_their_replies(tmp_path: Path) -> None:
    """Retention and a data subject's erasure delete the scores (and their query vectors) with the reply."""
    database = Database(f"sqlite:///{tmp_path / 'keel.db'}")
    database.migrate()
    scorer = OnlineScorer(database, GroundingChecker(LexicalOnlyEmbedder()), CountingEmbedder())
    with database.session() as session:
        conversation = Conversation(tenant="acme", customer_id="C-1")
        session.add(conversation)
        session.flush()
        conversation_id = conversation.id
    erased = store_reply(database, [], "Hello.")
    old = store_reply(database, [], "Hello again.")
    with database.session() as session:
        session.get_one(SupportReply, erased).conversation_id = conversation_id
        session.get_one(SupportReply, old).created_at = datetime.now(UTC) - timedelta(days=400)
    kept = store_reply(database, [], "Still here.")
    for reply_id in (erased, old, kept):
        scorer.score("acme", reply_id, None)

    subjects = SubjectRequests(database, AuditLog(database))
    assert subjects.erase("acme", "C-1", actor="test")["online_scores"] == 1
    assert purge(database, RetentionSettings(replies_days=365))["online_scores"] == 1
    with database.reading() as session:
        assert list(session.scalars(select(OnlineScore.reply_id))) == [kept]

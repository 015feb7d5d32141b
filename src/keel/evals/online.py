"""Online evaluation: a share of live copilot replies, chosen by their trace id, is scored off the
request path with the reference-free metrics and stored per trace.

The copilot hands every stored reply to `OnlineEvaluation.submit`, which decides in microseconds and
only queues a job for the sampled ones; the job (`OnlineScorer.score`) runs on a consumer of the queue,
so the reply's latency never includes the scoring.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from keel.copilot.grounding import GroundingChecker, content_words, sentences
from keel.copilot.types import StoredReply
from keel.evals.judge import Judge
from keel.evals.metrics import score_reference_free
from keel.gateway.providers.base import EmbeddingProvider
from keel.logs import get_logger
from keel.store.engine import Database
from keel.store.models import Chunk, SupportReply
from keel.store.online_eval_models import OnlineScore

log = get_logger(__name__)

# The metrics an online score holds, as reports and Prometheus name them.
ONLINE_METRICS = ("groundedness", "citation_precision", "retrieval_top_score")
# Queues a scoring job: (tenant, reply id, retrieval top score).
Enqueue = Callable[[str, str, float | None], None]


def sampled(trace_id: str, rate: float) -> bool:
    """Whether a trace is in the sample: a hash of its id, so every replica decides alike, and a trace
    in the sample at one rate stays in it at any higher rate."""
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    digest = hashlib.sha256(trace_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


class OnlineScoreView(BaseModel):
    trace_id: str
    reply_id: str
    status: str
    groundedness: float | None
    citation_precision: float | None
    retrieval_top_score: float | None
    sentences: int
    citations: int
    created_at: datetime


class MetricSummary(BaseModel):
    mean: float | None
    count: int


class OnlineSummary(BaseModel):
    object: str = "evals.online"
    since: datetime
    scored: int
    sample_rate: float
    metrics: dict[str, MetricSummary]
    recent: list[OnlineScoreView]


class OnlineScorer:
    """The job's work: one stored reply becomes one row of scores (once, however often it runs)."""

    def __init__(
        self,
        database: Database,
        checker: GroundingChecker,
        embedder: EmbeddingProvider,
        judge: Judge | None = None,
    ) -> None:
        self._database = database
        self._checker = checker
        self._embedder = embedder
        self._judge = judge

    def score(self, tenant: str, reply_id: str, top_score: float | None) -> str | None:
        """Scores the reply and returns the score's id; None when the reply is gone (purged, erased)."""
        with self._database.reading() as session:
            done = session.scalar(
                select(OnlineScore.id).where(OnlineScore.reply_id == reply_id, OnlineScore.tenant == tenant)
            )
            if done is not None:
                return done
            reply = session.scalar(
                select(SupportReply).where(SupportReply.id == reply_id, SupportReply.tenant == tenant)
            )
            if reply is None:
                log.info("online_score_skipped", reply_id=reply_id, reason="reply_not_found")
                return None
            cited_ids = list(dict.fromkeys(str(c["chunk_id"]) for c in reply.citations))
            texts = {
                row.id: row.text
                for row in session.execute(
                    select(Chunk.id, Chunk.text).where(Chunk.id.in_(cited_ids), Chunk.tenant == tenant)
                )
            }
        # A passage deleted since the reply keeps the quote the reply showed from it.
        quotes = {str(c["chunk_id"]): str(c.get("quote", "")) for c in reply.citations}
        cited = [(chunk_id, texts.get(chunk_id) or quotes[chunk_id]) for chunk_id in cited_ids]
        # The same metrics as offline runs, so live and evaluated answers are scored alike.
        scores = score_reference_free(self._checker, reply.reply, cited)
        vector = self._embedder.embed([reply.question])[0].astype(np.float32)
        judged: dict[str, float | int | None] = {}
        if self._judge is not None and cited:
            # No reference answer online: the judge grades faithfulness to the cited passages only.
            # The job runs on a consumer's thread, where no event loop runs.
            verdict = asyncio.run(
                self._judge.grade(tenant, reply.question, reply.reply, None, [text for _, text in cited])
            )
            judged = {"faithfulness": verdict.faithfulness, "cost_micros": verdict.cost_micros}
        record = OnlineScore(
            tenant=tenant,
            reply_id=reply_id,
            trace_id=reply.trace_id,
            status=reply.status,
            groundedness=scores["groundedness"],
            citation_precision=scores["citation_precision"],
            retrieval_top_score=top_score,
            sentences=sum(1 for s in sentences(reply.reply) if content_words(s)),
            citations=len(cited),
            judge=judged,
            query_embedding=vector.tobytes(),
            embedding_model=self._embedder.model_id,
        )
        try:
            with self._database.session() as session:
                session.add(record)
        except IntegrityError:
            # Another consumer scored the same reply first (a job delivered twice).
            with self._database.reading() as session:
                return session.scalar(select(OnlineScore.id).where(OnlineScore.reply_id == reply_id))
        return record.id


class OnlineEvaluation:
    """Chooses the replies to score and reads their scores back."""

    def __init__(self, database: Database, sample_rate: float, enqueue: Enqueue) -> None:
        self._database = database
        self.sample_rate = sample_rate
        self._enqueue = enqueue

    def submit(self, stored: StoredReply) -> bool:
        """The copilot's hook: queues a scoring job when the reply's trace is in the sample."""
        if not sampled(stored.reply.trace_id, self.sample_rate):
            return False
        try:
            self._enqueue(stored.tenant, stored.reply.id, stored.retrieval_top_score)
        except (RedisError, sqlite3.Error) as exc:
            # The reply is stored and answered either way; one sample fewer is all this costs.
            log.warning("online_score_not_queued", reply_id=stored.reply.id, error=type(exc).__name__)
            return False
        return True

    def summary(self, tenant: str, since: datetime, recent: int = 20) -> OnlineSummary:
        with self._database.reading() as session:
            in_window = (OnlineScore.tenant == tenant, OnlineScore.created_at >= since)
            scored = session.scalar(select(func.count()).select_from(OnlineScore).where(*in_window)) or 0
            metrics = {}
            for name in ONLINE_METRICS:
                column = getattr(OnlineScore, name)
                mean, count = session.execute(
                    select(func.avg(column), func.count(column)).where(*in_window)
                ).one()
                metrics[name] = MetricSummary(mean=None if mean is None else float(mean), count=count)
            rows = session.scalars(
                select(OnlineScore).where(*in_window).order_by(OnlineScore.created_at.desc()).limit(recent)
            ).all()
        return OnlineSummary(
            since=since,
            scored=scored,
            sample_rate=self.sample_rate,
            metrics=metrics,
            recent=[OnlineScoreView.model_validate(row, from_attributes=True) for row in rows],
        )

    def means_by_tenant(self, since: datetime) -> dict[str, dict[str, MetricSummary]]:
        """Every tenant's means since a time, for the Prometheus gauges."""
        columns = [getattr(OnlineScore, name) for name in ONLINE_METRICS]
        selected: list[Any] = [OnlineScore.tenant]
        for column in columns:
            selected += [func.avg(column), func.count(column)]
        with self._database.reading() as session:
            rows = session.execute(
                select(*selected).where(OnlineScore.created_at >= since).group_by(OnlineScore.tenant)
            ).all()
        return {
            row[0]: {
                name: MetricSummary(
                    mean=None if row[1 + 2 * i] is None else float(row[1 + 2 * i]), count=row[2 + 2 * i]
                )
                for i, name in enumerate(ONLINE_METRICS)
            }
            for row in rows
        }

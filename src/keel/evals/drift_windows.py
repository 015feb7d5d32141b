"""What each drift monitor observes, read from the database for one tenant and one window of time.

Each read takes at most a fixed number of rows of its window. Rows are taken in the order of their ids,
which are random (uuid4), so a capped read is a uniform sample of the whole window, not its newest hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from keel.store.channels import live_reply
from keel.store.engine import Database
from keel.store.models import Feedback, SupportReply
from keel.store.online_eval_models import OnlineScore

# A rating below the middle of the scale (thumbs down, one or two stars) is negative feedback.
NEGATIVE_BELOW = 0.5


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


def windows(now: datetime, recent_hours: float, baseline_hours: float) -> tuple[Window, Window]:
    """(baseline, recent): the recent window ends now; the baseline window ends where it starts."""
    split = now - timedelta(hours=recent_hours)
    return Window(split - timedelta(hours=baseline_hours), split), Window(split, now)


class DriftObservations:
    def __init__(self, database: Database, embedding_model: str) -> None:
        self._database = database
        self._embedding_model = embedding_model

    def _column(
        self, column: Any, created: Any, id_: Any, where: list[Any], window: Window, limit: int
    ) -> list[Any]:
        statement = (
            select(column)
            .where(*where, created >= window.start, created < window.end)
            .order_by(id_)
            .limit(limit)
        )
        with self._database.reading() as session:
            return list(session.scalars(statement))

    def query_embeddings(self, tenant: str, window: Window, limit: int) -> npt.NDArray[np.float32]:
        # Vectors of another embedding model live in another space: only the current model's count.
        rows = self._column(
            OnlineScore.query_embedding,
            OnlineScore.created_at,
            OnlineScore.id,
            [
                OnlineScore.tenant == tenant,
                OnlineScore.embedding_model == self._embedding_model,
                OnlineScore.query_embedding.is_not(None),
            ],
            window,
            limit,
        )
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([np.frombuffer(row, dtype=np.float32) for row in rows])

    def scores(
        self,
        tenant: str,
        metric: Literal["retrieval_top_score", "groundedness"],
        window: Window,
        limit: int,
    ) -> list[float]:
        column = getattr(OnlineScore, metric)
        return self._column(
            column,
            OnlineScore.created_at,
            OnlineScore.id,
            [OnlineScore.tenant == tenant, column.is_not(None)],
            window,
            limit,
        )

    def categories(
        self, tenant: str, field: Literal["intent", "status"], window: Window, limit: int
    ) -> list[str]:
        return self._column(
            getattr(SupportReply, field),
            SupportReply.created_at,
            SupportReply.id,
            [SupportReply.tenant == tenant, live_reply()],
            window,
            limit,
        )

    def escalations(self, tenant: str, window: Window, limit: int) -> list[bool]:
        return [status == "escalated" for status in self.categories(tenant, "status", window, limit)]

    def negative_feedback(self, tenant: str, window: Window, limit: int) -> list[bool]:
        scores = self._column(
            Feedback.score, Feedback.created_at, Feedback.id, [Feedback.tenant == tenant], window, limit
        )
        return [score < NEGATIVE_BELOW for score in scores]

    def active_tenants(self, since: datetime) -> list[str]:
        """Tenants with a reply since a time: the periodic check looks only at these."""
        with self._database.reading() as session:
            return list(
                session.scalars(
                    select(SupportReply.tenant)
                    .where(SupportReply.created_at >= since, live_reply())
                    .distinct()
                )
            )

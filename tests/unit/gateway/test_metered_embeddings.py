"""Keel's own embeddings (ingestion, search) metered like API calls: a usage row per call that reaches
the model, the tenant's tokens-per-minute charged first; search refuses at the limit, ingestion waits."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy import select

from keel.config import GatewaySettings, RateLimitSettings
from keel.errors import RateLimitError
from keel.gateway.ledger import UsageLedger
from keel.gateway.limits import RateLimiter
from keel.gateway.metered_embeddings import MeteredEmbeddings, estimate_tokens
from keel.gateway.providers.base import ProviderError
from keel.gateway.providers.embedding import Embedded
from keel.store.engine import Database
from keel.store.models import UsageRecord
from tests.unit.gateway.doubles import FixedEmbedder


class ReportingModel(FixedEmbedder):
    """The embedding model, reporting three tokens a text; fails while `failure` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []
        self.failure: Exception | None = None

    def warm_up(self) -> None:
        pass

    def declared_dimensions(self) -> int:
        return self.dimensions

    def embed_with_usage(self, texts: list[str]) -> Embedded:
        self.calls.append(list(texts))
        if self.failure is not None:
            raise self.failure
        return Embedded(self.embed(texts), 3 * len(texts))

    async def aembed_with_usage(self, texts: list[str]) -> Embedded:
        return self.embed_with_usage(texts)


class RefusingOnce(RateLimiter):
    def __init__(self) -> None:
        super().__init__(GatewaySettings())
        self.charged: list[tuple[str, int]] = []

    def acquire_tokens(self, tenant: str, tokens: int) -> None:
        self.charged.append((tenant, tokens))
        if len(self.charged) == 1:
            raise RateLimitError("full", retry_after=7.0)


@pytest.fixture
def database(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'keel.db'}")
    database.migrate()
    return database


def metered(
    database: Database,
    model: ReportingModel,
    limiter: RateLimiter | None = None,
    on_limit: Literal["refuse", "wait"] = "refuse",
    sleep: list[float] | None = None,
) -> MeteredEmbeddings:
    return MeteredEmbeddings(
        model,
        "keel-embed",
        limiter or RateLimiter(GatewaySettings()),
        UsageLedger(database),
        feature="search" if on_limit == "refuse" else "ingestion",
        on_limit=on_limit,
        sleep=(sleep if sleep is not None else []).append,
    )


def rows(database: Database) -> list[UsageRecord]:
    with database.reading() as session:
        return list(session.scalars(select(UsageRecord).order_by(UsageRecord.created_at)))


def test_each_call_is_a_usage_row_of_its_tenant_and_feature(database: Database) -> None:
    model = ReportingModel()
    embeddings = metered(database, model, on_limit="wait")
    vectors: npt.NDArray[np.float32] = embeddings.embed("acme", ["a", "b"])
    assert vectors.shape == (2, 3)
    asyncio.run(embeddings.aembed("globex", ["c"]))
    assert [(r.tenant, r.feature, r.key_id, r.alias, r.prompt_tokens, r.outcome) for r in rows(database)] == [
        ("acme", "ingestion", "ingestion", "keel-embed", 6, "ok"),
        ("globex", "ingestion", "ingestion", "keel-embed", 3, "ok"),
    ]
    assert rows(database)[0].deployment == "fixed"


def test_no_texts_reach_no_model_and_write_no_row(database: Database) -> None:
    model = ReportingModel()
    assert metered(database, model).embed("acme", []).shape[0] == 0
    assert model.calls == [] and rows(database) == []


def test_search_is_refused_at_the_tenants_token_limit_before_the_model_runs(database: Database) -> None:
    limiter = RateLimiter(GatewaySettings(tenant_limits=RateLimitSettings(tokens_per_minute=10)))
    model = ReportingModel()
    embeddings = metered(database, model, limiter)
    embeddings.embed("acme", ["x" * 24])  # 8 tokens by the estimate
    with pytest.raises(RateLimitError):
        asyncio.run(embeddings.aembed("acme", ["y" * 24]))
    assert len(model.calls) == 1
    embeddings.embed("globex", ["y" * 24])  # another tenant's window


def test_ingestion_waits_out_the_window_instead_of_failing(database: Database) -> None:
    limiter, model, slept = RefusingOnce(), ReportingModel(), []
    metered(database, model, limiter, on_limit="wait", sleep=slept).embed("acme", ["abcdefgh"])
    assert slept == [7.0]
    assert limiter.charged == [("acme", estimate_tokens(["abcdefgh"]))] * 2
    assert len(model.calls) == 1


def test_a_failed_call_is_recorded_with_its_error_and_raised(database: Database) -> None:
    model = ReportingModel()
    model.failure = ProviderError("down", retryable=True, code="provider_error")
    with pytest.raises(ProviderError):
        metered(database, model).embed("acme", ["a"])
    (row,) = rows(database)
    assert (row.outcome, row.prompt_tokens) == ("provider_error", 0)

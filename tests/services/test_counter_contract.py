"""One contract for the gateway's counters: rate limits (process memory, Redis) and budgets (SQLite,
PostgreSQL) through the same cases, concurrency included."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from keel.config import BudgetSettings, GatewaySettings, RateLimitSettings
from keel.errors import RateLimitError
from keel.gateway.budgets import BudgetLedger
from keel.gateway.limits import RateLimiter
from keel.store.engine import Database
from keel.store.models import BudgetCounter

REDIS_URL = "redis://127.0.0.1:6379/15"
LIMITS = GatewaySettings(
    key_limits=RateLimitSettings(requests_per_minute=5),
    tenant_limits=RateLimitSettings(tokens_per_minute=100),
)
BUDGET = GatewaySettings(tenant_budget=BudgetSettings(daily=Decimal("1.00")))


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    if request.param == "memory":
        return RateLimiter(LIMITS)
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not running at {REDIS_URL}: {exc}")
    return RateLimiter(LIMITS, REDIS_URL)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'counters.db'}"
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    db = Database(url)
    db.migrate()
    yield db
    db.dispose()


def fresh() -> str:
    """Scopes of their own: a shared Redis keeps other tests' windows."""
    return uuid.uuid4().hex[:10]


def test_requests_are_refused_exactly_past_the_limit(limiter: RateLimiter) -> None:
    key, tenant = fresh(), fresh()
    for _ in range(5):
        limiter.acquire(key, tenant, tokens=1)
    with pytest.raises(RateLimitError) as refused:
        limiter.acquire(key, tenant, tokens=1)
    assert refused.value.code == "requests_per_minute" and refused.value.retry_after is not None


def test_a_refusal_charges_no_other_limit(limiter: RateLimiter) -> None:
    tenant = fresh()
    limiter.acquire(fresh(), tenant, tokens=90)
    with pytest.raises(RateLimitError, match="tokens"):
        limiter.acquire(fresh(), tenant, tokens=20)
    limiter.acquire(fresh(), tenant, tokens=10)  # the refused 20 were not counted


def test_concurrent_requests_are_never_admitted_past_the_limit(limiter: RateLimiter) -> None:
    key, tenant = fresh(), fresh()

    def one(_: int) -> bool:
        try:
            limiter.acquire(key, tenant, tokens=1)
        except RateLimitError:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        admitted = sum(pool.map(one, range(20)))
    assert admitted == 5


def test_a_budget_reserves_settles_and_refuses(database: Database) -> None:
    budgets = BudgetLedger(database, BUDGET)
    tenant = fresh()
    reservation = budgets.reserve("k", tenant, Decimal("0.60"))
    with pytest.raises(RateLimitError, match="budget"):
        budgets.reserve("k", tenant, Decimal("0.50"))
    budgets.settle(reservation, Decimal("0.10"))
    budgets.settle(budgets.reserve("k", tenant, Decimal("0.50")), Decimal("0.50"))
    with database.session() as session:
        [counter] = session.scalars(select(BudgetCounter).where(BudgetCounter.scope == f"tenant:{tenant}"))
        assert (counter.spent_micros, counter.reserved_micros) == (600_000, 0)


def test_concurrent_reservations_never_overspend(database: Database) -> None:
    budgets = BudgetLedger(database, BUDGET)
    tenant = fresh()

    def one(_: int) -> bool:
        try:
            budgets.reserve("k", tenant, Decimal("0.07"))
        except RateLimitError:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        admitted = sum(pool.map(one, range(30)))
    assert admitted == 14  # 14 x 0.07 = 0.98 <= 1.00 < 15 x 0.07

"""Spend budgets per key and per tenant, daily and monthly, enforced atomically.

Before a call, the worst-case cost is reserved against every applicable budget in one transaction whose
conditional UPDATEs only succeed while `spent + reserved + amount <= limit`; the database serialises
them, so concurrent requests (in one process or many replicas) can never overspend together. After the
call the reservation is settled to the actual cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite

from keel.config import BudgetSettings, GatewaySettings
from keel.errors import RateLimitError
from keel.store.engine import Database
from keel.store.models import BudgetCounter

_MICROS = Decimal(1_000_000)


def to_micros(amount: Decimal) -> int:
    return int((amount * _MICROS).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True)
class Reservation:
    counters: tuple[tuple[str, str], ...]
    micros: int


NO_RESERVATION = Reservation((), 0)


class BudgetLedger:
    def __init__(self, database: Database, settings: GatewaySettings) -> None:
        self._database = database
        self._settings = settings

    def _limits(self, key_id: str, tenant: str, now: datetime) -> list[tuple[str, str, int]]:
        tenant_budget = self._settings.tenant_budget_overrides.get(tenant, self._settings.tenant_budget)
        periods = (("day", f"d{now:%Y-%m-%d}"), ("month", f"m{now:%Y-%m}"))
        limits: list[tuple[str, str, int]] = []
        for scope, budget in (
            (f"key:{key_id}", self._settings.key_budget),
            (f"tenant:{tenant}", tenant_budget),
        ):
            for kind, period in periods:
                limit = _limit(budget, kind)
                if limit is not None:
                    limits.append((scope, period, to_micros(limit)))
        return limits

    def applies(self, key_id: str, tenant: str) -> bool:
        """Whether any budget applies to this caller (else no reservation is needed)."""
        return bool(self._limits(key_id, tenant, datetime.now(UTC)))

    def reserve(self, key_id: str, tenant: str, amount: Decimal) -> Reservation:
        micros = to_micros(amount)
        limits = self._limits(key_id, tenant, datetime.now(UTC))
        if not limits:
            return NO_RESERVATION
        insert = sqlite.insert if self._database.is_sqlite else postgresql.insert
        with self._database.session() as session:
            for scope, period, limit in limits:
                session.execute(
                    insert(BudgetCounter)
                    .values(scope=scope, period=period, spent_micros=0, reserved_micros=0)
                    .on_conflict_do_nothing()
                )
                reserved = session.execute(
                    update(BudgetCounter)
                    .where(
                        BudgetCounter.scope == scope,
                        BudgetCounter.period == period,
                        BudgetCounter.spent_micros + BudgetCounter.reserved_micros + micros <= limit,
                    )
                    .values(reserved_micros=BudgetCounter.reserved_micros + micros)
                )
                if reserved.rowcount != 1:  # type: ignore[attr-defined]
                    # Raising rolls back the reservations already made in this transaction.
                    what = "daily" if period.startswith("d") else "monthly"
                    raise RateLimitError(
                        f"The {what} budget of this {scope.split(':')[0]} is spent "
                        f"(limit {Decimal(limit) / _MICROS} {self._settings.currency}).",
                        code="budget_exceeded",
                    )
        return Reservation(tuple((scope, period) for scope, period, _ in limits), micros)

    def settle(self, reservation: Reservation, actual: Decimal) -> None:
        if not reservation.counters:
            return
        actual_micros = to_micros(actual)
        with self._database.session() as session:
            for scope, period in reservation.counters:
                session.execute(
                    update(BudgetCounter)
                    .where(BudgetCounter.scope == scope, BudgetCounter.period == period)
                    .values(
                        reserved_micros=BudgetCounter.reserved_micros - reservation.micros,
                        spent_micros=BudgetCounter.spent_micros + actual_micros,
                    )
                )


def _limit(budget: BudgetSettings, kind: str) -> Decimal | None:
    return budget.daily if kind == "day" else budget.monthly

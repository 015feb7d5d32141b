"""The claim rules alone, and their SQL twin: the condition the database evaluates must say exactly what
the pure rule says, for every kind of item."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from keel.governance.audit import AuditLog
from keel.keys import KeyStore, Role
from keel.review.claims import ClaimRules
from keel.store.engine import Database
from keel.store.models import ReviewItem

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=30)
RULES = ClaimRules(TTL)


def test_a_claim_is_held_until_its_ttl_has_passed() -> None:
    assert RULES.expires_at(T0) == T0 + TTL
    assert RULES.state("claimed", T0, True, T0 + TTL - timedelta(seconds=1)) == "held"
    assert RULES.state("claimed", T0, True, T0 + TTL) == "expired"


def test_a_revoked_holder_lapses_the_claim_at_once() -> None:
    assert RULES.state("claimed", T0, False, T0) == "holder_revoked"


def test_a_naive_time_from_sqlite_is_read_as_utc() -> None:
    assert RULES.expires_at(T0.replace(tzinfo=None)) == T0 + TTL


@pytest.mark.parametrize("status", ["pending", "approved", "edited", "rejected"])
def test_only_a_claimed_item_has_a_claim(status: str) -> None:
    assert RULES.state(status, None, False, T0) == "none"
    assert RULES.expires_at(None) is None


@pytest.mark.parametrize(
    ("status", "holder", "state", "allowed"),
    [
        ("pending", None, "none", True),
        ("claimed", "me", "held", True),
        ("claimed", "other", "held", False),
        ("claimed", "other", "expired", True),
        ("claimed", "other", "holder_revoked", True),
        ("approved", "other", "none", False),
        ("rejected", "me", "none", False),
    ],
)
def test_who_may_claim(status: str, holder: str | None, state: str, allowed: bool) -> None:
    assert ClaimRules.may_claim(status, holder, state, "me") is allowed  # type: ignore[arg-type]


def test_the_sql_condition_agrees_with_the_rule_on_every_kind_of_item(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'rules.db'}")
    database.migrate()
    keys = KeyStore(database, AuditLog(database))
    me = keys.create("acme", Role.REVIEWER).record.id
    other = keys.create("acme", Role.REVIEWER).record.id
    gone = keys.create("acme", Role.REVIEWER).record.id
    keys.revoke(gone)
    active = {me: True, other: True, gone: False, "key_unknown": False}
    now = T0 + timedelta(hours=1)
    ages = [timedelta(0), TTL - timedelta(seconds=1), TTL, TTL + timedelta(days=1)]
    cases = {}
    with database.session() as session:
        for status, holder, age in itertools.product(
            ["pending", "claimed", "approved"], [me, other, gone, "key_unknown"], ages
        ):
            claimed_at = now - age
            item = ReviewItem(
                tenant="acme",
                reply_id="rep_x",
                draft_reply="draft",
                status=status,
                claimed_by=None if status == "pending" else holder,
                claimed_at=None if status == "pending" else claimed_at,
            )
            session.add(item)
            session.flush()
            state = RULES.state(status, item.claimed_at, active[holder], now)
            cases[item.id] = ClaimRules.may_claim(status, item.claimed_by, state, me)
    with database.reading() as session:
        claimable = set(session.scalars(select(ReviewItem.id).where(RULES.claimable_by(me, now))))
    assert {item_id for item_id, allowed in cases.items() if allowed} == claimable
    # The grid holds both answers, so the comparison above can fail either way.
    assert 0 < len(claimable) < len(cases)
    database.dispose()

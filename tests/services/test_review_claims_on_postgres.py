"""Review claims on PostgreSQL, where writers really run side by side: the conditional UPDATE still lets
exactly one of many reviewers take over an expired claim, and a revoked holder's claim lapses at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keel.store.engine import Database
from tests.unit.review.test_queue_claims import Setup, audited, build, escalate, race_for_an_expired_claim


@pytest.fixture
def setup(postgres_url: str) -> Iterator[Setup]:
    database = Database(postgres_url)
    database.migrate()
    yield build(database)
    database.dispose()


def test_racing_claimers_take_an_expired_claim_once(setup: Setup) -> None:
    race_for_an_expired_claim(setup, claimers=12)


def test_a_revoked_holders_claim_is_taken_over_at_once(setup: Setup) -> None:
    s = setup
    review = escalate(s)
    s.queue.claim("acme", review, s.alice)
    s.keys.revoke(s.alice)
    assert s.queue.claim("acme", review, s.bob).claimed_by == s.bob
    [takeover] = audited(s, "review.takeover")
    assert takeover.details == {"from": s.alice, "claim": "holder_revoked"}

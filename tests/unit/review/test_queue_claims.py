"""Claims in the review queue over a real SQLite file, with the clock in the test's hand: expiry,
revoked holders, release and reassignment (all audited), and racing claimers on two engines."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keel.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from keel.governance.audit import AuditLog
from keel.keys import KeyStore, Role
from keel.review.queue import Decision, ReviewQueue
from keel.review.webhooks import WebhookSender
from keel.store.engine import Database
from keel.store.models import AuditEntry, SupportReply

TTL_S = 1800


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2025, 3, 1, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Setup:
    database: Database
    queue: ReviewQueue
    clock: Clock
    keys: KeyStore
    audit: AuditLog
    alice: str
    bob: str
    admin: str


def make_queue(database: Database, clock: Clock) -> ReviewQueue:
    return ReviewQueue(
        database, WebhookSender(None, None), AuditLog(database), claim_ttl_s=TTL_S, clock=clock
    )


def build(database: Database) -> Setup:
    """A queue with a test clock on a migrated database, and three keys of tenant acme."""
    keys = KeyStore(database, AuditLog(database))
    clock = Clock()
    return Setup(
        database=database,
        queue=make_queue(database, clock),
        clock=clock,
        keys=keys,
        audit=AuditLog(database),
        alice=keys.create("acme", Role.REVIEWER, "alice").record.id,
        bob=keys.create("acme", Role.REVIEWER, "bob").record.id,
        admin=keys.create("acme", Role.ADMIN, "ops").record.id,
    )


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    database = Database(f"sqlite:///{tmp_path / 'reviews.db'}")
    database.migrate()
    yield build(database)
    database.dispose()


def escalate(s: Setup, tenant: str = "acme") -> str:
    with s.database.session() as session:
        reply = SupportReply(
            tenant=tenant,
            conversation_id="conv_1",
            question="Where is my order?",
            status="escalated",
            reply="It ships tomorrow.",
            trace_id="t" * 32,
        )
        session.add(reply)
        session.flush()
        return s.queue.open_for(session, tenant, reply.id, "It ships tomorrow.", ["human_requested"])


def audited(s: Setup, action: str) -> list[AuditEntry]:
    return [e for e in s.audit.entries("acme") if e.action == action]


def approve(s: Setup, review_id: str, reviewer: str) -> str:
    return asyncio.run(s.queue.decide("acme", review_id, reviewer, Decision(action="approve"))).status


def test_a_held_claim_cannot_be_taken_until_it_expires(setup: Setup) -> None:
    s = setup
    review = escalate(s)
    item = s.queue.claim("acme", review, s.alice)
    assert s.queue.claim_of(item).expires_at == s.clock.now + timedelta(seconds=TTL_S)
    s.clock.advance(TTL_S - 1)
    with pytest.raises(InvalidRequestError) as refused:
        s.queue.claim("acme", review, s.bob)
    assert refused.value.code == "review_not_claimable"
    s.clock.advance(1)
    assert s.queue.claim_of(s.queue.get("acme", review)).state == "expired"
    assert s.queue.claim("acme", review, s.bob).claimed_by == s.bob
    [takeover] = audited(s, "review.takeover")
    assert (takeover.actor, takeover.target) == (s.bob, review)
    assert takeover.details == {"from": s.alice, "claim": "expired"}


def test_the_holder_who_was_taken_over_cannot_decide(setup: Setup) -> None:
    s = setup
    review = escalate(s)
    s.queue.claim("acme", review, s.alice)
    s.clock.advance(TTL_S)
    s.queue.claim("acme", review, s.bob)
    with pytest.raises(PermissionDeniedError) as denied:
        approve(s, review, s.alice)
    assert denied.value.code == "review_not_claimed"
    assert approve(s, review, s.bob) == "approved"


def test_an_expired_claim_nobody_took_is_still_its_holders(setup: Setup) -> None:
    s = setup
    review = escalate(s)
    s.queue.claim("acme", review, s.alice)
    s.clock.advance(TTL_S * 3)
    assert approve(s, review, s.alice) == "approved"


def test_claiming_again_renews_the_claim(setup: Setup) -> None:
    s = setup
    review = escalate(s)
    s.queue.claim("acme", review, s.alice)
    s.clock.advance(TTL_S - 60)
    s.queue.claim("acme", review, s.alice)
    s.clock.advance(TTL_S - 60)
    with pytest.raises(InvalidRequestError):
        s.queue.claim("acme", review, s.bob)
    assert audited(s, "review.takeover") == []


def test_a_revoked_holders_claim_is_claimable_at_once(setup: Setup) -> None:
    s = setup
    review = escalate(s)
    s.queue.claim("acme", review, s.alice)
    s.keys.revoke(s.alice)
    assert s.queue.claim_of(s.queue.get("acme", review)).state == "holder_revoked"
    assert s.queue.claim("acme", review, s.bob).claimed_by == s.bob
    [takeover] = audited(s, "review.takeover")
    assert takeover.details == {"from": s.alice, "claim": "holder_revoked"}


def test_a_decided_item_stays_decided(setup: Setup) -> None:
    s = setup
    review = escalate(s)
    s.queue.claim("acme", review, s.alice)
    approve(s, review, s.alice)
    s.clock.advance(TTL_S * 2)
    with pytest.raises(InvalidRequestError):
        s.queue.claim("acme", review, s.bob)
    with pytest.raises(InvalidRequestError) as released:
        s.queue.release("acme", review, s.admin)
    assert released.value.code == "review_not_held"
    with pytest.raises(InvalidRequestError) as assigned:
        s.queue.assign("acme", review, s.bob, s.admin)
    assert assigned.value.code == "review_decided"


def test_an_admin_releases_a_claim_to_the_queue(setup: Setup) -> None:
    s = setup
    review = escalate(s)
    s.queue.claim("acme", review, s.alice)
    item = s.queue.release("acme", review, s.admin)
    assert (item.status, item.claimed_by, item.claimed_at) == ("pending", None, None)
    [release] = audited(s, "review.release")
    assert (release.actor, release.target, release.details) == (
        s.admin,
        review,
        {"from": s.alice, "claim": "held"},
    )
    assert s.queue.claim("acme", review, s.bob).claimed_by == s.bob
    s.queue.release("acme", review, s.admin)
    with pytest.raises(InvalidRequestError) as pending:
        s.queue.release("acme", review, s.admin)
    assert pending.value.code == "review_not_held"


def test_an_admin_reassigns_a_claim_by_key_id_or_prefix(setup: Setup) -> None:
    s = setup
    review = escalate(s)
    s.queue.claim("acme", review, s.alice)
    s.clock.advance(600)
    bob_prefix = next(k.prefix for k in s.keys.list("acme") if k.id == s.bob)
    item = s.queue.assign("acme", review, bob_prefix, s.admin)
    assert (item.status, item.claimed_by) == ("claimed", s.bob)
    # The new holder's claim starts afresh.
    assert s.queue.claim_of(item).expires_at == s.clock.now + timedelta(seconds=TTL_S)
    [assign] = audited(s, "review.assign")
    assert (assign.actor, assign.details) == (s.admin, {"to": s.bob, "from": s.alice, "claim": "held"})
    with pytest.raises(PermissionDeniedError):
        approve(s, review, s.alice)
    assert approve(s, review, s.bob) == "approved"


def test_a_pending_item_can_be_assigned(setup: Setup) -> None:
    s = setup
    review = escalate(s)
    assert s.queue.assign("acme", review, s.alice, s.admin).claimed_by == s.alice
    assert audited(s, "review.assign")[0].details == {"to": s.alice, "from": None, "claim": "none"}


def test_only_an_active_reviewing_key_of_the_tenant_can_be_assigned(setup: Setup) -> None:
    s = setup
    review = escalate(s)
    app_key = s.keys.create("acme", Role.APP).record.id
    foreign = s.keys.create("other", Role.REVIEWER).record.id
    s.keys.revoke(s.bob)
    for reviewer, code in [
        (app_key, "reviewer_not_allowed"),
        (foreign, "reviewer_not_found"),
        (s.bob, "reviewer_not_found"),
        ("key_nothere", "reviewer_not_found"),
    ]:
        with pytest.raises(InvalidRequestError) as refused:
            s.queue.assign("acme", review, reviewer, s.admin)
        assert (refused.value.code, refused.value.param) == (code, "reviewer")
    # An admin key may hold a claim, as the review routes allow.
    assert s.queue.assign("acme", review, s.admin, s.admin).claimed_by == s.admin
    assert len(audited(s, "review.assign")) == 1


def test_another_tenants_item_is_not_found(setup: Setup) -> None:
    s = setup
    theirs = escalate(s, tenant="other")
    changes: list[Callable[[], object]] = [
        lambda: s.queue.claim("acme", theirs, s.alice),
        lambda: s.queue.release("acme", theirs, s.admin),
        lambda: s.queue.assign("acme", theirs, s.alice, s.admin),
    ]
    for change in changes:
        with pytest.raises(NotFoundError):
            change()


def race_for_an_expired_claim(s: Setup, claimers: int = 8) -> None:
    """Reviewers on two engines (two replicas) take over one expired claim at once: exactly one wins,
    and the one audit entry names the winner and the old holder."""
    review = escalate(s)
    s.queue.claim("acme", review, s.alice)
    s.clock.advance(TTL_S + 1)
    replica = Database(s.database.url)
    queues = [s.queue, make_queue(replica, s.clock)]
    reviewers = [s.keys.create("acme", Role.REVIEWER).record.id for _ in range(claimers)]
    start = threading.Barrier(len(reviewers))
    won: list[str] = []
    refused: list[str] = []

    def race(index: int, reviewer: str) -> None:
        start.wait()
        try:
            queues[index % 2].claim("acme", review, reviewer)
            won.append(reviewer)
        except InvalidRequestError:
            refused.append(reviewer)

    threads = [threading.Thread(target=race, args=(i, r)) for i, r in enumerate(reviewers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    replica.dispose()
    assert len(won) == 1 and len(refused) == len(reviewers) - 1
    assert s.queue.get("acme", review).claimed_by == won[0]
    [takeover] = audited(s, "review.takeover")
    assert (takeover.actor, takeover.details["from"]) == (won[0], s.alice)
    assert s.audit.verify().ok


def test_racing_claimers_on_two_engines_take_an_expired_claim_once(setup: Setup) -> None:
    race_for_an_expired_claim(setup)

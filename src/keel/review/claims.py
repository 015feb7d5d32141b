"""Who holds a review item's claim and who may take it: the rules as pure functions of an injected time,
and the same rule as a SQL condition, so that taking a claim stays one atomic UPDATE on every replica.

A claim lasts `ttl` from when it was taken (its holder claiming again renews it). It lapses when the ttl
has passed or when its holder's key is revoked; a lapsed claim may be taken over by any reviewer, and
until someone does, its holder may still decide the item.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, exists, select

from keel.store.models import ApiKey, ReviewItem

# "none": nobody holds the item (pending or decided); "held": its holder does; "expired": the ttl passed;
# "holder_revoked": the holder's key was revoked (or no longer exists).
ClaimState = Literal["none", "held", "expired", "holder_revoked"]
LAPSED: frozenset[ClaimState] = frozenset({"expired", "holder_revoked"})


def as_utc(moment: datetime) -> datetime:
    # SQLite hands datetimes back without their zone; Keel stores UTC only.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def holder_key_active() -> ColumnElement[bool]:
    """True where the item's claimer is a key that exists and is not revoked."""
    return exists(select(ApiKey.id).where(ApiKey.id == ReviewItem.claimed_by, ApiKey.revoked_at.is_(None)))


@dataclass(frozen=True)
class ClaimRules:
    ttl: timedelta

    def expires_at(self, claimed_at: datetime | None) -> datetime | None:
        return None if claimed_at is None else as_utc(claimed_at) + self.ttl

    def state(
        self, status: str, claimed_at: datetime | None, holder_active: bool, now: datetime
    ) -> ClaimState:
        if status != "claimed":
            return "none"
        if not holder_active:
            return "holder_revoked"
        expires_at = self.expires_at(claimed_at)
        return "expired" if expires_at is not None and now >= expires_at else "held"

    @staticmethod
    def may_claim(status: str, claimed_by: str | None, state: ClaimState, reviewer: str) -> bool:
        """Pending items, one's own claim (a renewal) and lapsed claims may be taken; nothing else."""
        if status == "pending":
            return True
        return status == "claimed" and (claimed_by == reviewer or state in LAPSED)

    def claimable_by(self, reviewer: str, now: datetime) -> ColumnElement[bool]:
        """`may_claim` as a WHERE condition, evaluated by the database on the row it updates."""
        lapsed = (ReviewItem.claimed_at <= now - self.ttl) | ~holder_key_active()
        return (ReviewItem.status == "pending") | (
            (ReviewItem.status == "claimed") & ((ReviewItem.claimed_by == reviewer) | lapsed)
        )

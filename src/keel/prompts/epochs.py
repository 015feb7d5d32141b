"""The per-tenant epoch of prompt routing: bumped inside the transaction that changes what a label serves,
read before a cached resolution is used. One primary-key read per resolution keeps every replica's cache
exact (a move is seen by the very next request anywhere), with no message bus that could drop a signal."""

from __future__ import annotations

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keel.store.engine import Database
from keel.store.prompt_models import PromptEpoch


def bump(session: Session, tenant: str) -> None:
    """Within the caller's transaction: commits (and becomes visible) with the change it announces."""
    changed = session.execute(
        update(PromptEpoch).where(PromptEpoch.tenant == tenant).values(epoch=PromptEpoch.epoch + 1)
    ).rowcount  # type: ignore[attr-defined]
    if changed:
        return
    try:
        with session.begin_nested():
            session.add(PromptEpoch(tenant=tenant, epoch=1))
    except IntegrityError:
        # Another transaction created the row meanwhile; its creation counts as one bump, this is another.
        session.execute(
            update(PromptEpoch).where(PromptEpoch.tenant == tenant).values(epoch=PromptEpoch.epoch + 1)
        )


# On every resolution: a plain connection and a cached statement, no ORM session (a quarter of the cost).
_CURRENT = select(PromptEpoch.epoch).where(PromptEpoch.tenant == bindparam("tenant"))


def current(database: Database, tenant: str) -> int:
    with database.read_engine.connect() as connection:
        return connection.execute(_CURRENT, {"tenant": tenant}).scalar() or 0

"""Short-term memory: a conversation's turns, and the follow-up question rewritten with what came before."""

from __future__ import annotations

import re

from sqlalchemy import select

from keel.errors import NotFoundError
from keel.store.engine import Database
from keel.store.models import Conversation, ConversationTurn

# Words that point back to something said earlier: the question needs its context to be searched.
_REFERRING = re.compile(
    r"\b(it|its|that|this|those|these|they|them|there|same|one|also|what about|and)\b", re.I
)
_FOLLOW_UP_WORDS = 8


class ConversationMemory:
    def __init__(self, database: Database) -> None:
        self._database = database

    def open(
        self, tenant: str, conversation_id: str | None, customer_id: str | None, channel: str | None
    ) -> str:
        with self._database.session() as session:
            if conversation_id is not None:
                found = session.scalar(
                    select(Conversation.id).where(
                        Conversation.id == conversation_id, Conversation.tenant == tenant
                    )
                )
                if found is None:
                    raise NotFoundError(
                        f"No conversation '{conversation_id}'.", code="conversation_not_found"
                    )
                return found
            conversation = Conversation(tenant=tenant, customer_id=customer_id, channel=channel or "api")
            session.add(conversation)
            session.flush()
            return conversation.id

    def history(self, conversation_id: str, limit: int = 6) -> list[tuple[str, str]]:
        with self._database.session() as session:
            turns = session.scalars(
                select(ConversationTurn)
                .where(ConversationTurn.conversation_id == conversation_id)
                .order_by(ConversationTurn.created_at.desc())
                .limit(limit)
            )
            return [(t.role, t.text) for t in reversed(list(turns))]

    def append(self, conversation_id: str, role: str, text: str) -> None:
        with self._database.session() as session:
            session.add(ConversationTurn(conversation_id=conversation_id, role=role, text=text))


def rewrite_query(message: str, history: list[tuple[str, str]]) -> str:
    """A short follow-up that refers back ("and how long does it take?") is searched together with the
    customer's previous question; a self-contained question is searched as it is."""
    earlier = [text for role, text in history if role == "user"]
    if not earlier:
        return message
    is_follow_up = len(message.split()) <= _FOLLOW_UP_WORDS or bool(_REFERRING.search(message))
    return f"{earlier[-1]} {message}" if is_follow_up else message

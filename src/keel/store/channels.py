"""Which stored replies are live traffic. An evaluation run's replies come through the channel `eval`
(their conversation's); what lists or counts replies leaves them out unless asked for that channel."""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_, select

from keel.store.models import Conversation, SpanRecord, SupportReply

EVAL_CHANNEL = "eval"
# The root span of one evaluated item (keel.evals.runner); the target's own spans are its children.
EVAL_ITEM_SPAN = "eval.item"


def reply_in_channel(channel: str) -> ColumnElement[bool]:
    """SupportReply rows whose conversation came through `channel`."""
    return SupportReply.conversation_id.in_(select(Conversation.id).where(Conversation.channel == channel))


def live_reply() -> ColumnElement[bool]:
    """SupportReply rows that are not an evaluation run's."""
    return ~reply_in_channel(EVAL_CHANNEL)


def trace_in_channel(channel: str) -> ColumnElement[bool]:
    """Root spans of the traces whose reply came through `channel` (an evaluated item's, for `eval`)."""
    replies = SpanRecord.trace_id.in_(select(SupportReply.trace_id).where(reply_in_channel(channel)))
    return or_(SpanRecord.name == EVAL_ITEM_SPAN, replies) if channel == EVAL_CHANNEL else replies

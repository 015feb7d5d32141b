"""a reply's final answer lives on its review: support_replies.final_reply goes

Every decision already wrote the same text on the review row, so nothing is lost; the downgrade copies
it back.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 11:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("support_replies") as batch:
        batch.drop_column("final_reply")


def downgrade() -> None:
    with op.batch_alter_table("support_replies") as batch:
        batch.add_column(sa.Column("final_reply", sa.Text(), nullable=True))
    op.execute(
        "UPDATE support_replies SET final_reply = "
        "(SELECT final_reply FROM review_items WHERE review_items.id = support_replies.review_id)"
    )

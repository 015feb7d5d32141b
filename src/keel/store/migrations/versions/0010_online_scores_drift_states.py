"""online evaluation: scores of sampled live replies and drift monitor states

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "online_scores",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("reply_id", sa.String(length=40), nullable=False),
        sa.Column("trace_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("groundedness", sa.Double(), nullable=True),
        sa.Column("citation_precision", sa.Double(), nullable=True),
        sa.Column("retrieval_top_score", sa.Double(), nullable=True),
        sa.Column("sentences", sa.Integer(), nullable=False),
        sa.Column("citations", sa.Integer(), nullable=False),
        sa.Column("judge", sa.JSON(), nullable=False),
        sa.Column("query_embedding", sa.LargeBinary(), nullable=True),
        sa.Column("embedding_model", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reply_id"),
    )
    with op.batch_alter_table("online_scores", schema=None) as batch_op:
        batch_op.create_index("ix_online_scores_tenant_created", ["tenant", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_online_scores_trace_id"), ["trace_id"], unique=False)

    op.create_table(
        "drift_states",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("monitor", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=24), nullable=False),
        sa.Column("test", sa.String(length=24), nullable=False),
        sa.Column("statistic", sa.Double(), nullable=False),
        sa.Column("p_value", sa.Double(), nullable=False),
        sa.Column("effect", sa.Double(), nullable=False),
        sa.Column("baseline_n", sa.Integer(), nullable=False),
        sa.Column("recent_n", sa.Integer(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "monitor"),
    )


def downgrade() -> None:
    op.drop_table("drift_states")
    with op.batch_alter_table("online_scores", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_online_scores_trace_id"))
        batch_op.drop_index("ix_online_scores_tenant_created")
    op.drop_table("online_scores")

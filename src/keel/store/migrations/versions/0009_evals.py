"""evaluation: versioned datasets, runs and results (eval_examples folded into version 1 of each dataset)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 09:00:00.000000
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def upgrade() -> None:
    op.create_table(
        "eval_datasets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "name", name="uq_eval_datasets_tenant_name"),
    )
    with op.batch_alter_table("eval_datasets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_eval_datasets_tenant"), ["tenant"], unique=False)

    op.create_table(
        "eval_dataset_versions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("dataset_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["eval_datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset_id", "version", name="uq_eval_dataset_versions"),
    )
    with op.batch_alter_table("eval_dataset_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_eval_dataset_versions_dataset_id"), ["dataset_id"], unique=False)

    op.create_table(
        "eval_items",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("dataset_id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("added_version", sa.Integer(), nullable=False),
        sa.Column("removed_version", sa.Integer(), nullable=True),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("reference_answer", sa.Text(), nullable=True),
        sa.Column("expected_sources", sa.JSON(), nullable=False),
        sa.Column("answerability", sa.String(length=16), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("origin", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["eval_datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("eval_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_eval_items_dataset_versions", ["dataset_id", "added_version", "removed_version"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_eval_items_tenant"), ["tenant"], unique=False)

    op.create_table(
        "eval_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("dataset_id", sa.String(length=40), nullable=False),
        sa.Column("dataset_version", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("judge_cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["dataset_id"], ["eval_datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("eval_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_eval_runs_tenant"), ["tenant"], unique=False)
        batch_op.create_index(batch_op.f("ix_eval_runs_dataset_id"), ["dataset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_eval_runs_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_eval_runs_created_at"), ["created_at"], unique=False)

    op.create_table(
        "eval_results",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.String(length=40), nullable=False),
        sa.Column("item_key", sa.String(length=64), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("trial", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("output", sa.JSON(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("judge_cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["eval_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "item_id", "trial", name="uq_eval_results_run_item_trial"),
    )
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_eval_results_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_eval_results_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_eval_results_tenant"), ["tenant"], unique=False)

    _fold_examples()

    with op.batch_alter_table("eval_examples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_eval_examples_tenant"))
        batch_op.drop_index(batch_op.f("ix_eval_examples_dataset"))
    op.drop_table("eval_examples")


def _fold_examples() -> None:
    """Each (tenant, dataset) of the old flat examples becomes version 1 of a versioned dataset."""
    bind = op.get_bind()
    examples = sa.table(
        "eval_examples",
        sa.column("id", sa.String),
        sa.column("tenant", sa.String),
        sa.column("dataset", sa.String),
        sa.column("question", sa.Text),
        sa.column("reference_answer", sa.Text),
        sa.column("expected_sources", sa.JSON),
        sa.column("origin", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    datasets = sa.table(
        "eval_datasets",
        sa.column("id", sa.String),
        sa.column("tenant", sa.String),
        sa.column("name", sa.String),
        sa.column("description", sa.Text),
        sa.column("version", sa.Integer),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    versions = sa.table(
        "eval_dataset_versions",
        sa.column("id", sa.String),
        sa.column("dataset_id", sa.String),
        sa.column("version", sa.Integer),
        sa.column("item_count", sa.Integer),
        sa.column("origin", sa.String),
        sa.column("note", sa.Text),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    items = sa.table(
        "eval_items",
        sa.column("id", sa.String),
        sa.column("dataset_id", sa.String),
        sa.column("tenant", sa.String),
        sa.column("key", sa.String),
        sa.column("ordinal", sa.Integer),
        sa.column("added_version", sa.Integer),
        sa.column("input", sa.JSON),
        sa.column("reference_answer", sa.Text),
        sa.column("expected_sources", sa.JSON),
        sa.column("tags", sa.JSON),
        sa.column("meta", sa.JSON),
        sa.column("origin", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    rows = bind.execute(sa.select(examples).order_by(examples.c.created_at, examples.c.id)).all()
    now = datetime.now(UTC)
    grouped: dict[tuple[str, str], list[sa.Row[Any]]] = {}
    for row in rows:
        grouped.setdefault((row.tenant, row.dataset), []).append(row)
    for (tenant, name), members in grouped.items():
        dataset_id = _id("ds")
        bind.execute(
            datasets.insert().values(
                id=dataset_id,
                tenant=tenant,
                name=name,
                description="",
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
        bind.execute(
            versions.insert().values(
                id=_id("dsv"),
                dataset_id=dataset_id,
                version=1,
                item_count=len(members),
                origin="migration",
                note="examples kept from the review queue",
                created_at=now,
            )
        )
        for ordinal, row in enumerate(members):
            bind.execute(
                items.insert().values(
                    id=_id("evi"),
                    dataset_id=dataset_id,
                    tenant=tenant,
                    key=row.id,
                    ordinal=ordinal,
                    added_version=1,
                    input={"message": row.question},
                    reference_answer=row.reference_answer,
                    expected_sources=row.expected_sources,
                    tags=["review"],
                    meta={},
                    origin=row.origin,
                    created_at=row.created_at,
                )
            )


def downgrade() -> None:
    op.create_table(
        "eval_examples",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("dataset", sa.String(length=200), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("reference_answer", sa.Text(), nullable=False),
        sa.Column("expected_sources", sa.JSON(), nullable=False),
        sa.Column("origin", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("eval_examples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_eval_examples_dataset"), ["dataset"], unique=False)
        batch_op.create_index(batch_op.f("ix_eval_examples_tenant"), ["tenant"], unique=False)
    op.drop_table("eval_results")
    op.drop_table("eval_runs")
    op.drop_table("eval_items")
    op.drop_table("eval_dataset_versions")
    op.drop_table("eval_datasets")

"""Alembic environment: migrations run on the engine Keel passes in (or the URL in the config)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, create_engine

import keel.store.eval_models  # registers the evaluation tables on Base.metadata
import keel.store.online_eval_models  # online scores and drift states
import keel.store.prompt_models  # noqa: F401  (prompts, labels, experiments, canaries)
from keel.store.models import Base

config = context.config
engine: Engine = config.attributes.get("engine") or create_engine(
    config.get_main_option("sqlalchemy.url", "")
)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=engine.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()

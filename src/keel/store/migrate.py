"""Runs Alembic migrations programmatically, on the connection of Keel's own engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine, embedding_dimensions: int | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # "%" would be read as interpolation by Alembic's config parser (socket paths, encoded passwords).
    config.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    config.attributes["engine"] = engine
    # The vector size of PostgreSQL's knowledge index (revision 0012).
    config.attributes["embedding_dimensions"] = embedding_dimensions
    return config


def upgrade_to_head(engine: Engine, embedding_dimensions: int | None = None) -> None:
    command.upgrade(alembic_config(engine, embedding_dimensions), "head")

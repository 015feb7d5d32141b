"""The personal-data policy (docs/guardrails.md) over the real app: names, e-mail addresses, phone
numbers, card numbers and IBANs go in through chat, the copilot and an upload; then every table of the
database and every file of the data dir is scanned. Outside the business records nothing of it may be
found; a full card number or IBAN may be found nowhere, not even in the database file's free pages."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select

from keel.config import Settings
from keel.demo.loader import load_demo
from keel.jobs.ingestion_jobs import NewDocument
from keel.keys import Role
from keel.runtime import Runtime
from keel.server.app import create_app
from keel.store.models import Base, Chunk, Document, JobItem
from tests.unit.knowledge.samples import make_pdf

# Tables a support system must keep as the customer wrote them (GDPR export, erasure and retention
# cover them); card numbers and IBANs are masked even there.
BUSINESS_RECORDS = {
    "conversations",
    "conversation_turns",
    "support_replies",
    "review_items",
    "feedback",
    "customers",
    "orders",
    "tickets",
    "documents",
    "chunks",
}
NAMES = ["Marisol Quintero", "Dariusz Kowalczyk", "Henrietta Blomqvist", "Obinna Eze"]
EMAIL = "marisol.quintero@example.org"
PHONE = "+44 20 7946 0958"
CARDS = ["4111 1111 1111 1111", "5555555555554444"]
IBANS = ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432"]
FORMS = [
    "{name} here.",
    "I spoke with {name} yesterday about my order.",
    "Tell {name} that the bike arrived.",
]


def messages() -> list[str]:
    texts = [form.format(name=name) for form in FORMS for name in NAMES]
    texts[0] += f" My card is {CARDS[0]} and my IBAN is {IBANS[0]}."
    texts[1] += f" Write to {EMAIL} or call {PHONE}."
    texts[2] += f" Refund to card {CARDS[1]}, or to {IBANS[1]}."
    return texts


def digits_and_spaced(value: str) -> list[str]:
    compact = value.replace(" ", "")
    return sorted({compact, value, " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))})


FULL_PAYMENT = [form for value in CARDS + IBANS for form in digits_and_spaced(value)]
PERSONAL = [part for name in NAMES for part in name.split()] + [EMAIL, PHONE, PHONE.replace(" ", "")]


CACHE_HEADERS: list[str] = []


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    runtime = Runtime.build(Settings(data_dir=tmp_path_factory.mktemp("policy-data")))  # type: ignore[call-arg]
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def traffic(runtime: Runtime) -> Path:
    """Every way in, once; returns the data dir after the traces are flushed and the database closed."""
    with TestClient(create_app(runtime=runtime)) as client:
        runtime.warm_up()
        load_demo(runtime.database, runtime.ingestion, tenant="acme")
        app = {"Authorization": f"Bearer {runtime.keys.create('acme', Role.APP).secret}"}
        admin = {"Authorization": f"Bearer {runtime.keys.create('acme', Role.ADMIN).secret}"}
        for message in [*messages(), messages()[0], "Say yes.", "Say yes."]:
            chat = {
                "model": "keel-local",
                "messages": [{"role": "user", "content": message}],
                "max_tokens": 8,
            }
            response = client.post("/v1/chat/completions", headers=app, json=chat)
            assert response.status_code == 200
            CACHE_HEADERS.append(response.headers["x-keel-cache"])
        for message in messages()[:6]:
            body = {"message": message, "customer_id": "C-1002"}
            assert client.post("/v1/support/replies", headers=app, json=body).status_code == 200
        upload = {"source": "notes/call-notes.txt", "text": "\n".join(messages())}
        job = client.post("/v1/documents", headers=admin, json=upload).json()
        deadline = time.monotonic() + 300
        while client.get(f"/v1/jobs/{job['id']}", headers=admin).json()["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, "the upload's job did not finish (hang guard)"
            time.sleep(0.2)
        assert client.get(f"/v1/jobs/{job['id']}", headers=admin).json()["status"] == "succeeded"
        assert runtime.tracing.flush()
    return runtime.settings.data_dir


def rows(runtime: Runtime) -> Iterator[tuple[str, str]]:
    """(table, value) for every string, bytes and JSON value of every row of every table."""
    with runtime.database.reading() as session:
        for table in Base.metadata.sorted_tables:
            if table.name not in inspect(session.bind).get_table_names():
                continue
            for row in session.execute(select(table)):
                for value in row:
                    yield from ((table.name, v) for v in _strings(value))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.decode("utf-8", "replace")
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_the_traffic_reached_the_business_records(runtime: Runtime, traffic: Path) -> None:
    """The scan below is not vacuous: the names did get in, and where they belong they are kept."""
    found = {table for table, value in rows(runtime) if NAMES[0] in value}
    assert {"conversation_turns", "support_replies", "chunks"} <= found
    masked = {table for table, value in rows(runtime) if "****1111" in value}
    assert {"conversation_turns", "support_replies", "chunks"} <= masked


def test_no_personal_data_outside_the_business_records(runtime: Runtime, traffic: Path) -> None:
    leaks = [
        (table, needle, value[max(0, found.start() - 80) : found.end() + 80])
        for table, value in rows(runtime)
        if table not in BUSINESS_RECORDS
        for needle in PERSONAL
        if (found := re.search(rf"\b{re.escape(needle)}\b", value))
    ]
    assert leaks == []


def test_no_full_card_number_or_iban_in_any_row(runtime: Runtime, traffic: Path) -> None:
    leaks = [(table, value[:200]) for table, value in rows(runtime) if any(p in value for p in FULL_PAYMENT)]
    assert leaks == []


def test_no_file_of_the_data_dir_holds_them(traffic: Path) -> None:
    files = [path for path in traffic.rglob("*") if path.is_file()]
    assert any(path.suffix == ".db" for path in files)
    leaks = []
    for path in files:
        content = path.read_bytes().decode("latin-1")
        # The database holds the business records by design: its bytes are held to the card rule only,
        # free pages included; every other file to the whole policy.
        needles = FULL_PAYMENT if ".db" in path.name else FULL_PAYMENT + PERSONAL
        leaks += [(path.name, needle) for needle in needles if needle in content]
    assert leaks == []


def test_the_response_cache_keeps_no_answer_to_a_prompt_with_personal_data(traffic: Path) -> None:
    """The first message again is a miss (it was never cached); a prompt without any is served from it."""
    assert CACHE_HEADERS[len(messages())] == "miss"
    assert CACHE_HEADERS[-2:] == ["miss", "exact"]


def test_a_queued_pdf_holds_no_full_card_number_or_iban(runtime: Runtime) -> None:
    """Until its job is done, an uploaded document waits in the database: a PDF there is its text, masked
    like all text, never the raw file (whose card numbers the database cannot see to mask)."""
    runtime.prepare()
    statement = [[f"Paid with card {CARDS[0]}.", f"Refunds go to {IBANS[0]}."]]
    job = runtime.jobs.submit(
        "acme", [NewDocument(source="statements/march.pdf", data=make_pdf(statement))], enqueue=False
    )
    with runtime.database.reading() as session:
        payload = session.scalars(select(JobItem.payload).where(JobItem.job_id == job.id)).one()
    assert payload is not None and "****1111" in payload.decode()
    assert not any(form in payload.decode() for form in FULL_PAYMENT)
    # What the job's consumer will ingest (this module's server has stopped, and its consumer with it).
    (result,) = runtime.ingestion.ingest_sources(
        "acme", [NewDocument(source="statements/march.pdf", data=payload)], lambda *_: None
    )
    assert not isinstance(result, Exception) and result.outcome == "created"
    with runtime.database.reading() as session:
        assert session.get_one(Document, result.document_id).doc_type == "pdf"
        texts = session.scalars(select(Chunk.text).where(Chunk.document_id == result.document_id))
        assert any("****1111" in text for text in texts)

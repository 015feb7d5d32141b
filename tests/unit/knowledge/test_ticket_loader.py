from __future__ import annotations

import json
from pathlib import Path

import pytest

from keel.knowledge.loaders.base import ChunkingOptions, DocumentError
from keel.knowledge.loaders.tickets import TicketLoader

from .samples import TICKETS_JSON

CSV = b"""ticket_id,subject,status,customer,created_at,from,text
T-7,Wrong saddle,open,C-9,2026-05-01T10:00:00Z,customer,The saddle is the wrong size.
T-8,Late delivery,solved,C-3,2026-05-02T08:00:00Z,customer,"Still waiting, day five."
T-7,,,,,agent,We will send the right one today.
T-8,,,,,agent,It arrives tomorrow.
"""


def _load(data: bytes, source: str, max_chars: int = 1200) -> list[tuple[list[str], dict[str, object], str]]:
    doc = TicketLoader().load(data, source=source, options=ChunkingOptions(max_chars=max_chars))
    return [(chunk.heading_path, chunk.meta, chunk.text) for chunk in doc.chunks]


def test_json_tickets_become_one_thread_each_with_their_fields() -> None:
    chunks = _load(TICKETS_JSON, "support.tickets.json")
    assert [path for path, _, _ in chunks] == [
        ["Ticket T-1: LEDs blinking"],
        ["Ticket T-2: Where is my bike?"],
    ]
    assert chunks[0][1] == {
        "ticket_id": "T-1",
        "customer": "C-1",
        "status": "solved",
        "subject": "LEDs blinking",
        "created_at": "2026-10-03T09:14:00Z",
    }
    assert chunks[0][2] == (
        "Ticket T-1: LEDs blinking\nstatus: solved · customer: C-1 · created at: 2026-10-03T09:14:00Z\n\n"
        "customer: All LEDs blink.\n\nagent: Warranty check booked."
    )


def test_the_demo_tickets_load() -> None:
    data = (Path(__file__).parents[3] / "src/keel/demo/data/tickets.json").read_bytes()
    doc = TicketLoader().load(data, source="tickets.json", options=ChunkingOptions())
    assert doc.title == "tickets"
    assert len(doc.chunks) == len(json.loads(data)) == doc.meta["tickets"]


def test_csv_rows_are_grouped_into_threads_in_file_order() -> None:
    chunks = _load(CSV, "export.tickets.csv")
    assert [meta["ticket_id"] for _, meta, _ in chunks] == ["T-7", "T-8"]
    assert chunks[0][1]["subject"] == "Wrong saddle"
    assert chunks[0][2].endswith(
        "customer: The saddle is the wrong size.\n\nagent: We will send the right one today."
    )
    assert chunks[1][2].endswith("customer: Still waiting, day five.\n\nagent: It arrives tomorrow.")


def test_a_long_thread_is_split_between_messages_and_each_part_keeps_the_header() -> None:
    messages = [{"from": "customer", "text": f"Message {n} " + "x" * 60} for n in range(6)]
    data = json.dumps([{"external_id": "T-9", "subject": "Long", "messages": messages}]).encode()
    chunks = _load(data, "t.tickets.json", max_chars=200)
    assert len(chunks) > 1
    assert [meta["part"] for _, meta, _ in chunks] == list(range(1, len(chunks) + 1))
    assert all(text.startswith("Ticket T-9: Long\n\ncustomer: Message") for _, _, text in chunks)
    assert sum(text.count("customer:") for _, _, text in chunks) == 6


def test_doc_type_given_without_an_extension_sniffs_json_or_csv() -> None:
    assert len(_load(TICKETS_JSON, "upload")) == 2
    assert len(_load(CSV, "upload")) == 2


def test_a_json_ticket_without_messages_names_the_ticket_and_field() -> None:
    data = b'[{"external_id": "T-1", "messages": [{"from": "a", "text": "hi"}]}, {"external_id": "T-2"}]'
    with pytest.raises(DocumentError, match=r"ticket 2 \(T-2\): missing required field 'messages'"):
        _load(data, "t.tickets.json")


def test_a_json_message_without_text_names_the_message() -> None:
    data = b'[{"external_id": "T-1", "messages": [{"from": "agent"}]}]'
    with pytest.raises(DocumentError, match=r"T-1\), message 1: missing required field 'text'"):
        _load(data, "t.tickets.json")


def test_a_json_ticket_without_an_id_is_rejected() -> None:
    with pytest.raises(DocumentError, match="ticket 1: missing required field 'external_id'"):
        _load(b'[{"messages": []}]', "t.tickets.json")


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"{not json", "not valid JSON"), (b'{"tickets": []}', "JSON list"), (b"[]", "no tickets")],
)
def test_malformed_json_is_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(DocumentError, match=reason):
        _load(data, "t.tickets.json")


def test_a_csv_without_required_columns_names_them() -> None:
    with pytest.raises(DocumentError, match="missing column\\(s\\) from, text"):
        _load(b"ticket_id,subject,status,customer,created_at\nT-1,a,b,c,d\n", "t.tickets.csv")


def test_a_csv_row_without_text_names_its_line() -> None:
    data = CSV + b"T-9,Gears,open,C-1,2026-05-03,customer,\n"
    with pytest.raises(DocumentError, match="line 6: missing required field 'text'"):
        _load(data, "t.tickets.csv")


def test_empty_input_is_rejected() -> None:
    with pytest.raises(DocumentError, match="empty"):
        _load(b"\n", "t.tickets.json")

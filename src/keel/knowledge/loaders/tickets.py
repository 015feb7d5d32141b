"""Support tickets: one conversation thread per chunk, with the ticket's fields in the chunk meta.

Chosen by name (`*.tickets.json`, `*.tickets.csv`) or by `doc_type="ticket"`; a plain `.json` or
`.csv` is not guessed at. JSON is a list of tickets, each with `external_id` (or `ticket_id`),
`customer`, `subject`, `status`, `created_at` and `messages` of `{"from", "text"}`. CSV has one row
per message with columns ticket_id, subject, status, customer, created_at, from, text; a ticket's
rows form its thread in file order. A thread longer than `max_chars` is split between messages.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from keel.knowledge.chunking.types import ChunkDraft
from keel.knowledge.loaders.base import ChunkingOptions, DocumentError, LoadedDocument
from keel.knowledge.loaders.text import decode_text, display_name

_FIELDS = ("subject", "status", "customer", "created_at")
_CSV_COLUMNS = ("ticket_id", *_FIELDS, "from", "text")


@dataclass
class _Ticket:
    ticket_id: str
    fields: dict[str, str]
    messages: list[tuple[str, str]] = field(default_factory=list)

    def title(self) -> str:
        subject = self.fields["subject"]
        return f"Ticket {self.ticket_id}: {subject}" if subject else f"Ticket {self.ticket_id}"

    def header(self) -> str:
        facts = " · ".join(
            f"{name.replace('_', ' ')}: {self.fields[name]}" for name in _FIELDS[1:] if self.fields[name]
        )
        return f"{self.title()}\n{facts}" if facts else self.title()

    def meta(self) -> dict[str, Any]:
        return {"ticket_id": self.ticket_id, **{name: self.fields[name] or None for name in _FIELDS}}


def _required(value: object, where: str, name: str) -> str:
    text = str(value).strip() if isinstance(value, str | int) else ""
    if not text:
        raise DocumentError(f"{where}: missing required field '{name}'.")
    return text


def _from_json(text: str, name: str) -> list[_Ticket]:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as error:
        raise DocumentError(f"{name} is not valid JSON ({error.msg} at line {error.lineno}).") from error
    if not isinstance(records, list):
        raise DocumentError(f"{name} must hold a JSON list of tickets.")
    tickets: list[_Ticket] = []
    for number, record in enumerate(records, start=1):
        where = f"{name}, ticket {number}"
        if not isinstance(record, dict):
            raise DocumentError(f"{where}: expected an object with the ticket's fields.")
        ticket_id = _required(record.get("external_id", record.get("ticket_id")), where, "external_id")
        where = f"{name}, ticket {number} ({ticket_id})"
        fields = {key: str(record.get(key) or "").strip() for key in _FIELDS}
        messages = record.get("messages")
        if not isinstance(messages, list) or not messages:
            raise DocumentError(f"{where}: missing required field 'messages' (a non-empty list).")
        ticket = _Ticket(ticket_id, fields)
        for index, message in enumerate(messages, start=1):
            entry = message if isinstance(message, dict) else {}
            at = f"{where}, message {index}"
            ticket.messages.append(
                (_required(entry.get("from"), at, "from"), _required(entry.get("text"), at, "text"))
            )
        tickets.append(ticket)
    return tickets


def _from_csv(text: str, name: str) -> list[_Ticket]:
    reader = csv.DictReader(io.StringIO(text))
    header = [column.strip() for column in reader.fieldnames or []]
    if missing := [column for column in _CSV_COLUMNS if column not in header]:
        raise DocumentError(
            f"{name}: missing column(s) {', '.join(missing)}; expected {', '.join(_CSV_COLUMNS)}."
        )
    reader.fieldnames = header
    tickets: dict[str, _Ticket] = {}
    for row in reader:
        where = f"{name}, line {reader.line_num}"
        ticket_id = _required(row.get("ticket_id"), where, "ticket_id")
        ticket = tickets.setdefault(ticket_id, _Ticket(ticket_id, dict.fromkeys(_FIELDS, "")))
        for key in _FIELDS:
            # Exports often fill a ticket's fields on its first row only; the first value given wins.
            ticket.fields[key] = ticket.fields[key] or (row.get(key) or "").strip()
        ticket.messages.append(
            (_required(row.get("from"), where, "from"), _required(row.get("text"), where, "text"))
        )
    return list(tickets.values())


def _threads(ticket: _Ticket, max_chars: int) -> list[str]:
    """The whole thread as one text, or split between messages when it is longer than `max_chars`."""
    header = ticket.header()
    threads: list[str] = []
    current = header
    for author, message in ticket.messages:
        line = f"{author}: {message}"
        if current != header and len(current) + 2 + len(line) > max_chars:
            threads.append(current)
            current = header  # every part repeats the header, so it stands on its own in search
        current = f"{current}\n\n{line}"
    threads.append(current)
    return threads


class TicketLoader:
    """Support ticket exports; a chunk is one thread, with its ticket's id and fields in the meta."""

    doc_type = "ticket"
    extensions: tuple[str, ...] = (".tickets.json", ".tickets.csv")

    def load(self, data: bytes, *, source: str, options: ChunkingOptions) -> LoadedDocument:
        text = decode_text(data, source=source)
        name = display_name(source)
        path = PurePosixPath(name.lower())
        if path.suffix == ".csv":
            tickets = _from_csv(text, name)
        elif path.suffix == ".json" or text.lstrip().startswith(("[", "{")):
            tickets = _from_json(text, name)
        else:
            # No extension to go by (doc_type given explicitly): anything not JSON is read as CSV.
            tickets = _from_csv(text, name)
        if not tickets:
            raise DocumentError(f"{name} holds no tickets.")
        chunks: list[ChunkDraft] = []
        for ticket in tickets:
            parts = _threads(ticket, options.max_chars)
            for number, part in enumerate(parts, start=1):
                meta = ticket.meta() | ({"part": number} if len(parts) > 1 else {})
                chunks.append(ChunkDraft(text=part, heading_path=[ticket.title()], meta=meta))
        stem = PurePosixPath(name).stem.removesuffix(".tickets")
        return LoadedDocument(
            doc_type=self.doc_type,
            title=stem or name,
            text="\n\n".join(chunk.text for chunk in chunks),
            chunks=chunks,
            meta={"tickets": len(tickets)},
        )

"""`copied`: a frozen record of a row, by field name, sharing nothing mutable with it."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from keel.store.records import copied


@dataclass(frozen=True)
class Thing:
    id: str
    details: dict[str, Any]
    tags: tuple[str, ...]


def test_fields_are_read_by_name_dicts_copied_and_given_ones_kept() -> None:
    row = SimpleNamespace(tags=["a"], details={"k": 1}, id="t1", secret="never read")
    record = copied(Thing, row, tags=tuple(row.tags))
    assert record == Thing("t1", {"k": 1}, ("a",))
    row.details["k"] = 2
    assert record.details == {"k": 1}

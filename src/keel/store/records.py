"""Frozen records of rows: what a service hands out instead of a live ORM object."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


def copied(record: type[R], row: object, **given: Any) -> R:
    """`record` with each field it declares read from the row's attribute of the same name, a dict copied
    (so the record shares nothing mutable with the session); `given` supplies fields as they are."""
    values = dict(given)
    for field in fields(record):
        if field.name not in values:
            value = getattr(row, field.name)
            values[field.name] = dict(value) if isinstance(value, dict) else value
    return record(**values)

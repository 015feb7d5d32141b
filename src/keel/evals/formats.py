"""Dataset files: JSONL (one item per line) and CSV (one item per row), both ways, errors by line."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from pydantic import ValidationError

from keel.errors import InvalidRequestError
from keel.evals.items import DatasetItem

CSV_COLUMNS = ("key", "input", "reference_answer", "expected_sources", "answerability", "tags", "metadata")
# Lists inside one CSV cell: "a.md|b.md"; a cell that starts with "[" is read as a JSON list instead.
LIST_SEPARATOR = "|"


def _invalid(where: str, exc: ValidationError | ValueError) -> InvalidRequestError:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "item"
        return InvalidRequestError(f"{where}: {field}: {first['msg']}.", code="invalid_dataset_file")
    return InvalidRequestError(f"{where}: {exc}.", code="invalid_dataset_file")


def parse_jsonl(text: str) -> list[DatasetItem]:
    items: list[DatasetItem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(DatasetItem.model_validate(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(
                f"line {number}: not JSON ({exc.msg}).", code="invalid_dataset_file"
            ) from exc
        except ValidationError as exc:
            raise _invalid(f"line {number}", exc) from exc
    return items


def _list_cell(cell: str) -> list[Any]:
    cell = cell.strip()
    if not cell:
        return []
    if cell.startswith("["):
        value = json.loads(cell)
        if not isinstance(value, list):
            raise ValueError("expected a JSON list")
        return value
    return [part.strip() for part in cell.split(LIST_SEPARATOR) if part.strip()]


def _input_cell(cell: str) -> Any:
    """A conversation is a JSON list of turns; any other text (even "[urgent] refund?") is a message."""
    if cell.lstrip().startswith("["):
        try:
            value = json.loads(cell)
        except json.JSONDecodeError:
            return cell
        if isinstance(value, list):
            return value
    return cell


def parse_csv(text: str) -> list[DatasetItem]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"input", "question"} & set(reader.fieldnames):
        raise InvalidRequestError(
            "The CSV needs a header with an 'input' column.", code="invalid_dataset_file"
        )
    unknown = set(reader.fieldnames) - set(CSV_COLUMNS) - {"question", "id", "reference"}
    if unknown:
        raise InvalidRequestError(f"Unknown CSV columns: {sorted(unknown)}.", code="invalid_dataset_file")
    items: list[DatasetItem] = []
    for row in reader:
        # The header is line 1; csv counts the physical lines it read, so quoted newlines count too.
        where = f"line {reader.line_num}"
        try:
            raw: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
            for column in ("input", "question"):
                if column in raw:
                    raw[column] = _input_cell(raw[column])
            for column in ("expected_sources", "tags"):
                if column in raw:
                    raw[column] = _list_cell(raw[column])
            if "metadata" in raw:
                raw["metadata"] = json.loads(raw["metadata"])
            items.append(DatasetItem.model_validate(raw))
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(
                f"{where}: bad JSON in a cell ({exc.msg}).", code="invalid_dataset_file"
            ) from exc
        except (ValidationError, ValueError) as exc:
            raise _invalid(where, exc) from exc
    return items


def parse(text: str, filename: str) -> list[DatasetItem]:
    """By the file's extension: `.csv`, otherwise JSON Lines."""
    return parse_csv(text) if filename.lower().endswith(".csv") else parse_jsonl(text)


def _json_item(item: DatasetItem) -> dict[str, Any]:
    return item.model_dump(mode="json", exclude_none=True)


def to_jsonl(items: list[DatasetItem]) -> str:
    return "".join(json.dumps(_json_item(item), ensure_ascii=False) + "\n" for item in items)


def to_csv(items: list[DatasetItem]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for item in items:
        writer.writerow(
            {
                "key": item.key or "",
                "input": item.input
                if isinstance(item.input, str)
                else json.dumps([t.model_dump() for t in item.input], ensure_ascii=False),
                "reference_answer": item.reference_answer or "",
                # JSON lists, so a source or tag holding the separator survives the round trip.
                "expected_sources": json.dumps(item.expected_sources, ensure_ascii=False)
                if item.expected_sources
                else "",
                "answerability": item.answerability or "",
                "tags": json.dumps(item.tags, ensure_ascii=False) if item.tags else "",
                "metadata": json.dumps(item.metadata, ensure_ascii=False) if item.metadata else "",
            }
        )
    return out.getvalue()

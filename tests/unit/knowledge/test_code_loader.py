from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from keel.knowledge.loaders.base import ChunkingOptions, DocumentError
from keel.knowledge.loaders.code import CodeLoader

from .samples import PYTHON

PYTHON_FULL = b'''"""Battery helpers."""

import os

LIMIT = 5  # amps


# Charges slowly.
@retry
def charge(level: int) -> int:
    return level + 1


class Battery:
    """A pack."""

    capacity = 500

    def status(self) -> str:
        return "ok"

    class Cell:
        def voltage(self) -> float:
            return 3.6
'''

JAVASCRIPT = b"""import { api } from "./api.js";

/** Fetches an order. */
export async function getOrder(id) {
  return api.get(id);
}

export const cancel = (id) => api.post(id);

export default function () {}

class Cart {
  constructor() { this.items = []; }
  add(item) { this.items.push(item); }
}
"""

TYPESCRIPT = b"""import type { Item } from "./item";

export interface Order { id: string }

type Id = string;

export enum Status { Open, Done }

export abstract class Store<T> {
  private items: T[] = [];
  get(id: Id): T | undefined { return undefined; }
}
"""

GO = b"""package shop

import "fmt"

// Order is a placed order.
type Order struct {
	ID string
}

// Total sums the lines.
func (o *Order) Total() int {
	return 0
}

func Print(o Order) {
	fmt.Println(o.ID)
}
"""


def _chunks(data: bytes, source: str, max_chars: int = 1200) -> list[tuple[list[str], dict[str, Any], str]]:
    doc = CodeLoader().load(data, source=source, options=ChunkingOptions(max_chars=max_chars))
    return [(chunk.heading_path, chunk.meta, chunk.text) for chunk in doc.chunks]


def _symbols(data: bytes, source: str) -> list[str | None]:
    return [meta["symbol"] for _, meta, _ in _chunks(data, source)]


def test_python_definitions_are_chunks_with_their_paths_and_lines() -> None:
    chunks = _chunks(PYTHON_FULL, "pkg/battery.py")
    assert [(path, meta["start_line"], meta["end_line"]) for path, meta, _ in chunks] == [
        (["battery.py"], 1, 5),
        (["battery.py", "charge"], 8, 11),
        (["battery.py", "Battery"], 14, 17),
        (["battery.py", "Battery", "status"], 19, 20),
        (["battery.py", "Battery", "Cell"], 22, 22),
        (["battery.py", "Battery", "Cell", "voltage"], 23, 24),
    ]
    assert {meta["language"] for _, meta, _ in chunks} == {"python"}
    head, function, _, method, _, _ = chunks
    assert head[2] == '"""Battery helpers."""\n\nimport os\n\nLIMIT = 5  # amps'
    assert head[1]["symbol"] is None
    assert function[2].startswith(
        "# Charges slowly.\n@retry\ndef charge"
    )  # comment and decorator belong to it
    assert method[1]["symbol"] == "Battery.status"
    assert method[2] == 'def status(self) -> str:\n    return "ok"'  # dedented


def test_line_numbers_point_at_the_source() -> None:
    lines = PYTHON_FULL.decode().split("\n")
    for _, meta, text in _chunks(PYTHON_FULL, "battery.py"):
        first = text.split("\n")[0]
        assert lines[meta["start_line"] - 1].strip() == first.strip()


def test_javascript_symbols() -> None:
    assert _symbols(JAVASCRIPT, "orders.js") == [
        None,
        "getOrder",
        "cancel",
        "default",
        "Cart",
        "Cart.constructor",
        "Cart.add",
    ]
    getter = _chunks(JAVASCRIPT, "orders.js")[1]
    assert getter[2].startswith("/** Fetches an order. */\nexport async function getOrder")
    assert getter[1]["language"] == "javascript"


def test_typescript_symbols() -> None:
    assert _symbols(TYPESCRIPT, "store.ts") == [None, "Order", "Id", "Status", "Store", "Store.get"]
    assert _chunks(TYPESCRIPT, "store.ts")[0][1]["language"] == "typescript"


def test_go_methods_sit_under_their_receiver() -> None:
    chunks = _chunks(GO, "order.go")
    assert [(path, meta["symbol"]) for path, meta, _ in chunks] == [
        (["order.go"], None),
        (["order.go", "Order"], "Order"),
        (["order.go", "Order", "Total"], "Order.Total"),
        (["order.go", "Print"], "Print"),
    ]
    assert chunks[2][2].startswith("// Total sums the lines.\nfunc (o *Order) Total()")


def test_an_oversized_definition_is_split_by_lines() -> None:
    body = "\n".join(f"    total += {n}" for n in range(60))
    source = f"def big():\n    total = 0\n{body}\n    return total\n".encode()
    chunks = _chunks(source, "big.py", max_chars=200)
    assert len(chunks) > 1
    assert all(len(text) <= 200 and meta["symbol"] == "big" for _, meta, text in chunks)
    for (_, previous, _), (_, current, _) in pairwise(chunks):
        assert current["start_line"] == previous["end_line"] + 1
    assert chunks[0][1]["start_line"] == 1
    assert chunks[-1][1]["end_line"] == 63


def test_code_with_a_syntax_error_still_yields_its_definitions() -> None:
    assert "ok" in _symbols(b"def broken(:\n    pass\n\ndef ok():\n    return 1\n", "x.py")


def test_the_small_sample_loads_as_code() -> None:
    doc = CodeLoader().load(PYTHON, source="battery.py", options=ChunkingOptions())
    assert doc.doc_type == "code"
    assert doc.title == "battery.py"
    assert doc.meta == {"language": "python"}


def test_an_unknown_language_is_rejected() -> None:
    with pytest.raises(DocumentError, match="programming language"):
        CodeLoader().load(b"fn main() {}", source="main.rs", options=ChunkingOptions())


@pytest.mark.parametrize("data", [b"", b"\n\n  \n", b"}\n"])
def test_files_without_code_are_rejected(data: bytes) -> None:
    with pytest.raises(DocumentError):
        CodeLoader().load(data, source="a.js", options=ChunkingOptions())

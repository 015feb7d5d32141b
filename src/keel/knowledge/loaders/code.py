"""Source code: functions, classes and methods as chunks, found with tree-sitter.

Grammars ship compiled in the per-language wheels (tree-sitter-python, -javascript, -typescript,
-go); nothing is fetched at run time. Code between definitions (imports, a module docstring,
constants) becomes a chunk of its own; comments directly above a definition belong to it. A
chunk longer than `max_chars` is split by lines.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import PurePosixPath

import tree_sitter_go
import tree_sitter_javascript
import tree_sitter_python
import tree_sitter_typescript
from tree_sitter import Language, Node, Parser

from keel.knowledge.chunking.types import ChunkDraft
from keel.knowledge.loaders.base import ChunkingOptions, DocumentError, LoadedDocument
from keel.knowledge.loaders.text import decode_text, display_name

_GRAMMARS: dict[str, tuple[str, Callable[[], object]]] = {
    ".py": ("python", tree_sitter_python.language),
    ".pyi": ("python", tree_sitter_python.language),
    ".js": ("javascript", tree_sitter_javascript.language),
    ".mjs": ("javascript", tree_sitter_javascript.language),
    ".cjs": ("javascript", tree_sitter_javascript.language),
    ".jsx": ("javascript", tree_sitter_javascript.language),
    ".ts": ("typescript", tree_sitter_typescript.language_typescript),
    ".mts": ("typescript", tree_sitter_typescript.language_typescript),
    ".cts": ("typescript", tree_sitter_typescript.language_typescript),
    ".tsx": ("tsx", tree_sitter_typescript.language_tsx),
    ".go": ("go", tree_sitter_go.language),
}
# Definitions whose `body` holds members that become chunks of their own.
_CONTAINERS = frozenset({"class_definition", "class_declaration", "abstract_class_declaration", "class"})
_DEFINITIONS = _CONTAINERS | {
    *("function_definition", "function_declaration", "generator_function_declaration"),
    *("method_definition", "method_declaration", "interface_declaration"),
    *("type_alias_declaration", "enum_declaration"),
}
_FUNCTION_VALUES = frozenset(
    {"arrow_function", "function_expression", "function", "generator_function", "class"}
)
_RECEIVER_NOISE = re.compile(r"[*\s]|\[.*")


@dataclass(frozen=True)
class _Definition:
    name: str
    body: Node | None = None
    owner: str | None = None


@dataclass(frozen=True)
class _Piece:
    start: int  # byte offsets into the source
    end: int
    path: tuple[str, ...]  # symbols below the file name


@cache
def _language(factory: Callable[[], object]) -> Language:
    return Language(factory())


def _text(node: Node | None) -> str:
    return node.text.decode() if node is not None and node.text else ""


def _definition(node: Node) -> _Definition | None:
    kind = node.type
    if kind in ("decorated_definition", "export_statement"):
        inner = next(
            (
                found
                for name in ("definition", "declaration", "value")
                if (found := node.child_by_field_name(name))
            ),
            None,
        )
        return _definition(inner) if inner is not None else None
    if kind in _DEFINITIONS or kind in _FUNCTION_VALUES:
        # An anonymous `export default function () {}` is known by its export name.
        name = _text(node.child_by_field_name("name")) or "default"
        owner = None
        receiver = node.child_by_field_name("receiver")
        if receiver is not None and receiver.named_children:  # Go: `func (s *Store) Get()` is Store's
            owner = _RECEIVER_NOISE.sub("", _text(receiver.named_children[0].child_by_field_name("type")))
        return _Definition(name, node.child_by_field_name("body") if kind in _CONTAINERS else None, owner)
    if kind in ("lexical_declaration", "variable_declaration"):
        declarators = [child for child in node.named_children if child.type == "variable_declarator"]
        value = declarators[0].child_by_field_name("value") if len(declarators) == 1 else None
        if value is not None and value.type in _FUNCTION_VALUES:
            body = value.child_by_field_name("body") if value.type == "class" else None
            return _Definition(_text(declarators[0].child_by_field_name("name")), body)
    if kind == "type_declaration":  # Go: `type Store struct {...}`, possibly several in one block
        names = [_text(spec.child_by_field_name("name")) for spec in node.named_children]
        return _Definition(", ".join(name for name in names if name))
    return None


def _pieces(children: list[Node], start: int, end: int, path: tuple[str, ...]) -> list[_Piece]:
    """Definitions among `children` as pieces, and the code between them as pieces under `path`."""
    pieces: list[_Piece] = []
    cursor = start
    comments_from: int | None = None
    comments_end_row = previous_end_row = -2
    for child in children:
        row = child.start_point.row
        if child.type == "comment":
            if row == previous_end_row:
                continue  # a trailing comment on a line of code
            if comments_from is None or row > comments_end_row + 1:
                comments_from = child.start_byte
            comments_end_row = child.end_point.row
            continue
        definition = _definition(child)
        previous_end_row = child.end_point.row
        leading, comments_from = comments_from, None
        if definition is None:
            continue
        attached = leading is not None and comments_end_row + 1 >= row
        begin = max(cursor, leading if attached and leading is not None else child.start_byte)
        symbol = (*path, *([definition.owner] if definition.owner else []), definition.name)
        pieces.append(_Piece(cursor, begin, path))
        if definition.body is not None:
            pieces.extend(_pieces(definition.body.children, begin, child.end_byte, symbol))
        else:
            pieces.append(_Piece(begin, child.end_byte, symbol))
        cursor = child.end_byte
    pieces.append(_Piece(cursor, end, path))
    return pieces


def _line_groups(lines: list[str], max_chars: int) -> list[list[tuple[int, str]]]:
    """Consecutive lines packed up to `max_chars`; a longer line is cut into several parts."""
    groups: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    size = 0
    for index, line in enumerate(lines):
        for part in [line[i : i + max_chars] for i in range(0, len(line), max_chars)] or [""]:
            added = len(part) + (1 if current else 0)
            if current and size + added > max_chars:
                groups.append(current)
                current, size, added = [], 0, len(part)
            current.append((index, part))
            size += added
    if current:
        groups.append(current)
    return [group for group in groups if any(part.strip() for _, part in group)]


def _drafts(source: bytes, piece: _Piece, file_name: str, language: str, max_chars: int) -> list[ChunkDraft]:
    start = piece.start
    line_start = source.rfind(b"\n", 0, start) + 1
    if not source[line_start:start].strip():
        start = line_start  # keep the first line's indentation so dedent sees it
    lines = source[start : piece.end].decode().split("\n")
    first_line = source.count(b"\n", 0, start) + 1
    while lines and not lines[0].strip():
        lines.pop(0)
        first_line += 1
    while lines and not lines[-1].strip():
        lines.pop()
    if not any(char.isalnum() for line in lines for char in line):
        return []  # only braces or punctuation left between definitions
    lines = textwrap.dedent("\n".join(lines)).split("\n")
    return [
        ChunkDraft(
            text="\n".join(part for _, part in group),
            heading_path=[file_name, *piece.path],
            meta={
                "start_line": first_line + group[0][0],
                "end_line": first_line + group[-1][0],
                "language": language,
                "symbol": ".".join(piece.path) or None,
            },
        )
        for group in _line_groups(lines, max_chars)
    ]


class CodeLoader:
    """Python, JavaScript, TypeScript and Go; the language comes from the file extension."""

    doc_type = "code"
    extensions: tuple[str, ...] = tuple(_GRAMMARS)

    def load(self, data: bytes, *, source: str, options: ChunkingOptions) -> LoadedDocument:
        file_name = display_name(source)
        grammar = _GRAMMARS.get(PurePosixPath(file_name.lower()).suffix)
        if grammar is None:
            known = ", ".join(_GRAMMARS)
            raise DocumentError(f"{file_name}: cannot tell its programming language (known: {known}).")
        language, factory = grammar
        text = decode_text(data, source=source)
        encoded = text.encode()
        tree = Parser(_language(factory)).parse(encoded)
        root = tree.root_node
        chunks = [
            draft
            for piece in _pieces(root.children, 0, len(encoded), ())
            for draft in _drafts(encoded, piece, file_name, language, options.max_chars)
        ]
        if not chunks:
            raise DocumentError(f"{file_name} has no code in it.")
        return LoadedDocument(
            doc_type=self.doc_type, title=file_name, text=text, chunks=chunks, meta={"language": language}
        )

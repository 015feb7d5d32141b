"""Plain text: decoding that refuses binary junk, and paragraph packing with overlap.

`decode_text` and `pack_text` are shared by the other text-bearing loaders (markdown, HTML, PDF,
code, tickets), so every type rejects empty and binary input the same way and sizes its chunks alike.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from keel.knowledge.chunking.types import ChunkDraft
from keel.knowledge.loaders.base import ChunkingOptions, DocumentError, LoadedDocument

# Above this share of control characters (tab and line breaks aside) the bytes are not prose or code.
_MAX_JUNK_SHARE = 0.05
_JUNK = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffd]")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")


def file_name(source: str) -> str:
    """The last segment of a path or URL (`\\` counts as a separator); empty when there is none."""
    path = urlsplit(source).path if "://" in source else source.replace("\\", "/")
    return PurePosixPath(path).name


def display_name(source: str) -> str:
    return file_name(source) or source


def title_from_source(source: str) -> str:
    """The file name without its extension: the title of last resort."""
    name = display_name(source)
    return PurePosixPath(name).stem or name


def require_content(data: bytes, *, source: str) -> None:
    if not data.strip():
        raise DocumentError(f"{display_name(source)} is empty.")


def decode_text(data: bytes, *, source: str) -> str:
    """UTF-8 (a BOM is dropped), else Windows-1252; line endings become `\\n`."""
    require_content(data, source=source)
    name = display_name(source)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = _decode_or_reject(data, "utf-16", "UTF-16", name)
    elif b"\x00" in data:
        raise DocumentError(f"{name} is binary, not text (it contains NUL bytes).")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            # Older exports are often Windows-1252; junk that happens to decode is caught below.
            text = _decode_or_reject(data, "cp1252", "UTF-8 or Windows-1252", name)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DocumentError(f"{name} is empty.")
    junk = len(_JUNK.findall(text))
    if junk / len(text) > _MAX_JUNK_SHARE:
        raise DocumentError(
            f"{name} does not look like text ({junk} of {len(text)} characters are control codes)."
        )
    return text


def _decode_or_reject(data: bytes, encoding: str, label: str, name: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise DocumentError(f"{name} is not {label} text (undecodable byte at {error.start}).") from error


def pack_text(text: str, *, max_chars: int, overlap_chars: int = 0) -> list[str]:
    """Whole paragraphs packed into pieces of at most `max_chars`, each an exact slice of `text`.

    A paragraph longer than `max_chars` is cut at a line break, else a space, else mid-word. A
    piece after the first also repeats up to `overlap_chars` of the text before it, starting on a
    word, so a fact that straddles a boundary is whole in one of the two pieces.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    spans = [part for start, end in _paragraph_spans(text) for part in _cut(text, start, end, max_chars)]
    packed: list[tuple[int, int]] = []
    for start, end in spans:
        if packed and end - packed[-1][0] <= max_chars:
            packed[-1] = (packed[-1][0], end)
        else:
            packed.append((start, end))
    pieces: list[str] = []
    for index, (start, end) in enumerate(packed):
        if index > 0 and overlap_chars > 0:
            start = _overlap_start(text, start, max(packed[index - 1][0], start - overlap_chars))
        pieces.append(text[start:end])
    return pieces


def _paragraph_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    cursor = 0
    for match in [*_PARAGRAPH_BREAK.finditer(text), None]:
        stop = match.start() if match else len(text)
        chunk = text[cursor:stop]
        if chunk.strip():
            lead = len(chunk) - len(chunk.lstrip())
            spans.append((cursor + lead, cursor + len(chunk.rstrip())))
        cursor = match.end() if match else len(text)
    return spans


def _cut(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    parts: list[tuple[int, int]] = []
    while end - start > max_chars:
        limit = start + max_chars
        # A line break only in the window's second half, so one early break does not leave a stub.
        cut = text.rfind("\n", start + max_chars // 2, limit + 1)
        if cut == -1:
            cut = text.rfind(" ", start + 1, limit + 1)
        if cut == -1:
            cut = limit
        stop = cut
        while text[stop - 1].isspace():
            stop -= 1
        parts.append((start, stop))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    parts.append((start, end))
    return parts


def _overlap_start(text: str, start: int, earliest: int) -> int:
    """The first word start at or after `earliest`, or `start` itself when none comes before it."""
    position = earliest
    if position > 0 and not text[position - 1].isspace():
        while position < start and not text[position].isspace():
            position += 1
    while position < start and text[position].isspace():
        position += 1
    return position


class TextLoader:
    """Plain text: paragraphs packed up to `max_chars`, with `overlap_chars` repeated between chunks."""

    doc_type = "text"
    extensions: tuple[str, ...] = (".txt", ".text", ".log", ".rst")

    def load(self, data: bytes, *, source: str, options: ChunkingOptions) -> LoadedDocument:
        text = decode_text(data, source=source)
        pieces = pack_text(text, max_chars=options.max_chars, overlap_chars=options.overlap_chars)
        return LoadedDocument(
            doc_type=self.doc_type,
            title=title_from_source(source),
            text=text,
            chunks=[ChunkDraft(text=piece) for piece in pieces],
        )

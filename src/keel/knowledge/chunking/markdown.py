"""Markdown chunking by heading: each section becomes chunks that keep their heading path.

Headings are found by a real Markdown parser (markdown-it-py), so a `#` inside a code block is not a
heading. A section longer than `max_chars` is split on paragraph boundaries.
"""

from __future__ import annotations

from markdown_it import MarkdownIt

from keel.knowledge.chunking.types import ChunkDraft

_parser = MarkdownIt("commonmark")


def markdown_title(text: str) -> str:
    for token_index, token in enumerate(tokens := _parser.parse(text)):
        if token.type == "heading_open" and token.tag == "h1":
            return tokens[token_index + 1].content.strip()
    return ""


def chunk_markdown(text: str, *, max_chars: int = 1200) -> list[ChunkDraft]:
    lines = text.splitlines()
    tokens = _parser.parse(text)
    # (first line of the heading, level, heading text) for every heading, in order.
    headings = [
        (token.map[0], int(token.tag[1]), tokens[index + 1].content.strip())
        for index, token in enumerate(tokens)
        if token.type == "heading_open" and token.map is not None
    ]
    boundaries = [0, *(line for line, _, _ in headings), len(lines)]
    drafts: list[ChunkDraft] = []
    path: list[tuple[int, str]] = []
    for section_index in range(len(boundaries) - 1):
        start, end = boundaries[section_index], boundaries[section_index + 1]
        if section_index > 0:
            _, level, title = headings[section_index - 1]
            path = [*(entry for entry in path if entry[0] < level), (level, title)]
            start += 1  # the heading line itself lives in the path, not the body
        body = "\n".join(lines[start:end]).strip()
        if not body:
            continue
        heading_path = [title for _, title in path]
        drafts.extend(
            ChunkDraft(text=piece, heading_path=heading_path) for piece in split_paragraphs(body, max_chars)
        )
    return drafts


def split_paragraphs(body: str, max_chars: int) -> list[str]:
    """Packs whole paragraphs into pieces of at most `max_chars`; a longer paragraph stays whole."""
    pieces: list[str] = []
    current = ""
    for paragraph in (p.strip() for p in body.split("\n\n")):
        if not paragraph:
            continue
        candidate = f"{current}\n\n{paragraph}" if current else paragraph
        if current and len(candidate) > max_chars:
            pieces.append(current)
            current = paragraph
        else:
            current = candidate
    if current:
        pieces.append(current)
    return pieces

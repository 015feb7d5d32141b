"""What every built-in loader promises: at least one chunk for a real document, DocumentError for none."""

from __future__ import annotations

import pytest

from keel.knowledge.loaders.base import ChunkingOptions, DocumentError, Loader
from keel.knowledge.loaders.code import CodeLoader
from keel.knowledge.loaders.html import HtmlLoader
from keel.knowledge.loaders.markdown import MarkdownLoader
from keel.knowledge.loaders.pdf import PdfLoader
from keel.knowledge.loaders.text import TextLoader
from keel.knowledge.loaders.tickets import TicketLoader

from .samples import HTML, MARKDOWN, PDF_PAGES, PYTHON, TEXT, TICKETS_JSON, make_pdf

CASES: list[tuple[Loader, str, bytes]] = [
    (MarkdownLoader(), "a.md", MARKDOWN),
    (HtmlLoader(), "a.html", HTML),
    (PdfLoader(), "a.pdf", make_pdf(PDF_PAGES)),
    (TextLoader(), "a.txt", TEXT),
    (CodeLoader(), "a.py", PYTHON),
    (TicketLoader(), "a.tickets.json", TICKETS_JSON),
]
IDS = [loader.doc_type for loader, _, _ in CASES]


@pytest.mark.parametrize(("loader", "source", "data"), CASES, ids=IDS)
def test_a_real_document_gives_chunks_of_its_type(loader: Loader, source: str, data: bytes) -> None:
    doc = loader.load(data, source=source, options=ChunkingOptions())
    assert doc.doc_type == loader.doc_type
    assert doc.title
    assert doc.text.strip()
    assert doc.chunks
    assert all(chunk.text.strip() for chunk in doc.chunks)
    assert any(source.endswith(extension) for extension in loader.extensions)


@pytest.mark.parametrize(("loader", "source", "data"), CASES, ids=IDS)
@pytest.mark.parametrize("empty", [b"", b" \n\t\r\n  "], ids=["zero-bytes", "whitespace"])
def test_empty_input_raises_document_error(loader: Loader, source: str, data: bytes, empty: bytes) -> None:
    with pytest.raises(DocumentError, match="empty") as caught:
        loader.load(empty, source=source, options=ChunkingOptions())
    assert caught.value.status_code == 400


@pytest.mark.parametrize(("loader", "source", "data"), CASES, ids=IDS)
def test_loading_is_deterministic(loader: Loader, source: str, data: bytes) -> None:
    first = loader.load(data, source=source, options=ChunkingOptions(max_chars=80, overlap_chars=20))
    again = loader.load(data, source=source, options=ChunkingOptions(max_chars=80, overlap_chars=20))
    assert first == again

"""PDF: text per page with pypdf, chunked by paragraph within a page; each chunk knows its page.

Text comes from pypdf's layout mode, which keeps vertical gaps as blank lines, so paragraphs can be
told apart; runs of spaces it adds for horizontal layout are collapsed. Multi-column pages come out
line by line across the columns. Scanned pages have no text layer and need OCR before ingestion.

A queued PDF is stored as its text layer (`text_layer`: JSON of the title and page texts behind a
marker), which the database masks like any text; `load` reads that form as it reads the file.
"""

from __future__ import annotations

import io
import json
import re

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError

from keel.knowledge.chunking.types import ChunkDraft
from keel.knowledge.loaders.base import ChunkingOptions, DocumentError, LoadedDocument
from keel.knowledge.loaders.text import display_name, pack_text, require_content, title_from_source

_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")
_TEXT_LAYER = b"%KEEL-PDF-TEXT\n"


def _page_texts(data: bytes, name: str) -> tuple[str, list[str]]:
    """The document title from its metadata, and the normalised text of every page."""
    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        try:
            # Many PDFs carry only an owner password (against editing), which an empty one opens.
            opened = reader.decrypt("")
        except DependencyError as error:
            raise DocumentError(f"{name} is encrypted with AES, which needs pypdf[crypto].") from error
        if opened == PasswordType.NOT_DECRYPTED:
            raise DocumentError(f"{name} is password-protected; upload an unprotected copy.")
    title = (reader.metadata.title or "") if reader.metadata else ""
    return title.strip(), [_normalise(page.extract_text(extraction_mode="layout")) for page in reader.pages]


def _normalise(page_text: str) -> str:
    lines = (_SPACES.sub(" ", line).strip() for line in page_text.splitlines())
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


class PdfLoader:
    """PDFs with a text layer; each chunk's meta has its 1-based `page`."""

    doc_type = "pdf"
    extensions: tuple[str, ...] = (".pdf",)

    def load(self, data: bytes, *, source: str, options: ChunkingOptions) -> LoadedDocument:
        require_content(data, source=source)
        if data.startswith(_TEXT_LAYER):
            layer = json.loads(data[len(_TEXT_LAYER) :])
            title, pages = str(layer["title"]), [str(page) for page in layer["pages"]]
        else:
            title, pages = self._read(data, display_name(source))
        return self._document(title, pages, source, options)

    def text_layer(self, data: bytes, *, source: str) -> bytes | None:
        if data.startswith(_TEXT_LAYER):
            return data
        try:
            title, pages = self._read(data, display_name(source))
        except DocumentError:
            return None
        return _TEXT_LAYER + json.dumps({"title": title, "pages": pages}, ensure_ascii=False).encode()

    @staticmethod
    def _read(data: bytes, name: str) -> tuple[str, list[str]]:
        if b"%PDF-" not in data[:1024]:  # the header may follow up to 1 KiB of junk
            raise DocumentError(f"{name} is not a PDF (no %PDF- header).")
        try:
            return _page_texts(data, name)
        except DocumentError:
            raise
        except Exception as error:
            # pypdf reports damage as whatever broke first (PdfReadError, KeyError, ValueError,
            # AttributeError...); every one of them means the same thing to the user.
            raise DocumentError(f"{name} is a damaged or unreadable PDF ({error}).") from error

    def _document(
        self, title: str, pages: list[str], source: str, options: ChunkingOptions
    ) -> LoadedDocument:
        chunks = [
            ChunkDraft(text=piece, meta={"page": number})
            for number, page_text in enumerate(pages, start=1)
            for piece in pack_text(
                page_text, max_chars=options.max_chars, overlap_chars=options.overlap_chars
            )
        ]
        if not chunks:
            raise DocumentError(
                f"{display_name(source)} has no extractable text (scanned pages or images only?); "
                "run OCR on it first."
            )
        return LoadedDocument(
            doc_type=self.doc_type,
            title=title or title_from_source(source),
            text="\n\n".join(pages),
            chunks=chunks,
            meta={"pages": len(pages)},
        )

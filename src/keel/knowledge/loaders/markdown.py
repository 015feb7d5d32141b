"""Markdown: sections by heading through the shared Markdown chunker, titled by the first `# h1`."""

from __future__ import annotations

from keel.knowledge.chunking.markdown import chunk_markdown, markdown_title
from keel.knowledge.loaders.base import ChunkingOptions, DocumentError, LoadedDocument
from keel.knowledge.loaders.text import decode_text, display_name, title_from_source


class MarkdownLoader:
    """Chunks keep their heading path; `overlap_chars` is not used, sections are whole paragraphs."""

    doc_type = "markdown"
    extensions: tuple[str, ...] = (".md", ".markdown")

    def load(self, data: bytes, *, source: str, options: ChunkingOptions) -> LoadedDocument:
        text = decode_text(data, source=source)
        chunks = chunk_markdown(text, max_chars=options.max_chars)
        if not chunks:
            # Only headings, no body: nothing a search could return.
            raise DocumentError(f"{display_name(source)} has headings but no text under them.")
        return LoadedDocument(
            doc_type=self.doc_type,
            title=markdown_title(text) or title_from_source(source),
            text=text,
            chunks=chunks,
        )

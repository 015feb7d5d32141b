from __future__ import annotations

import pytest

from keel.knowledge.loaders.base import ChunkingOptions, DocumentError
from keel.knowledge.loaders.markdown import MarkdownLoader

from .samples import MARKDOWN


def test_sections_keep_heading_paths_and_the_h1_is_the_title() -> None:
    doc = MarkdownLoader().load(MARKDOWN, source="docs/returns.md", options=ChunkingOptions())
    assert doc.doc_type == "markdown"
    assert doc.title == "Returns"
    assert [(c.heading_path, c.text) for c in doc.chunks] == [
        (["Returns"], "Intro line."),
        (["Returns", "Window"], "Thirty days."),
    ]


def test_title_falls_back_to_the_file_stem() -> None:
    doc = MarkdownLoader().load(
        b"## Only h2\n\nBody.", source="docs/shipping-rates.md", options=ChunkingOptions()
    )
    assert doc.title == "shipping-rates"


def test_headings_without_text_are_rejected() -> None:
    with pytest.raises(DocumentError, match="no text"):
        MarkdownLoader().load(b"# One\n\n## Two\n", source="a.md", options=ChunkingOptions())

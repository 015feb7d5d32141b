from __future__ import annotations

import pytest
from fpdf import FPDF

from keel.knowledge.loaders.base import ChunkingOptions, DocumentError
from keel.knowledge.loaders.pdf import PdfLoader

from .samples import PDF_PAGES, make_pdf


def test_paragraphs_are_chunked_within_their_page() -> None:
    doc = PdfLoader().load(
        make_pdf(PDF_PAGES, title="Care guide"), source="care.pdf", options=ChunkingOptions(max_chars=60)
    )
    assert doc.doc_type == "pdf"
    assert doc.title == "Care guide"
    assert doc.meta == {"pages": 2}
    assert [(chunk.meta["page"], chunk.text) for chunk in doc.chunks] == [
        (1, PDF_PAGES[0][0]),
        (1, PDF_PAGES[0][1]),
        (2, PDF_PAGES[1][0]),
    ]


def test_paragraphs_of_one_page_share_a_chunk_when_they_fit() -> None:
    doc = PdfLoader().load(make_pdf(PDF_PAGES), source="docs/care.pdf", options=ChunkingOptions())
    assert doc.title == "care"
    assert [chunk.meta["page"] for chunk in doc.chunks] == [1, 2]
    assert doc.chunks[0].text == "\n\n".join(PDF_PAGES[0])


def test_a_truncated_pdf_is_damaged() -> None:
    data = make_pdf(PDF_PAGES)
    with pytest.raises(DocumentError, match="damaged or unreadable"):
        PdfLoader().load(data[: len(data) // 2], source="care.pdf", options=ChunkingOptions())


def test_bytes_that_are_not_a_pdf_are_rejected() -> None:
    with pytest.raises(DocumentError, match="not a PDF"):
        PdfLoader().load(b"<html>oops</html>", source="care.pdf", options=ChunkingOptions())


def test_a_pdf_without_text_needs_ocr() -> None:
    with pytest.raises(DocumentError, match="no extractable text"):
        PdfLoader().load(make_pdf([[]], text=False), source="scan.pdf", options=ChunkingOptions())


def _encrypted(user_password: str) -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "Confidential price list.")
    pdf.set_encryption(owner_password="owner", user_password=user_password)
    return bytes(pdf.output())


def test_a_password_protected_pdf_is_rejected() -> None:
    with pytest.raises(DocumentError, match="password-protected"):
        PdfLoader().load(_encrypted("secret"), source="prices.pdf", options=ChunkingOptions())


def test_a_pdf_with_only_an_owner_password_is_read() -> None:
    doc = PdfLoader().load(_encrypted(""), source="prices.pdf", options=ChunkingOptions())
    assert doc.chunks[0].text == "Confidential price list."


@pytest.mark.parametrize("data", [b"", b" \n"])
def test_empty_input_is_rejected(data: bytes) -> None:
    with pytest.raises(DocumentError, match="empty"):
        PdfLoader().load(data, source="a.pdf", options=ChunkingOptions())


def test_the_text_layer_loads_as_the_file_does() -> None:
    loader, options = PdfLoader(), ChunkingOptions(max_chars=60)
    data = make_pdf(PDF_PAGES, title="Care guide")
    layer = loader.text_layer(data, source="care.pdf")
    assert layer is not None and b"%PDF-" not in layer
    assert layer.decode().count(PDF_PAGES[1][0]) == 1, "text the database can scan"
    assert loader.load(layer, source="care.pdf", options=options) == loader.load(
        data, source="care.pdf", options=options
    )
    assert loader.text_layer(layer, source="care.pdf") == layer
    assert loader.text_layer(b"not a pdf", source="x.pdf") is None, "the job reports why, later"

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from keel.knowledge.loaders.base import ChunkingOptions, DocumentError
from keel.knowledge.loaders.text import TextLoader, decode_text, pack_text

from .samples import TEXT

PARAGRAPHS = [f"Paragraph {n} talks about topic {n} in a few words." for n in range(1, 7)]
BODY = "\n\n".join(PARAGRAPHS)


def test_paragraphs_are_packed_up_to_max_chars() -> None:
    doc = TextLoader().load(BODY.encode(), source="notes/care.txt", options=ChunkingOptions(max_chars=110))
    assert doc.doc_type == "text"
    assert doc.title == "care"
    assert [chunk.text for chunk in doc.chunks] == [
        "\n\n".join(PARAGRAPHS[0:2]),
        "\n\n".join(PARAGRAPHS[2:4]),
        "\n\n".join(PARAGRAPHS[4:6]),
    ]


def test_without_overlap_pieces_are_disjoint_slices_of_the_text() -> None:
    pieces = pack_text(BODY, max_chars=120)
    assert all(len(piece) <= 120 for piece in pieces)
    assert "\n\n".join(pieces) == BODY


def test_overlap_repeats_the_tail_of_the_previous_piece_from_a_word_start() -> None:
    pieces = pack_text(BODY, max_chars=110, overlap_chars=20)
    assert len(pieces) == 3
    for previous, piece in pairwise(pieces):
        repeated = piece[: piece.index("Paragraph")].strip()
        assert repeated
        assert previous.endswith(repeated)
        assert len(repeated) <= 20
        assert repeated.split()[0] in previous.split()  # a whole word, not a fragment
    assert all(piece in BODY for piece in pieces)


def test_overlap_is_part_of_the_loaded_chunks() -> None:
    plain = TextLoader().load(BODY.encode(), source="a.txt", options=ChunkingOptions(max_chars=110))
    overlapped = TextLoader().load(
        BODY.encode(), source="a.txt", options=ChunkingOptions(max_chars=110, overlap_chars=30)
    )
    assert len(plain.chunks) == len(overlapped.chunks)
    assert overlapped.chunks[0].text == plain.chunks[0].text
    assert overlapped.chunks[1].text.endswith(plain.chunks[1].text)
    assert len(overlapped.chunks[1].text) > len(plain.chunks[1].text)


def test_a_long_paragraph_is_cut_at_a_space() -> None:
    words = " ".join(f"word{n}" for n in range(100))
    pieces = pack_text(words, max_chars=50)
    assert all(len(piece) <= 50 for piece in pieces)
    assert " ".join(pieces) == words
    assert all(not piece.startswith(" ") and not piece.endswith(" ") for piece in pieces)


def test_a_word_longer_than_max_chars_is_cut_hard() -> None:
    assert pack_text("x" * 25, max_chars=10) == ["x" * 10, "x" * 10, "x" * 5]


def test_bom_and_crlf_are_normalised() -> None:
    assert decode_text(b"\xef\xbb\xbfone\r\ntwo\rthree", source="a.txt") == "one\ntwo\nthree"


def test_windows_1252_and_utf16_are_read() -> None:
    assert decode_text("Café à vélo".encode("cp1252"), source="a.txt") == "Café à vélo"
    assert decode_text("Café".encode("utf-16"), source="a.txt") == "Café"


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n ", "\u00a0\u2003\n".encode()])
def test_empty_or_blank_input_is_rejected(data: bytes) -> None:
    with pytest.raises(DocumentError, match="empty"):
        TextLoader().load(data, source="a.txt", options=ChunkingOptions())


def test_nul_bytes_mean_binary() -> None:
    with pytest.raises(DocumentError, match="binary"):
        TextLoader().load(b"PK\x03\x04\x00\x00zip", source="a.txt", options=ChunkingOptions())


def test_control_character_junk_is_rejected() -> None:
    junk = bytes(range(1, 9)) * 20 + b"some words"
    with pytest.raises(DocumentError, match="does not look like text") as caught:
        TextLoader().load(junk, source="a.txt", options=ChunkingOptions())
    assert caught.value.code == "unprocessable_document"


def test_random_bytes_are_rejected() -> None:
    noise = random.Random(7).randbytes(4096).replace(b"\x00", b"\x01")
    with pytest.raises(DocumentError):
        TextLoader().load(noise, source="a.txt", options=ChunkingOptions())


@pytest.mark.parametrize(
    ("source", "title"),
    [
        ("notes/care.txt", "care"),
        ("C:\\exports\\care.txt", "care"),
        ("https://shop.example/files/care.txt?v=2", "care"),
        ("care", "care"),
    ],
)
def test_the_title_is_the_file_name_without_extension(source: str, title: str) -> None:
    assert TextLoader().load(TEXT, source=source, options=ChunkingOptions()).title == title


def test_errors_name_the_file_not_its_whole_path() -> None:
    with pytest.raises(DocumentError, match=r"^care\.txt is empty\.$"):
        TextLoader().load(b"", source="/srv/uploads/tenant-1/care.txt", options=ChunkingOptions())


def test_a_long_paragraph_of_lines_is_cut_at_a_late_line_break() -> None:
    lines = ["Header", *(f"line {n} of a wrapped paragraph" for n in range(8))]
    pieces = pack_text("\n".join(lines), max_chars=100)
    assert pieces[0].startswith("Header\nline 0")  # the early break after the header is not used
    assert all(len(piece) <= 100 and not piece.endswith(" ") for piece in pieces)
    assert "\n".join(pieces).split("\n") == lines

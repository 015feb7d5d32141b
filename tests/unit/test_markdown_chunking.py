from __future__ import annotations

from keel.knowledge.chunking.markdown import chunk_markdown, markdown_title, split_paragraphs

DOC = """# Returns

Intro line.

## Window

Thirty days.

```
# not a heading
```

### Exceptions

Bikes ridden over 50 km.

## Refunds

Five days.
"""


def test_sections_keep_their_heading_path() -> None:
    chunks = chunk_markdown(DOC)
    assert [c.heading_path for c in chunks] == [
        ["Returns"],
        ["Returns", "Window"],
        ["Returns", "Window", "Exceptions"],
        ["Returns", "Refunds"],
    ]
    assert "# not a heading" in chunks[1].text
    assert chunks[3].text == "Five days."


def test_title_is_the_first_h1() -> None:
    assert markdown_title(DOC) == "Returns"
    assert markdown_title("no heading here") == ""


def test_long_sections_split_on_paragraphs() -> None:
    body = "\n\n".join(f"paragraph {i} " + "x" * 50 for i in range(10))
    pieces = split_paragraphs(body, max_chars=150)
    assert len(pieces) > 3
    assert all(len(piece) <= 150 for piece in pieces)
    assert "\n\n".join(pieces) == body


def test_text_before_the_first_heading_is_kept() -> None:
    chunks = chunk_markdown("Preface.\n\n# Title\n\nBody.")
    assert [(c.heading_path, c.text) for c in chunks] == [([], "Preface."), (["Title"], "Body.")]

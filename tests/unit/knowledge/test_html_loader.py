from __future__ import annotations

import pytest

from keel.knowledge.loaders.base import ChunkingOptions, DocumentError
from keel.knowledge.loaders.html import HtmlLoader

from .samples import HTML


def _load(data: bytes, source: str = "page.html", max_chars: int = 1200) -> list[tuple[list[str], str]]:
    doc = HtmlLoader().load(data, source=source, options=ChunkingOptions(max_chars=max_chars))
    return [(chunk.heading_path, chunk.text) for chunk in doc.chunks]


def test_main_content_is_split_by_heading_with_its_path() -> None:
    assert _load(HTML) == [
        (["Returns"], "Unused items can be returned."),
        (["Returns", "Window"], "Thirty days from delivery."),
        (["Returns", "Window", "Exceptions"], "Bikes ridden over 50 km."),
        (["Returns", "Refunds"], "Five working days."),
    ]


def test_chrome_scripts_and_forms_never_reach_the_text() -> None:
    doc = HtmlLoader().load(HTML, source="page.html", options=ChunkingOptions())
    for noise in ("Shop", "Home", "Related", "Search", "track(", "color", "Copyright"):
        assert noise not in doc.text
    assert "## Window" in doc.text


def test_title_comes_from_title_then_first_h1_then_file_stem() -> None:
    loader, options = HtmlLoader(), ChunkingOptions()
    assert loader.load(HTML, source="p.html", options=options).title == "Returns policy"
    no_title = b"<body><h1>Warranty</h1><p>Two years.</p></body>"
    assert loader.load(no_title, source="p.html", options=options).title == "Warranty"
    assert loader.load(b"<p>Plain.</p>", source="site/faq.htm", options=options).title == "faq"


def test_role_main_and_a_lone_article_are_the_content_root() -> None:
    role = b"<body><div>menu</div><div role='main'><p>Answer.</p></div></body>"
    assert _load(role) == [([], "Answer.")]
    article = b"<body><div>menu</div><article><h2>Post</h2><p>Body.</p></article></body>"
    assert _load(article) == [(["Post"], "Body.")]


def test_without_a_content_element_the_body_is_used() -> None:
    page = b"<html><body><nav>menu</nav><div><p>One.</p><p>Two.</p></div></body></html>"
    assert _load(page) == [([], "One.\n\nTwo.")]


def test_lists_line_breaks_and_preformatted_text_survive() -> None:
    page = b"<main><ul><li>one</li><li>two</li></ul><p>a<br>b</p><pre>x = 1\n    y = 2</pre></main>"
    [(_, text)] = _load(page)
    assert text == "- one\n\n- two\n\na\nb\n\nx = 1\n    y = 2"


def test_a_long_section_is_split_and_keeps_its_path() -> None:
    paragraphs = "".join(f"<p>Paragraph number {n} of the section.</p>" for n in range(10))
    chunks = _load(f"<main><h1>Long</h1>{paragraphs}</main>".encode(), max_chars=80)
    assert len(chunks) > 1
    assert all(path == ["Long"] and len(text) <= 80 for path, text in chunks)


def test_deeply_nested_markup_does_not_overflow() -> None:
    page = "<body>" + "<div>" * 3000 + "<p>Deep.</p>" + "</div>" * 3000 + "</body>"
    assert _load(page.encode())[-1][1] == "Deep."


@pytest.mark.parametrize("data", [b"", b"  \n ", b"<html><body><nav>menu only</nav></body></html>"])
def test_pages_without_content_are_rejected(data: bytes) -> None:
    with pytest.raises(DocumentError):
        HtmlLoader().load(data, source="page.html", options=ChunkingOptions())

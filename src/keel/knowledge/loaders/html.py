"""HTML: the page's main content only, split into sections by h1-h6 that keep their heading path.

Navigation, headers, footers, asides, forms and scripts are dropped, so a chunk never holds a site
menu. The content root is `<main>`, else `[role=main]`, else a lone `<article>`, else `<body>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bs4 import BeautifulSoup
from bs4.element import NavigableString, PageElement, PreformattedString, Tag

from keel.knowledge.chunking.types import ChunkDraft
from keel.knowledge.loaders.base import ChunkingOptions, DocumentError, LoadedDocument
from keel.knowledge.loaders.text import display_name, pack_text, require_content, title_from_source

_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_DROPPED = [
    *("script", "style", "noscript", "template", "iframe", "svg"),
    *("nav", "header", "footer", "aside"),
    *("form", "button", "input", "select", "textarea"),
]
_BLOCKS = frozenset(
    {
        *("p", "div", "section", "article", "main", "blockquote", "address", "figure", "figcaption"),
        *("ul", "ol", "li", "dl", "dt", "dd", "table", "thead", "tbody", "tr", "caption"),
        *("details", "summary", "hr"),
    }
)


@dataclass
class _Section:
    level: int
    path: list[str]
    paragraphs: list[str] = field(default_factory=list)


class _SectionWriter:
    """Collects inline text into paragraphs and paragraphs into heading sections."""

    def __init__(self) -> None:
        self.sections = [_Section(level=0, path=[])]
        self._open: list[tuple[int, str]] = []
        self._inline: list[str] = []

    def heading(self, level: int, title: str) -> None:
        self.end_block()
        self._open = [*(entry for entry in self._open if entry[0] < level), (level, title)]
        self.sections.append(_Section(level=level, path=[title for _, title in self._open]))

    def text(self, fragment: str) -> None:
        # Newlines in the markup are layout, not content; only <br> breaks a line.
        self._inline.append(fragment.replace("\n", " "))

    def line_break(self) -> None:
        self._inline.append("\n")

    def preformatted(self, body: str) -> None:
        self.end_block()
        if body.strip():
            self.sections[-1].paragraphs.append(body.strip("\n"))

    def end_block(self) -> None:
        lines = (" ".join(line.split()) for line in "".join(self._inline).split("\n"))
        paragraph = "\n".join(line for line in lines if line)
        if paragraph:
            self.sections[-1].paragraphs.append(paragraph)
        self._inline.clear()


def _content_root(soup: BeautifulSoup) -> Tag:
    found = soup.find("main") or soup.select_one("[role=main]")
    if isinstance(found, Tag):
        return found
    # Several <article>s mean a listing page: the body holds them all.
    articles = soup.find_all("article")
    if len(articles) == 1 and isinstance(articles[0], Tag):
        return articles[0]
    return soup.body or soup


def _title(soup: BeautifulSoup) -> str:
    for candidate in (soup.find("title"), soup.find("h1")):
        if isinstance(candidate, Tag) and (text := " ".join(candidate.get_text(" ").split())):
            return text
    return ""


def _walk(root: Tag, writer: _SectionWriter) -> None:
    # An explicit stack, not recursion: real pages nest deeper than Python's recursion limit.
    stack: list[tuple[PageElement, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        if closing:
            writer.end_block()
        elif isinstance(node, Tag):
            if node.name in _HEADINGS:
                if title := " ".join(node.get_text(" ").split()):
                    writer.heading(_HEADINGS[node.name], title)
                continue
            if node.name == "pre":
                writer.preformatted(node.get_text())
                continue
            if node.name == "br":
                writer.line_break()
            elif node.name in _BLOCKS:
                writer.end_block()
                stack.append((node, True))
                writer.text("- " if node.name == "li" else "")
            elif node.name in ("td", "th"):
                writer.text(" ")
            stack.extend((child, False) for child in reversed(node.contents))
        elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
            # Comments, doctypes and CDATA are PreformattedStrings: markup, not content.
            writer.text(str(node))
    writer.end_block()


class HtmlLoader:
    """Main-content HTML; each chunk's heading path is the h1-h6 headings above it."""

    doc_type = "html"
    extensions: tuple[str, ...] = (".html", ".htm")

    def load(self, data: bytes, *, source: str, options: ChunkingOptions) -> LoadedDocument:
        require_content(data, source=source)
        soup = BeautifulSoup(data, "lxml")
        title = _title(soup)
        root = _content_root(soup)
        for tag in root.find_all(_DROPPED):
            if not tag.decomposed:
                tag.decompose()
        writer = _SectionWriter()
        _walk(root, writer)
        chunks: list[ChunkDraft] = []
        rendered: list[str] = []
        for section in writer.sections:
            body = "\n\n".join(section.paragraphs)
            if section.path:
                rendered.append(f"{'#' * section.level} {section.path[-1]}")
            if body:
                rendered.append(body)
                pieces = pack_text(body, max_chars=options.max_chars, overlap_chars=options.overlap_chars)
                chunks.extend(ChunkDraft(text=piece, heading_path=list(section.path)) for piece in pieces)
        if not chunks:
            raise DocumentError(f"{display_name(source)} has no readable text in its main content.")
        return LoadedDocument(
            doc_type=self.doc_type,
            title=title or title_from_source(source),
            text="\n\n".join(rendered),
            chunks=chunks,
        )

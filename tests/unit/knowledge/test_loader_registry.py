from __future__ import annotations

from importlib import metadata

import pytest

from keel.errors import UnsupportedError
from keel.knowledge.loaders.base import ChunkingOptions, LoadedDocument
from keel.knowledge.loaders.registry import LoaderRegistry, default_registry
from keel.knowledge.loaders.text import TextLoader

BUILT_IN = ["code", "html", "markdown", "pdf", "text", "ticket"]


class SlidesLoader:
    doc_type = "slides"
    extensions: tuple[str, ...] = (".pptx",)

    def load(self, data: bytes, *, source: str, options: ChunkingOptions) -> LoadedDocument:
        raise NotImplementedError


class LoudHtmlLoader(SlidesLoader):
    doc_type = "html"
    extensions: tuple[str, ...] = (".html",)


def _use_entry_points(monkeypatch: pytest.MonkeyPatch, *values: str) -> None:
    points = [
        metadata.EntryPoint(name=f"p{n}", value=value, group="keel.loaders") for n, value in enumerate(values)
    ]
    monkeypatch.setattr(metadata, "entry_points", lambda group: points if group == "keel.loaders" else [])


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> LoaderRegistry:
    _use_entry_points(monkeypatch)
    return default_registry()


def test_default_registry_holds_every_built_in_type(registry: LoaderRegistry) -> None:
    assert registry.supported_types() == BUILT_IN


@pytest.mark.parametrize(
    ("source", "doc_type"),
    [
        ("docs/returns.md", "markdown"),
        ("README.MARKDOWN", "markdown"),
        ("site/faq.htm", "html"),
        ("https://shop.example/help/returns.html?lang=en#window", "html"),
        ("manuals/e-bike.PDF", "pdf"),
        ("notes.txt", "text"),
        ("C:\\exports\\notes.text", "text"),
        ("README", "text"),
        ("LICENSE", "text"),
        ("src/app.py", "code"),
        ("web/cart.js", "code"),
        ("web/cart.ts", "code"),
        ("server/main.go", "code"),
        ("support.tickets.json", "ticket"),
        ("exports/may.tickets.csv", "ticket"),
    ],
)
def test_the_extension_picks_the_loader(registry: LoaderRegistry, source: str, doc_type: str) -> None:
    assert registry.for_document(source, None).doc_type == doc_type


def test_an_explicit_doc_type_wins_over_the_extension(registry: LoaderRegistry) -> None:
    assert registry.for_document("export.json", "ticket").doc_type == "ticket"
    assert registry.for_document("page.html", " Text ").doc_type == "text"


def test_an_unknown_doc_type_lists_the_supported_ones(registry: LoaderRegistry) -> None:
    with pytest.raises(UnsupportedError) as caught:
        registry.for_document("a.md", "docx")
    message = caught.value.message
    assert "'docx'" in message
    assert all(doc_type in message for doc_type in BUILT_IN)
    assert ".tickets.json" in message
    assert caught.value.param == "doc_type"


@pytest.mark.parametrize("source", ["report.docx", "data.json", "export.csv", "https://shop.example/help/"])
def test_an_unknown_extension_is_unsupported(registry: LoaderRegistry, source: str) -> None:
    with pytest.raises(UnsupportedError, match="Supported types: code"):
        registry.for_document(source, None)


def test_plugins_from_entry_points_are_added(monkeypatch: pytest.MonkeyPatch) -> None:
    _use_entry_points(monkeypatch, f"{__name__}:SlidesLoader")
    registry = default_registry()
    assert registry.supported_types() == sorted([*BUILT_IN, "slides"])
    assert isinstance(registry.for_document("deck.pptx", None), SlidesLoader)


def test_a_plugin_replaces_a_built_in_of_the_same_type(monkeypatch: pytest.MonkeyPatch) -> None:
    _use_entry_points(monkeypatch, f"{__name__}:LoudHtmlLoader")
    registry = default_registry()
    assert isinstance(registry.for_document("page.html", None), LoudHtmlLoader)
    assert isinstance(registry.for_document("page", "html"), LoudHtmlLoader)


def test_a_plugin_that_is_not_a_loader_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _use_entry_points(monkeypatch, "builtins:dict")
    with pytest.raises(TypeError, match="'p0' returned"):
        default_registry()


def test_a_broken_plugin_names_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    _use_entry_points(monkeypatch, "keel_no_such_module:factory")
    with pytest.raises(ModuleNotFoundError) as caught:
        default_registry()
    assert any("'p0'" in note for note in caught.value.__notes__)


def test_a_plain_registry_reads_no_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(group: str) -> list[metadata.EntryPoint]:
        raise AssertionError("entry points read outside default_registry()")

    monkeypatch.setattr(metadata, "entry_points", refuse)
    assert LoaderRegistry().supported_types() == []


class NotesLoader(SlidesLoader):
    doc_type = "notes"
    extensions: tuple[str, ...] = (".txt",)


def test_the_later_loader_wins_a_shared_extension() -> None:
    registry = LoaderRegistry([TextLoader(), NotesLoader()])
    assert registry.for_document("a.txt", None).doc_type == "notes"
    registry.add(TextLoader())
    assert registry.for_document("a.txt", None).doc_type == "text"
    assert registry.supported_types() == ["notes", "text"]

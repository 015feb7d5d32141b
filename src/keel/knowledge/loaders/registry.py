"""Which loader reads a document: an explicit `doc_type` wins, else the file name's extension.

The longest matching extension wins, so `support.tickets.json` goes to the ticket loader. A name
with no extension at all (README, LICENSE; not a URL) is read as plain text; any other unknown extension is
refused rather than guessed, since reading a .docx as text only fails later with a vaguer reason.

Other packages add loaders through the `keel.loaders` entry-point group: each entry point is a
zero-argument callable returning a `Loader`. They are loaded by `default_registry()`, never at
import, and a plugin's loader replaces a built-in one of the same `doc_type` or extension.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata

from keel.errors import UnsupportedError
from keel.knowledge.loaders.base import Loader
from keel.knowledge.loaders.code import CodeLoader
from keel.knowledge.loaders.html import HtmlLoader
from keel.knowledge.loaders.markdown import MarkdownLoader
from keel.knowledge.loaders.pdf import PdfLoader
from keel.knowledge.loaders.text import TextLoader, file_name
from keel.knowledge.loaders.tickets import TicketLoader

ENTRY_POINT_GROUP = "keel.loaders"


class LoaderRegistry:
    def __init__(self, loaders: Iterable[Loader] = (), *, no_extension_type: str | None = "text") -> None:
        self._loaders: dict[str, Loader] = {}
        self._no_extension_type = no_extension_type
        for loader in loaders:
            self.add(loader)

    def add(self, loader: Loader) -> None:
        """Registers `loader`, replacing one of the same `doc_type`; later loaders win on extensions."""
        self._loaders.pop(loader.doc_type, None)
        self._loaders[loader.doc_type] = loader

    def supported_types(self) -> list[str]:
        return sorted(self._loaders)

    def for_document(self, source: str, doc_type: str | None = None) -> Loader:
        if doc_type:
            loader = self._loaders.get(doc_type.strip().lower())
            if loader is None:
                raise UnsupportedError(
                    f"Unsupported document type '{doc_type}'. {self._describe()}", param="doc_type"
                )
            return loader
        name = file_name(source).lower()
        matches = [
            (len(extension), order, loader)
            for order, loader in enumerate(self._loaders.values())
            for extension in loader.extensions
            if name.endswith(extension.lower())
        ]
        if matches:
            return max(matches, key=lambda match: match[:2])[2]
        bare_file = "://" not in source and "." not in name.lstrip(".")
        if bare_file and self._no_extension_type in self._loaders:
            return self._loaders[self._no_extension_type]
        raise UnsupportedError(
            f"Cannot tell the type of '{source}' from its name. {self._describe()} "
            "Pass doc_type to choose one.",
            param="doc_type",
        )

    def _describe(self) -> str:
        kinds = "; ".join(
            f"{doc_type} ({', '.join(self._loaders[doc_type].extensions) or 'by doc_type only'})"
            for doc_type in self.supported_types()
        )
        return f"Supported types: {kinds}."


def _plugin_loaders() -> list[Loader]:
    loaders: list[Loader] = []
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loader = entry_point.load()()
        except Exception as error:
            error.add_note(f"while loading the {ENTRY_POINT_GROUP} entry point '{entry_point.name}'")
            raise
        # Loader is a plain Protocol, so check its shape here rather than fail on first use.
        doc_type, extensions = getattr(loader, "doc_type", None), getattr(loader, "extensions", None)
        if (
            not isinstance(doc_type, str)
            or not isinstance(extensions, tuple)
            or not callable(getattr(loader, "load", None))
        ):
            raise TypeError(
                f"The {ENTRY_POINT_GROUP} entry point '{entry_point.name}' returned {loader!r}, "
                "not a Loader (doc_type: str, extensions: tuple, load())."
            )
        loaders.append(loader)
    return loaders


def default_registry() -> LoaderRegistry:
    """Every built-in loader, then the installed plugins' loaders."""
    built_in: list[Loader] = [
        MarkdownLoader(),
        HtmlLoader(),
        PdfLoader(),
        TextLoader(),
        CodeLoader(),
        TicketLoader(),
    ]
    return LoaderRegistry([*built_in, *_plugin_loaders()])

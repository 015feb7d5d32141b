"""The contract of an embedding backend the runtime builds from settings (local or remote), and the
registry that builds one by name.

An `EmbeddingModel` is an `EmbeddingProvider` that also loads on `warm_up`, knows its vector size before
it is loaded (the index table is sized by it) and reports the tokens each call read, so that every
embedding can be metered. Built-in backends: "local" (sentence-transformers in-process) and "openai"
(any OpenAI-compatible `/embeddings` endpoint). Other packages add backends through the
`keel.embedding_providers` entry-point group: each entry point is a callable taking
`(settings: LocalEmbeddingSettings, on_wait)` and returning an `EmbeddingModel`. They are read when
`build_embedding_model` runs, never at import, and a plugin replaces a built-in of the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from keel.config import LocalEmbeddingSettings
from keel.errors import InvalidRequestError
from keel.gateway.providers.base import EmbeddingProvider
from keel.gateway.providers.plugins import with_plugins

ENTRY_POINT_GROUP = "keel.embedding_providers"
# Called with the turn kind and the seconds a call waited for the model (metrics).
WaitObserver = Callable[[str, float], None]


@dataclass(frozen=True)
class Embedded:
    """Unit-length vectors, one row per text, and the tokens the model read to make them."""

    vectors: npt.NDArray[np.float32]
    tokens: int


class EmbeddingModel(EmbeddingProvider, Protocol):
    def warm_up(self) -> None: ...

    def declared_dimensions(self) -> int:
        """The vector size, without loading the model or calling the server when the settings say it."""
        ...

    def embed_with_usage(self, texts: list[str]) -> Embedded: ...

    async def aembed_with_usage(self, texts: list[str]) -> Embedded: ...


EmbeddingFactory = Callable[[LocalEmbeddingSettings, WaitObserver | None], EmbeddingModel]


def _local(settings: LocalEmbeddingSettings, on_wait: WaitObserver | None) -> EmbeddingModel:
    from keel.gateway.providers.local_embedding import LocalEmbeddingProvider

    return LocalEmbeddingProvider(
        settings.resolved_model_path(),
        batch_size=settings.batch_size,
        batch_tokens=settings.batch_tokens,
        bulk_nice=settings.bulk_nice,
        small_threads=settings.small_threads,
        on_wait=on_wait,
    )


def _openai(settings: LocalEmbeddingSettings, on_wait: WaitObserver | None) -> EmbeddingModel:
    from keel.gateway.providers.openai_embedding import OpenAICompatibleEmbeddingProvider

    return OpenAICompatibleEmbeddingProvider.from_settings(settings)


def embedding_factories() -> dict[str, EmbeddingFactory]:
    """The built-in backends, then every installed plugin's (a plugin wins a name it shares)."""
    return with_plugins(ENTRY_POINT_GROUP, {"local": _local, "openai": _openai})


def build_embedding_model(
    settings: LocalEmbeddingSettings, on_wait: WaitObserver | None = None
) -> EmbeddingModel:
    factories = embedding_factories()
    factory = factories.get(settings.provider)
    if factory is None:
        raise InvalidRequestError(
            f"Unknown embedding provider '{settings.provider}' (embedding.provider); "
            f"installed: {', '.join(sorted(factories))}."
        )
    return factory(settings, on_wait)

"""The composition root: builds Keel's services from Settings, once per process."""

from __future__ import annotations

from dataclasses import dataclass

from keel.config import Settings
from keel.gateway.providers.local import LocalChatProvider
from keel.gateway.providers.local_embedding import LocalEmbeddingProvider
from keel.gateway.service import Gateway
from keel.keys import KeyStore
from keel.store.engine import Database


@dataclass
class Runtime:
    settings: Settings
    database: Database
    keys: KeyStore
    chat_model: LocalChatProvider
    embedding_model: LocalEmbeddingProvider
    gateway: Gateway

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(settings.sqlalchemy_url)
        chat_model = LocalChatProvider(
            settings.chat.resolved_model_path(),
            n_ctx=settings.chat.n_ctx,
            n_threads=settings.chat.n_threads,
            default_max_tokens=settings.chat.default_max_tokens,
        )
        embedding_model = LocalEmbeddingProvider(
            settings.embedding.resolved_model_path(), batch_size=settings.embedding.batch_size
        )
        gateway = Gateway(
            chat_models={settings.chat.alias: chat_model},
            embedding_models={settings.embedding.alias: embedding_model},
        )
        return cls(
            settings=settings,
            database=database,
            keys=KeyStore(database),
            chat_model=chat_model,
            embedding_model=embedding_model,
            gateway=gateway,
        )

    def warm_up(self) -> None:
        """Load both models (blocking)."""
        self.chat_model.warm_up()
        self.embedding_model.warm_up()

    def close(self) -> None:
        self.database.dispose()

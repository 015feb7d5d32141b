"""One Settings object, read once from `keel.toml` and `KEEL_*` environment variables.

Every setting is documented in this package, beside its type: the models' (`models.py`), the knowledge
base's (`knowledge.py`), the gateway's (`gateway.py`), the copilot's, observability's, retention's, the
review queue's and the request limits (`service.py`), evaluation's and drift's (`quality.py`), the
guardrails' (`guard.py`) and prompt management's (`prompts.py`). The embedded defaults need no file at
all. Nested settings take a double underscore in the environment: `KEEL_CHAT__N_CTX=8192`. The file
is `./keel.toml`, or the path in `KEEL_CONFIG_FILE`.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from keel.config.gateway import (
    AliasSettings,
    BreakerSettings,
    BudgetSettings,
    CacheSettings,
    ComplexitySettings,
    DeploymentSettings,
    GatewaySettings,
    RateLimitSettings,
)
from keel.config.guard import GuardSettings
from keel.config.knowledge import ChunkingSettings, KnowledgeSettings, RetrievalSettings
from keel.config.models import (
    LocalChatSettings,
    LocalEmbeddingSettings,
    RetrySettings,
    packaged_chat_model,
    packaged_embedding_model,
)
from keel.config.prompts import CanarySettings, PromptSettings
from keel.config.quality import (
    DRIFT_MONITOR_DEFAULTS,
    DriftMonitors,
    DriftMonitorSettings,
    DriftSettings,
    EvalSettings,
)
from keel.config.service import (
    CopilotSettings,
    LimitSettings,
    ObserveSettings,
    RetentionSettings,
    ReviewSettings,
)

__all__ = [
    "DRIFT_MONITOR_DEFAULTS",
    "AliasSettings",
    "BreakerSettings",
    "BudgetSettings",
    "CacheSettings",
    "CanarySettings",
    "ChunkingSettings",
    "ComplexitySettings",
    "CopilotSettings",
    "DeploymentSettings",
    "DriftMonitorSettings",
    "DriftMonitors",
    "DriftSettings",
    "EvalSettings",
    "GatewaySettings",
    "GuardSettings",
    "KnowledgeSettings",
    "LimitSettings",
    "LocalChatSettings",
    "LocalEmbeddingSettings",
    "ObserveSettings",
    "PromptSettings",
    "RateLimitSettings",
    "RetentionSettings",
    "RetrievalSettings",
    "RetrySettings",
    "ReviewSettings",
    "Settings",
    "packaged_chat_model",
    "packaged_embedding_model",
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KEEL_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    # Holds the SQLite database and caches; give each instance its own to run several side by side.
    data_dir: Path = Path(".keel")
    # None: SQLite at <data_dir>/keel.db. Scale-out: postgresql+psycopg://user@host/db (with pgvector).
    database_url: str | None = None
    # None: queue, rate limits and caches in this process / SQLite. Scale-out: redis://host:6379/0,
    # shared by every replica and worker.
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # On SIGTERM, requests in flight get this long to finish; then they are cancelled, and their model
    # work stops after the batch or token in hand.
    shutdown_grace_s: int = Field(5, ge=1, le=600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # JSON lines for machines; False prints readable lines for a terminal.
    log_json: bool = True
    # Signs dashboard sessions; replicas behind one load balancer must share it. None: a random secret
    # kept in <data_dir>/ui-secret.
    ui_secret: str | None = None
    # The server the `keel` commands that need the models (chat, ask, search, ingest) talk to, with the
    # key in `api_key` (KEEL_API_KEY); without a key, or when nothing answers there, they load the models
    # in their own process. None: http://<host>:<port>.
    url: str | None = None
    api_key: SecretStr | None = None
    # Load the models when the server starts (False: on first use; useful for CLI commands that need none).
    preload_models: bool = True
    # `keel serve` also consumes background jobs (ingestion, periodic upkeep): the embedded tier needs
    # it. With Redis and `keel worker`s, False keeps API replicas for requests only.
    serve_jobs: bool = True
    # A job whose consumer has not beaten its heartbeat (every quarter of this) for this long has lost
    # it (kill -9, a lost host): its claimed documents go back to pending for any other consumer.
    job_stale_after_s: float = Field(60.0, ge=4)
    chat: LocalChatSettings = LocalChatSettings()
    embedding: LocalEmbeddingSettings = LocalEmbeddingSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    gateway: GatewaySettings = GatewaySettings()
    copilot: CopilotSettings = CopilotSettings()
    observe: ObserveSettings = ObserveSettings()
    retention: RetentionSettings = RetentionSettings()
    guard: GuardSettings = GuardSettings()
    evals: EvalSettings = EvalSettings()
    limits: LimitSettings = LimitSettings()
    review: ReviewSettings = ReviewSettings()
    prompts: PromptSettings = PromptSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("KEEL_CONFIG_FILE", "keel.toml"))
        # Precedence: explicit arguments, then the environment, then the file.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file))

    @cached_property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'keel.db').resolve()}"

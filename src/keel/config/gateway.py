"""Settings of the gateway: deployments and aliases, routing, breakers, rate limits, budgets, cache."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from keel.config.models import RetrySettings


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

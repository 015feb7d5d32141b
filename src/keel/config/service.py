"""Settings of the copilot, observability, retention, the review queue and the request limits."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field, FilePath


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

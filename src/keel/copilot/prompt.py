"""The reply prompt, versioned: sources numbered, the customer's context, and a bounded JSON schema
(small models loop inside unbounded strings)."""

from __future__ import annotations

import json
from typing import Any

from keel.knowledge.retrieval import SearchResult

PROMPT_VERSION = "support-reply@1"

SYSTEM = (
    "You are the customer support assistant of {company}. Answer the customer's question using only the "
    "numbered sources below. Say which sources you used by their numbers. If the sources do not answer the "
    "question, say that you do not know and that a colleague will follow up. Answer in two to four short "
    "sentences. Never invent prices, dates, periods or order details."
)


def reply_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "reply": {"type": "string", "minLength": 1, "maxLength": 600},
            "sources": {
                "type": "array",
                # No maximum: a number past the sources is dropped by the pipeline, while a schema error
                # would throw the whole answer away.
                "items": {"type": "integer", "minimum": 1},
                "maxItems": 3,
            },
        },
        "required": ["reply", "sources"],
        "additionalProperties": False,
    }


def render_messages(
    company: str,
    question: str,
    sources: list[SearchResult],
    customer: dict[str, Any] | None,
    orders: list[dict[str, Any]],
    history: list[tuple[str, str]],
) -> list[dict[str, str]]:
    numbered = "\n".join(
        f"[{i}] {s.title}{' > ' + s.heading_path if s.heading_path else ''}: {s.text}"
        for i, s in enumerate(sources, start=1)
    )
    parts = [f"Sources:\n{numbered or '(none)'}"]
    if customer:
        parts.append(f"Customer: {json.dumps(customer)}")
    if orders:
        parts.append(f"Their orders: {json.dumps(orders)}")
    if history:
        parts.append("Conversation so far:\n" + "\n".join(f"{role}: {text}" for role, text in history))
    parts.append(f"Question: {question}")
    return [
        {"role": "system", "content": SYSTEM.format(company=company)},
        {"role": "user", "content": "\n\n".join(parts)},
    ]

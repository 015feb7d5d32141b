"""The reply prompt: shipped as a prompt file (data/support-reply.yaml) that seeds the prompt registry,
and the variables the pipeline fills it with. Sources are numbered; the output schema is bounded (small
models loop inside unbounded strings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keel.knowledge.retrieval import SearchResult

SHIPPED_PROMPT = Path(__file__).parent / "data" / "support-reply.yaml"
# The shipped file as the registry numbers it when it seeds a tenant; the version a reply was actually
# given is resolved from the registry's `production` label and recorded with every call.
PROMPT_VERSION = "support-reply@1"


def reply_variables(
    company: str,
    question: str,
    sources: list[SearchResult],
    customer: dict[str, Any] | None,
    orders: list[dict[str, Any]],
    history: list[tuple[str, str]],
) -> dict[str, Any]:
    """The variables of the reply prompt (its JSON schema is in the shipped file)."""
    return {
        "company": company,
        "question": question,
        "sources": [{"title": s.title, "heading_path": s.heading_path, "text": s.text} for s in sources],
        "customer": customer,
        "orders": orders,
        "history": [{"role": role, "text": text} for role, text in history],
    }

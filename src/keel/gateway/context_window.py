"""Does the prompt fit any deployment of the chain? Checked before the rate limit and the guardrails,
so a prompt no model could read costs a cheap 400 instead of the work that would come before it.

The count is a lower bound, never an estimate: a prompt is refused only when it certainly does not
fit. A provider that can tokenize (`TokenCounter`, the local model) counts with its own tokenizer, except
for a text whose bytes alone show it is past the window (no token is longer than the vocabulary's
longest): so a long text costs at most the window times that many bytes of tokenizing. Any other
provider is held to a floor of UTF-8 bytes / `MAX_TOKEN_BYTES`; the exact check is then the upstream's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from keel.gateway.deployments import Deployment
from keel.gateway.protocol import ChatMessage
from keel.gateway.providers.base import ContextWindowExceeded

# No token of a common vocabulary is longer than this many bytes (the local GGUF's longest is 32; prose
# runs at about four bytes a token): a floor that never refuses a prompt its model would read.
MAX_TOKEN_BYTES = 32


@runtime_checkable
class TokenCounter(Protocol):
    """A chat provider that counts tokens with its model's own tokenizer."""

    @property
    def context_window(self) -> int: ...

    def count_tokens_up_to(self, text: str, limit: int) -> int:
        """A lower bound on the text's tokens that reaches `limit` whenever the text has that many."""
        ...


def byte_floor(text: str) -> int:
    return len(text.encode()) // MAX_TOKEN_BYTES


def prompt_floor(deployment: Deployment, messages: Sequence[ChatMessage]) -> tuple[int, int]:
    """At least how many tokens the messages make for this deployment, and its context window."""
    provider = deployment.provider
    if isinstance(provider, TokenCounter):
        window = provider.context_window
        counted = 0
        for message in messages:
            counted += provider.count_tokens_up_to(message.text(), window - counted)
            if counted >= window:
                break
        return counted, window
    return sum(byte_floor(m.text()) for m in messages), deployment.settings.context_window


def check_context_window(alias: str, chain: Sequence[Deployment], messages: Sequence[ChatMessage]) -> None:
    """Raises ContextWindowExceeded when no deployment of the chain can read the prompt."""
    floors = [prompt_floor(deployment, messages) for deployment in chain]
    if not floors or any(tokens < window for tokens, window in floors):
        return
    tokens, window = max(floors, key=lambda floor: floor[1])
    raise ContextWindowExceeded(
        f"The prompt has at least {tokens} tokens; the largest context window of '{alias}' is {window}."
    )

"""How many tokens a rendered prompt may take on a model alias, and how many it takes, for the overflow
policy. The alias's smallest context window counts (the call may be routed to any of its deployments).

Counting is cheap in the common case: a bound that no tokenizer exceeds (UTF-8 bytes plus room for the
chat template) decides "fits" without tokenizing; only a prompt near the limit is tokenized, with the
model's own tokenizer where the deployment has one, else estimated at three characters a token.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from keel.config import AliasSettings
from keel.prompts.templates import Message, TokenCount

# Tokens the chat template adds around each message (role markers, separators).
PER_MESSAGE = 16
# Characters per token for a model whose tokenizer Keel cannot run: lower than English's ~4, so the
# estimate errs towards dropping one more passage rather than overflowing.
CHARS_PER_TOKEN = 3.0


class _Settings(Protocol):
    @property
    def context_window(self) -> int: ...


class _Deployment(Protocol):
    @property
    def settings(self) -> _Settings: ...

    @property
    def provider(self) -> object: ...


@dataclass(frozen=True)
class Budget:
    # Tokens the prompt may take: the context window less the completion's allowance.
    tokens: int
    count: TokenCount


def upper_bound(messages: Sequence[Message]) -> int:
    return sum(len(m["content"].encode()) for m in messages) + PER_MESSAGE * len(messages)


def counter(count_text: Callable[[str], int] | None) -> TokenCount:
    def count(messages: Sequence[Message]) -> int:
        if count_text is not None:
            return sum(count_text(m["content"]) for m in messages) + PER_MESSAGE * len(messages)
        chars = sum(len(m["content"]) for m in messages)
        return math.ceil(chars / CHARS_PER_TOKEN) + PER_MESSAGE * len(messages)

    return count


class ContextBudgets:
    """Reads the gateway's aliases and deployments (as configured; nothing is called)."""

    def __init__(self, aliases: Mapping[str, AliasSettings], deployments: Mapping[str, _Deployment]) -> None:
        self._aliases = aliases
        self._deployments = deployments

    def budget(self, alias: str, completion_tokens: int) -> Budget | None:
        """None for an alias the gateway does not know (it answers that itself, with a 404)."""
        if alias not in self._aliases:
            return None
        chain = [self._deployments[d] for d in self._aliases[alias].deployments if d in self._deployments]
        if not chain:
            return None
        smallest = min(chain, key=lambda d: d.settings.context_window)
        count_text = getattr(smallest.provider, "count_tokens", None)
        exact = counter(count_text if callable(count_text) else None)
        tokens = smallest.settings.context_window - completion_tokens

        def count(messages: Sequence[Message]) -> int:
            bound = upper_bound(messages)
            # Within the budget by a bound no tokenizer exceeds: it fits, whatever the exact count.
            return bound if bound <= tokens else exact(messages)

        return Budget(tokens, count)

"""Routing: the order in which an alias's deployments are tried, by the alias's strategy.

Every strategy returns all the alias's deployments, best first: the ones after the first are the
fallbacks within the alias. Deployments whose breaker is open are left out when the call is made.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from keel.config import AliasSettings
from keel.gateway.deployments import Deployment
from keel.gateway.protocol import ChatMessage

# One generator for every call: seeding a new one reads the OS's entropy, a cost per request.
_RNG = random.Random()


def estimate_tokens(messages: Sequence[ChatMessage]) -> int:
    """About four characters per token: cheap, and close enough to route and to budget by."""
    return sum(len(m.text()) for m in messages) // 4 + 4 * len(messages)


def prompt_token_bound(messages: Sequence[ChatMessage]) -> int:
    """An upper bound on the prompt's tokens: no tokenizer makes more tokens than UTF-8 bytes, plus room
    for the chat template around each message. Budgets reserve by it, so an estimate can never overspend."""
    return sum(len(m.text().encode()) for m in messages) + 16 * len(messages)


def is_hard(messages: Sequence[ChatMessage], alias: AliasSettings) -> bool:
    last_user = next((m.text().lower() for m in reversed(messages) if m.role == "user"), "")
    too_long = estimate_tokens(messages) > alias.complexity.long_prompt_tokens
    return too_long or any(word in last_user for word in alias.complexity.hard_words)


def order_deployments(
    alias: AliasSettings,
    deployments: Sequence[Deployment],
    messages: Sequence[ChatMessage],
    rng: random.Random | None = None,
) -> list[Deployment]:
    rng = rng or _RNG
    by_priority = sorted(deployments, key=lambda d: -d.settings.priority)
    if alias.strategy == "lowest_cost":
        return sorted(
            deployments,
            key=lambda d: (d.settings.input_price + d.settings.output_price, -d.settings.priority),
        )
    if alias.strategy == "lowest_latency":
        # Unmeasured deployments go first, so each gets measured.
        return sorted(deployments, key=lambda d: (d.latency_s is not None, d.latency_s or 0.0))
    if alias.strategy == "complexity":
        wanted = "large" if is_hard(messages, alias) else "small"
        return sorted(by_priority, key=lambda d: d.settings.size != wanted)
    # weighted: the first by weight at random, the others by priority.
    first = rng.choices(by_priority, weights=[d.settings.weight for d in by_priority])[0]
    return [first, *(d for d in by_priority if d is not first)]

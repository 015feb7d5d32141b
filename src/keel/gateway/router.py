"""Routing: the order in which an alias's deployments are tried, by the alias's strategy.

Every strategy returns all the alias's deployments, best first: the ones after the first are the
fallbacks within the alias. Deployments whose breaker is open are left out when the call is made.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from keel.config import AliasSettings
from keel.gateway.deployments import Deployment
from keel.gateway.protocol import ChatMessage, Tool

# One generator for every call: seeding a new one reads the OS's entropy, a cost per request.
_RNG = random.Random()


# Room for a chat template's instructions around the tool definitions (Qwen's and Llama 3's take a few
# hundred bytes, Keel's own for a template without tools less).
_TOOLS_FRAME_BYTES = 1024


def estimate_tokens(messages: Sequence[ChatMessage], tools: Sequence[Tool] = ()) -> int:
    """About four characters per token: cheap, and close enough to route and to budget by. The tools
    offered and earlier turns' tool calls are part of the prompt too."""
    chars = sum(len(m.text()) for m in messages) + sum(len(text) for text in _tool_texts(messages, tools))
    return (chars + (_TOOLS_FRAME_BYTES if tools else 0)) // 4 + 4 * len(messages)


def prompt_token_bound(messages: Sequence[ChatMessage], tools: Sequence[Tool] = ()) -> int:
    """An upper bound on the prompt's tokens: no tokenizer makes more tokens than UTF-8 bytes, plus room
    for the chat template around each message and the tools. Budgets reserve by it, so an estimate can
    never overspend."""
    tool_bytes = sum(len(text.encode()) for text in _tool_texts(messages, tools))
    frame = _TOOLS_FRAME_BYTES if tools else 0
    return sum(len(m.text().encode()) for m in messages) + tool_bytes + frame + 16 * len(messages)


def _tool_texts(messages: Sequence[ChatMessage], tools: Sequence[Tool]) -> list[str]:
    """What of the prompt is not message text: the tools' definitions and earlier turns' calls, as JSON."""
    texts = [tool.model_dump_json(exclude_none=True) for tool in tools]
    return texts + [call.model_dump_json() for m in messages for call in m.tool_calls or ()]


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

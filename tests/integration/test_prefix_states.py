"""Prompt-prefix states on the real local model: a prompt whose context last ran another prompt loads the
kept state of its system prompt instead of evaluating it again, and writes the same text as without."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from keel.config import packaged_chat_model
from keel.gateway.protocol import ChatMessage
from keel.gateway.providers.base import GenerationRequest
from keel.gateway.providers.llama_steps import PREFILL_CHUNK
from keel.gateway.providers.local import LocalChatProvider

SYSTEM = (
    "You are the customer support assistant of a bicycle shop in Leipzig. Answer the customer's question "
    "using only what you know about the shop: opening hours are Monday to Saturday, 9:00 to 18:00; "
    "repairs take two to three working days; a basic service costs 49 euros and includes brakes, gears "
    "and tyre pressure; rental bikes cost 15 euros a day. Answer in one or two short sentences and never "
    "invent prices, dates or order details."
)
QUESTIONS = [
    "I bought a touring bike from you last spring and the rear brake squeaks whenever it rains; can you "
    "service it this week, and how much would that cost me?",
    "My daughter's bike needs new tyres and the gears skip on the smallest sprocket; could you fit the "
    "tyres and adjust the gears on Saturday morning, and what would it cost?",
    "We are four friends visiting Leipzig next month and would like to rent bikes for three days; do you "
    "have four bikes free, and is there a discount for a group?",
]
OTHER_SYSTEM = "You translate English into German. Reply with the translation only."


def provider(prefix_cache_mb: int) -> LocalChatProvider:
    # One context: each request lands on the context the previous one left behind.
    model = LocalChatProvider(
        packaged_chat_model(),
        n_ctx=2048,
        n_threads=None,
        default_max_tokens=24,
        parallel=1,
        prefix_cache_mb=prefix_cache_mb,
    )
    model.warm_up()
    return model


def counted(model: LocalChatProvider) -> list[int]:
    """Tokens each `eval` of the model's context is given (prompt chunks, then one per generated token)."""
    evaluated: list[int] = []
    for context in model._idle:
        original: Callable[[Sequence[int]], Any] = context.eval

        def counting(tokens: Sequence[int], original: Callable[[Sequence[int]], Any] = original) -> Any:
            evaluated.append(len(tokens))
            return original(tokens)

        context.eval = counting
    return evaluated


def ask(model: LocalChatProvider, system: str, question: str, max_tokens: int = 24) -> str:
    request = GenerationRequest(
        messages=[ChatMessage(role="system", content=system), ChatMessage(role="user", content=question)],
        max_tokens=max_tokens,
        temperature=0.0,
        seed=7,
    )
    return asyncio.run(model.complete(request)).text


def third_reply(model: LocalChatProvider) -> tuple[str, int]:
    """The text of a question after one with the same system prompt and one with another, and the tokens
    evaluated for it."""
    evaluated = counted(model)
    ask(model, SYSTEM, "When are you open on Saturday?")
    ask(model, OTHER_SYSTEM, "The bike is ready.")
    evaluated.clear()
    text = ask(model, SYSTEM, "How much does a basic service cost?")
    return text, sum(evaluated)


def test_a_kept_prefix_gives_the_same_text_with_fewer_tokens_evaluated() -> None:
    without_text, without_tokens = third_reply(provider(0))
    cached = provider(64)
    with_text, with_tokens = third_reply(cached)

    assert with_text == without_text and with_text.strip()
    assert cached.prefixes is not None and cached.prefixes.stats.loads == 1
    system_tokens = cached.count_tokens(SYSTEM)
    # At least the system prompt's whole chunks were loaded, not evaluated.
    saved = without_tokens - with_tokens
    assert saved == cached.prefixes.stats.tokens_loaded
    assert saved >= system_tokens - system_tokens % PREFILL_CHUNK - PREFILL_CHUNK


def test_states_stay_within_their_capacity() -> None:
    # Each question adds whole chunks past the system prompt, so each prompt keeps a state of its own
    # (~4.5 MB; the translations' ~1 MB); 6 MB holds one of the long ones.
    model = provider(6)
    assert model.prefixes is not None
    for question in QUESTIONS:
        ask(model, SYSTEM, question, max_tokens=4)
        ask(model, OTHER_SYSTEM, question, max_tokens=4)
    assert 0 < model.prefixes.size_bytes <= 6 * 2**20
    # Every prompt was kept once, and the older ones made room for the newer.
    assert model.prefixes.stats.saves == 2 * len(QUESTIONS)
    assert model.prefixes.stats.evictions >= len(QUESTIONS)

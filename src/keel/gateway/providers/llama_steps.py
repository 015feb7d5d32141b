"""Generation in steps, so that generations on different llama contexts interleave on one model.

A step is one chunk of the prompt (`PREFILL_CHUNK` tokens) or one generated token. A generation holds a
turn at the model (`turns.py`) and hands it on between two steps whenever a waiting request is owed it:
a newcomer's short request runs ahead of a long one in progress, and two long generations alternate. No
step is long, so no request holds the model for more than one of them while another is owed it. The
caller's cancellation is checked at every step.

The prompt's chunks start at fixed positions (multiples of `PREFILL_CHUNK`), and a context reuses only
the whole chunks it evaluated for an earlier prompt with the same tokens: a prompt is then evaluated in
the same batches whatever the context held before, so the same request gives the same logits bit for bit
(with `temperature: 0` or a `seed`, the same text). Chunk boundaries that moved with the reused prefix, or
reused tokens that were generated one at a time, would change the floating-point sums and, now and then,
the chosen token.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.gateway.providers.turns import ModelTurns

if TYPE_CHECKING:
    from keel.gateway.providers.llama_prefixes import PrefixStates

# About as long as one generated token on a small model on two cores: a prompt's chunk delays a waiting
# generation by about one token's time. Larger chunks read a prompt a little faster when nobody waits.
PREFILL_CHUNK = 32


def cached_prefix(cached: Sequence[int], tokens: Sequence[int]) -> int:
    """How many leading tokens of `tokens` the context already holds (from its previous request)."""
    length = 0
    for held, wanted in zip(cached, tokens, strict=False):
        if held != wanted:
            break
        length += 1
    return length


@dataclass
class Prefilled:
    """How many leading tokens a context holds that were evaluated as whole, aligned prompt chunks."""

    tokens: int = 0


def reusable_prefix(cached: Sequence[int], prefilled: int, tokens: Sequence[int]) -> int:
    """The leading tokens of `tokens` the context can keep: whole aligned chunks it prefilled earlier."""
    shared = cached_prefix(cached[:prefilled], tokens)
    return shared - shared % PREFILL_CHUNK


def generate_in_steps(
    llama: Any,
    prompt_tokens: list[int],
    options: dict[str, Any],
    steps: ModelTurns,
    cancelled: threading.Event,
    prefilled: Prefilled | None = None,
    prefixes: PrefixStates | None = None,
) -> Iterator[dict[str, Any]]:
    """llama-cpp-python's streamed completion chunks for the prompt, each produced during one step.

    All but the last prompt token are evaluated here, in chunks (the context keeps the prefix it shares
    with its previous prompt); llama-cpp-python finds them in the context and evaluates only the last,
    then samples. Each `next()` on its stream evaluates one token and samples the next. With `prefixes`,
    a context that holds less of the prompt than a kept state loads that state (`llama_prefixes.py`), and
    the prompt's whole chunks are kept for later prompts."""
    state = prefilled if prefilled is not None else Prefilled()
    held = llama.input_ids[: llama.n_tokens]
    position = reusable_prefix(held, state.tokens, prompt_tokens[:-1])
    # One turn across the steps, handed on at a checkpoint before each step when someone waiting is owed
    # the model (`turns.py`); the caller's consumption of a yielded chunk must not block.
    with steps.acquire() as turn:
        if prefixes is not None:
            position = prefixes.load(llama, prompt_tokens[:-1], position)
        llama.n_tokens = position  # what follows is dropped from the context by the next evaluation
        state.tokens = position
        loaded = position
        for start in range(position, len(prompt_tokens) - 1, PREFILL_CHUNK):
            end = min(start + PREFILL_CHUNK, len(prompt_tokens) - 1)
            if start > position:
                turn.checkpoint()
            if cancelled.is_set():
                return
            llama.eval(prompt_tokens[start:end])
            if end - start == PREFILL_CHUNK:
                state.tokens = end  # a partial last chunk is evaluated again by a longer prompt
        if prefixes is not None and state.tokens > loaded:
            prefixes.save(llama, prompt_tokens[: state.tokens])
        chunks = llama.create_completion(prompt=prompt_tokens, stream=True, **options)
        try:
            while True:
                turn.checkpoint()
                if cancelled.is_set():
                    return
                chunk = next(chunks, None)
                if chunk is None:
                    return
                yield chunk
        finally:
            chunks.close()

"""Generation in steps, so that generations on different llama contexts interleave on one model.

A step is one chunk of the prompt (`PREFILL_CHUNK` tokens) or one generated token, each run during a
turn of its own (`turns.py`): while a long prompt is read, another request's tokens come between its
chunks, and two generations alternate token by token. No step is long, so no request holds the model
for more than one of them while another waits. The caller's cancellation is checked at every step.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from keel.gateway.providers.turns import ModelTurns

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


def generate_in_steps(
    llama: Any,
    prompt_tokens: list[int],
    options: dict[str, Any],
    steps: ModelTurns,
    cancelled: threading.Event,
) -> Iterator[dict[str, Any]]:
    """llama-cpp-python's streamed completion chunks for the prompt, each produced during one step.

    All but the last prompt token are evaluated here, in chunks (the context keeps the prefix it shares
    with its previous prompt); llama-cpp-python finds them in the context and evaluates only the last,
    then samples. Each `next()` on its stream evaluates one token and samples the next."""
    held = llama.input_ids[: llama.n_tokens]
    position = cached_prefix(held, prompt_tokens[:-1])
    llama.n_tokens = position  # what follows is dropped from the context by the next evaluation
    for start in range(position, len(prompt_tokens) - 1, PREFILL_CHUNK):
        with steps.acquire():
            if cancelled.is_set():
                return
            llama.eval(prompt_tokens[start : min(start + PREFILL_CHUNK, len(prompt_tokens) - 1)])
    chunks = llama.create_completion(prompt=prompt_tokens, stream=True, **options)
    try:
        while True:
            with steps.acquire():
                if cancelled.is_set():
                    return
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk
    finally:
        chunks.close()

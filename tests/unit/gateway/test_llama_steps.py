"""The local model's prompt is evaluated in the same batches whatever its context held before: chunks at
fixed positions, and only whole chunks prefilled earlier are reused (the basis of reproducible output)."""

from __future__ import annotations

import threading
from typing import Any

from keel.gateway.providers.llama_steps import PREFILL_CHUNK, Prefilled, generate_in_steps
from keel.gateway.providers.turns import ModelTurns


class RecordingContext:
    """Stands in for a llama context: records the batches it evaluates at their positions, then streams
    one generated token after evaluating the prompt's last token, as llama-cpp-python does."""

    def __init__(self) -> None:
        self.input_ids: list[int] = []
        self.n_tokens = 0
        self.batches: list[tuple[int, int]] = []

    def eval(self, tokens: list[int]) -> None:
        del self.input_ids[self.n_tokens :]
        self.batches.append((self.n_tokens, self.n_tokens + len(tokens)))
        self.input_ids.extend(tokens)
        self.n_tokens += len(tokens)

    def create_completion(self, prompt: list[int], stream: bool, **_: Any) -> Any:
        assert self.input_ids[: self.n_tokens] == prompt[: self.n_tokens]
        self.eval(prompt[self.n_tokens :])
        self.eval([7])  # a generated token, evaluated on its own
        yield {"choices": [{"text": "x", "finish_reason": "stop"}]}


def batches_for(context: RecordingContext, prefilled: Prefilled, prompt: list[int]) -> list[tuple[int, int]]:
    context.batches = []
    list(generate_in_steps(context, prompt, {}, ModelTurns(1), threading.Event(), prefilled))
    return context.batches


def test_a_prompt_is_evaluated_in_the_same_batches_after_any_other_prompt() -> None:
    shared = list(range(100, 100 + 2 * PREFILL_CHUNK + 5))
    first = [*shared, 1, 2, 3]
    other = [*shared, 9, 9, 9, 9, 9, 9]
    fresh = RecordingContext()
    alone = batches_for(fresh, Prefilled(), first)

    context, prefilled = RecordingContext(), Prefilled()
    batches_for(context, prefilled, other)
    again = batches_for(context, prefilled, first)
    # Only whole chunks are kept, and the rest is evaluated from the same boundaries as on a fresh context.
    assert again == [b for b in alone if b[0] >= 2 * PREFILL_CHUNK]
    assert {b[0] % PREFILL_CHUNK for b in again[:-2]} == {0}


def test_generated_tokens_are_never_reused_as_prompt() -> None:
    # A prompt that continues the previous one with the token generated after it: that token was
    # evaluated alone, so the prompt evaluates it again, in its chunk.
    prompt = list(range(PREFILL_CHUNK - 1))
    context, prefilled = RecordingContext(), Prefilled()
    batches_for(context, prefilled, prompt)
    assert prefilled.tokens == 0
    follow_up = [*prompt, 7, 8, 9]
    assert batches_for(context, prefilled, follow_up)[0] == (0, PREFILL_CHUNK)
    assert prefilled.tokens == PREFILL_CHUNK

"""Reproducible generations on the real local model: `temperature: 0`, or a `seed`, gives the same text for
the same request whatever the context held before (the prefix a context keeps from its last request)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from keel.config import Settings
from keel.gateway.protocol import ChatMessage
from keel.gateway.providers.base import GenerationRequest
from keel.gateway.providers.local import LocalChatProvider

SYSTEM = "You are a concise assistant for a bicycle shop. Answer in one or two sentences."
FIRST = "What should I check before a long ride?"
SECOND = "Which tyre pressure suits a city bike, and how often should I pump the tyres?"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalChatProvider]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("keel-data"))
    # One context: every request lands on the context the previous one left behind.
    provider = LocalChatProvider(
        Path(settings.chat.resolved_model_path()),
        n_ctx=settings.chat.n_ctx,
        n_threads=settings.chat.n_threads,
        default_max_tokens=32,
        parallel=1,
    )
    provider.warm_up()
    yield provider


def ask(model: LocalChatProvider, question: str, **options: object) -> str:
    request = GenerationRequest(
        messages=[ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content=question)],
        max_tokens=32,
        **options,  # type: ignore[arg-type]
    )
    return asyncio.run(model.complete(request)).text


def test_temperature_zero_gives_the_same_text_after_other_requests(model: LocalChatProvider) -> None:
    first = ask(model, FIRST, temperature=0.0)
    # The second request shares the system prompt with the first: the context keeps that prefix.
    ask(model, SECOND, temperature=0.0)
    ask(model, FIRST + " I ride on gravel.", temperature=0.0)
    assert ask(model, FIRST, temperature=0.0) == first
    assert first.strip()


def test_a_seed_gives_the_same_sampled_text_after_other_requests(model: LocalChatProvider) -> None:
    first = ask(model, FIRST, temperature=1.0, seed=1234)
    ask(model, SECOND, temperature=1.0)
    ask(model, FIRST, temperature=1.0, seed=99)
    assert ask(model, FIRST, temperature=1.0, seed=1234) == first
    # The seed decides the sample: across a handful of seeds, not every text is the same.
    assert (
        ask(model, FIRST, temperature=1.0, seed=1) != first
        or ask(model, FIRST, temperature=1.0, seed=2) != first
    )

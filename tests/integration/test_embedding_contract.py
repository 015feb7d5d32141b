"""One contract for every embedding model the runtime can be built with: the same tests run on the local
sentence-transformers model and on the OpenAI-compatible provider, the latter over real HTTP against
Keel's own `/v1/embeddings` (served by uvicorn from the session's app) as an inference server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from fastapi.testclient import TestClient

from keel.config import LocalEmbeddingSettings
from keel.gateway.providers.embedding import EmbeddingModel, build_embedding_model
from keel.runtime import Runtime
from tests.integration.conftest import Keys
from tests.support.served import serving

TEXTS = [
    "My battery will not charge.",
    "The battery does not charge any more.",
    "What is the capital of Peru?",
]


@contextmanager
def keel_as_inference_server(
    client: TestClient, keys: Keys, monkeypatch: pytest.MonkeyPatch, batch_size: int = 32
) -> Iterator[EmbeddingModel]:
    """The OpenAI-compatible provider, built from settings, against the session's app over real HTTP."""
    monkeypatch.setenv("KEEL_TEST_EMBEDDING_KEY", keys.app)
    with serving(client.app, "Keel's server") as port:
        yield build_embedding_model(
            LocalEmbeddingSettings(
                provider="openai",
                base_url=f"http://127.0.0.1:{port}/v1",
                model="keel-embed",
                api_key_env="KEEL_TEST_EMBEDDING_KEY",
                batch_size=batch_size,
            )
        )


@pytest.fixture(params=["local", "openai"])
def model(
    request: pytest.FixtureRequest,
    runtime: Runtime,
    client: TestClient,
    keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[EmbeddingModel]:
    if request.param == "local":
        yield runtime.embedding_model
        return
    # Batches of two: a call of three texts takes two requests.
    with keel_as_inference_server(client, keys, monkeypatch, batch_size=2) as remote:
        yield remote


def test_one_unit_vector_per_text_of_the_declared_size(model: EmbeddingModel) -> None:
    vectors = model.embed(TEXTS)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(TEXTS), model.dimensions) == (len(TEXTS), model.declared_dimensions())
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_order_and_batching_do_not_change_a_texts_vector(model: EmbeddingModel) -> None:
    together = model.embed(TEXTS)
    alone = np.stack([model.embed([text])[0] for text in reversed(TEXTS)])[::-1]
    assert np.allclose(together, alone, atol=1e-4)


def test_meaning_decides_closeness(model: EmbeddingModel) -> None:
    charge, charge_again, peru = model.embed(TEXTS)
    assert float(charge @ charge_again) > float(charge @ peru) + 0.3


def test_async_calls_agree_with_sync_ones(model: EmbeddingModel) -> None:
    async def both() -> tuple[np.ndarray, int]:
        vectors = await model.aembed(TEXTS)
        return vectors, await model.acount_tokens(TEXTS)

    vectors, tokens = asyncio.run(both())
    assert np.allclose(vectors, model.embed(TEXTS), atol=1e-4)
    assert tokens == model.embed_with_usage(TEXTS).tokens


def test_usage_counts_the_tokens_read(model: EmbeddingModel) -> None:
    short = model.embed_with_usage(["Hi."])
    longer = model.embed_with_usage(["Hi.", "The chain needs oil every two hundred kilometres in the rain."])
    assert 0 < short.tokens < longer.tokens
    assert np.allclose(short.vectors[0], longer.vectors[0], atol=1e-4)


def test_input_token_counts_bound_each_text(model: EmbeddingModel) -> None:
    counts = asyncio.run(model.acount_input_tokens(TEXTS))
    assert len(counts) == len(TEXTS)
    assert all(count >= 4 for count in counts)


def test_no_texts_give_an_empty_matrix(model: EmbeddingModel) -> None:
    assert model.embed([]).shape == (0, model.dimensions)
    assert model.embed_with_usage([]).tokens == 0


def test_the_model_id_names_the_weights(model: EmbeddingModel) -> None:
    assert model.model_id and model.model_id == model.model_id
    assert model.is_ready


def test_an_inference_server_running_the_same_weights_gives_the_same_vectors(
    runtime: Runtime, client: TestClient, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    with keel_as_inference_server(client, keys, monkeypatch) as remote:
        served = remote.embed_with_usage(TEXTS)
    local = runtime.embedding_model
    assert np.allclose(served.vectors, local.embed(TEXTS), atol=1e-5)
    assert served.tokens == local.embed_with_usage(TEXTS).tokens
    assert remote.model_id != local.model_id, "cached vectors are keyed apart"

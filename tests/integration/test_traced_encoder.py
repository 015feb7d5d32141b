"""The traced path through the local embedding model gives the vectors sentence-transformers gives."""

from __future__ import annotations

from typing import Any

import numpy as np

from keel.config import packaged_embedding_model
from keel.gateway.providers.local_embedding import LocalEmbeddingProvider, _default_intra_op_threads
from keel.gateway.providers.traced_encoder import TracedMeanPoolEncoder


def test_traced_vectors_match_sentence_transformers() -> None:
    provider = LocalEmbeddingProvider(packaged_embedding_model(), batch_size=4)
    provider.warm_up()
    assert provider._traced is not None, "the packaged model's pipeline is traceable"
    texts = [
        "hi",
        "  How do I pump the tyres?  ",
        "The warranty covers the frame for five years and the motor for two. " * 40,  # past 256 tokens
        "Rückgabe innerhalb von 30 Tagen.",
        "",
    ]
    assert provider._batches(texts)[0], "a small call: the traced path serves it"
    traced = provider.embed(texts)
    eager = provider._model.encode(texts, batch_size=4, normalize_embeddings=True, convert_to_numpy=True)
    assert traced.shape == (len(texts), 384) and traced.dtype == np.float32
    assert float(np.abs(traced - eager).max()) < 1e-4
    assert np.allclose(np.linalg.norm(traced, axis=1), 1.0, atol=1e-5)
    assert provider._traced.encode([], 4).shape == (0, 384)


def test_a_pipeline_it_does_not_reproduce_is_left_to_sentence_transformers() -> None:
    def module(kind: str, **attributes: Any) -> Any:
        return type(kind, (), attributes)()

    cls_pooled = [module("Transformer"), module("Pooling", pooling_mode="cls"), module("Normalize")]
    unnormalised = [module("Transformer"), module("Pooling", pooling_mode="mean")]
    assert TracedMeanPoolEncoder.build(cls_pooled) is None
    assert TracedMeanPoolEncoder.build(unnormalised) is None


def test_each_lane_computes_on_its_own_number_of_torch_threads() -> None:
    import torch

    default = _default_intra_op_threads()  # PyTorch's own, whatever earlier calls set on this thread
    provider = LocalEmbeddingProvider(packaged_embedding_model(), batch_size=4, small_threads=default + 1)
    provider.warm_up()
    assert provider._traced is not None
    seen: dict[str, int] = {}
    traced, eager = provider._traced.encode, provider._model.encode

    def counting(lane: str, encode: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            seen[lane] = torch.get_num_threads()  # on the thread computing the batch, while it does
            return encode(*args, **kwargs)

        return run

    provider._traced.encode = counting("small", traced)  # type: ignore[method-assign]
    provider._model.encode = counting("bulk", eager)
    torch.set_num_threads(default)
    provider.embed(["hi"])
    assert torch.get_num_threads() == default  # the small lane's count held for its batch only
    provider.embed([f"text number {i}" for i in range(40)])
    assert seen == {"small": default + 1, "bulk": default}

"""The embeddings endpoint's work: check the inputs, embed, count tokens, encode as floats or base64."""

from __future__ import annotations

import base64

from keel.errors import InvalidRequestError
from keel.gateway.protocol import Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage
from keel.gateway.providers.base import EmbeddingProvider


async def embed(provider: EmbeddingProvider, request: EmbeddingRequest) -> EmbeddingList:
    texts = request.texts()
    if not texts:
        raise InvalidRequestError("'input' must not be empty.", param="input")
    if any(not text for text in texts):
        raise InvalidRequestError("'input' must not contain empty strings.", param="input")
    if request.dimensions is not None and request.dimensions != provider.dimensions:
        raise InvalidRequestError(
            f"'{request.model}' returns {provider.dimensions} dimensions; it cannot shorten them.",
            param="dimensions",
        )
    vectors = await provider.aembed(texts)
    tokens = await provider.acount_tokens(texts)
    data = [
        Embedding(
            index=i,
            embedding=(
                base64.b64encode(vector.astype("<f4").tobytes()).decode()
                if request.encoding_format == "base64"
                else vector.tolist()
            ),
        )
        for i, vector in enumerate(vectors)
    ]
    return EmbeddingList(
        data=data, model=request.model, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
    )

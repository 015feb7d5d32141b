"""Embeddings from the real all-MiniLM-L6-v2 model."""

from __future__ import annotations

import base64

import numpy as np
from fastapi.testclient import TestClient

from tests.integration.conftest import Keys


def embed(client: TestClient, keys: Keys, **body: object) -> np.ndarray:
    response = client.post(
        "/v1/embeddings", headers=keys.header(keys.app), json={"model": "keel-embed", **body}
    )
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["usage"]["prompt_tokens"] > 0
    rows = [item["embedding"] for item in sorted(payload["data"], key=lambda item: item["index"])]
    if body.get("encoding_format") == "base64":
        return np.array([np.frombuffer(base64.b64decode(row), dtype="<f4") for row in rows])
    return np.array(rows, dtype=np.float32)


def test_single_string_gives_one_unit_vector_of_384(client: TestClient, keys: Keys) -> None:
    vectors = embed(client, keys, input="How long does shipping to Germany take?")
    assert vectors.shape == (1, 384)
    assert abs(float(np.linalg.norm(vectors[0])) - 1.0) < 1e-4


def test_equal_text_gives_equal_vectors_and_meaning_is_close(client: TestClient, keys: Keys) -> None:
    texts = [
        "My battery will not charge.",
        "My battery will not charge.",
        "The battery does not charge.",
        "What is the capital of Peru?",
    ]
    vectors = embed(client, keys, input=texts)
    assert np.allclose(vectors[0], vectors[1], atol=1e-6)
    assert float(vectors[0] @ vectors[2]) > float(vectors[0] @ vectors[3]) + 0.3


def test_base64_matches_floats(client: TestClient, keys: Keys) -> None:
    floats = embed(client, keys, input=["reset my password"])
    packed = embed(client, keys, input=["reset my password"], encoding_format="base64")
    assert np.allclose(floats, packed, atol=1e-6)


def test_bad_inputs(client: TestClient, keys: Keys) -> None:
    def status(body: dict[str, object]) -> int:
        return client.post("/v1/embeddings", headers=keys.header(keys.app), json=body).status_code

    assert status({"model": "keel-embed", "input": []}) == 400
    assert status({"model": "keel-embed", "input": [""]}) == 400
    assert status({"model": "keel-embed", "input": ["x"] * 2049}) == 400
    assert status({"model": "keel-embed", "input": 42}) == 422
    assert status({"model": "keel-local-embed", "input": "x"}) == 404
    assert client.post("/v1/embeddings", json={"model": "keel-embed", "input": "x"}).status_code == 401

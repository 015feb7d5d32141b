"""Intent examples: the shipped ones plus an operator's file; a bad file says where it is wrong."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from keel.copilot.intents import IntentClassifier, load_examples
from keel.errors import ServiceUnavailableError


class HashEmbedder:
    """A distinct, repeatable unit vector per text: enough for a classifier to learn its examples."""

    is_ready = True
    dimensions = 64
    model_id = "hash"

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
            rows.append(np.random.default_rng(seed).standard_normal(self.dimensions))
        array = np.array(rows, dtype=np.float32)
        return array / np.linalg.norm(array, axis=1, keepdims=True)


def write_examples(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_an_operators_examples_add_an_intent(tmp_path: Path) -> None:
    extra = write_examples(
        tmp_path / "council.jsonl",
        [
            {"text": f"How do I apply for a parking permit, case {i}?", "intent": "parking_permit"}
            for i in range(6)
        ],
    )
    shipped = load_examples()
    assert load_examples(extra)[: len(shipped)] == shipped and len(load_examples(extra)) == len(shipped) + 6

    classifier = IntentClassifier(HashEmbedder(), tmp_path / "models", extra)
    assert classifier.classify("How do I apply for a parking permit, case 3?").intent == "parking_permit"
    IntentClassifier(HashEmbedder(), tmp_path / "models").warm_up()
    assert len(list((tmp_path / "models").glob("intents-*.npz"))) == 2, "one cached model per example set"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("not json", "line 2: not JSON"),
        ('{"text": "hi"}', 'line 2: expected {"text": "...", "intent": "..."}'),
    ],
)
def test_a_bad_examples_file_says_which_line(tmp_path: Path, line: str, says: str) -> None:
    extra = tmp_path / "bad.jsonl"
    extra.write_text('{"text": "fine", "intent": "ok"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ServiceUnavailableError, match=says.replace("{", r"\{").replace("}", r"\}")):
        load_examples(extra)

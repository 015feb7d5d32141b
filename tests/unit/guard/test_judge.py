"""The judge tier: its answer parsed, its failures ignored, and asked only about grey-zone messages."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import numpy.typing as npt
import pytest

from keel.errors import ServiceUnavailableError
from keel.guard.injection import InjectionDetector
from keel.guard.injection_model import MESSAGE_ROW_FEATURES, ROW_FEATURES, Head, InjectionModel, Thresholds
from keel.guard.judge import JUDGE_INSTRUCTIONS, make_judge, parse_verdict


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ("INJECTION", 1.0),
        (" benign.", 0.0),
        ("Injection - it asks", 1.0),
        ("I cannot tell", None),
        ("", None),
    ],
)
def test_the_answer_is_read_as_a_score(answer: str, score: float | None) -> None:
    assert parse_verdict(answer) == score


def test_a_failed_model_call_has_no_opinion() -> None:
    async def failing(instructions: str, text: str) -> str:
        raise ServiceUnavailableError("no model")

    assert asyncio.run(make_judge(failing)("hello")) is None


class FixedEmbedder:
    """Vectors of ones: with a model of zero weights every text scores sigmoid(bias)."""

    is_ready = True
    dimensions = 4
    model_id = "fixed"

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return np.ones((len(texts), 4), dtype=np.float32)

    async def aembed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return self.embed(texts)


def detector_scoring(probability: float) -> InjectionDetector:
    bias = math.log(probability / (1 - probability))
    message, passage = (
        Head(np.zeros(4 + len(MESSAGE_ROW_FEATURES)), bias),
        Head(np.zeros(4 + len(ROW_FEATURES)), bias),
    )
    model = InjectionModel(message, passage, Thresholds(block=0.9, escalate=0.6, passage=0.9))
    return InjectionDetector(FixedEmbedder(), model=model)  # type: ignore[arg-type]


@pytest.mark.parametrize(("probability", "asked"), [(0.2, False), (0.31, True), (0.8, True), (0.95, False)])
def test_the_judge_is_asked_from_half_the_escalation_threshold_to_the_block_threshold(
    probability: float, asked: bool
) -> None:
    asked_about: list[tuple[str, str]] = []

    async def ask(instructions: str, text: str) -> str:
        asked_about.append((instructions, text))
        return "BENIGN"

    detector = detector_scoring(probability)
    detector.use_judge(make_judge(ask))
    verdict = asyncio.run(detector.acheck("Where is my parcel?"))
    assert asked_about == ([(JUDGE_INSTRUCTIONS, "Where is my parcel?")] if asked else [])
    assert verdict.tier == ("judge" if asked else "classifier")
    if asked:
        assert verdict.score == 0.0 and not verdict.is_injection

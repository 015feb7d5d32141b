"""The LLM judge with a scripted model: scores mapped to 0..1, its cost counted, and pairwise answers
shown in a random order that does not decide the winner."""

from __future__ import annotations

import asyncio
import json
import random
from decimal import Decimal
from typing import Any

from keel.evals.judge import JUDGE_PROMPT_VERSION, Judge
from keel.gateway.ledger import CallRecord
from keel.gateway.protocol import ChatCompletion, ChatCompletionRequest
from keel.gateway.service import Caller


class ScriptedGateway:
    """Answers like a judge that always prefers the answer containing "good", wherever it is shown."""

    def __init__(self) -> None:
        self.requests: list[ChatCompletionRequest] = []

    async def chat(self, request: ChatCompletionRequest, caller: Caller) -> tuple[ChatCompletion, CallRecord]:
        self.requests.append(request)
        prompt = str(request.messages[0].content)
        if "Answer 1:" in prompt:
            first = prompt.split("Answer 1:")[1].split("Answer 2:")[0]
            content: dict[str, Any] = {"better": "1" if "good" in first else "2"}
        else:
            content = {"correctness": 5, "faithfulness": 2}
        completion = ChatCompletion.model_validate(
            {
                "model": request.model,
                "choices": [
                    {
                        "message": {"role": "assistant", "content": json.dumps(content)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )
        return completion, CallRecord(caller.tenant, caller.key_id, request.model, cost=Decimal("0.000250"))


def test_grade_maps_the_scale_and_counts_cost() -> None:
    gateway = ScriptedGateway()
    judge = Judge(gateway, "judge")  # type: ignore[arg-type]
    verdict = asyncio.run(judge.grade("acme", "q?", "an answer", "the reference", ["a passage"]))
    assert (verdict.correctness, verdict.faithfulness, verdict.cost_micros) == (1.0, 0.25, 250)
    request = gateway.requests[0]
    assert request.prompt_version == JUDGE_PROMPT_VERSION and request.cache is False
    # Nothing to grade against: no score, whatever the model says.
    bare = asyncio.run(judge.grade("acme", "q?", "an answer", None, []))
    assert (bare.correctness, bare.faithfulness) == (None, None)


def test_pairwise_order_is_random_and_the_winner_is_not() -> None:
    gateway = ScriptedGateway()
    judge = Judge(gateway, "judge")  # type: ignore[arg-type]
    rng = random.Random(1)
    winners = [
        asyncio.run(judge.prefer("acme", "q?", None, "good answer", "poor answer", rng))[0] for _ in range(20)
    ]
    assert winners == ["a"] * 20
    shown_first = [
        str(r.messages[0].content).split("Answer 1:")[1].split("Answer 2:")[0].strip()
        for r in gateway.requests
    ]
    # Both orders were shown.
    assert {"good answer", "poor answer"} <= set(shown_first)


def test_pairwise_counts_wins_and_the_preference() -> None:
    from keel.evals.items import DatasetItem
    from keel.evals.pairwise import pairwise

    judge = Judge(ScriptedGateway(), "judge")  # type: ignore[arg-type]
    items = {f"k{i}": DatasetItem(input=f"question {i}") for i in range(30)}
    baseline = {key: "poor answer" for key in items}
    candidate = {key: ("good answer" if i < 24 else "poor answer") for i, key in enumerate(items)}
    result = asyncio.run(pairwise(judge, "acme", items, baseline, candidate))
    # Two poor answers: the scripted judge prefers whichever it was shown second.
    assert result.candidate_wins >= 24 and result.candidate_wins + result.baseline_wins == 30
    assert result.cost_micros == 30 * 250 and result.unjudged == 0
    assert result.preference.low > 0.5
    again = asyncio.run(pairwise(judge, "acme", items, baseline, candidate))
    assert again == result

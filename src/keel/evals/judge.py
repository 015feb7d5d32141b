"""An LLM judge through the gateway: correctness and faithfulness of one answer, or the better of two.

The prompt is versioned (`JUDGE_PROMPT_VERSION`, recorded with every call) and every call's cost is
returned, so a run counts what judging cost. In pairwise mode the two answers are shown in a random
order, so a judge that favours the first (or the second) position does not favour one run.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Literal

from keel.errors import KeelError
from keel.gateway.protocol import ChatCompletionRequest
from keel.gateway.service import INTERNAL, Caller, Gateway
from keel.logs import get_logger

log = get_logger(__name__)
JUDGE_PROMPT_VERSION = "eval-judge-1"
_SCALE = {"type": "integer", "minimum": 1, "maximum": 5}

_GRADE = """You grade a support answer. Reply with JSON only.
correctness: 1-5, how well the answer agrees with the reference answer
(5: the same facts, 1: contradicts or misses it).
faithfulness: 1-5, how fully the passages support every claim of the answer (5: all supported, 1: invented).

Question: {question}

Reference answer: {reference}

Passages:
{passages}

Answer to grade: {answer}"""

_PREFER = """Two support answers to one question. Which is better: more correct against the reference, and
no invented facts? Reply with JSON only: {{"better": "1"}}, {{"better": "2"}} or {{"better": "tie"}}.

Question: {question}

Reference answer: {reference}

Answer 1: {first}

Answer 2: {second}"""


@dataclass(frozen=True)
class Verdict:
    correctness: float | None
    faithfulness: float | None
    cost_micros: int


Preference = Literal["a", "b", "tie"]


class Judge:
    def __init__(self, gateway: Gateway, alias: str, max_tokens: int = 120) -> None:
        self._gateway = gateway
        self._alias = alias
        self._max_tokens = max_tokens

    async def _ask(
        self, tenant: str, prompt: str, schema: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, int]:
        request = ChatCompletionRequest.model_validate(
            {
                "model": self._alias,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": self._max_tokens,
                "temperature": 0,
                # A cached verdict would hide the judge's own noise between trials.
                "cache": False,
                "prompt_version": JUDGE_PROMPT_VERSION,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "verdict", "schema": schema},
                },
            }
        )
        try:
            completion, info = await self._gateway.chat(
                request, Caller(tenant=tenant, key_id="eval", feature="eval", policy=INTERNAL)
            )
        except KeelError as exc:
            log.warning("judge_failed", code=exc.code)
            return None, 0
        cost = int(info.cost * 1_000_000)
        try:
            parsed = json.loads(completion.choices[0].message.content or "")
        except json.JSONDecodeError:
            return None, cost
        return (parsed if isinstance(parsed, dict) else None), cost

    async def grade(
        self, tenant: str, question: str, answer: str, reference: str | None, passages: list[str]
    ) -> Verdict:
        """Scores on 0..1 (the 1-5 scale mapped linearly); None where there is nothing to grade against."""
        schema = {
            "type": "object",
            "properties": {"correctness": _SCALE, "faithfulness": _SCALE},
            "required": ["correctness", "faithfulness"],
        }
        prompt = _GRADE.format(
            question=question,
            reference=reference or "(none)",
            passages="\n".join(f"- {p[:1500]}" for p in passages[:6]) or "(none)",
            answer=answer,
        )
        parsed, cost = await self._ask(tenant, prompt, schema)

        def scaled(key: str, applies: bool) -> float | None:
            value = parsed.get(key) if parsed and applies else None
            return (min(max(int(value), 1), 5) - 1) / 4 if isinstance(value, int | float) else None

        return Verdict(
            scaled("correctness", reference is not None), scaled("faithfulness", bool(passages)), cost
        )

    async def prefer(
        self, tenant: str, question: str, reference: str | None, a: str, b: str, rng: random.Random
    ) -> tuple[Preference | None, int]:
        """Which of answers `a` and `b` is better, shown in an order drawn from `rng`."""
        swapped = rng.random() < 0.5
        first, second = (b, a) if swapped else (a, b)
        schema = {
            "type": "object",
            "properties": {"better": {"enum": ["1", "2", "tie"]}},
            "required": ["better"],
        }
        prompt = _PREFER.format(
            question=question, reference=reference or "(none)", first=first, second=second
        )
        parsed, cost = await self._ask(tenant, prompt, schema)
        better = parsed.get("better") if parsed else None
        if better == "tie":
            return "tie", cost
        if better not in ("1", "2"):
            return None, cost
        first_won = better == "1"
        return ("b" if first_won == swapped else "a"), cost

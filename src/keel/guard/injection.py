"""Prompt-injection detection in three tiers: regex rules for the blatant cases (English and German), a
logistic regression on the local embeddings for the rest, and an optional judge (a model call) for the
classifier's grey zone only. The classifier is trained once on the examples Keel ships
(`data/injection_examples.jsonl`, plus an optional extra file) and kept as plain arrays, keyed by the
examples and the embedding model, like the intent classifier."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field, model_validator

from keel.gateway.providers.base import EmbeddingProvider

EXAMPLES = resources.files("keel.guard") / "data" / "injection_examples.jsonl"
RULE_SCORE = 0.95
# MiniLM reads 256 tokens (about 1,000 characters); longer texts are scored window by window, so an
# injection at the end of a retrieved chunk is not truncated away. The text's score is its worst window.
WINDOW_CHARS = 1000
WINDOW_OVERLAP = 200
_C = 4.0  # inverse regularisation of the logistic regression; part of the cache key
_VERSION = 1

Tier = Literal["rules", "classifier", "judge"]
# Returns an injection probability in [0, 1], or None for "no opinion" (the classifier decides then).
# It must not raise for a failed model call: it returns None instead.
Judge = Callable[[str], float | None | Awaitable[float | None]]

_F = re.IGNORECASE | re.MULTILINE
_ROLES_EN = (
    r"(?:system|developer|dev|admin\w*|root|superuser|operator"
    r"|unrestricted|unfiltered|uncensored|jailbroken|evil)"
)
# fmt: off
_RULE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("ignore_previous_instructions",
     r"\b(?:ignore|disregard|forget|skip|override|discard|drop|abandon)\b(?:\W+\w+){0,3}?\W+(?:previous"
     r"|prior|above|earlier|preceding|foregoing|initial|original|all|any|your|the)\b"
     r"(?:\W+\w+){0,2}?\W+(?:instructions?|prompts?|rules|directions|guidelines|directives|commands|orders"
     r"|tasks|assignments|context|programming)\b"),
    ("forget_everything",
     r"\bforget\s+(?:about\s+)?everything\b(?:\W+\w+){0,3}?\W*\b(?:above|before|previous|prior|so\s+far|you"
     r"\s+know|you\s+(?:were|have\s+been)\s+(?:told|given))\b"),
    ("ignoriere_anweisungen",
     r"\b(?:ignorier\w*|vergiss|vergessen\s+sie|missachte\w*|verwirf|verwerfen\s+sie|übergeh\w*)\b"
     r"(?:\W+\w+){0,3}?\W+(?:alle\w*|vorherig\w*|vorig\w*|bisherig\w*|obig\w*|vorangehend\w*"
     r"|vorangegangen\w*|früher\w*|deine|ihre|die)\b(?:\W+\w+){0,2}?\W+(?:anweisung\w*|instruktion\w*"
     r"|befehl\w*|regeln|vorgaben|informationen|aufgaben|ausführungen|richtlinien|kontext|prompts?)\b"),
    ("anweisungen_ignorieren",
     r"\b(?:vorherig|vorig|bisherig|obig|vorangehend)\w*\s+(?:anweisung|instruktion|befehl|ausführung|regel"
     r"|vorgabe)\w*\s+(?:ignorieren|vergessen|missachten|verwerfen|gelten\s+nicht\s+mehr|sind"
     r"\s+(?:irrelevant|ungültig|aufgehoben))"),
    ("vergiss_alles",
     r"\b(?:vergiss|vergessen\s+sie)\s+(?:einfach\s+|bitte\s+)?alles\b"),
    ("you_are_now",
     r"\byou\s+are\s+now\s+(?:(?:an?|the|my|in)\s+)?(?:\w+\s+){0,2}?(?:dan|ai|assistant|bot|chatbot|model"
     r"|mode|jailbroken|unrestricted|unfiltered|uncensored|no\s+longer|evil)\b"),
    ("from_now_on",
     r"\bfrom\s+now\s+on,?\s+(?:you\s+(?:are|must|shall|only|will\s+(?:be|act|only|always|respond|answer"
     r"|reply|ignore|pretend|follow|obey|say))|(?:only\s+)?(?:respond|answer|reply)\s+(?:only\s+)?(?:with"
     r"|as)\b)"),
    ("du_bist_jetzt",
     r"\b(?:(?:du\s+bist|sie\s+sind)\s+(?:jetzt|nun|ab\s+(?:jetzt|sofort))|ab\s+(?:jetzt|sofort)\s+(?:bist"
     r"\s+du|sind\s+sie))\s+(?:\w+\s+){0,2}?(?:dan|ki|assistent\w*|bot|chatbot|modell|uneingeschränkt\w*"
     r"|unzensiert\w*|böse\w*|nicht\s+mehr)\b"),
    ("act_as_privileged_role",
     r"\b(?:act|acting|pretend|pretending|behave|roleplay|role-play|pose|imagine(?:\s+that)?)\w*\s+(?:as|to"
     rf"\s+be|like|you\s+are)\s+(?:an?\s+|the\s+|my\s+|your\s+)?(?:\w+\s+)?{_ROLES_EN}\b"),
    ("tu_so_als_ob",
     r"\b(?:tu|tun\s+sie|stell\s+dir\s+vor)\b,?\s+(?:so,?\s+)?(?:als\s+(?:wärst\s+du|wären\s+sie)|du"
     r"\s+(?:bist|wärst))\s+(?:\w+\s+){0,2}?(?:system\w*|entwickler\w*|admin\w*|betreiber\w*"
     r"|uneingeschränkt\w*|unzensiert\w*|böse\w*|(?:ki|modell)\s+ohne)\b"),
    ("reveal_system_prompt",
     r"\b(?:reveal|print|show|display|output|repeat|leak|dump|expose|quote|tell\s+me|give\s+me|what\s+(?:is"
     r"|are|was|were))\b[^.?!\n]{0,40}?\b(?:system|developer|hidden|secret|initial|original|internal)"
     r"\s+(?:prompt|instructions?|message|rules|configuration)"),
    ("reveal_your_prompt",
     r"\b(?:reveal|print|show|display|output|repeat|leak|dump|expose|tell\s+me)\s+(?:me\s+)?your\s+(?:\w+"
     r"\s+)?(?:prompt|instructions|rules|configuration)\b|\b(?:print|repeat|output|show)\s+(?:me\s+)?(?:all"
     r"\s+)?(?:the\s+)?(?:text|words|everything|content)\s+(?:above|before)\b"),
    ("zeige_systemprompt",
     r"\b(?:zeig\w*|gib\w*|nenn\w*|verrat\w*|wiederhol\w*)\b[^.?!\n]{0,40}?(?:system-?\s?prompt"
     r"|systemanweisung\w*|systemnachricht\w*|deine\s+(?:\w+\s+)?(?:anweisungen|instruktionen|regeln)"
     r"|(?:ihre|die)\s+(?:geheimen|internen|versteckten)\s+(?:anweisungen|instruktionen|regeln))|\b(?:was"
     r"\s+steht\s+in|wie\s+lautet)\s+(?:deinem|ihrem|dem)\s+system-?\s?prompt"),
    ("new_instructions",
     r"\b(?:new|updated|additional|real|actual|revised)\s+(?:system\s+)?(?:instructions?|tasks?|rules"
     r"|orders|directives?)\s*:|\bneue\s+(?:system)?(?:anweisung|instruktion|aufgabe|regel|vorgabe)\w*\s*:"),
    ("jailbreak_marker",
     r"(?-i:\bDAN\b)|\bdo\s+anything\s+now\b|\bjailbr(?:ea|o)k\w*|\bgod\s+mode\b|\b(?:enable|activate|enter"
     r"|switch\s+(?:in)?to|turn\s+on|now\s+in)\s+(?:the\s+)?developer\s+mode\b|\bdeveloper\s+mode"
     r"\s+(?:enabled|activated|on)\b|\b(?:aktiviere|aktivieren\s+sie)\s+den\s+entwicklermodus\b"),
    ("no_restrictions",
     r"\b(?:ai|assistant|model|chatbot|ki|assistent)\s+(?:with\s+no|without(?:\s+any)?|ohne(?:"
     r"\s+jegliche)?)\s+(?:rules|restrictions|filters|limits|regeln|einschränkungen|filter)\b|\b(?:answer"
     r"|respond|reply|antworte\w*|beantworte\w*)\s+(?:\w+\s+){0,2}?(?:without|ohne)\s+(?:any\s+|jegliche"
     r"\s+)?(?:restrictions|filters|limits|censorship|einschränkung\w*|filter|zensur)\b"),
    ("safety_override",
     r"\b(?:bypass|override|disable|ignore|switch\s+off|turn\s+off|circumvent)\s+(?:all\s+|any\s+)?(?:your"
     r"\s+|the\s+)?(?:safety\s+|content\s+|security\s+)?(?:filters?|guardrails?|restrictions|safeguards"
     r"|polic(?:y|ies)|safety\s+(?:rules|guidelines))\b|\b(?:umgeh\w*|deaktivier\w*|schalte\w*)\s+(?:\w+"
     r"\s+){0,2}?(?:filter|sicherheitsrichtlinien|inhaltsrichtlinien|schutzmechanismen)\b"),
    ("role_tag",
     r"<\|im_start\|>\s*(?:system|assistant)|<\|(?:system|assistant|user|endoftext)\|>|\[/?INST\]|<<SYS>>"
     r"|(?:^|\s)#{2,}\s*(?:system|assistant)\s*(?::|$)|</?(?:system|instructions?)>"),
    ("addressed_to_ai",
     r"\b(?:note|message|instructions?|notice|hint)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?(?:ai|assistant"
     r"|llm|chatbot|language\s+models?)\b|\bif\s+(?:you\s+are|an?\s+ai\b.{0,20}reads)\s+an?\s+(?:ai|llm"
     r"|language\s+model|assistant|chatbot|bot)\b|\b(?:hinweis|nachricht|anweisung)\s+(?:an|für)\s+(?:die"
     r"\s+|den\s+|das\s+|alle\s+)?(?:ki|assistent\w*|sprachmodell\w*|chatbot)\b|\b(?:falls|wenn)\s+du"
     r"\s+(?:eine?\s+)?(?:ki|sprachmodell|assistent|bot)\s+bist\b"),
)
# fmt: on
_RULES = tuple((name, re.compile(pattern, _F)) for name, pattern in _RULE_PATTERNS)


def match_rule(text: str) -> str | None:
    """The name of the first rule the text matches, or None."""
    return next((name for name, pattern in _RULES if pattern.search(text)), None)


class InjectionSettings(BaseModel):
    """`threshold` decides classifier and judge scores; the judge is asked only for classifier scores in
    [grey_low, grey_high)."""

    rules_enabled: bool = True
    threshold: float = Field(0.5, ge=0, le=1)
    grey_low: float = Field(0.3, ge=0, le=1)
    grey_high: float = Field(0.7, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> InjectionSettings:
        if self.grey_low > self.grey_high:
            raise ValueError("grey_low must not exceed grey_high")
        return self


@dataclass(frozen=True)
class InjectionVerdict:
    score: float
    is_injection: bool
    tier: Tier
    reason: str


def load_examples(extra: Path | None = None) -> list[tuple[str, int]]:
    """The shipped examples, plus those in `extra` (JSON lines of `{text, label}`, 1 = injection)."""
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()
    if extra is not None:
        lines += extra.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [(str(row["text"]), int(row["label"])) for row in rows]


def _windows(text: str) -> list[str]:
    if len(text) <= WINDOW_CHARS:
        return [text]
    step = WINDOW_CHARS - WINDOW_OVERLAP
    return [text[start : start + WINDOW_CHARS] for start in range(0, len(text) - WINDOW_OVERLAP, step)]


async def _resolve(pending: Awaitable[float | None]) -> float | None:
    return await pending


class InjectionDetector:
    """`embedder` None: rules only. `cache_dir` None: the classifier is fitted in memory at each start.
    `extra_examples` adds a labeled JSON-lines file to the training data (the cache key covers it)."""

    def __init__(
        self,
        embedder: EmbeddingProvider | None = None,
        *,
        cache_dir: Path | None = None,
        settings: InjectionSettings | None = None,
        judge: Judge | None = None,
        extra_examples: Path | None = None,
    ) -> None:
        self._embedder = embedder
        self._cache_dir = cache_dir
        self.settings = settings or InjectionSettings()
        self._judge = judge
        self._extra = extra_examples
        self._weights: npt.NDArray[np.float64] | None = None
        self._bias = 0.0
        self._lock = threading.Lock()

    def cache_path(self) -> Path | None:
        if self._embedder is None or self._cache_dir is None:
            return None
        payload = json.dumps([load_examples(self._extra), self._embedder.model_id, _C, _VERSION])
        return self._cache_dir / f"injection-{hashlib.sha256(payload.encode()).hexdigest()[:16]}.npz"

    def warm_up(self) -> None:
        """Loads the fitted classifier from the cache, or fits it (one embedding pass) and caches it."""
        with self._lock:
            if self._embedder is None or self._weights is not None:
                return
            path = self.cache_path()
            if path is not None and path.is_file():
                with np.load(path) as saved:
                    self._weights, self._bias = saved["weights"], float(saved["bias"][0])
                return
            from sklearn.linear_model import LogisticRegression

            examples = load_examples(self._extra)
            vectors = self._embedder.embed([text for text, _ in examples])
            # Balanced: an extra file (deepset's) is not balanced like the shipped one.
            fitted = LogisticRegression(C=_C, class_weight="balanced", max_iter=2000)
            fitted.fit(vectors, [label for _, label in examples])
            weights, bias = np.asarray(fitted.coef_[0], dtype=np.float64), float(fitted.intercept_[0])
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(path, weights=weights, bias=np.array([bias]))
            self._weights, self._bias = weights, bias

    def check(self, text: str) -> InjectionVerdict:
        return self.check_many([text])[0]

    def check_many(self, texts: list[str]) -> list[InjectionVerdict]:
        """One verdict per text; texts no rule caught are embedded in one batch (retrieved chunks)."""
        verdicts, windows, owners = self._screen(texts)
        if windows:
            assert self._embedder is not None
            self.warm_up()
            for index, probability in self._probabilities(self._embedder.embed(windows), owners).items():
                judged = self._judge_sync(texts[index]) if self._in_grey_zone(probability) else None
                verdicts[index] = self._decide(probability, judged)
        return [verdict for verdict in verdicts if verdict is not None]

    async def acheck(self, text: str) -> InjectionVerdict:
        return (await self.acheck_many([text]))[0]

    async def acheck_many(self, texts: list[str]) -> list[InjectionVerdict]:
        """`check_many` for event loops: embedding on a worker thread, an async judge awaited."""
        verdicts, windows, owners = self._screen(texts)
        if windows:
            assert self._embedder is not None
            await asyncio.to_thread(self.warm_up)
            vectors = await self._embedder.aembed(windows)
            for index, probability in self._probabilities(vectors, owners).items():
                judged = await self._judge_async(texts[index]) if self._in_grey_zone(probability) else None
                verdicts[index] = self._decide(probability, judged)
        return [verdict for verdict in verdicts if verdict is not None]

    def _screen(self, texts: list[str]) -> tuple[list[InjectionVerdict | None], list[str], list[int]]:
        """Rule verdicts, and the windows (with their text's index) still to be classified."""
        verdicts: list[InjectionVerdict | None] = []
        windows: list[str] = []
        owners: list[int] = []
        for index, text in enumerate(texts):
            rule = match_rule(text) if self.settings.rules_enabled else None
            if rule is not None:
                verdicts.append(InjectionVerdict(RULE_SCORE, True, "rules", f"rule {rule}"))
            elif self._embedder is None:
                verdicts.append(InjectionVerdict(0.0, False, "rules", "no rule matched"))
            else:
                verdicts.append(None)
                parts = _windows(text)
                windows += parts
                owners += [index] * len(parts)
        return verdicts, windows, owners

    def _probabilities(self, vectors: npt.NDArray[np.float32], owners: list[int]) -> dict[int, float]:
        assert self._weights is not None
        logits = vectors.astype(np.float64) @ self._weights + self._bias
        probabilities = 1.0 / (1.0 + np.exp(-logits))
        worst: dict[int, float] = {}
        for owner, probability in zip(owners, probabilities.tolist(), strict=True):
            worst[owner] = max(worst.get(owner, 0.0), float(probability))
        return worst

    def _in_grey_zone(self, probability: float) -> bool:
        return self._judge is not None and self.settings.grey_low <= probability < self.settings.grey_high

    def _decide(self, probability: float, judged: float | None) -> InjectionVerdict:
        threshold = self.settings.threshold
        if judged is not None:
            score = min(1.0, max(0.0, judged))
            reason = f"judge score {score:.2f}; classifier {probability:.2f} was in the grey zone"
            return InjectionVerdict(score, score >= threshold, "judge", reason)
        reason = f"classifier score {probability:.2f} (threshold {threshold:.2f})"
        return InjectionVerdict(probability, probability >= threshold, "classifier", reason)

    def _judge_sync(self, text: str) -> float | None:
        assert self._judge is not None
        result = self._judge(text)
        if result is None or isinstance(result, int | float):
            return None if result is None else float(result)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(_resolve(result))
        if asyncio.iscoroutine(result):
            result.close()  # never awaited: close it so no "never awaited" warning leaks
        raise RuntimeError("An async judge cannot run from check() inside an event loop: use acheck().")

    async def _judge_async(self, text: str) -> float | None:
        assert self._judge is not None
        result = self._judge(text)
        if result is not None and not isinstance(result, int | float):
            result = await result
        return None if result is None else float(result)

"""Prompt-injection detection in three tiers: regex rules (English and German), a logistic regression on
the local embeddings, and an optional judge for the classifier's grey zone. The classifier is fitted once
on the shipped examples (plus an optional extra file) and cached as plain arrays, like the intents'."""

from __future__ import annotations

import asyncio
import bisect
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
from pydantic import BaseModel, Field

from keel.gateway.providers.base import EmbeddingProvider

EXAMPLES = resources.files("keel.guard") / "data" / "injection_examples.jsonl"
RULE_SCORE = 0.95
# MiniLM reads 256 tokens (~1,000 characters): a longer text is scored in windows, and scores its worst piece.
WINDOW_CHARS = 1000
WINDOW_OVERLAP = 200
# A longer text is classified on this many of its windows, spread from its start to its end (about 13 KB
# is read whole); the rules read every character of it.
MAX_WINDOWS = 16
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# Texts up to this long are screened by the rules on the event loop (well under a millisecond).
_INLINE_RULE_CHARS = 8192
_C = 4.0  # inverse regularisation of the logistic regression; part of the cache key

# An injection probability in [0, 1], or None for no opinion (then the classifier decides); never raises.
Judge = Callable[[str], float | Awaitable[float | None] | None]

# fmt: off
_RULE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("ignore_previous_instructions", r"\b(?:ignor(?:e|ing)|disregard(?:ing)?|forget(?:ting)?|skip|override"
     r"|discard|drop|abandon)\b(?:\W+\w+){0,3}?\W+(?:previous|prior|above|earlier|preceding|foregoing"
     r"|initial|original|all|any|your|the)\b(?:\W+\w+){0,2}?\W+(?:instructions?|prompts?|rules|directions"
     r"|guidelines|directives|commands|orders|tasks|assignments|context|programming|persona|role)\b|"
     r"\b(?:previous|prior|earlier|above|original)\s+(?:instructions|guidelines|rules|directives)\s+(?:are"
     r"|have\s+been)\s+(?:cancel+ed|void|revoked|irrelevant|no\s+longer\s+(?:valid|apply))"),
    ("forget_everything", r"\b(?:ignore|disregard)\s+everything\s*(?:\b(?:above|before|and|previous|prior"
     r"|so\s+far|you)\b|[,.;:!]|$)|\bforget\s+(?:about\s+)?everything\b(?:\W+\w+){0,3}?\W*\b(?:above|before"
     r"|previous|prior|so\s+far|you\s+know|you\s+(?:were|have\s+been)\s+(?:told|given))\b"
     r"|\bleave\s+(?:all\s+)?(?:the\s+)?(?:previous|prior|earlier)\s+(?:\w+\s+)?behind\b"),
    ("ignoriere_anweisungen", r"\b(?:ignorier\w*|vergiss|vergessen\s+sie|missachte\w*|verwirf"
     r"|verwerfen\s+sie|übergeh\w*)\b(?:\W+\w+){0,3}?\W+(?:alle\w*|vorherig\w*|vorig\w*|bisherig\w*|obig\w*"
     r"|vorangehend\w*|vorangegangen\w*|früher\w*|deine|ihre|die)\b(?:\W+\w+){0,2}?\W+(?:anweisung\w*"
     r"|instruktion\w*|befehl\w*|regeln|vorgaben|informationen|angaben|aufgaben|ausführungen|richtlinien"
     r"|kontext|prompts?|rolle)\b"),
    ("anweisungen_ignorieren", r"\b(?:vorherig|vorig|bisherig|obig|vorangehend)\w*\s+(?:anweisung"
     r"|instruktion|befehl|ausführung|regel|vorgabe)\w*\s+(?:ignorieren|vergessen|missachten|verwerfen"
     r"|gelten\s+nicht\s+mehr|sind\s+(?:irrelevant|ungültig|aufgehoben))|\b(?:filter|sicherheitsrichtlinien"
     r"|inhaltsrichtlinien|schutzmechanismen)\s+(?:zu\s+)?(?:umgehen|deaktivieren|ignorieren|abschalten)"
     r"|\babweichend\s+(?:zu|von)\s+(?:den\s+|deinen\s+|ihren\s+)?(?:vorherig|bisherig"
     r"|obig)\w*\s+(?:anweisung|instruktion)|\blass\w*\s+(?:sie\s+)?(?:\w+\s+){0,3}?(?:informationen"
     r"|anweisungen|aufgaben|vorgaben|regeln)\s+hinter\s+(?:dir|sich)\b"),
    ("vergiss_alles", r"\b(?:vergiss|vergessen\s+sie)\s+(?:einfach\s+|bitte\s+)?alles\b|\b(?:ignorier\w*"
     r"|vergiss|lass)\s+(?:\w+\s+)?alles\s+(?:obige|bisherige|vorherige)"),
    ("you_are_now", r"\byou\s+are\s+now\s+(?:(?:an?|the|my|in)\s+)?(?:\w+\s+){0,2}?(?:dan|ai|assistant|bot"
     r"|chatbot|model|mode|jailbroken|unrestricted|unfiltered|uncensored|no\s+longer|evil)\b"),
    ("from_now_on", r"\bfrom\s+now\s+on,?\s+(?:you\s+(?:are|must|shall|only|will\s+(?:be|act|only|always"
     r"|respond|answer|reply|ignore|pretend|follow|obey|say))|(?:only\s+)?(?:respond|answer"
     r"|reply)\s+(?:\w+\s+){0,3}?(?:with|as)\b)"),
    ("du_bist_jetzt", r"\b(?:(?:du\s+bist|sie\s+sind)\s+(?:jetzt|nun|ab\s+(?:jetzt|sofort))|ab\s+(?:jetzt"
     r"|sofort)\s+(?:bist\s+du|sind\s+sie))\s+(?:\w+\s+){0,2}?(?:dan|ki|assistent\w*|bot|chatbot|modell"
     r"|uneingeschränkt\w*|unzensiert\w*|böse\w*|nicht\s+mehr)\b"),
    ("act_as_privileged_role", r"\b(?:act|acting|pretend|pretending|behave|roleplay|role-play|pose"
     r"|imagine(?:\s+that)?)\w*\s+(?:as|to\s+be|like|you\s+are)\s+(?:an?\s+|the\s+|my\s+"
     r"|your\s+)?(?:\w+\s+)?(?:system|developer|dev|admin\w*|root|superuser|operator|unrestricted"
     r"|unfiltered|uncensored|jailbroken|evil)\b"),
    ("tu_so_als_ob", r"\b(?:tu|tun\s+sie|stell\s+dir\s+vor)\b,?\s+(?:so,?\s+)?(?:als\s+(?:wärst\s+du"
     r"|wären\s+sie)|du\s+(?:bist|wärst))\s+(?:\w+\s+){0,2}?(?:system\w*|entwickler\w*|admin\w*"
     r"|betreiber\w*|uneingeschränkt\w*|unzensiert\w*|böse\w*|(?:ki|modell)\s+ohne)\b"),
    ("reveal_system_prompt", r"\b(?:reveal|print|show|display|output|repeat|leak|dump|expose|quote"
     r"|tell\s+me|give\s+me|what\s+(?:is|are|was|were))\b[^.?!\n]{0,40}?\b(?:system|developer|hidden|secret"
     r"|initial|original|internal)\s+(?:prompt|instructions?|message|rules|configuration)"),
    ("reveal_your_prompt", r"\b(?:reveal|print|show|display|output|repeat|leak|dump|expose"
     r"|tell\s+me)\s+(?:me\s+)?your\s+(?:\w+\s+)?(?:prompt|instructions|rules|configuration)\b|\b(?:print"
     r"|output)\s+(?:me\s+)?(?:all\s+)?(?:the\s+)?(?:text|words|everything|content)\s+(?:above|before)\b"
     r"|\brepeat\s+(?:all\s+of\s+)?everything\s+(?:above|before)\b"),
    ("zeige_systemprompt", r"\b(?:zeig\w*|gib\w*|nenn\w*|verrat\w*"
     r"|wiederhol\w*)\b[^.?!\n]{0,40}?(?:system-?\s?prompt|systemanweisung\w*|systemnachricht\w*"
     r"|deine\s+(?:\w+\s+)?(?:anweisungen|instruktionen|regeln)|(?:ihre|die|alle)\s+(?:geheimen|internen"
     r"|versteckten)\s+(?:anweisungen|instruktionen|regeln))|\b(?:was\s+steht\s+in"
     r"|wie\s+lautet)\s+(?:deinem|ihrem|dem)\s+system-?\s?prompt|\bwiederhol\w*\s+(?:den"
     r"|alle[ns]?)\s+(?:text|inhalt)\w*\s+(?:über|oberhalb|vor)\b"),
    ("new_instructions", r"\b(?:new|real|actual)\s+(?:system\s+)?instructions?\s*:"
     r"|\bneue\s+(?:system)?(?:anweisung|instruktion)\w*\s*:"),
    ("jailbreak_marker", r"\b(?:you\s+are|act\s+as|called|named|become|du\s+bist)\s+(?-i:DAN)\b"
     r"|(?-i:\bDAN\b)\s+(?:mode|prompt)\b|\bdo\s+anything\s+now\b|\bjailbr(?:ea|o)k\w*|\bgod\s+mode\b|"
     r"\b(?:enable|activate|enter|switch\s+(?:in)?to|turn\s+on|now\s+in)\s+(?:the\s+)?developer\s+mode\b"
     r"|\bdeveloper\s+mode\s+(?:enabled|activated|on)\b|\b(?:aktiviere"
     r"|aktivieren\s+sie)\s+den\s+entwicklermodus\b"),
    ("no_restrictions", r"\b(?:ai|assistant|model|chatbot|ki|assistent)\s+(?:with\s+no|without(?:\s+any)?"
     r"|ohne(?:\s+jegliche)?)\s+(?:rules|restrictions|filters|limits|regeln|einschränkungen|filter)\b|"
     r"\b(?:answer|respond|reply|antworte\w*|beantworte\w*)\s+(?:\w+\s+){0,2}?(?:without|ohne)\s+(?:any\s+"
     r"|jegliche\s+)?(?:restrictions|filters|limits|censorship|einschränkung\w*|filter|zensur)\b"),
    ("safety_override", r"\b(?:bypass|override|disable|ignore|switch\s+off|turn\s+off"
     r"|circumvent)\s+(?:all\s+|any\s+)?(?:your\s+|the\s+)?(?:safety\s+|content\s+|security\s+)?(?:filters?"
     r"|guardrails?|restrictions|safeguards|polic(?:y|ies)|safety\s+(?:rules|guidelines))\b|\b(?:umgeh\w*"
     r"|deaktivier\w*|schalte\w*)\s+(?:\w+\s+){0,2}?(?:filter|sicherheitsrichtlinien|inhaltsrichtlinien"
     r"|schutzmechanismen)\b"),
    ("role_tag", r"<\|im_start\|>\s*(?:system|assistant)|<\|(?:system|assistant|user|endoftext)\|>"
     r"|\[/?INST\]|<<SYS>>|(?:^|\s)#{2,}\s*(?:system|assistant)\s*(?::|$)|</?(?:system|instructions?)>"),
    ("addressed_to_ai", r"\b(?:note|message|instructions?|notice|hint)\s+(?:to|for)\s+(?:the\s+|any\s+"
     r"|all\s+)?(?:ai|assistant(?=\s*[:,.])|llm|chatbot|language\s+models?)\b"
     r"|\bif\s+you\s+are\s+an?\s+(?:ai|llm|language\s+model|assistant|chatbot|bot)\b"
     r"|\bif\s+(?:an?\s+)?(?:ai|llm|language)\s+(?:\w+\s+)?(?:reads|processes|summari[sz]es)\b|\b(?:hinweis"
     r"|nachricht|anweisung)\s+(?:an|für)\s+(?:die\s+|den\s+|das\s+|alle\s+)?(?:ki|assistent\w*"
     r"|sprachmodell\w*|chatbot)\b|\b(?:falls|wenn)\s+du\s+(?:eine?\s+)?(?:ki|sprachmodell|assistent"
     r"|bot)\s+bist\b|<!--[^>]{0,40}\b(?:ai|assistant|llm|ki|assistent|chatbot)\b|\b(?:wenn"
     r"|falls)\s+(?:eine?\s+)?(?:ki|sprachmodell|assistent)\S*\s+(?:\w+\s+){0,2}?(?:liest|verarbeitet"
     r"|zusammenfasst)\b"),
    ("ignore_documents", r"\b(?:do\s+not|don'?t|never)\s+(?:\w+\s+){0,2}?(?:use|look\s+(?:in|at)"
     r"|answer\s+(?:\w+\s+){0,4}?(?:from|according\s+to))\s+(?:the\s+|any\s+)?(?:provided\s+)?(?:documents"
     r"|sources|context)\b"),
)
# fmt: on
_RULES = tuple((name, re.compile(pattern, re.IGNORECASE | re.MULTILINE)) for name, pattern in _RULE_PATTERNS)


def match_rule(text: str) -> str | None:
    """The name of the first rule the text matches, or None."""
    return next((name for name, pattern in _RULES if pattern.search(text)), None)


class InjectionSettings(BaseModel):
    """`threshold` decides classifier and judge scores; only grey-zone scores go to the judge."""

    rules_enabled: bool = True
    threshold: float = Field(0.5, ge=0, le=1)
    grey_low: float = Field(0.3, ge=0, le=1)
    grey_high: float = Field(0.7, ge=0, le=1)
    # Also score each sentence of a multi-sentence text: an appended or hidden injection is not averaged away.
    sentences: bool = True


@dataclass(frozen=True)
class InjectionVerdict:
    score: float
    is_injection: bool
    tier: Literal["rules", "classifier", "judge"]
    reason: str


def load_examples(extra: Path | None = None) -> list[tuple[str, int]]:
    """The shipped examples, plus those in `extra` (JSON lines of `{text, label}`, 1 = injection)."""
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()
    if extra is not None:
        lines += extra.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [(str(row["text"]), int(row["label"])) for row in rows]


@dataclass(frozen=True)
class _Plan:
    """How one text is classified from a single embedding pass: `pieces` are embedded once each; the
    pieces in `scored` are scored on their own, and each window, a list of (piece, characters of it
    inside the window), is scored as the overlap-weighted mean of its pieces' vectors (a stand-in for
    the window's own vector, which would cost a second pass). The text's probability is its worst score."""

    pieces: list[str]
    scored: list[int]
    windows: list[list[tuple[int, int]]]


def _window_starts(length: int) -> range:
    return range(0, max(1, length - WINDOW_OVERLAP), WINDOW_CHARS - WINDOW_OVERLAP)


def _windows(text: str) -> list[tuple[int, str]]:
    return [(start, text[start : start + WINDOW_CHARS]) for start in _window_starts(len(text))]


def _chosen(count: int) -> list[int]:
    """Which of `count` windows are scored: all of them up to MAX_WINDOWS, else MAX_WINDOWS spread evenly
    from the first to the last (an injection is most often at either end of a long text)."""
    if count <= MAX_WINDOWS:
        return list(range(count))
    return sorted({round(i * (count - 1) / (MAX_WINDOWS - 1)) for i in range(MAX_WINDOWS)})


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the text's non-blank sentences, each longer one cut into windows of its own."""
    spans: list[tuple[int, int]] = []
    position = 0
    for separator in [*_SENTENCE_END.finditer(text), None]:
        end = len(text) if separator is None else separator.start()
        if text[position:end].strip():
            # A sentence longer than a window is read in windows of its own.
            spans += [
                (position + offset, min(end, position + offset + WINDOW_CHARS))
                for offset in _window_starts(end - position)
            ]
        if separator is not None:
            position = separator.end()
    return spans


def _plan(text: str, sentences: bool) -> _Plan:
    """Windows of the text; with `sentences`, a multi-sentence text is embedded sentence by sentence
    instead, its sentences of 4+ words scored alone (shorter ones score noise) and its windows composed
    from them — so an appended injection is not averaged away, at the cost of one pass over the text.

    Linear in the text: spans and windows both run left to right, so each window finds its sentences by
    bisection. A text of more than MAX_WINDOWS windows is classified on MAX_WINDOWS of them (and their
    sentences), which bounds the embedding work per text; the rules still read all of it."""
    starts = _window_starts(len(text))
    chosen = [starts[i] for i in _chosen(len(starts))]
    spans = _sentence_spans(text) if sentences else []
    if len(spans) <= 1:
        return _Plan([text[begin : begin + WINDOW_CHARS] for begin in chosen], list(range(len(chosen))), [])
    # Spans are ordered by start and, as they never nest, by end too.
    span_starts = [start for start, _ in spans]
    span_ends = [end for _, end in spans]
    used: dict[int, int] = {}  # span index -> piece index, in text order
    windows: list[list[tuple[int, int]]] = []
    for begin in chosen:
        finish = begin + WINDOW_CHARS
        first, last = bisect.bisect_right(span_ends, begin), bisect.bisect_left(span_starts, finish)
        group = [
            (used.setdefault(i, len(used)), min(span_ends[i], finish) - max(span_starts[i], begin))
            for i in range(first, last)
        ]
        if group:
            windows.append(group)
    pieces = [text[span_starts[i] : span_ends[i]] for i in used]
    scored = [piece for piece, i in enumerate(used) if len(text[span_starts[i] : span_ends[i]].split()) >= 4]
    return _Plan(pieces, scored, windows)


async def _settle(answer: float | Awaitable[float | None] | None) -> float | None:  # awaited, clipped
    if answer is not None and not isinstance(answer, int | float):
        answer = await answer
    return None if answer is None else min(1.0, max(0.0, float(answer)))


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
        payload = json.dumps([load_examples(self._extra), self._embedder.model_id, _C])
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
        verdicts, pending = self._screen(texts)
        if pending:
            assert self._embedder is not None
            self.warm_up()
            vectors = self._embedder.embed([piece for _, plan in pending for piece in plan.pieces])
            for index, probability in self._scores(vectors, pending).items():
                judge = self._judge_for(probability)
                judged = self._judge_sync(judge, texts[index]) if judge else None
                verdicts[index] = self._decide(probability, judged)
        return [verdict for verdict in verdicts if verdict is not None]

    async def acheck(self, text: str) -> InjectionVerdict:
        return (await self.acheck_many([text]))[0]

    async def acheck_many(self, texts: list[str]) -> list[InjectionVerdict]:
        """`check_many` for event loops: embedding on a worker thread, an async judge awaited; the rules
        too, for long texts (they read all of one, at about a second per megabyte)."""
        if sum(len(text) for text in texts) > _INLINE_RULE_CHARS:
            verdicts, pending = await asyncio.to_thread(self._screen, texts)
        else:
            verdicts, pending = self._screen(texts)
        if pending:
            assert self._embedder is not None
            await asyncio.to_thread(self.warm_up)
            vectors = await self._embedder.aembed([piece for _, plan in pending for piece in plan.pieces])
            for index, probability in self._scores(vectors, pending).items():
                judge = self._judge_for(probability)
                judged = await _settle(judge(texts[index])) if judge else None
                verdicts[index] = self._decide(probability, judged)
        return [verdict for verdict in verdicts if verdict is not None]

    def _screen(self, texts: list[str]) -> tuple[list[InjectionVerdict | None], list[tuple[int, _Plan]]]:
        """Rule verdicts, and the texts still to be classified, each with its index and plan."""
        verdicts: list[InjectionVerdict | None] = []
        pending: list[tuple[int, _Plan]] = []
        for index, text in enumerate(texts):
            rule = match_rule(text) if self.settings.rules_enabled else None
            if rule is not None:
                verdicts.append(InjectionVerdict(RULE_SCORE, True, "rules", f"rule {rule}"))
            elif self._embedder is None:
                verdicts.append(InjectionVerdict(0.0, False, "rules", "no rule matched"))
            else:
                verdicts.append(None)
                pending.append((index, _plan(text, self.settings.sentences)))
        return verdicts, pending

    def _scores(self, vectors: npt.NDArray[np.float32], pending: list[tuple[int, _Plan]]) -> dict[int, float]:
        assert self._weights is not None
        worst: dict[int, float] = {}
        row = 0
        for index, plan in pending:
            own = vectors[row : row + len(plan.pieces)].astype(np.float64)
            row += len(plan.pieces)
            composed = [
                np.array([weight for _, weight in group], dtype=np.float64) @ own[[i for i, _ in group]]
                for group in plan.windows
            ]
            candidates = [own[i] for i in plan.scored] + [v / (np.linalg.norm(v) or 1.0) for v in composed]
            logits = np.stack(candidates) @ self._weights + self._bias
            worst[index] = float(np.max(1.0 / (1.0 + np.exp(-logits))))
        return worst

    def _judge_for(self, probability: float) -> Judge | None:
        unsure = self.settings.grey_low <= probability < self.settings.grey_high
        return self._judge if unsure else None

    def _decide(self, probability: float, judged: float | None) -> InjectionVerdict:
        threshold = self.settings.threshold
        if judged is not None:
            reason = f"judge score {judged:.2f}; classifier {probability:.2f} was in the grey zone"
            return InjectionVerdict(judged, judged >= threshold, "judge", reason)
        reason = f"classifier score {probability:.2f} (threshold {threshold:.2f})"
        return InjectionVerdict(probability, probability >= threshold, "classifier", reason)

    def _judge_sync(self, judge: Judge, text: str) -> float | None:
        answer = judge(text)
        if answer is not None and not isinstance(answer, int | float):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(_settle(answer))  # no loop in this thread: run the async judge here
            if asyncio.iscoroutine(answer):
                answer.close()  # never awaited: closed so no warning leaks
            raise RuntimeError("An async judge cannot run from check() inside an event loop: use acheck().")
        return None if answer is None else min(1.0, max(0.0, float(answer)))

"""Prompt-injection detection in three tiers: regex rules (English and German, `injection_rules`), a
classifier on the local embeddings and structural features (`injection_model`), and an optional judge
for the classifier's grey zone.

Two tasks share the tiers: a user's message (`check`, `acheck`: is this text trying to override the
assistant?) and a retrieved passage (`check_passages`, `acheck_passages`: which of its sentences are
instructions addressed to the reader?). The classifier is the shipped model fitted on public data when
the embedder is the one it was fitted on; otherwise it is fitted on the shipped examples at first use
and cached as plain arrays."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from opentelemetry import trace
from pydantic import BaseModel, Field

from keel.guard.combined_embedding import CombinedEmbedding
from keel.guard.injection_fallback import fallback_model, fallback_path, load_examples
from keel.guard.injection_model import (
    PROBE,
    SHIPPED_MODEL,
    Candidates,
    InjectionModel,
    Thresholds,
    candidate_rows,
    message_candidates,
)
from keel.guard.injection_plan import (
    MAX_WINDOWS,
    WINDOW_CHARS,
    WINDOW_OVERLAP,
    _Plan,
    _plan,
    _windows,
)
from keel.guard.injection_prescreen import PRESCREEN_MAX_CHARS, LexicalPrescreen, shipped_prescreen
from keel.guard.injection_rules import RULE_SCORE, match_rule, rule_spans
from keel.guard.passage_recall import PassageRecall
from keel.guard.passage_state import passage_state
from keel.guard.passage_verdict import PassageVerdict, passage_verdict
from keel.guard.verdict_store import StoredVerdicts
from keel.llm_types import EmbeddingProvider

__all__ = [
    "MAX_WINDOWS",
    "RULE_SCORE",
    "WINDOW_CHARS",
    "WINDOW_OVERLAP",
    "InjectionDetector",
    "InjectionSettings",
    "InjectionVerdict",
    "PassageVerdict",
    "_Plan",
    "_plan",
    "_windows",
    "load_examples",
    "match_rule",
]


# Texts up to this long are screened by the rules on the event loop (well under a millisecond).
_INLINE_RULE_CHARS = 8192
JUDGE_THRESHOLD = 0.5

# An injection probability in [0, 1], or None for no opinion (then the classifier decides); never raises.
Judge = Callable[[str], float | Awaitable[float | None] | None]


class InjectionSettings(BaseModel):
    """`threshold` decides classifier scores of messages (None: the model's escalation threshold);
    `passage_threshold` a passage sentence's (None: the model's). Only grey-zone scores go to the judge,
    whose own score is decided at JUDGE_THRESHOLD."""

    rules_enabled: bool = True
    threshold: float | None = Field(None, ge=0, le=1)
    passage_threshold: float | None = Field(None, ge=0, le=1)
    # Passage verdicts remembered by content (0: none), so a chunk is judged once, not once per reply.
    passage_cache_size: int = Field(4096, ge=0)
    # The judge's grey zone; None: from half the escalation threshold up to the block threshold.
    grey_low: float | None = Field(None, ge=0, le=1)
    grey_high: float | None = Field(None, ge=0, le=1)
    # Also score each sentence of a multi-sentence text: an appended or hidden injection is not averaged away.
    sentences: bool = True
    # The lexical prescreen (`injection_prescreen.py`) clears what looks less like an injection than any
    # attack it was tuned on, sparing the embedding; only beside the shipped model it was fitted with.
    prescreen: bool = True


@dataclass(frozen=True)
class InjectionVerdict:
    score: float
    is_injection: bool
    tier: Literal["rules", "prescreen", "classifier", "judge"]
    reason: str


async def _settle(answer: float | Awaitable[float | None] | None) -> float | None:  # awaited, clipped
    if answer is not None and not isinstance(answer, int | float):
        answer = await answer
    return None if answer is None else min(1.0, max(0.0, float(answer)))


def _candidates(plan: _Plan, vectors: npt.NDArray[np.float64], *, passage: bool) -> Candidates:
    if passage:
        return candidate_rows(vectors, plan.pieces, plan.scored, plan.windows, include_windows=False)
    return message_candidates(vectors, plan.pieces, plan.scored, plan.windows)


def _unique_pieces(plans: list[_Plan]) -> tuple[list[str], npt.NDArray[np.intp]]:
    """The distinct pieces of the plans, each embedded once (a mail's repeated lines and signatures, the
    same chunk twice in one retrieval), and where each piece's vector is among them, in plan order."""
    index: dict[str, int] = {}
    where = [index.setdefault(piece, len(index)) for plan in plans for piece in plan.pieces]
    return list(index), np.asarray(where, dtype=np.intp)


class InjectionDetector:
    """`embedder` None: rules only. `cache_dir` None: a fallback classifier is fitted in memory at each
    start. `extra_examples` adds a labeled JSON-lines file to the shipped examples and fits on them
    instead of using the shipped model (the cache key covers it). `stored`: passage verdicts kept ahead
    of use (`keep_passage_verdicts`, at ingestion), read after the in-memory ones."""

    def __init__(
        self,
        embedder: EmbeddingProvider | None = None,
        *,
        cache_dir: Path | None = None,
        settings: InjectionSettings | None = None,
        judge: Judge | None = None,
        extra_examples: Path | None = None,
        model: InjectionModel | None = None,
        stored: StoredVerdicts | None = None,
        prescreen: LexicalPrescreen | None = None,
    ) -> None:
        self._embedder = embedder
        # Concurrent requests' messages share a call of the model (half the CPU a message, in eights).
        self._message_vectors = CombinedEmbedding(lambda t: embedder.aembed(t)) if embedder else None
        self._cache_dir = cache_dir
        self.settings = settings or InjectionSettings()
        self._judge = judge
        self._extra = extra_examples
        self._given = model
        self._given_prescreen = prescreen  # with a given model: the shipped one fits the shipped model only
        self._model: InjectionModel | None = None
        self._prescreen: LexicalPrescreen | None = None
        self._lock = threading.Lock()
        self._passages = PassageRecall(self.settings.passage_cache_size, stored)
        self._state: tuple[tuple[bool, float | None, int], str] | None = None

    @property
    def thresholds(self) -> Thresholds:
        """The model's decision thresholds (the defaults without an embedder)."""
        self.warm_up()
        return self._model.thresholds if self._model is not None else Thresholds()

    @property
    def model(self) -> InjectionModel | None:
        self.warm_up()
        return self._model

    def cache_path(self) -> Path | None:
        """Where a classifier fitted on the shipped examples (and `extra_examples`) is cached."""
        if self._embedder is None or self._cache_dir is None:
            return None
        return fallback_path(self._cache_dir, self._embedder, self._extra)

    def warm_up(self) -> None:
        """Uses the given or shipped model when it was fitted on this embedder (one probe embedding);
        else loads the cached fallback classifier, or fits it (one embedding pass) and caches it."""
        with self._lock:
            if self._embedder is None or self._model is not None:
                return
            if self._given is not None:
                self._model, self._prescreen = self._given, self._given_prescreen
                return
            if self._extra is None and SHIPPED_MODEL.is_file():
                shipped = InjectionModel.load(SHIPPED_MODEL)
                if shipped.fits(self._embedder.embed([PROBE])[0].astype(np.float64)):
                    self._prescreen = shipped_prescreen() if self.settings.prescreen else None
                    self._model = shipped
                    return
            assert self._embedder is not None
            sentences = self.settings.sentences
            self._model = fallback_model(
                self._embedder, self._extra, sentences=sentences, path=self.cache_path()
            )

    # -- messages --------------------------------------------------------------------------------------

    def check(self, text: str) -> InjectionVerdict:
        return self.check_many([text])[0]

    def check_many(self, texts: list[str]) -> list[InjectionVerdict]:
        """One verdict per text; texts no rule caught are embedded in one batch."""
        verdicts, pending = self._screen(texts)
        if pending:
            assert self._embedder is not None
            self.warm_up()
            if not (pending := self._not_cleared(texts, verdicts, pending)):
                return [verdict for verdict in verdicts if verdict is not None]
            vectors = self._embedder.embed([piece for _, plan in pending for piece in plan.pieces])
            for index, probability in self._message_scores(vectors, pending).items():
                judge = self._judge_for(probability)
                judged = self._judge_sync(judge, texts[index]) if judge else None
                verdicts[index] = self._decide(probability, judged)
        return [verdict for verdict in verdicts if verdict is not None]

    async def acheck(self, text: str) -> InjectionVerdict:
        return (await self.acheck_many([text]))[0]

    async def acheck_many(self, texts: list[str]) -> list[InjectionVerdict]:
        """`check_many` for event loops: embedding in turns at the model, an async judge awaited; the
        rules too, for long texts (they read all of one, at about a second per megabyte)."""
        if sum(len(text) for text in texts) > _INLINE_RULE_CHARS:
            verdicts, pending = await asyncio.to_thread(self._screen, texts)
        else:
            verdicts, pending = self._screen(texts)
        if pending:
            assert self._embedder is not None and self._message_vectors is not None
            if self._model is None:  # a thread only while it loads: a warm check stays on the loop
                await asyncio.to_thread(self.warm_up)
            if not (pending := self._not_cleared(texts, verdicts, pending)):
                return [verdict for verdict in verdicts if verdict is not None]
            vectors = await self._message_vectors([piece for _, plan in pending for piece in plan.pieces])
            for index, probability in self._message_scores(vectors, pending).items():
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

    def _not_cleared(
        self, texts: list[str], verdicts: list[InjectionVerdict | None], pending: list[tuple[int, _Plan]]
    ) -> list[tuple[int, _Plan]]:
        """The pending texts the prescreen does not clear; a cleared one gets its verdict here."""
        if self._prescreen is None:
            return pending
        left = []
        for index, plan in pending:
            cleared, score = self._prescreen.clears(texts[index], PRESCREEN_MAX_CHARS)
            if cleared:
                reason = f"prescreen score {score:.3f} below its cut {self._prescreen.cut:.3f}"
                verdicts[index] = InjectionVerdict(score, False, "prescreen", reason)
            else:
                left.append((index, plan))
        return left

    def _message_scores(
        self, vectors: npt.NDArray[np.float32], pending: list[tuple[int, _Plan]]
    ) -> dict[int, float]:
        assert self._model is not None
        worst: dict[int, float] = {}
        row = 0
        for index, plan in pending:
            own = vectors[row : row + len(plan.pieces)].astype(np.float64)
            row += len(plan.pieces)
            candidates = _candidates(plan, own, passage=False)
            worst[index] = float(np.max(self._model.message.probabilities(candidates.rows)))
        return worst

    def use_judge(self, judge: Judge | None) -> None:
        """Sets (or, with None, removes) the judge of the grey zone."""
        self._judge = judge

    def _judge_for(self, probability: float) -> Judge | None:
        if self._judge is None:
            return None
        low, high = self.settings.grey_low, self.settings.grey_high
        low = self.thresholds.escalate / 2 if low is None else low
        high = self.thresholds.block if high is None else high
        return self._judge if low <= probability < high else None

    def _decide(self, probability: float, judged: float | None) -> InjectionVerdict:
        threshold = (
            self.settings.threshold if self.settings.threshold is not None else self.thresholds.escalate
        )
        if judged is not None:  # a judge answers on its own scale: a probability, decided at one half
            reason = f"judge score {judged:.2f}; classifier {probability:.2f} was in the grey zone"
            return InjectionVerdict(judged, judged >= JUDGE_THRESHOLD, "judge", reason)
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

    # -- passages --------------------------------------------------------------------------------------

    def check_passages(self, texts: list[str]) -> list[PassageVerdict]:
        """Which sentences of each retrieved passage are instructions to the reader: the rules' hits
        (widened to their sentences) and the sentences the passage head scores at or above the passage
        threshold. Every passage is classified, rule hit or not, so that all its instructions are found.
        A passage judged before by the same detector state (remembered or stored) is not judged again."""
        if self._embedder is not None:
            self.warm_up()
        state = self.passage_state()
        known, missing = self._passages.recall(state, texts)
        pending = [texts[i] for i in missing]
        judged = self._judge_passages(pending) if pending else []
        self._passages.remember(state, pending, judged)
        return self._passages.merged(known, missing, judged)

    async def acheck_passages(self, texts: list[str]) -> list[PassageVerdict]:
        """`check_passages` for event loops: the embedding in turns at the model, the store read on a
        worker thread. How many passages were judged here, not found, goes on the current span."""
        if self._embedder is not None:
            await asyncio.to_thread(self.warm_up)
        state = self.passage_state()
        known, missing = self._passages.in_memory(state, texts)
        if missing and self._passages.stored is not None:
            known, missing = await asyncio.to_thread(self._passages.recall, state, texts, (known, missing))
        pending = [texts[i] for i in missing]
        trace.get_current_span().set_attribute("keel.guard.sources_screened", len(pending))
        judged = await self._ajudge_passages(pending) if pending else []
        self._passages.remember(state, pending, judged)
        return self._passages.merged(known, missing, judged)

    def keep_passage_verdicts(self, texts: list[str]) -> int:
        """Judges passages ahead of their use (a knowledge base's chunks as they are ingested) and keeps
        their verdicts in the store, where a request finds them; a text with a verdict kept under this
        state is not judged again. Returns how many texts were judged."""
        if self._embedder is not None:
            self.warm_up()
        return self._passages.keep(self.passage_state(), texts, self._judge_passages)

    def passage_state(self) -> str:
        """What a passage verdict depends on besides its text (`passage_state.py`), the model's included."""
        self.warm_up()
        key = (self.settings.rules_enabled, self.settings.passage_threshold, id(self._model))
        if self._state is None or self._state[0] != key:
            embedder = self._embedder.model_id if self._embedder is not None else None
            self._state = (key, passage_state(key[0], key[1], self._model, embedder))
        return self._state[1]

    def _judge_passages(self, texts: list[str]) -> list[PassageVerdict]:
        plans = [_plan(text, True) for text in texts]
        hits = [self._passage_rules(text) for text in texts]
        if self._embedder is None:
            return [passage_verdict(t, h, p, None) for t, h, p in zip(texts, hits, plans, strict=True)]
        unique, where = _unique_pieces(plans)
        vectors = self._embedder.embed(unique)[where]
        return self._passage_verdicts(texts, hits, plans, vectors)

    async def _ajudge_passages(self, texts: list[str]) -> list[PassageVerdict]:
        plans, hits = await asyncio.to_thread(
            lambda: ([_plan(text, True) for text in texts], [self._passage_rules(text) for text in texts])
        )
        if self._embedder is None:
            return [passage_verdict(t, h, p, None) for t, h, p in zip(texts, hits, plans, strict=True)]
        unique, where = _unique_pieces(plans)
        vectors = (await self._embedder.aembed(unique))[where]
        return self._passage_verdicts(texts, hits, plans, vectors)

    def _passage_rules(self, text: str) -> list[tuple[str, int, int]]:
        return rule_spans(text) if self.settings.rules_enabled else []

    def _passage_verdicts(
        self,
        texts: list[str],
        hits: list[list[tuple[str, int, int]]],
        plans: list[_Plan],
        vectors: npt.NDArray[np.float32],
    ) -> list[PassageVerdict]:
        threshold = self.settings.passage_threshold
        threshold = self.thresholds.passage if threshold is None else threshold
        verdicts = []
        row = 0
        for text, found, plan in zip(texts, hits, plans, strict=True):
            own = vectors[row : row + len(plan.pieces)].astype(np.float64)
            row += len(plan.pieces)
            scoring = None if self._model is None else (self._model.passage, own, threshold)
            verdicts.append(passage_verdict(text, found, plan, scoring))
        return verdicts

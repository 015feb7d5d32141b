"""The passage verdicts a detector already has: remembered in memory (`verdict_cache.py`), else kept in
the store (`verdict_store.py`, written when a knowledge base's chunks are ingested). Only a passage
found in neither is judged at request time."""

from __future__ import annotations

from collections.abc import Callable

from keel.guard.passage_verdict import PassageVerdict
from keel.guard.verdict_cache import VerdictCache
from keel.guard.verdict_store import StoredVerdicts

Known = tuple[list[PassageVerdict | None], list[int]]


class PassageRecall:
    def __init__(self, size: int, stored: StoredVerdicts | None) -> None:
        self._memory: VerdictCache[PassageVerdict] = VerdictCache(size)
        self.stored = stored

    def in_memory(self, state: str, texts: list[str]) -> Known:
        """The verdicts remembered for `texts` (None where not) and the indices of the others."""
        return self._memory.lookup(state, texts)

    def recall(self, state: str, texts: list[str], seen: Known | None = None) -> Known:
        """`in_memory` (or `seen`, its answer), then the store for the rest (remembered from now on)."""
        known, missing = seen or self._memory.lookup(state, texts)
        if not missing or self.stored is None:
            return known, missing
        kept = self.stored.lookup(state, [texts[i] for i in missing])
        found = [(i, verdict) for i, verdict in zip(missing, kept, strict=True) if verdict is not None]
        for i, verdict in found:
            known[i] = verdict
        self._memory.remember(state, [texts[i] for i, _ in found], [verdict for _, verdict in found])
        return known, [i for i in missing if known[i] is None]

    def remember(self, state: str, texts: list[str], verdicts: list[PassageVerdict]) -> None:
        self._memory.remember(state, texts, verdicts)

    def merged(
        self, known: list[PassageVerdict | None], missing: list[int], judged: list[PassageVerdict]
    ) -> list[PassageVerdict]:
        return self._memory.merged(known, missing, judged)

    def keep(self, state: str, texts: list[str], judge: Callable[[list[str]], list[PassageVerdict]]) -> int:
        """Judges the texts the store has no verdict for under `state` and keeps their verdicts there;
        returns how many were judged (none without a store)."""
        if self.stored is None or not texts:
            return 0
        unique = list(dict.fromkeys(texts))
        kept = self.stored.lookup(state, unique)
        pending = [text for text, verdict in zip(unique, kept, strict=True) if verdict is None]
        if pending:
            self.stored.keep(state, pending, judge(pending))
        return len(pending)

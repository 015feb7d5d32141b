"""Catching up on screening: chunks with no passage verdict kept under the detector's current state
(ingested before screening at ingestion, while it was off, or under an earlier model or threshold) are
screened in the background, a batch at a time, so that replies read their verdicts again."""

from __future__ import annotations

import secrets

from keel.guard.injection import InjectionDetector
from keel.guard.verdict_store import PassageVerdictStore

BATCH = 128


def screen_unscreened(detector: InjectionDetector, store: PassageVerdictStore, batch: int = BATCH) -> int:
    """Screens every chunk the store has no verdict for under the detector's state; returns how many
    texts were screened. Starts at a random digest, so consumers running it at once share the work."""
    state = detector.passage_state()
    start = secrets.token_hex(32)
    screened = 0
    last: list[str] = []
    while (texts := store.unscreened(state, batch, start)) and texts != last:
        # None judged: another consumer kept them meanwhile, and the next batch is theirs too.
        if (judged := detector.keep_passage_verdicts(texts)) == 0:
            break
        screened += judged
        last = texts
    return screened

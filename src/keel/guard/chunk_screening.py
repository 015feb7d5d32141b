"""Catching up on screening: chunks with no passage verdict kept under the detector's current state
(ingested before screening at ingestion, while it was off, or under an earlier model or threshold) are
screened in the background, a batch at a time, so that replies read their verdicts again.

A run stops starting batches after BUDGET_S: it runs every minute on a job consumer, so an ingestion job
waits for it that long at most, and a stopping consumer finishes it within its drain timeout."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from keel.guard.injection import InjectionDetector
from keel.guard.verdict_store import PassageVerdictStore

BATCH = 16
BUDGET_S = 15.0


def screen_unscreened(
    detector: InjectionDetector,
    store: PassageVerdictStore,
    *,
    batch: int = BATCH,
    budget_s: float = BUDGET_S,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Screens chunks the store has no verdict for under the detector's state, batch after batch until
    none is left or `budget_s` has passed; returns how many texts were screened. Starts at a random
    digest, so consumers running it at once mostly share the work instead of repeating it."""
    state = detector.passage_state()
    start, began = secrets.token_hex(32), clock()
    screened = 0
    last: list[str] = []
    while clock() - began < budget_s and (texts := store.unscreened(state, batch, start)) and texts != last:
        # None judged: another consumer kept them meanwhile, and the next batch is likely theirs too.
        if (judged := detector.keep_passage_verdicts(texts)) == 0:
            break
        screened += judged
        last = texts
    return screened

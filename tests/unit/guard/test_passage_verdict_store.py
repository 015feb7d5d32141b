"""Passage verdicts kept ahead of use (at ingestion) are read instead of judged, under the detector state
they were judged in only; the state is a digest that another process computes alike."""

from __future__ import annotations

import asyncio

from keel.guard.injection import InjectionDetector, InjectionSettings
from keel.guard.passage_state import passage_state
from keel.guard.passage_verdict import PassageVerdict
from tests.unit.guard.test_passage_verdict_cache import PAGES, CountingEmbedder


class DictStore:
    """The database's verdict store without the database (`tests/services` runs the real one)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], PassageVerdict] = {}
        self.lookups = 0

    def lookup(self, state: str, texts: list[str]) -> list[PassageVerdict | None]:
        self.lookups += 1
        return [self.rows.get((state, text)) for text in texts]

    def keep(self, state: str, texts: list[str], verdicts: list[PassageVerdict]) -> None:
        for text, verdict in zip(texts, verdicts, strict=True):
            self.rows.setdefault((state, text), verdict)


def _detector(
    store: DictStore, settings: InjectionSettings | None = None
) -> tuple[InjectionDetector, CountingEmbedder]:
    embedder = CountingEmbedder()
    detector = InjectionDetector(embedder, settings=settings, stored=store)
    detector.warm_up()
    embedder.embedded = 0
    return detector, embedder


def test_verdicts_kept_at_ingestion_are_read_not_judged_by_another_detector() -> None:
    store = DictStore()
    ingesting, ingesting_embedder = _detector(store)
    assert ingesting.keep_passage_verdicts([*PAGES, PAGES[0]]) == 2
    assert ingesting_embedder.embedded > 0 and len(store.rows) == 2
    assert ingesting.keep_passage_verdicts(PAGES) == 0, "kept verdicts are not judged again"

    answering, embedder = _detector(store)
    assert answering.passage_state() == ingesting.passage_state()
    verdicts = asyncio.run(answering.acheck_passages(list(reversed(PAGES))))
    assert embedder.embedded == 0
    alone, _ = _detector(DictStore())
    assert verdicts == list(reversed(alone.check_passages(PAGES)))
    assert [v.is_injection for v in verdicts] == [True, False]
    # Read once from the store, then remembered in memory.
    lookups = store.lookups
    answering.check_passages(PAGES)
    assert store.lookups == lookups and embedder.embedded == 0


def test_a_changed_detector_state_judges_afresh() -> None:
    store = DictStore()
    ingesting, _ = _detector(store)
    ingesting.keep_passage_verdicts(PAGES)
    stricter, embedder = _detector(store, InjectionSettings(passage_threshold=0.01))
    assert stricter.passage_state() != ingesting.passage_state()
    assert all(v.is_injection for v in stricter.check_passages(PAGES))
    assert embedder.embedded > 0


def test_the_state_names_rules_threshold_model_and_embedder() -> None:
    detector, _ = _detector(DictStore())
    model = detector.model
    assert model is not None
    base = passage_state(True, None, model, "counting-words")
    assert base == detector.passage_state()
    assert base == passage_state(True, model.thresholds.passage, model, "counting-words")
    others = {
        passage_state(False, None, model, "counting-words"),
        passage_state(True, 0.5, model, "counting-words"),
        passage_state(True, None, model, "other"),
        passage_state(True, None, None, "counting-words"),
    }
    assert base not in others and len(others) == 4


def test_the_state_follows_the_passage_head_not_the_message_head() -> None:
    """A refit of the message head alone leaves kept passage verdicts valid (passages never read it); a
    refit of the passage head makes them stale."""
    from dataclasses import replace

    from keel.guard.injection_model import Head

    detector, _ = _detector(DictStore())
    model = detector.model
    assert model is not None
    base = passage_state(True, None, model, "counting-words")
    message = Head(model.message.weights * 0.5, model.message.bias + 1.0, model.message.platt)
    passage = Head(model.passage.weights * 0.5, model.passage.bias, model.passage.platt)
    assert passage_state(True, None, replace(model, message=message), "counting-words") == base
    assert passage_state(True, None, replace(model, passage=passage), "counting-words") != base

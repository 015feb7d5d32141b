"""Extractive composition on hand-made passages: the answer present, partly present and absent; page
furniture, FAQ questions and pronouns; and the passage text as a reader sees it."""

# The passages write ranges with en dashes (2–3 days), as the demo's help centre does.
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

from keel.copilot.compose import Composer, focus
from keel.copilot.policy import ANSWER_EVIDENCE
from keel.copilot.text import contacts, is_furniture, names, numbers, passage_units
from keel.copilot.vectors import SentenceVectors
from keel.knowledge.retrieval import SearchResult, StageScore
from tests.unit.copilot.doubles import WordEmbedder

SHIPPING = """Home > Help centre > Shipping
Skip to main content

## Delivery times

- Netherlands, Belgium and Luxembourg: 2–3 working days.
- Germany, France and Austria: 3–5 working days.

E-bikes leave the warehouse 90% assembled. Parts ship the same working day when you
order before 14:00 CET.

## Tracking your order

You receive a tracking link by email as soon as your order leaves the warehouse. You can also find it
in your account under **Orders**."""

FAQ = """Frequently asked questions
Should I bag my recyclables?
No, keep recyclables loose in the bin; bagged recyclables jam the sorting machines.
Can I recycle pizza boxes?
Clean pizza boxes go in the paper bin."""


def source(text: str, chunk_id: str = "chk_1", ordinal: int = 0, doc_type: str = "markdown") -> SearchResult:
    return SearchResult(
        chunk_id=chunk_id,
        document_id=f"doc_{chunk_id}",
        title="Help",
        source=f"help/{chunk_id}.md",
        doc_type=doc_type,
        heading_path="",
        ordinal=ordinal,
        text=text,
        meta={},
        score=1.0,
        scores={"vector": StageScore(score=0.6, rank=1)},
    )


def composer() -> Composer:
    return Composer(SentenceVectors(WordEmbedder()))


def test_the_answer_present_is_composed_from_its_sentence_and_cited() -> None:
    composed = composer().compose("How long does delivery to Germany take?", [source(SHIPPING)])
    assert composed.sentences[0].text == "Germany, France and Austria: 3–5 working days."
    # The word double is not calibrated like the embedding model; the README test checks the threshold.
    assert composed.evidence > composer().compose("Can I pay with bitcoin?", [source(SHIPPING)]).evidence
    assert composed.quotes() == {"chk_1": composed.text}
    assert "Skip" not in composed.text and ">" not in composed.text


def test_the_answer_partly_present_scores_below_the_full_answer() -> None:
    full = composer().compose("How do I track my order?", [source(SHIPPING)])
    partly = composer().compose("How do I track my order and change its address?", [source(SHIPPING)])
    assert full.sentences[0].text.startswith("You receive a tracking link")
    assert partly.sentences[0].text == full.sentences[0].text
    assert partly.evidence < full.evidence


def test_the_answer_absent_leaves_no_evidence() -> None:
    composed = composer().compose("Can I pay with bitcoin?", [source(SHIPPING)])
    assert composed.evidence < ANSWER_EVIDENCE / 2


def test_an_faq_question_hands_its_match_to_its_answer() -> None:
    composed = composer().compose("Should I put my recyclables in a bag?", [source(FAQ)])
    assert composed.sentences[0].text.startswith("No, keep recyclables loose")
    assert all(not s.text.endswith("?") for s in composed.sentences)


def test_a_sentence_referring_back_keeps_the_one_it_refers_to() -> None:
    text = "The Larkspur Care plan covers theft and wear parts. It costs €9 a month, billed on the 1st."
    composed = composer().compose("What does it cost per month?", [source(text)])
    assert [s.text for s in composed.sentences] == [
        "The Larkspur Care plan covers theft and wear parts.",
        "It costs €9 a month, billed on the 1st.",
    ]


def test_overlapping_text_chunks_skip_the_repeated_start() -> None:
    clipped = "leaves the warehouse. The courier delivers within two working days of dispatch."
    composed = composer().compose(
        "When does the courier deliver?", [source(clipped, ordinal=3, doc_type="text")]
    )
    assert composed.sentences[0].text.startswith("The courier delivers")
    assert not any("leaves the warehouse" in s.text for s in composed.context)


def test_focus_cuts_sources_down_to_their_best_sentences() -> None:
    sources = [source(SHIPPING), source(FAQ, "chk_2")]
    composed = composer().compose("How long does delivery to Germany take?", sources)
    focused = focus(sources, composed)
    assert {s.chunk_id for s in focused} <= {"chk_1", "chk_2"}
    assert all(len(s.text) < len(original.text) for s, original in zip(focused, sources, strict=False))


def test_passages_read_as_a_reader_sees_them() -> None:
    units = passage_units(SHIPPING)
    assert "Germany, France and Austria: 3–5 working days." in units
    assert "Parts ship the same working day when you order before 14:00 CET." in units
    assert "You can also find it in your account under Orders." in units
    assert passage_units("once.This illustration shows it.") == ["once.", "This illustration shows it."]
    assert is_furniture("Home > Help centre > Shipping") and is_furniture("Skip to main content")
    assert is_furniture("Programs & ServicesFacilitiesSystem OverviewResourcesContact Us")
    assert not is_furniture("E-bikes leave the warehouse 90% assembled.")


def test_names_numbers_and_contacts_are_read_off_a_claim() -> None:
    assert names("German citizens apply to Anna Smith at the DMV.") == {"german", "anna", "smith", "dmv"}
    assert names("Error E04 means a sensor fault.") == {"e04"}
    assert numbers("It costs 1,200 euros, or 5.00 a day for 3–5 days.") == {"1200", "5", "3"}
    assert contacts("Call +31 20 123 4567 or mail help@example.org, see https://www.example.org/x.") == {
        "31201234567",
        "help@example.org",
        "example.org/x",
    }


def test_a_sentence_announcing_a_list_brings_its_items() -> None:
    text = "A misdemeanor is a lesser crime. Examples of misdemeanors are:\n- petty theft\n- trespassing\n"
    composed = composer().compose("What are examples of misdemeanors?", [source(text)])
    assert [s.text for s in composed.sentences][-3:] == [
        "Examples of misdemeanors are:",
        "petty theft.",
        "trespassing.",
    ]
    announced = [source("Examples of misdemeanors are:")]
    assert composer().compose("What are examples of misdemeanors?", announced).sentences == []

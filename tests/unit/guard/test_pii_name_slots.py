"""Names found by the slot they stand in, where the small NER model calls them something else."""

from __future__ import annotations

import pytest

from keel.guard.pii_names import context_names


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Obinna Eze here.", "Obinna Eze"),
        ("I spoke with Dariusz yesterday.", "Dariusz"),
        ("Tell Henrietta Blomqvist that the bike arrived.", "Henrietta Blomqvist"),
        ("My colleague Torpy will sign for it.", "Torpy"),
        ("The order was placed by Marrero.", "Marrero"),
        ("Hello mika, your order has shipped.", "mika"),
        ("Kind regards,\nroberto", "roberto"),
        ("I'm writing on behalf of Eklund.", "Eklund"),
        ("Jones and I share the account.", "Jones"),
    ],
)
def test_a_name_in_a_name_slot_is_found(text: str, name: str) -> None:
    assert [found.text for found in context_names(text)] == [name]


@pytest.mark.parametrize(
    "text",
    [
        "Tell me when my card arrives.",
        "I spoke with support yesterday.",
        "Hello, my card is blocked.",
        "Thanks!",
        "The order was placed by mistake.",
        "Ask Monday's team about it.",
        "I am Happy with the service.",
    ],
)
def test_a_slot_holding_an_ordinary_word_is_not_a_name(text: str) -> None:
    assert list(context_names(text)) == []

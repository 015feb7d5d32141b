"""Whose turn comes next: least model time first, a bounded head start for a newcomer."""

from __future__ import annotations

import pytest

from keel.gateway.providers.turn_order import TurnOrder


def test_a_newcomer_is_placed_a_head_start_below_the_busy_requesters() -> None:
    order = TurnOrder(head_start_s=2.0)
    order.arrive("A", busy=set())
    order.charge("A", 10.0, busy={"A"})
    order.arrive("B", busy={"A"})
    assert order.used("A") - order.used("B") == 2.0
    assert order.first(["A", "B"]) == "B"
    assert order.owed_before("A", ["B"]) and not order.owed_before("B", ["A"])
    order.charge("B", 2.5, busy={"A", "B"})
    assert order.first(["A", "B"]) == "A"


def test_equals_are_served_in_the_callers_order() -> None:
    order = TurnOrder()
    for requester in ("C", "A", "B"):
        order.arrive(requester, busy=set())
    assert order.first(["C", "A", "B"]) == "C" and order.first(["B", "A"]) == "B"


def test_a_requester_that_had_much_model_time_gains_nothing_by_pausing() -> None:
    order = TurnOrder(head_start_s=2.0)
    order.arrive("A", busy=set())
    order.charge("A", 10.0, busy={"A"})
    order.arrive("B", busy={"A"})
    order.charge("B", 20.0, busy={"A", "B"})  # B used far more than A meanwhile
    heavy = order.used("B")
    order.arrive("B", busy={"A"})  # B returns after a pause
    assert order.used("B") == heavy


def test_the_line_never_moves_back_and_forgotten_requesters_start_from_it() -> None:
    order = TurnOrder(head_start_s=1.0)
    order.arrive("A", busy=set())
    order.charge("A", 5.0, busy={"A"})
    line = order.used("A")
    order.arrive("B", busy={"A"})  # B below A does not pull the line back
    order.arrive("C", busy={"A", "B"})
    assert order.used("C") == order.used("B") == line - 1.0
    order.arrive("D", busy=set())  # all gone: B and C are forgotten, D starts where they would
    assert order.used("D") == line - 1.0 and order.used("B") == line - 1.0
    with pytest.raises(ValueError):
        TurnOrder(head_start_s=-1)


def test_a_busy_period_starts_afresh_when_the_model_was_idle() -> None:
    """B had the model alone, then left it idle; A's large request arrives, then B's small one: both
    arrive as newcomers to the period A started, and B, having had less of it, goes first."""
    order = TurnOrder(head_start_s=2.0)
    order.arrive("B", busy=set())
    order.charge("B", 3.0, busy={"B"})  # B alone: the line follows B
    order.arrive("A", busy=set())  # B is gone: the model is idle
    order.charge("A", 0.7, busy={"A"})
    order.arrive("B", busy={"A"})
    assert order.used("A") - order.used("B") == pytest.approx(0.7)
    assert order.first(["A", "B"]) == "B"


def test_within_a_busy_period_a_returning_requester_keeps_its_record() -> None:
    order = TurnOrder(head_start_s=2.0)
    order.arrive("A", busy=set())
    order.arrive("B", busy={"A"})
    order.charge("B", 3.0, busy={"A", "B"})
    order.arrive("B", busy={"A"})  # B paused while A still had work: no fresh head start
    assert order.first(["A", "B"]) == "A"

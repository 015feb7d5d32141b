"""The README's support-copilot examples, asked on the demo data with the real local models: each answers
as the README says it does."""

# The demo's help centre writes ranges with en dashes (3–5 working days).
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from keel.demo.loader import load_demo
from keel.runtime import Runtime
from tests.integration.conftest import Keys


@pytest.fixture(scope="module")
def demo(runtime: Runtime, client: TestClient) -> None:
    load_demo(runtime.database, runtime.ingestion, tenant="acme")


def ask(client: TestClient, keys: Keys, message: str, **extra: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/support/replies", headers=keys.header(keys.app), json={"message": message, **extra}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_delivery_to_germany_is_answered_from_the_help_centre(
    client: TestClient, keys: Keys, demo: None
) -> None:
    reply = ask(client, keys, "How long does delivery to Germany take?")
    assert (reply["status"], reply["escalation_reasons"]) == ("answered", []), reply
    assert "Germany, France and Austria: 3–5 working days." in reply["reply"]
    assert reply["citations"][0]["source"] == "help-center/shipping-and-delivery.md"
    assert all(c["quote"] in reply["reply"] for c in reply["citations"])
    assert reply["confidence"] >= 0.55

    follow_up = ask(client, keys, "And to Belgium?", conversation_id=reply["conversation_id"])
    assert follow_up["status"] == "answered", follow_up
    assert "Netherlands, Belgium and Luxembourg: 2–3 working days." in follow_up["reply"]


def test_a_question_for_another_business_is_declined(client: TestClient, keys: Keys, demo: None) -> None:
    reply = ask(client, keys, "What is the capital of Peru?")
    assert (reply["status"], reply["citations"]) == ("needs_clarification", [])
    assert reply["reply"].startswith("I can help with questions about Larkspur Cycles")


def test_a_large_refund_goes_to_a_person(client: TestClient, keys: Keys, demo: None) -> None:
    reply = ask(client, keys, "I want a refund of €900 for my bike")
    assert reply["status"] == "escalated" and reply["escalation_reasons"] == ["refund_over_limit"]
    assert reply["review_id"]


def test_where_is_my_order_is_answered_from_the_customers_orders(
    client: TestClient, keys: Keys, demo: None
) -> None:
    reply = ask(client, keys, "Where is my order?", customer_id="C-1002")
    assert (reply["status"], reply["escalation_reasons"]) == ("answered", []), reply
    assert (
        "Order LC-50877 (Larkspur Trek 540 e-bike; placed 2026-11-17) has the status shipped."
        in reply["reply"]
    )
    assert "Order LC-50902 (Folding lock; placed 2026-11-20) has the status processing." in reply["reply"]
    assert reply["citations"][0]["source"] == "crm/lookup_orders"

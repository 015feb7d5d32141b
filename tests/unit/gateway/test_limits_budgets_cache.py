"""Rate limits, budgets, the response caches and the usage ledger."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from keel.config import BudgetSettings, CacheSettings, GatewaySettings, RateLimitSettings
from keel.errors import RateLimitError, UpstreamError
from keel.gateway.protocol import Usage
from keel.gateway.service import Caller, Gateway
from keel.store.engine import Database
from keel.store.models import BudgetCounter, UsageRecord
from tests.unit.gateway.doubles import FixedEmbedder, ScriptedModel, chat_request, local, make_gateway

ALICE = Caller(tenant="acme", key_id="key_alice")
BOB = Caller(tenant="acme", key_id="key_bob")
EVE = Caller(tenant="globex", key_id="key_eve")


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def ask(gateway: Gateway, caller: Caller, text: str = "hi", **extra: Any) -> Any:
    request = chat_request(messages=[{"role": "user", "content": text}], **extra)
    return run(gateway.chat(request, caller))


def test_requests_per_minute_refuse_exactly_past_the_limit(tmp_path: Path) -> None:
    settings = GatewaySettings(key_limits=RateLimitSettings(requests_per_minute=3))
    gateway = make_gateway(tmp_path, {"a": (ScriptedModel(["ok"]), local())}, settings=settings)
    for i in range(3):
        ask(gateway, ALICE, f"q{i}")
    with pytest.raises(RateLimitError) as refused:
        ask(gateway, ALICE, "q4")
    assert refused.value.retry_after is not None and 1 <= refused.value.retry_after <= 60
    ask(gateway, BOB, "another key has its own window")


def test_tenant_limits_are_shared_and_a_refusal_costs_nothing(tmp_path: Path) -> None:
    settings = GatewaySettings(
        key_limits=RateLimitSettings(requests_per_minute=2),
        tenant_limits=RateLimitSettings(requests_per_minute=3),
    )
    gateway = make_gateway(tmp_path, {"a": (ScriptedModel(["ok"]), local())}, settings=settings)
    ask(gateway, ALICE, "1")
    ask(gateway, ALICE, "2")
    with pytest.raises(RateLimitError):
        ask(gateway, ALICE, "3")  # refused by the key limit: the tenant's count must not move
    ask(gateway, BOB, "4")
    with pytest.raises(RateLimitError, match="tenant"):
        ask(gateway, BOB, "5")
    ask(gateway, EVE, "other tenant")


def test_tokens_per_minute(tmp_path: Path) -> None:
    settings = GatewaySettings(key_limits=RateLimitSettings(tokens_per_minute=300))
    gateway = make_gateway(tmp_path, {"a": (ScriptedModel(["ok"]), local())}, settings=settings)
    ask(gateway, ALICE, "short", max_tokens=100)
    ask(gateway, ALICE, "short again", max_tokens=100)
    with pytest.raises(RateLimitError, match="tokens"):
        ask(gateway, ALICE, "one more", max_tokens=100)


def test_fifty_concurrent_requests_never_overspend(tmp_path: Path) -> None:
    # Each call costs 0.001 (1,000 prompt + 1,000 completion tokens at 0.5 per million each) and reserves
    # its worst case first; 0.0105 allows ten calls at most, whatever their interleaving.
    priced = local(input_price=Decimal("0.5"), output_price=Decimal("0.5"))
    model = ScriptedModel(["ok"], usage=Usage.of(1000, 1000), delay_s=0.01)
    settings = GatewaySettings(tenant_budget=BudgetSettings(daily=Decimal("0.0105")))
    gateway = make_gateway(tmp_path, {"a": (model, priced)}, settings=settings)

    async def one(i: int) -> str:
        prompt = f"question {i:03d} " + "x" * 987  # 1,000 bytes: no more than 1,000 tokens
        request = chat_request(messages=[{"role": "user", "content": prompt}], max_tokens=1000)
        try:
            await gateway.chat(request, ALICE)
        except RateLimitError as exc:
            assert exc.code == "budget_exceeded"
            return "refused"
        return "answered"

    async def all_at_once() -> list[str]:
        return list(await asyncio.gather(*(one(i) for i in range(50))))

    outcomes = run(all_at_once())
    database = Database(f"sqlite:///{tmp_path / 'gateway.db'}")
    with database.session() as session:
        counters = list(session.scalars(select(BudgetCounter).where(BudgetCounter.scope == "tenant:acme")))
    assert counters and all(c.spent_micros <= 10_500 and c.reserved_micros == 0 for c in counters)
    assert outcomes.count("answered") == counters[0].spent_micros // 1000
    assert 1 <= outcomes.count("answered") <= 10
    assert outcomes.count("refused") >= 40


def test_failed_calls_release_their_reservation(tmp_path: Path) -> None:
    priced = local(input_price=Decimal(1), output_price=Decimal(1))
    settings = GatewaySettings(key_budget=BudgetSettings(monthly=Decimal("1")))
    gateway = make_gateway(
        tmp_path, {"a": (ScriptedModel([UpstreamError("down")]), priced)}, settings=settings
    )
    with pytest.raises(UpstreamError):
        ask(gateway, ALICE)
    database = Database(f"sqlite:///{tmp_path / 'gateway.db'}")
    with database.session() as session:
        counter = session.scalars(select(BudgetCounter)).one()
    assert (counter.spent_micros, counter.reserved_micros) == (0, 0)


def test_exact_cache_hits_and_is_scoped(tmp_path: Path) -> None:
    model = ScriptedModel(["first", "second", "third", "fourth"])
    gateway = make_gateway(tmp_path, {"a": (model, local())})
    ask(gateway, ALICE, "opening hours?")
    again, hit = ask(gateway, BOB, "opening hours?")
    assert (again.choices[0].message.content, hit.cache, hit.deployment) == ("first", "exact", "a")
    assert len(model.requests) == 1
    other_tenant, miss = ask(gateway, EVE, "opening hours?")
    assert (other_tenant.choices[0].message.content, miss.cache) == ("second", "miss")
    bypass, bypassed = ask(gateway, ALICE, "opening hours?", cache=False)
    assert (bypass.choices[0].message.content, bypassed.cache) == ("third", "miss")
    versioned, _ = ask(gateway, ALICE, "opening hours?", prompt_version="v2")
    assert versioned.choices[0].message.content == "fourth"
    gateway.cache.invalidate_tenant("acme")
    _, after = ask(gateway, ALICE, "opening hours?")
    assert after.cache == "miss"


def test_semantic_cache_serves_close_paraphrases_only(tmp_path: Path) -> None:
    embedder = FixedEmbedder(
        {
            "When do you open?": [1.0, 0.0, 0.0],
            "What time do you open?": [0.99, 0.1, 0.0],
            "Where is my order?": [0.0, 1.0, 0.0],
        }
    )
    settings = GatewaySettings(cache=CacheSettings(semantic=True, semantic_threshold=0.95))
    model = ScriptedModel(["At nine.", "It shipped."])
    gateway = make_gateway(tmp_path, {"a": (model, local())}, settings=settings, embedder=embedder)
    ask(gateway, ALICE, "When do you open?")
    paraphrase, info = ask(gateway, ALICE, "What time do you open?")
    assert (paraphrase.choices[0].message.content, info.cache) == ("At nine.", "semantic")
    different, info = ask(gateway, ALICE, "Where is my order?")
    assert (different.choices[0].message.content, info.cache) == ("It shipped.", "miss")
    _, foreign = ask(gateway, EVE, "What time do you open?")
    assert foreign.cache == "miss"


def test_schema_output_is_repaired_once(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    model = ScriptedModel(['{"n": "one"}', '{"n": 1}'])
    gateway = make_gateway(tmp_path / "a", {"a": (model, local())})
    completion, _ = ask(gateway, ALICE, "count", response_format=fmt)
    assert completion.choices[0].message.content == '{"n": 1}'
    assert completion.usage == Usage.of(14, 6)
    repair = model.requests[1].messages
    assert repair[-2].content == '{"n": "one"}' and "schema" in str(repair[-1].content)
    stubborn = make_gateway(tmp_path / "b", {"a": (ScriptedModel(['{"n": "one"}']), local())})
    with pytest.raises(UpstreamError, match="schema"):
        ask(stubborn, ALICE, "count", response_format=fmt)


def test_every_call_lands_in_the_ledger(tmp_path: Path) -> None:
    priced = local(input_price=Decimal(2), output_price=Decimal(4))
    model = ScriptedModel(["ok", UpstreamError("down", code="upstream_down")])
    gateway = make_gateway(tmp_path, {"a": (model, priced)})
    ask(gateway, ALICE, "one")
    ask(gateway, ALICE, "one")
    with pytest.raises(UpstreamError):
        ask(gateway, ALICE, "two")
    gateway.close()  # the ledger's writer thread has stored every row
    database = Database(f"sqlite:///{tmp_path / 'gateway.db'}")
    with database.session() as session:
        rows = list(session.scalars(select(UsageRecord).order_by(UsageRecord.created_at)))
    assert [(r.cache, r.outcome, r.deployment) for r in rows] == [
        ("miss", "ok", "a"),
        ("exact", "ok", "a"),
        ("miss", "upstream_down", None),
    ]
    assert (rows[0].prompt_tokens, rows[0].completion_tokens, rows[0].cost_micros) == (7, 3, 26)
    assert rows[1].cost_micros == 0 and rows[0].key_id == "key_alice" and rows[0].tenant == "acme"

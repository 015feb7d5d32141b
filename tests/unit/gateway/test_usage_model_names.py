"""Usage rows name a configured model alias; calls to a model that does not exist share one name."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from keel.errors import ModelNotFoundError
from keel.gateway.service import UNKNOWN_MODEL, Caller
from keel.store.engine import Database
from keel.store.models import UsageRecord
from tests.unit.gateway.doubles import ScriptedModel, chat_request, local, make_gateway

CALLER = Caller(tenant="acme", key_id="key_1")


def test_an_unknown_model_name_is_not_kept_in_the_usage_rows(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path, {"d": (ScriptedModel(["ok"]), local())})
    for name in ("gpt-7", "x" * 200):
        with pytest.raises(ModelNotFoundError):
            asyncio.run(gateway.chat(chat_request(model=name), CALLER))
    asyncio.run(gateway.chat(chat_request(), CALLER))
    gateway.close()  # the usage rows are written by the ledger's thread: stored by now
    with Database(f"sqlite:///{tmp_path / 'gateway.db'}").session() as session:
        rows = list(session.scalars(select(UsageRecord).order_by(UsageRecord.created_at)))
    assert sorted((r.alias, r.outcome) for r in rows) == [
        (UNKNOWN_MODEL, "model_not_found"),
        (UNKNOWN_MODEL, "model_not_found"),
        ("m", "ok"),
    ]

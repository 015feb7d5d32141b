"""The copilot's reply prompt from the registry: seeded from the shipped file on first use, and a label
move or rollback changes the very next reply's prompt. The model is scripted; the database, registry,
gateway ledger and review queue are real."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from keel.config import CopilotSettings
from keel.copilot.grounding import GroundingChecker
from keel.copilot.memory import ConversationMemory
from keel.copilot.pipeline import Copilot
from keel.copilot.prompt import SHIPPED_PROMPT
from keel.copilot.tools.base import ToolBox
from keel.copilot.tools.crm import crm_tools
from keel.copilot.types import ReplyRequest
from keel.gateway.service import Caller
from keel.governance.audit import AuditLog
from keel.prompts.fit import ContextBudgets
from keel.prompts.prompt_file import parse_prompt_file
from keel.prompts.registry import Actor, PromptRegistry
from keel.prompts.resolver import PromptResolver
from keel.prompts.source import RegistryPromptSource, ShippedPrompt
from keel.review.queue import ReviewQueue
from keel.review.webhooks import WebhookSender
from keel.store.engine import Database
from keel.store.models import UsageRecord
from tests.unit.copilot.doubles import WordEmbedder
from tests.unit.copilot.test_pipeline import FixedIntent, FixedSearch, source
from tests.unit.gateway.doubles import ScriptedModel, local, make_gateway

ADMIN = Actor("key_admin", admin=True)
CALLER = Caller(tenant="acme", key_id="key_app")
ANSWER = json.dumps({"reply": "A full charge takes about 4.5 hours.", "sources": [1]})


def build(tmp_path: Path, model: ScriptedModel) -> tuple[Copilot, PromptRegistry, Callable[[], UsageRecord]]:
    gateway = make_gateway(tmp_path, {"local": (model, local(context_window=4096))}, aliases=None)
    database = Database(f"sqlite:///{tmp_path / 'gateway.db'}")
    registry = PromptRegistry(database, AuditLog(database))
    budgets = ContextBudgets(gateway.dispatcher.aliases, gateway.dispatcher.deployments)
    source_ = RegistryPromptSource(registry, PromptResolver(database), budgets, SHIPPED_PROMPT)
    copilot = Copilot(
        # Every reply drafted by the model, so each one shows the prompt it was given.
        CopilotSettings(model_drafts="always"),
        "m",
        database,
        gateway,
        FixedSearch([source()], []),  # type: ignore[arg-type]
        FixedIntent("battery_charging"),  # type: ignore[arg-type]
        ToolBox(crm_tools(database)),
        GroundingChecker(WordEmbedder()),
        ConversationMemory(database),
        ReviewQueue(database, WebhookSender(None, None)),
        prompts=source_,
    )

    def last_usage() -> UsageRecord:
        assert gateway.settle_usage()  # the ledger writes in passes: what the last reply spent, stored
        with database.session() as session:
            return session.scalars(select(UsageRecord).order_by(UsageRecord.created_at.desc())).first()  # type: ignore[return-value]

    return copilot, registry, last_usage


def ask(copilot: Copilot, message: str = "How long does charging take?") -> Any:
    return asyncio.run(copilot.reply(ReplyRequest(message=message), CALLER))


def test_the_shipped_file_seeds_the_registry_and_renders_what_it_shipped(tmp_path: Path) -> None:
    model = ScriptedModel([ANSWER])
    copilot, registry, last_usage = build(tmp_path, model)
    ask(copilot)
    assert model.requests, "the model was asked for a draft"
    seeded = registry.prompt("acme", "support-reply")
    assert seeded.labels == {"latest": 1, "production": 1}
    assert registry.version("acme", "support-reply").author == "keel"
    sent = model.requests[-1].messages
    assert sent[0].text().startswith("You are the customer support assistant of Larkspur Cycles.")
    assert "[1] Battery care > Battery care > Charging: A full charge" in sent[1].text()
    assert sent[1].text().endswith("Question: How long does charging take?")
    # The same text as the file rendered alone, with no registry in between.
    alone = ShippedPrompt(SHIPPED_PROMPT)
    assert model.requests[-1].json_schema == alone._compiled.spec.output_schema
    usage = last_usage()
    assert (usage.prompt_version, usage.prompt_label, usage.feature) == (
        "support-reply@1",
        "production",
        "support",
    )


def test_a_new_version_and_a_rollback_change_the_next_reply(tmp_path: Path) -> None:
    model = ScriptedModel([ANSWER])
    copilot, registry, last_usage = build(tmp_path, model)
    ask(copilot)
    shipped = parse_prompt_file(SHIPPED_PROMPT.read_text(), "support-reply.yaml")
    terse = shipped.spec.model_copy(
        update={
            "messages": [
                shipped.spec.messages[0].model_copy(
                    update={"content": "You answer for {{ company }}, tersely."}
                ),
                shipped.spec.messages[1],
            ]
        }
    )
    assert registry.push("acme", "support-reply", terse, ADMIN, "terser").version == 2
    registry.move_label("acme", "support-reply", "production", 2, ADMIN, "try terse")
    ask(copilot)
    assert model.requests[-1].messages[0].text() == "You answer for Larkspur Cycles, tersely."
    assert last_usage().prompt_version == "support-reply@2"

    registry.rollback("acme", "support-reply", "production", ADMIN, "customers disliked it")
    # Another question, so the answer cached under version 1's prompt cannot stand in for the call.
    ask(copilot, "How long does a full charge take?")
    assert model.requests[-1].messages[0].text().startswith("You are the customer support assistant")
    assert last_usage().prompt_version == "support-reply@1"


def test_a_prompt_the_operator_changed_is_never_reseeded(tmp_path: Path) -> None:
    copilot, registry, _ = build(tmp_path, ScriptedModel([ANSWER]))
    shipped = parse_prompt_file(SHIPPED_PROMPT.read_text(), "support-reply.yaml")
    registry.push("acme", "support-reply", shipped.spec.model_copy(update={"model": "m"}), ADMIN, "mine")
    registry.move_label("acme", "support-reply", "production", 1, ADMIN)
    ask(copilot)
    assert registry.prompt("acme", "support-reply").latest == 1
    assert registry.version("acme", "support-reply").message == "mine"

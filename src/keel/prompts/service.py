"""Prompt management built for the runtime: the registry, the cached resolver, the request renderer and
the copilot's prompt source, over one database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from keel.config import Settings
from keel.gateway.service import Gateway
from keel.governance.audit import AuditLog
from keel.prompts.fit import ContextBudgets
from keel.prompts.registry import PromptRegistry
from keel.prompts.render import PromptRenderer
from keel.prompts.resolver import PromptResolver
from keel.prompts.source import RegistryPromptSource
from keel.store.engine import Database


@dataclass(frozen=True)
class Prompts:
    registry: PromptRegistry
    resolver: PromptResolver
    renderer: PromptRenderer
    # The copilot's reply prompt, seeded from its shipped file.
    copilot: RegistryPromptSource


def build_prompts(
    settings: Settings, database: Database, audit: AuditLog, gateway: Gateway, copilot_prompt: Path
) -> Prompts:
    config = settings.prompts
    registry = PromptRegistry(database, audit, frozenset(config.protected_labels), config.max_rendered_chars)
    resolver = PromptResolver(database, config.max_rendered_chars)
    budgets = ContextBudgets(gateway.dispatcher.aliases, gateway.dispatcher.deployments)
    return Prompts(
        registry=registry,
        resolver=resolver,
        renderer=PromptRenderer(resolver, budgets, settings.chat.default_max_tokens),
        copilot=RegistryPromptSource(registry, resolver, budgets, copilot_prompt),
    )

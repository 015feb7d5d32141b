"""Prompt management built for the runtime: the registry, the cached resolver, the request renderer, the
copilot's prompt source, experiments and canary releases (checked every minute on the queue)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from huey import Huey, crontab
from prometheus_client import CollectorRegistry

from keel.config import Settings
from keel.gateway.service import Gateway
from keel.governance.audit import AuditLog
from keel.prompts.alerts import CanaryAlerts
from keel.prompts.canary import Canaries
from keel.prompts.experiments import Experiments
from keel.prompts.fit import ContextBudgets
from keel.prompts.registry import PromptRegistry
from keel.prompts.render import PromptRenderer
from keel.prompts.resolver import PromptResolver
from keel.prompts.source import RegistryPromptSource
from keel.review.webhooks import WebhookSender
from keel.store.engine import Database


@dataclass(frozen=True)
class Prompts:
    registry: PromptRegistry
    resolver: PromptResolver
    renderer: PromptRenderer
    # The copilot's reply prompt, seeded from its shipped file.
    copilot: RegistryPromptSource
    experiments: Experiments
    canaries: Canaries


def build_prompts(
    settings: Settings,
    database: Database,
    audit: AuditLog,
    gateway: Gateway,
    copilot_prompt: Path,
    queue: Huey | None = None,
    metrics: CollectorRegistry | None = None,
) -> Prompts:
    config = settings.prompts
    registry = PromptRegistry(database, audit, frozenset(config.protected_labels), config.max_rendered_chars)
    resolver = PromptResolver(database, config.max_rendered_chars)
    budgets = ContextBudgets(gateway.dispatcher.aliases, gateway.dispatcher.deployments)
    canary = config.canary
    secret = os.environ.get(canary.webhook_secret_env) if canary.webhook_secret_env else None
    canaries = Canaries(
        database, registry, audit, canary, CanaryAlerts(WebhookSender(canary.webhook_url, secret), metrics)
    )
    if queue is not None:
        register_canary_checks(queue, canaries)
    return Prompts(
        registry=registry,
        resolver=resolver,
        renderer=PromptRenderer(resolver, budgets, settings.chat.default_max_tokens),
        copilot=RegistryPromptSource(registry, resolver, budgets, copilot_prompt),
        experiments=Experiments(
            database, registry, audit, known_model=lambda a: a in gateway.dispatcher.aliases
        ),
        canaries=canaries,
    )


def register_canary_checks(queue: Huey, canaries: Canaries) -> None:
    """Every consumer runs the check; a transition happens once, whichever consumer gets there first."""

    @queue.periodic_task(crontab(minute="*"), name="keel.prompt_canaries")  # type: ignore[untyped-decorator]
    def check_prompt_canaries() -> None:
        canaries.check_all()

"""Prompts for Keel's own pipelines (the copilot's reply): rendered from the registry, or from a shipped
prompt file when no registry is wired in.

A pipeline asks its `PromptSource` for a rendered prompt and makes the call itself. The registry's
source seeds the prompt from the shipped file the first time a tenant needs it (version 1, labelled
`production`), and from then on serves whatever the label points at, through canaries and experiments,
so an operator changes and rolls back the prompt without a release.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from keel.errors import NotFoundError
from keel.gateway.ledger import PromptUse
from keel.prompts.fit import ContextBudgets
from keel.prompts.prompt_file import PromptFile, parse_prompt_file
from keel.prompts.registry import Actor, PromptRegistry
from keel.prompts.resolver import PromptResolver, Resolution
from keel.prompts.spec import PromptParams
from keel.prompts.templates import CompiledPrompt, Message

# Who seeds a shipped prompt, in the registry's history and the audit log.
SEEDER = Actor("keel", admin=True)


@dataclass(frozen=True)
class RenderedPrompt:
    messages: list[Message]
    # "name@version" as usage reports and feedback record it.
    tag: str
    # None: rendered from the shipped file, not from the registry.
    use: PromptUse | None
    # The version's (or an experiment arm's) model alias; None: the pipeline's own.
    model: str | None
    params: PromptParams
    output_schema: dict[str, Any] | None

    @property
    def instructions(self) -> str:
        """The system (and developer) messages: what a reply must never leak."""
        return "\n".join(m["content"] for m in self.messages if m["role"] in ("system", "developer"))


class PromptSource(Protocol):
    def render(
        self,
        tenant: str,
        variables: dict[str, Any],
        *,
        unit: str | None,
        model: str,
        max_tokens: int,
        rollouts: bool = True,
    ) -> RenderedPrompt:
        """Blocking (it may read the database): call it off the event loop. `rollouts` False keeps the
        call out of canaries and experiments (an evaluation run must not count as their traffic)."""
        ...

    def served(self, tenant: str) -> PromptUse | None:
        """The version the label serves outside canaries and experiments (what an evaluation run gets);
        None for a prompt outside the registry. Blocking, like `render`."""
        ...


class ShippedPrompt:
    """A prompt file rendered as it is, with its variables checked: no registry, no overflow policy."""

    def __init__(self, path: Path) -> None:
        file = parse_prompt_file(path.read_text(encoding="utf-8"), path.name)
        self._compiled = CompiledPrompt(file.name, file.spec)
        self._tag = f"{file.name}@shipped"

    def render(
        self,
        tenant: str,
        variables: dict[str, Any],
        *,
        unit: str | None,
        model: str,
        max_tokens: int,
        rollouts: bool = True,
    ) -> RenderedPrompt:
        self._compiled.validate(variables)
        spec = self._compiled.spec
        messages = self._compiled.render(variables)
        return RenderedPrompt(messages, self._tag, None, spec.model, spec.params, spec.output_schema)

    def served(self, tenant: str) -> PromptUse | None:
        return None


class RegistryPromptSource:
    """The registry's version of a shipped prompt, under `label`."""

    def __init__(
        self,
        registry: PromptRegistry,
        resolver: PromptResolver,
        budgets: ContextBudgets,
        shipped: Path,
        label: str = "production",
    ) -> None:
        self._registry = registry
        self._resolver = resolver
        self._budgets = budgets
        self._shipped: PromptFile = parse_prompt_file(shipped.read_text(encoding="utf-8"), shipped.name)
        self._label = label
        self._seeded: set[str] = set()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._shipped.name

    def render(
        self,
        tenant: str,
        variables: dict[str, Any],
        *,
        unit: str | None,
        model: str,
        max_tokens: int,
        rollouts: bool = True,
    ) -> RenderedPrompt:
        resolution = self._resolve(tenant, unit, rollouts)
        spec = resolution.prompt.spec
        alias = resolution.model_override or spec.model or model
        budget = self._budgets.budget(alias, spec.params.max_tokens or max_tokens)
        if budget is None:
            resolution.prompt.validate(variables)
            messages = resolution.prompt.render(variables)
        else:
            messages = resolution.prompt.render_within(variables, budget.tokens, budget.count).messages
        return RenderedPrompt(
            messages, resolution.use.tag, resolution.use, alias, spec.params, spec.output_schema
        )

    def served(self, tenant: str) -> PromptUse:
        return self._resolve(tenant, None, rollouts=False).use

    def _resolve(self, tenant: str, unit: str | None, rollouts: bool) -> Resolution:
        self.seed(tenant)
        try:
            return self._resolver.resolve(tenant, self.name, label=self._label, unit=unit, rollouts=rollouts)
        except NotFoundError:
            # Deleted since this process seeded it: seeded again from the shipped file.
            with self._lock:
                self._seeded.discard(tenant)
            self.seed(tenant)
            return self._resolver.resolve(tenant, self.name, label=self._label, unit=unit, rollouts=rollouts)

    def seed(self, tenant: str) -> None:
        """Pushes the shipped file as version 1 and labels it, when the tenant has no such prompt yet.
        A prompt an operator already has is never touched (a newer shipped file does not replace it)."""
        if tenant in self._seeded:
            return
        with self._lock:
            if tenant in self._seeded:
                return
            try:
                self._registry.prompt(tenant, self.name)
            except NotFoundError:
                file = self._shipped
                pushed = self._registry.push(
                    tenant, file.name, file.spec, SEEDER, "shipped with Keel", file.description
                )
                if self._label not in self._registry.prompt(tenant, self.name).labels:
                    self._registry.move_label(
                        tenant, self.name, self._label, pushed.version, SEEDER, "seeded from the shipped file"
                    )
            self._seeded.add(tenant)

"""Resolving a prompt reference to a compiled version, for one call.

What a label serves (its version, a running canary or experiment on it) is cached per process under the
tenant's epoch (keel.prompts.epochs): one primary-key read per call checks it, and any change anywhere
(another replica, the CLI) makes the next call read the label again. Versions never change, so their
compiled templates stay cached until evicted. Canary and experiment arms are picked here, sticky per
end user (keel.prompts.assignment).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from cachetools import LRUCache
from sqlalchemy import select
from sqlalchemy.orm import Session

from keel.errors import NotFoundError
from keel.gateway.ledger import PromptUse
from keel.prompts import epochs
from keel.prompts.assignment import bucket, in_canary, pick
from keel.prompts.spec import PromptSpec
from keel.prompts.templates import CompiledPrompt
from keel.store.engine import Database
from keel.store.prompt_models import Prompt, PromptCanary, PromptExperiment, PromptLabel, PromptVersion

DEFAULT_LABEL = "production"
CANARY_ARM = "canary"
STABLE_ARM = "stable"


@dataclass(frozen=True)
class Arm:
    name: str
    weight: float
    # None: the label's own version (an arm that only changes the model).
    version: int | None = None
    # None: the version's model (an arm that only changes the version).
    model: str | None = None


@dataclass(frozen=True)
class Route:
    """What one label of one prompt serves, as read under one epoch."""

    prompt_id: str
    version: int | None
    canary_id: str | None = None
    canary_version: int | None = None
    canary_percent: float = 0.0
    experiment: str | None = None
    arms: tuple[Arm, ...] = ()


@dataclass(frozen=True)
class Resolution:
    prompt: CompiledPrompt
    use: PromptUse
    # An experiment arm's model alias, which decides the model over the version's and the request's.
    model_override: str | None = None


class PromptResolver:
    def __init__(self, database: Database, max_rendered_chars: int = 1_000_000, versions: int = 512) -> None:
        self._database = database
        self._max_chars = max_rendered_chars
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str, str | None], tuple[int, Route]] = {}
        self._compiled: LRUCache[tuple[str, int], CompiledPrompt] = LRUCache(maxsize=versions)

    def resolve(
        self,
        tenant: str,
        name: str,
        *,
        label: str | None = None,
        version: int | None = None,
        unit: str | None = None,
        rollouts: bool = True,
    ) -> Resolution:
        """The version a call gets: a pinned `version`, or what `label` (default `production`) serves to
        this `unit` (an end user, customer or conversation id) through a canary or experiment; with
        `rollouts` False (an evaluation run) the label's own version, outside any canary or experiment."""
        if version is not None:
            route = self._route(tenant, name, None)
            return Resolution(self._version(route.prompt_id, name, version), PromptUse(name, version))
        label = label or DEFAULT_LABEL
        route = self._route(tenant, name, label)
        if route.version is None:
            raise NotFoundError(
                f"Prompt '{name}' has no label '{label}'.", code="label_not_found", param="prompt.label"
            )
        if rollouts and route.canary_id is not None and route.canary_version is not None:
            chosen = in_canary(route.canary_id, unit, route.canary_percent)
            number = route.canary_version if chosen else route.version
            use = PromptUse(name, number, label, route.canary_id, CANARY_ARM if chosen else STABLE_ARM)
            return Resolution(self._version(route.prompt_id, name, number), use)
        if rollouts and route.experiment is not None and route.arms:
            arm = route.arms[pick([a.weight for a in route.arms], bucket(route.experiment, unit))]
            number = arm.version or route.version
            use = PromptUse(name, number, label, route.experiment, arm.name)
            return Resolution(self._version(route.prompt_id, name, number), use, arm.model)
        compiled = self._version(route.prompt_id, name, route.version)
        return Resolution(compiled, PromptUse(name, route.version, label))

    def compiled(self, tenant: str, name: str, version: int) -> CompiledPrompt:
        return self._version(self._route(tenant, name, None).prompt_id, name, version)

    # -- caches --------------------------------------------------------------------------------------

    def _route(self, tenant: str, name: str, label: str | None) -> Route:
        epoch = epochs.current(self._database, tenant)
        key = (tenant, name, label)
        with self._lock:
            cached = self._routes.get(key)
        if cached is not None and cached[0] == epoch:
            return cached[1]
        # The epoch was read before the route: a change committed in between leaves this entry under an
        # epoch that is already old, so the next call reads the route again (never the reverse).
        with self._database.reading() as session:
            route = _read_route(session, tenant, name, label)
        with self._lock:
            if len(self._routes) > 10_000:
                self._routes.clear()
            self._routes[key] = (epoch, route)
        return route

    def _version(self, prompt_id: str, name: str, version: int) -> CompiledPrompt:
        key = (prompt_id, version)
        with self._lock:
            found = self._compiled.get(key)
        if found is not None:
            return found
        with self._database.reading() as session:
            spec = session.scalar(
                select(PromptVersion.spec).where(
                    PromptVersion.prompt_id == prompt_id, PromptVersion.version == version
                )
            )
        if spec is None:
            raise NotFoundError(
                f"Prompt '{name}' has no version {version}.",
                code="prompt_version_not_found",
                param="prompt.version",
            )
        compiled = CompiledPrompt(name, PromptSpec.model_validate(spec), self._max_chars)
        with self._lock:
            self._compiled[key] = compiled
        return compiled


def _read_route(session: Session, tenant: str, name: str, label: str | None) -> Route:
    prompt_id = session.scalar(select(Prompt.id).where(Prompt.tenant == tenant, Prompt.name == name))
    if prompt_id is None:
        raise NotFoundError(f"No prompt '{name}'.", code="prompt_not_found", param="prompt.name")
    if label is None:
        return Route(prompt_id, None)
    version = session.scalar(
        select(PromptLabel.version).where(PromptLabel.prompt_id == prompt_id, PromptLabel.label == label)
    )
    canary = session.scalar(
        select(PromptCanary).where(
            PromptCanary.prompt_id == prompt_id, PromptCanary.label == label, PromptCanary.status == "running"
        )
    )
    if canary is not None:
        return Route(
            prompt_id,
            canary.stable_version,
            canary_id=canary.id,
            canary_version=canary.canary_version,
            canary_percent=float(canary.steps[canary.step]),
        )
    experiment = session.scalar(
        select(PromptExperiment).where(
            PromptExperiment.prompt_id == prompt_id,
            PromptExperiment.label == label,
            PromptExperiment.status == "running",
        )
    )
    if experiment is not None:
        arms = tuple(
            Arm(a["name"], float(a["weight"]), a.get("version"), a.get("model")) for a in experiment.arms
        )
        return Route(prompt_id, version, experiment=experiment.name, arms=arms)
    return Route(prompt_id, version)

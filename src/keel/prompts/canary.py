"""Canary releases of a prompt version: the label's traffic moves to the new version in rising steps,
each judged against the stable version on the same window (keel.prompts.canary_judge).

The label keeps pointing at the stable version while the canary runs; the resolver sends each end user
to the canary with the step's probability (sticky, so a rising share only adds users). A check (every
minute on the queue, or on demand) judges the current step: it holds, advances, promotes (the label
moves to the new version) or rolls back (all traffic is stable again at once). Every transition is one
conditional UPDATE, so of several consumers checking at once exactly one acts, audits and alerts.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select, update

from keel.config import CanarySettings
from keel.errors import ConflictError, InvalidRequestError, NotFoundError
from keel.governance.audit import AuditLog
from keel.logs import get_logger
from keel.prompts import epochs
from keel.prompts.alerts import CanaryAlerts
from keel.prompts.arm_metrics import ArmSample, read_arms
from keel.prompts.canary_judge import CanaryRule, Metric, StepVerdict, judge
from keel.prompts.registry import Actor, PromptRegistry
from keel.prompts.resolver import CANARY_ARM, STABLE_ARM
from keel.prompts.spec import check_label
from keel.store.engine import Database
from keel.store.prompt_models import Prompt, PromptCanary, PromptVersion

log = get_logger(__name__)
# Who acts when a check promotes or rolls back, in the label history and the audit log.
JUDGE = Actor("canary", admin=True)


class CanaryRequest(BaseModel):
    label: str = Field("production", min_length=1, max_length=64)
    version: int = Field(ge=1)
    # Each None: `prompts.canary` in the settings.
    steps: list[float] | None = Field(None, min_length=1, max_length=10)
    min_requests: int | None = Field(None, ge=10)
    min_duration_s: float | None = Field(None, ge=0)
    false_rollback_rate: float | None = Field(None, gt=0, lt=0.5)
    metrics: list[Metric] | None = Field(None, min_length=1)
    reason: str = Field("", max_length=2000)


class CanaryView(BaseModel):
    id: str
    prompt: str
    label: str
    stable_version: int
    canary_version: int
    status: Literal["running", "promoted", "rolled_back", "aborted"]
    step: int
    # The canary's share of the label's traffic now (0 once it ended, 100 once promoted).
    percent: float
    step_started_at: datetime
    rule: CanaryRule
    judgements: list[dict[str, object]]
    reason: str
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    # The current step judged now, without acting on it (status reads only).
    current: dict[str, object] | None = None


def _view(row: PromptCanary, prompt: str) -> CanaryView:
    percent = {"running": float(row.steps[row.step]), "promoted": 100.0}.get(row.status, 0.0)
    return CanaryView(
        id=row.id,
        prompt=prompt,
        label=row.label,
        stable_version=row.stable_version,
        canary_version=row.canary_version,
        status=row.status,
        step=row.step,
        percent=percent,
        step_started_at=row.step_started_at,
        rule=CanaryRule.model_validate(row.rule),
        judgements=list(row.judgements),
        reason=row.reason,
        created_by=row.created_by,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


class Canaries:
    def __init__(
        self,
        database: Database,
        registry: PromptRegistry,
        audit: AuditLog,
        settings: CanarySettings,
        alerts: CanaryAlerts,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._database = database
        self._registry = registry
        self._audit = audit
        self._settings = settings
        self._alerts = alerts
        self._clock = clock

    def start(self, tenant: str, prompt_name: str, request: CanaryRequest, actor: Actor) -> CanaryView:
        check_label(request.label)
        self._registry.require_may_move(request.label, actor)
        defaults = self._settings
        try:
            rule = CanaryRule(
                steps=request.steps or defaults.steps,
                min_requests=request.min_requests or defaults.min_requests,
                min_duration_s=defaults.min_duration_s
                if request.min_duration_s is None
                else request.min_duration_s,
                false_rollback_rate=request.false_rollback_rate or defaults.false_rollback_rate,
                latency_tolerance=defaults.latency_tolerance,
                **({"metrics": request.metrics} if request.metrics else {}),
            )
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise InvalidRequestError(
                f"{where}: {problem['msg']}", code="invalid_canary", param=where
            ) from None
        now = self._clock()
        with self._database.session() as session:
            prompt = session.scalar(select(Prompt).where(Prompt.tenant == tenant, Prompt.name == prompt_name))
            if prompt is None:
                raise NotFoundError(f"No prompt '{prompt_name}'.", code="prompt_not_found", param="prompt")
            # The prompt's row lock: two starts on one label cannot both pass the check below.
            session.execute(update(Prompt).where(Prompt.id == prompt.id).values(latest=Prompt.latest))
            self._registry.require_no_rollout(session, prompt, request.label)
            stable = self._registry.label_version(session, prompt, request.label)
            exists = session.scalar(
                select(PromptVersion.id).where(
                    PromptVersion.prompt_id == prompt.id, PromptVersion.version == request.version
                )
            )
            if exists is None:
                raise NotFoundError(
                    f"Prompt '{prompt_name}' has no version {request.version}.",
                    code="prompt_version_not_found",
                    param="version",
                )
            if stable == request.version:
                raise InvalidRequestError(
                    f"The label '{request.label}' already points at version {stable}.",
                    code="nothing_to_release",
                    param="version",
                )
            row = PromptCanary(
                tenant=tenant,
                prompt_id=prompt.id,
                label=request.label,
                stable_version=stable,
                canary_version=request.version,
                steps=rule.steps,
                step=0,
                step_started_at=now,
                rule=rule.model_dump(mode="json"),
                judgements=[],
                created_by=actor.id,
                created_at=now,
            )
            session.add(row)
            session.flush()
            epochs.bump(session, tenant)
            view = _view(row, prompt_name)
        self._audit.append(
            tenant,
            actor.id,
            "prompt.canary.start",
            f"{prompt_name}:{request.label}",
            {
                "canary": view.id,
                "from": stable,
                "to": request.version,
                "steps": rule.steps,
                "reason": request.reason,
            },
        )
        return view

    def abort(self, tenant: str, prompt: str, label: str, actor: Actor, reason: str = "") -> CanaryView:
        self._registry.require_may_move(label, actor)
        row = self._running(tenant, prompt, label)
        view = self._finish(row, prompt, "aborted", reason or "aborted", self._clock())
        if view is None:
            raise ConflictError("The canary ended while it was being aborted.", code="canary_not_running")
        self._audit.append(
            tenant, actor.id, "prompt.canary.abort", f"{prompt}:{label}", {"canary": row.id, "reason": reason}
        )
        return view

    def list(self, tenant: str, prompt: str | None = None) -> builtins.list[CanaryView]:
        query = (
            select(PromptCanary, Prompt.name)
            .join(Prompt, Prompt.id == PromptCanary.prompt_id)
            .where(PromptCanary.tenant == tenant)
            .order_by(PromptCanary.created_at.desc())
        )
        if prompt is not None:
            query = query.where(Prompt.name == prompt)
        with self._database.reading() as session:
            return [_view(row, name) for row, name in session.execute(query).all()]

    def status(self, tenant: str, prompt: str, label: str = "production") -> CanaryView:
        """The label's newest canary; a running one with its current step judged now (nothing acted on)."""
        found = [c for c in self.list(tenant, prompt) if c.label == label]
        if not found:
            raise NotFoundError(f"Prompt '{prompt}' has no canary on '{label}'.", code="canary_not_found")
        view = found[0]
        if view.status == "running":
            verdict = self._judge_now(tenant, view.id, view.rule, view.step, view.step_started_at)
            view.current = verdict.as_dict()
        return view

    # -- the periodic check --------------------------------------------------------------------------

    def check_all(self, tenant: str | None = None) -> builtins.list[CanaryView]:
        """Judges the current step of every running canary (of one tenant, or all) and acts on it;
        returns those that moved."""
        query = (
            select(PromptCanary, Prompt.name)
            .join(Prompt, Prompt.id == PromptCanary.prompt_id)
            .where(PromptCanary.status == "running")
        )
        if tenant is not None:
            query = query.where(PromptCanary.tenant == tenant)
        with self._database.reading() as session:
            running = session.execute(query).all()
        moved = []
        for row, prompt in running:
            changed = self.check(row, prompt)
            if changed is not None:
                moved.append(changed)
        return moved

    def check(self, row: PromptCanary, prompt: str) -> CanaryView | None:
        rule = CanaryRule.model_validate(row.rule)
        verdict = self._judge_now(row.tenant, row.id, rule, row.step, row.step_started_at)
        now = self._clock()
        if verdict.decision == "hold":
            return None
        if verdict.decision == "rollback":
            view = self._finish(row, prompt, "rolled_back", verdict.reason, now, verdict)
            if view is not None:
                self._audit.append(
                    row.tenant,
                    JUDGE.id,
                    "prompt.canary.rollback",
                    f"{prompt}:{row.label}",
                    {
                        "canary": row.id,
                        "from": row.canary_version,
                        "to": row.stable_version,
                        "reason": verdict.reason,
                        "checks": verdict.as_dict()["checks"],
                    },
                )
                self._alerts.rolled_back(row.tenant, view, verdict)
            return view
        if verdict.decision == "promote":
            view = self._promote(row, prompt, verdict, now)
            if view is not None:
                self._audit.append(
                    row.tenant,
                    JUDGE.id,
                    "prompt.canary.promote",
                    f"{prompt}:{row.label}",
                    {"canary": row.id, "from": row.stable_version, "to": row.canary_version},
                )
                self._alerts.promoted(row.tenant, view)
            return view
        return self._advance(row, prompt, verdict, now)

    def _judge_now(
        self, tenant: str, canary_id: str, rule: CanaryRule, step: int, started: datetime
    ) -> StepVerdict:
        now = self._clock()
        arms = read_arms(self._database, tenant, canary_id, started, now)
        stable = arms.get(STABLE_ARM, ArmSample(STABLE_ARM))
        canary = arms.get(CANARY_ARM, ArmSample(CANARY_ARM))
        return judge(rule, step, stable, canary, (now - _aware(started)).total_seconds())

    def _transition(self, row: PromptCanary, **values: object) -> bool:
        """One conditional UPDATE from the step this check judged: False when another consumer (or an
        abort) moved the canary first."""
        with self._database.session() as session:
            changed = session.execute(
                update(PromptCanary)
                .where(
                    PromptCanary.id == row.id, PromptCanary.status == "running", PromptCanary.step == row.step
                )
                .values(**values)
            ).rowcount  # type: ignore[attr-defined]
            if changed:
                epochs.bump(session, row.tenant)
            return bool(changed)

    def _advance(
        self, row: PromptCanary, prompt: str, verdict: StepVerdict, now: datetime
    ) -> CanaryView | None:
        judgements = [*row.judgements, verdict.as_dict()]
        if not self._transition(row, step=row.step + 1, step_started_at=now, judgements=judgements):
            return None
        log.info(
            "canary_advanced",
            tenant=row.tenant,
            prompt=prompt,
            label=row.label,
            percent=row.steps[row.step + 1],
        )
        self._audit.append(
            row.tenant,
            JUDGE.id,
            "prompt.canary.advance",
            f"{prompt}:{row.label}",
            {"canary": row.id, "percent": row.steps[row.step + 1], "reason": verdict.reason},
        )
        return self._reload(row.id, prompt)

    def _finish(
        self,
        row: PromptCanary,
        prompt: str,
        status: str,
        reason: str,
        now: datetime,
        verdict: StepVerdict | None = None,
    ) -> CanaryView | None:
        judgements = [*row.judgements, verdict.as_dict()] if verdict else list(row.judgements)
        if not self._transition(row, status=status, reason=reason, finished_at=now, judgements=judgements):
            return None
        return self._reload(row.id, prompt)

    def _promote(
        self, row: PromptCanary, prompt: str, verdict: StepVerdict, now: datetime
    ) -> CanaryView | None:
        """Ends the canary and moves the label in one transaction: never one without the other."""
        with self._database.session() as session:
            changed = session.execute(
                update(PromptCanary)
                .where(
                    PromptCanary.id == row.id, PromptCanary.status == "running", PromptCanary.step == row.step
                )
                .values(
                    status="promoted",
                    reason=verdict.reason,
                    finished_at=now,
                    judgements=[*row.judgements, verdict.as_dict()],
                )
            ).rowcount  # type: ignore[attr-defined]
            if not changed:
                return None
            target = session.get_one(Prompt, row.prompt_id)
            self._registry.point(
                session, target, row.label, row.canary_version, JUDGE, "canary_promote", verdict.reason
            )
            epochs.bump(session, row.tenant)
        return self._reload(row.id, prompt)

    def _running(self, tenant: str, prompt: str, label: str) -> PromptCanary:
        with self._database.reading() as session:
            row = session.scalar(
                select(PromptCanary)
                .join(Prompt, Prompt.id == PromptCanary.prompt_id)
                .where(
                    PromptCanary.tenant == tenant,
                    Prompt.name == prompt,
                    PromptCanary.label == label,
                    PromptCanary.status == "running",
                )
            )
        if row is None:
            raise NotFoundError(f"No running canary on '{prompt}:{label}'.", code="canary_not_found")
        return row

    def _reload(self, canary_id: str, prompt: str) -> CanaryView:
        with self._database.reading() as session:
            return _view(session.get_one(PromptCanary, canary_id), prompt)


def _aware(moment: datetime) -> datetime:
    # SQLite gives back naive datetimes (UTC as written).
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

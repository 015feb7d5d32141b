"""Experiments: one prompt label's traffic split between arms (versions, or model aliases) by weight,
sticky per end user, and the report that compares the arms.

Assignment happens in the resolver (keel.prompts.assignment); each call's usage row and trace carry the
experiment and arm. The report reads the arms' calls over the experiment's life and sets every other arm
against the first (the control): rates with Wilson intervals and Fisher's exact test, means with
bootstrap intervals and the Mann-Whitney test, significance after Holm's correction over the report.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keel.errors import ConflictError, InvalidRequestError, NotFoundError
from keel.governance.audit import AuditLog
from keel.prompts import epochs
from keel.prompts.arm_metrics import ArmSample, read_arms
from keel.prompts.registry import Actor, PromptRegistry
from keel.prompts.spec import check_label, check_name
from keel.stats import compare_means, compare_rates, holm, mean_interval, rate_interval
from keel.store.engine import Database
from keel.store.prompt_models import Prompt, PromptExperiment, PromptVersion


class ArmSpec(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    weight: float = Field(gt=0, le=1000)
    # The prompt version this arm serves; None: the label's own.
    version: int | None = Field(None, ge=1)
    # The model alias this arm calls; None: the version's (or the request's).
    model: str | None = Field(None, min_length=1, max_length=200)


class ExperimentRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    prompt: str = Field(min_length=1, max_length=200)
    label: str = Field("production", min_length=1, max_length=64)
    arms: list[ArmSpec] = Field(min_length=2, max_length=10)
    description: str = Field("", max_length=2000)

    @model_validator(mode="after")
    def _distinct_arms(self) -> ExperimentRequest:
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError("arm names must differ")
        if len({(arm.version, arm.model) for arm in self.arms}) != len(self.arms):
            raise ValueError("two arms serve the same version and model")
        return self


class ExperimentView(BaseModel):
    name: str
    prompt: str
    label: str
    arms: list[ArmSpec]
    status: Literal["running", "stopped"]
    description: str
    created_by: str
    created_at: datetime
    stopped_at: datetime | None


class MetricEstimate(BaseModel):
    value: float | None
    low: float | None
    high: float | None
    n: int


class ArmMetrics(BaseModel):
    arm: str
    requests: int
    metrics: dict[str, MetricEstimate]


class ArmDifference(BaseModel):
    metric: str
    arm: str
    control: str
    difference: float | None
    p_value: float
    test: str
    # After Holm's correction over every comparison in the report.
    significant: bool


class ExperimentReport(BaseModel):
    object: Literal["prompt.experiment.report"] = "prompt.experiment.report"
    experiment: ExperimentView
    since: datetime
    until: datetime
    alpha: float
    arms: list[ArmMetrics]
    comparisons: list[ArmDifference]


# name: (kind, how to read it from a sample)
RATES: dict[str, Callable[[ArmSample], tuple[int, int]]] = {
    "error_rate": lambda s: (s.errors, s.requests),
    "escalation_rate": lambda s: (s.escalations, s.replies),
    "grounding_failure_rate": lambda s: (s.grounding_failures, s.replies),
    "negative_feedback_rate": lambda s: (s.negative_feedback, len(s.feedback)),
}
MEANS: dict[str, Callable[[ArmSample], list[float]]] = {
    "feedback_score": lambda s: s.feedback,
    "latency_ms": lambda s: s.latencies_ms,
    "cost": lambda s: s.costs,
    "groundedness": lambda s: s.groundedness,
    "citation_precision": lambda s: s.citation_precision,
}


def _number(value: float) -> float | None:
    return None if value != value else value  # NaN: nothing measured


def _view(row: PromptExperiment, prompt: str) -> ExperimentView:
    return ExperimentView(
        name=row.name,
        prompt=prompt,
        label=row.label,
        arms=[ArmSpec.model_validate(a) for a in row.arms],
        status=row.status,
        description=row.description,
        created_by=row.created_by,
        created_at=row.created_at,
        stopped_at=row.stopped_at,
    )


class Experiments:
    def __init__(
        self,
        database: Database,
        registry: PromptRegistry,
        audit: AuditLog,
        known_model: Callable[[str], bool] = lambda _: True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._database = database
        self._registry = registry
        self._audit = audit
        self._known_model = known_model
        self._clock = clock

    def start(self, tenant: str, request: ExperimentRequest, actor: Actor) -> ExperimentView:
        check_name(request.name, "experiment name")
        check_label(request.label)
        # Splitting a protected label's traffic changes what it serves: administrators only.
        self._registry.require_may_move(request.label, actor)
        for arm in request.arms:
            if arm.model is not None and not self._known_model(arm.model):
                raise InvalidRequestError(
                    f"Arm '{arm.name}' names the unknown model alias '{arm.model}'.",
                    code="model_not_found",
                    param="arms",
                )
        with self._database.session() as session:
            prompt = session.scalar(
                select(Prompt).where(Prompt.tenant == tenant, Prompt.name == request.prompt)
            )
            if prompt is None:
                raise NotFoundError(f"No prompt '{request.prompt}'.", code="prompt_not_found", param="prompt")
            session.execute(update(Prompt).where(Prompt.id == prompt.id).values(latest=Prompt.latest))
            label_version = self._registry.label_version(session, prompt, request.label)
            versions = set(
                session.scalars(select(PromptVersion.version).where(PromptVersion.prompt_id == prompt.id))
            )
            for arm in request.arms:
                if arm.version is not None and arm.version not in versions:
                    raise NotFoundError(
                        f"Arm '{arm.name}': prompt '{request.prompt}' has no version {arm.version}.",
                        code="prompt_version_not_found",
                        param="arms",
                    )
            self._registry.require_no_rollout(session, prompt, request.label)
            row = PromptExperiment(
                tenant=tenant,
                name=request.name,
                prompt_id=prompt.id,
                label=request.label,
                arms=[arm.model_dump(exclude_none=True) for arm in request.arms],
                description=request.description,
                created_by=actor.id,
                created_at=self._clock(),
            )
            try:
                with session.begin_nested():
                    session.add(row)
            except IntegrityError:
                raise ConflictError(
                    f"An experiment '{request.name}' exists already.", code="experiment_exists", param="name"
                ) from None
            epochs.bump(session, tenant)
            view = _view(row, request.prompt)
        self._audit.append(
            tenant,
            actor.id,
            "prompt.experiment.start",
            request.name,
            {
                "prompt": request.prompt,
                "label": request.label,
                "label_version": label_version,
                "arms": [a.model_dump(exclude_none=True) for a in request.arms],
            },
        )
        return view

    def stop(self, tenant: str, name: str, actor: Actor, reason: str = "") -> ExperimentView:
        with self._database.session() as session:
            row, prompt = self._row(session, tenant, name)
            self._registry.require_may_move(row.label, actor)
            if row.status != "running":
                raise ConflictError(f"Experiment '{name}' is not running.", code="experiment_stopped")
            row.status, row.stopped_at = "stopped", self._clock()
            epochs.bump(session, tenant)
            view = _view(row, prompt)
        self._audit.append(tenant, actor.id, "prompt.experiment.stop", name, {"reason": reason})
        return view

    def get(self, tenant: str, name: str) -> ExperimentView:
        with self._database.reading() as session:
            row, prompt = self._row(session, tenant, name)
            return _view(row, prompt)

    def list(self, tenant: str) -> list[ExperimentView]:
        with self._database.reading() as session:
            rows = session.execute(
                select(PromptExperiment, Prompt.name)
                .join(Prompt, Prompt.id == PromptExperiment.prompt_id)
                .where(PromptExperiment.tenant == tenant)
                .order_by(PromptExperiment.created_at.desc())
            ).all()
            return [_view(row, prompt) for row, prompt in rows]

    def report(self, tenant: str, name: str, alpha: float = 0.05, level: float = 0.95) -> ExperimentReport:
        view = self.get(tenant, name)
        until = view.stopped_at or self._clock()
        samples = read_arms(self._database, tenant, name, view.created_at, until)
        return build_report(view, samples, until, alpha, level)

    @staticmethod
    def _row(session: Session, tenant: str, name: str) -> tuple[PromptExperiment, str]:
        found = session.execute(
            select(PromptExperiment, Prompt.name)
            .join(Prompt, Prompt.id == PromptExperiment.prompt_id)
            .where(PromptExperiment.tenant == tenant, PromptExperiment.name == name)
        ).first()
        if found is None:
            raise NotFoundError(f"No experiment '{name}'.", code="experiment_not_found")
        return found[0], found[1]


def build_report(
    view: ExperimentView, samples: dict[str, ArmSample], until: datetime, alpha: float, level: float
) -> ExperimentReport:
    """Per-arm estimates and every arm against the control (the first arm), from the arms' samples."""
    names = [arm.name for arm in view.arms]
    arms = [samples.get(name, ArmSample(name)) for name in names]
    reports = []
    for sample in arms:
        metrics: dict[str, MetricEstimate] = {}
        for metric, rate in RATES.items():
            hits, n = rate(sample)
            found = rate_interval(hits, n, level)
            metrics[metric] = MetricEstimate(
                value=_number(found.value), low=_number(found.low), high=_number(found.high), n=n
            )
        for metric, values in MEANS.items():
            found = mean_interval(values(sample), level)
            metrics[metric] = MetricEstimate(
                value=_number(found.value), low=_number(found.low), high=_number(found.high), n=found.n
            )
        reports.append(ArmMetrics(arm=sample.arm, requests=sample.requests, metrics=metrics))
    control, raw = arms[0], []
    for sample in arms[1:]:
        for metric, rate in RATES.items():
            raw.append((metric, sample.arm, compare_rates(*rate(control), *rate(sample))))
        for metric, values in MEANS.items():
            raw.append((metric, sample.arm, compare_means(values(control), values(sample))))
    rejected = holm([c.p_value for _, _, c in raw], alpha)
    comparisons = [
        ArmDifference(
            metric=metric,
            arm=arm,
            control=control.arm,
            difference=_number(c.difference),
            p_value=c.p_value,
            test=c.test,
            significant=significant,
        )
        for (metric, arm, c), significant in zip(raw, rejected, strict=True)
    ]
    return ExperimentReport(
        experiment=view,
        since=view.created_at,
        until=until,
        alpha=alpha,
        arms=reports,
        comparisons=comparisons,
    )

"""Experiments over a real SQLite file: arms by version or model, sticky per user through the resolver,
and a report that finds a real difference between arms and none where there is none."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from keel.errors import ConflictError, InvalidRequestError, NotFoundError, PermissionDeniedError
from keel.gateway.ledger import CallRecord
from keel.prompts.experiments import ExperimentRequest, Experiments
from keel.store.models import Feedback, SupportReply, UsageRecord
from tests.unit.prompts.conftest import ADMIN, APP, TENANT, Registry, spec


@pytest.fixture
def experiments(setup: Registry) -> Experiments:
    setup.registry.push(TENANT, "greeting", spec("one {{ name }}"), APP)
    setup.registry.push(TENANT, "greeting", spec("two {{ name }}"), APP)
    setup.registry.move_label(TENANT, "greeting", "staging", 1, APP)
    setup.registry.move_label(TENANT, "greeting", "production", 1, ADMIN)
    return Experiments(
        setup.database, setup.registry, setup.audit, known_model=lambda a: a in ("small", "large")
    )


def request(**changes: object) -> ExperimentRequest:
    return ExperimentRequest.model_validate(
        {
            "name": "tone",
            "prompt": "greeting",
            "label": "staging",
            "arms": [{"name": "control", "weight": 1}, {"name": "friendly", "weight": 1, "version": 2}],
            **changes,
        }
    )


def test_arms_are_sticky_per_user_and_split_by_weight(setup: Registry, experiments: Experiments) -> None:
    experiments.start(TENANT, request(), APP)
    first = {
        u: setup.resolver.resolve(TENANT, "greeting", label="staging", unit=f"u{u}").use for u in range(2000)
    }
    again = {
        u: setup.resolver.resolve(TENANT, "greeting", label="staging", unit=f"u{u}").use for u in range(2000)
    }
    assert first == again
    friendly = [u for u, use in first.items() if use.arm == "friendly"]
    assert abs(len(friendly) / 2000 - 0.5) < 0.04
    assert {first[u].version for u in friendly} == {2}
    assert {use.experiment for use in first.values()} == {"tone"}
    # Production is untouched by an experiment on staging.
    assert setup.resolver.resolve(TENANT, "greeting", unit="u1").use.arm is None


def test_a_model_arm_changes_the_model_only(setup: Registry, experiments: Experiments) -> None:
    arms = [
        {"name": "small", "weight": 1, "model": "small"},
        {"name": "large", "weight": 1, "model": "large"},
    ]
    experiments.start(TENANT, request(arms=arms), APP)
    seen = {setup.resolver.resolve(TENANT, "greeting", label="staging", unit=f"u{u}") for u in range(50)}
    assert {r.model_override for r in seen} == {"small", "large"}
    assert {r.use.version for r in seen} == {1}


def test_starting_is_checked(setup: Registry, experiments: Experiments) -> None:
    with pytest.raises(PermissionDeniedError):
        experiments.start(TENANT, request(label="production"), APP)
    with pytest.raises(NotFoundError):
        experiments.start(
            TENANT, request(arms=[{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "version": 9}]), APP
        )
    with pytest.raises(InvalidRequestError):
        experiments.start(
            TENANT,
            request(arms=[{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "model": "huge"}]),
            APP,
        )
    with pytest.raises(ValueError):
        request(arms=[{"name": "a", "weight": 1}, {"name": "a", "weight": 1, "version": 2}])
    experiments.start(TENANT, request(), APP)
    with pytest.raises(ConflictError):
        experiments.start(TENANT, request(name="another"), APP)
    with pytest.raises(ConflictError):
        setup.registry.move_label(TENANT, "greeting", "staging", 2, APP)
    stopped = experiments.stop(TENANT, "tone", APP, "enough")
    assert stopped.status == "stopped"
    assert setup.resolver.resolve(TENANT, "greeting", label="staging", unit="u1").use.experiment is None
    actions = [e.action for e in setup.audit.entries(TENANT) if e.action.startswith("prompt.experiment")]
    assert actions == ["prompt.experiment.stop", "prompt.experiment.start"]


def record_calls(setup: Registry, users: range, escalate: dict[str, float], at: datetime) -> None:
    rng = np.random.default_rng(len(users))
    with setup.database.session() as session:
        for user in users:
            use = setup.resolver.resolve(TENANT, "greeting", label="staging", unit=f"u{user}").use
            trace = f"{user:032x}"
            record = CallRecord(
                tenant=TENANT, key_id="k", alias="m", latency_ms=int(rng.normal(800, 50)), trace_id=trace
            )
            record.mark_prompt(use)
            fields = asdict(record)
            fields.pop("cost")
            session.add(UsageRecord(**fields, cost_micros=1000, created_at=at))
            escalated = rng.random() < escalate[use.arm or ""]
            session.add(
                SupportReply(
                    tenant=TENANT,
                    conversation_id="c",
                    question="q",
                    reply="r",
                    trace_id=trace,
                    status="escalated" if escalated else "answered",
                )
            )
            if user % 4 == 0:
                session.add(
                    Feedback(
                        tenant=TENANT, trace_id=trace, source="end_user", score=0.0 if escalated else 1.0
                    )
                )


def test_the_report_finds_a_real_difference_and_only_that(setup: Registry, experiments: Experiments) -> None:
    experiments.start(TENANT, request(), APP)
    record_calls(
        setup, range(3000), {"control": 0.10, "friendly": 0.20}, datetime.now(UTC) + timedelta(seconds=1)
    )
    experiments._clock = lambda: datetime.now(UTC) + timedelta(minutes=5)
    report = experiments.report(TENANT, "tone")
    arms = {a.arm: a for a in report.arms}
    assert arms["control"].requests + arms["friendly"].requests == 3000
    control, friendly = (
        arms["control"].metrics["escalation_rate"],
        arms["friendly"].metrics["escalation_rate"],
    )
    assert control.low < 0.10 < control.high and friendly.low < 0.20 < friendly.high
    found = {(c.metric, c.significant) for c in report.comparisons}
    assert ("escalation_rate", True) in found
    assert ("latency_ms", False) in found and ("error_rate", False) in found and ("cost", False) in found
    assert next(c for c in report.comparisons if c.metric == "escalation_rate").difference == pytest.approx(
        0.1, abs=0.04
    )


def test_an_evaluation_run_stays_out_of_the_experiment(setup: Registry, experiments: Experiments) -> None:
    experiments.start(
        TENANT, request(arms=[{"name": "a", "weight": 1, "version": 2}, {"name": "b", "weight": 1}]), APP
    )
    resolved = {
        setup.resolver.resolve(TENANT, "greeting", label="staging", unit=f"u{u}", rollouts=False).use
        for u in range(40)
    }
    assert {(use.version, use.experiment, use.arm) for use in resolved} == {(1, None, None)}

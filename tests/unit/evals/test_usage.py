"""A trace's cost and prompt versions, read from the gateway's usage records."""

from __future__ import annotations

from pathlib import Path

from keel.evals.usage import trace_usage
from keel.store.engine import Database
from keel.store.models import UsageRecord


def test_trace_usage_adds_up_the_calls_of_one_trace(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'usage.db'}")
    database.migrate()
    with database.session() as session:
        for cost, version, label, trace in (
            (1200, "support-reply@2", "production", "t1"),
            (300, None, None, "t1"),
            (999, "x@1", None, "t2"),
        ):
            session.add(
                UsageRecord(
                    tenant="acme",
                    key_id="eval",
                    alias="m",
                    cost_micros=cost,
                    prompt_version=version,
                    prompt_label=label,
                    trace_id=trace,
                )
            )
    usage = trace_usage(database, "t1")
    assert (usage.cost_micros, usage.prompt_versions) == (1500, ["support-reply@2"])
    assert usage.prompts == [{"name": "support-reply", "version": 2, "label": "production"}]
    assert trace_usage(database, "t2").prompts == [{"name": "x", "version": 1, "label": None}]
    assert trace_usage(database, "none").cost_micros == 0

"""What the model calls of one trace cost and which prompt versions they used, from the gateway's
usage records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from keel.store.engine import Database
from keel.store.models import UsageRecord


@dataclass(frozen=True)
class TraceUsage:
    # Millionths of the currency.
    cost_micros: int
    prompt_versions: list[str]
    # Each registry prompt the calls were rendered from: name, version and the label that served it
    # (None when a call pinned its version).
    prompts: list[dict[str, Any]] = field(default_factory=list)


def prompt_use(tag: str, label: str | None) -> dict[str, Any]:
    """A recorded `name@version` tag and its label, as a run or an item records them."""
    name, _, number = tag.rpartition("@")
    return {"name": name or tag, "version": int(number) if number.isdigit() else None, "label": label}


def trace_usage(database: Database, trace_id: str) -> TraceUsage:
    with database.reading() as session:
        rows = session.execute(
            select(UsageRecord.cost_micros, UsageRecord.prompt_version, UsageRecord.prompt_label).where(
                UsageRecord.trace_id == trace_id
            )
        ).all()
    uses = sorted({(version, label or "") for _, version, label in rows if version})
    return TraceUsage(
        sum(cost for cost, _, _ in rows),
        sorted({version for version, _ in uses}),
        [prompt_use(version, label or None) for version, label in uses],
    )

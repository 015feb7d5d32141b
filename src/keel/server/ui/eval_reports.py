"""HTML reports of evaluation runs and comparisons, for the dashboard and for `keel eval report`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from keel.evals.compare import Comparison
from keel.evals.items import DatasetItem
from keel.evals.metrics import METRICS
from keel.evals.run_types import ResultRecord, RunRecord
from keel.keys import Principal
from keel.server.ui.charts import bar_chart

_env = Environment(
    loader=FileSystemLoader(str(Path(__file__).parent.parent / "templates")),
    autoescape=select_autoescape(["html"]),
)
# The per-item scores whose distributions a report draws, and which rank the worst items.
DISTRIBUTIONS = ("answer_f1", "groundedness", "ndcg@10", "recall@5", "answer_similarity", "latency")
WORST_BY = ("answer_f1", "groundedness", "ndcg@10", "recall@5", "answerability")
BINS = 10


def histogram(title: str, values: list[float], unit: str = "") -> str:
    low, high = min(values), max(values)
    width = (high - low) / BINS or 1.0
    counts = [0] * BINS
    for v in values:
        counts[min(BINS - 1, int((v - low) / width))] += 1
    labels = [f"{low + i * width:.2g}" for i in range(BINS)]
    return bar_chart(f"{title}: items per bin", labels, [float(c) for c in counts], unit)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def run_report(
    run: RunRecord,
    results: list[ResultRecord],
    items: dict[str, DatasetItem],
    *,
    me: Principal | None = None,
    csrf: str = "",
) -> str:
    done = [r for r in results if r.status == "done"]
    charts = []
    for name in DISTRIBUTIONS:
        values = [float(v) for r in done if isinstance(v := r.scores.get(name), int | float)]
        if len(values) >= 2:
            charts.append(histogram(name, values, " s" if name == "latency" else ""))
    worst_metric = next((m for m in WORST_BY if any(r.scores.get(m) is not None for r in done)), None)
    worst = []
    if worst_metric is not None:
        ranked = sorted(
            (r for r in done if r.scores.get(worst_metric) is not None), key=lambda r: r.scores[worst_metric]
        )
        for r in ranked[:10]:
            item = items.get(r.item_id)
            worst.append(
                {
                    "key": r.item_key,
                    "trial": r.trial,
                    "score": _fmt(r.scores[worst_metric]),
                    "question": item.question[:300] if item else "",
                    "reply": (r.output.get("reply") or "")[:400],
                    "status": r.output.get("status") or "",
                    "trace_id": r.trace_id,
                }
            )
    failures = [
        {"key": r.item_key, "trial": r.trial, "error": r.error} for r in results if r.status == "failed"
    ][:20]
    return _env.get_template("eval_run.html").render(
        me=me,
        csrf=csrf,
        run=run,
        metrics=run.summary.get("metrics", {}),
        tags=run.summary.get("tags", {}),
        level=run.summary.get("confidence_level", 0.95),
        specs=METRICS,
        charts=charts,
        worst=worst,
        worst_metric=worst_metric,
        failures=failures,
        fmt=_fmt,
        cost_total=run.cost_micros / 1_000_000,
        judge_cost=run.judge_cost_micros / 1_000_000,
    )


def comparison_report(comparison: Comparison, *, me: Principal | None = None, csrf: str = "") -> str:
    significant = [m for m in comparison.metrics if not math.isnan(m.low) and (m.low > 0 or m.high < 0)]
    chart = bar_chart(
        "size of each change, |candidate - baseline|",
        [m.metric for m in comparison.metrics if m.metric != "cost"],
        [abs(m.difference) for m in comparison.metrics if m.metric != "cost"],
    )
    return _env.get_template("eval_compare.html").render(
        me=me, csrf=csrf, c=comparison, fmt=_fmt, significant={m.metric for m in significant}, chart=chart
    )

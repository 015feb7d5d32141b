"""`keel eval ...`: datasets, runs, comparison, the release gate and reports from the terminal."""

from __future__ import annotations

import json
import math
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from keel import cli_eval_monitoring
from keel.cli_common import command_settings, err, fail, local_runtime, migrated_database, out
from keel.cli_remote import connect
from keel.errors import KeelError

eval_app = typer.Typer(
    help="Evaluation: datasets, runs, comparison and the release gate.", no_args_is_help=True
)
dataset_app = typer.Typer(help="Versioned evaluation datasets.", no_args_is_help=True)
eval_app.add_typer(dataset_app, name="dataset")

Tenant = Annotated[str, typer.Option(help="Tenant the data belongs to.")]
# A judge reads every item's two answers: on a local model, minutes for a large dataset.
_JUDGING_TIMEOUT = httpx.Timeout(3600.0, connect=2.0)


class Format(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


class TargetName(StrEnum):
    copilot = "copilot"
    retrieval = "retrieval"
    chat = "chat"


def _reading() -> Any:
    from keel.evals.datasets import EvalDatasets
    from keel.evals.runner import EvalRuns

    settings = command_settings()
    database = migrated_database(settings)
    datasets = EvalDatasets(database)
    return datasets, EvalRuns(database, datasets, settings)


def _fmt(value: float | None, digits: int = 3) -> str:
    return (
        "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
    )


def metric_table(summary: dict[str, Any], title: str) -> Table:
    level = summary.get("confidence_level", 0.95)
    table = Table(title=title)
    for column in ("metric", "value", f"{level:.0%} CI", "n", "per trial", "trial sd"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, m in summary.get("metrics", {}).items():
        table.add_row(
            name,
            _fmt(m["value"]),
            f"{_fmt(m['low'])} to {_fmt(m['high'])}",
            str(m["n"]),
            " ".join(_fmt(v) for v in m["per_trial"]),
            _fmt(m["trial_std"]),
        )
    return table


@dataset_app.command("import")
def dataset_import(
    name: str,
    file: Path,
    tenant: Tenant = "demo",
    append: Annotated[bool, typer.Option(help="Add to the latest version instead of replacing it.")] = False,
    description: Annotated[str | None, typer.Option(help="What the dataset is for.")] = None,
) -> None:
    """Import a JSONL or CSV file as the dataset's next version (an unchanged file makes none)."""
    from keel.evals.formats import parse

    datasets, _ = _reading()
    try:
        items = parse(file.read_text(encoding="utf-8"), file.name)
        info = datasets.write(
            tenant,
            name,
            items,
            mode="append" if append else "replace",
            origin="import",
            note=file.name,
            description=description,
        )
    except KeelError as exc:
        raise fail(exc) from exc
    out.print(f"{info.name}: version {info.version}, {info.item_count} items")


@dataset_app.command("export")
def dataset_export(
    name: str,
    tenant: Tenant = "demo",
    version: Annotated[int | None, typer.Option(help="Default: the latest.")] = None,
    format: Annotated[Format, typer.Option("--format")] = Format.jsonl,
    output: Annotated[Path | None, typer.Option(help="Default: standard output.")] = None,
) -> None:
    """Write a dataset version as JSONL or CSV."""
    from keel.evals.formats import to_csv, to_jsonl

    datasets, _ = _reading()
    try:
        _, stored = datasets.items(tenant, name, version)
    except KeelError as exc:
        raise fail(exc) from exc
    items = [s.item for s in stored]
    text = to_csv(items) if format == Format.csv else to_jsonl(items)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


@dataset_app.command("list")
def dataset_list(tenant: Tenant = "demo") -> None:
    """Datasets with their latest version."""
    datasets, _ = _reading()
    table = Table()
    for column in ("name", "version", "items", "updated"):
        table.add_column(column)
    for info in datasets.list_all(tenant):
        table.add_row(info.name, str(info.version), str(info.item_count), f"{info.updated_at:%Y-%m-%d %H:%M}")
    out.print(table)


@dataset_app.command("from-reviews")
def dataset_from_reviews(name: str, tenant: Tenant = "demo") -> None:
    """Add every approved or edited review's answer to the dataset."""
    with local_runtime(command_settings()) as runtime:
        try:
            items = runtime.evals.harvest.from_reviews(tenant)
            if not items:
                raise fail(KeelError("No approved or edited reviews yet."))
            info = runtime.evals.datasets.write(tenant, name, items, mode="append", origin="reviews")
        except KeelError as exc:
            raise fail(exc) from exc
    out.print(f"{info.name}: version {info.version}, {info.item_count} items")


@eval_app.command("run")
def run(
    dataset: Annotated[str, typer.Argument(help="Dataset name (ignored with --resume).")] = "",
    target: Annotated[TargetName, typer.Option()] = TargetName.copilot,
    config: Annotated[Path | None, typer.Option(help="TOML overriding settings for this run.")] = None,
    trials: Annotated[int, typer.Option(min=1, max=20)] = 1,
    concurrency: Annotated[int | None, typer.Option(min=1, max=64)] = None,
    version: Annotated[int | None, typer.Option(help="Dataset version; default the latest.")] = None,
    name: Annotated[str, typer.Option(help="A label for the run.")] = "",
    resume: Annotated[str | None, typer.Option(help="Carry on an interrupted run (its id).")] = None,
    tenant: Tenant = "demo",
) -> None:
    """Run a target over a dataset here, with a progress bar; the last line printed is the run id."""
    from keel.evals.run_config import parse_overrides
    from keel.evals.run_types import RunRecord, RunRequest

    if not resume and not dataset:
        raise typer.BadParameter("name a dataset, or --resume a run")
    with local_runtime(command_settings()) as runtime:
        try:
            runs = runtime.evals.runs
            if resume:
                created = runs.get(tenant, resume)
            else:
                overrides = parse_overrides(config.read_text(encoding="utf-8")) if config else {}
                request = RunRequest(
                    dataset=dataset,
                    version=version,
                    target=target.value,
                    trials=trials,
                    concurrency=concurrency,
                    config=overrides,
                    name=name,
                )
                created = runs.create(tenant, request, enqueue=False)
            err.print(f"run {created.id}: {created.total} item trials, loading models…")
            runtime.warm_up()
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
            ) as bar:
                task = bar.add_task(created.id, total=created.total, completed=created.done + created.failed)

                def progress(state: RunRecord) -> None:
                    bar.update(task, completed=state.done + state.failed)

                runs.execute(created.id, on_progress=progress)
            finished = runs.get(tenant, created.id)
        except KeyboardInterrupt:
            err.print(
                f"interrupted: `keel eval run --resume {created.id}` carries on without redoing scored items"
            )
            raise typer.Exit(code=130) from None
        except KeelError as exc:
            raise fail(exc) from exc
    out.print(metric_table(finished.summary, f"{finished.id} ({finished.status}, {finished.failed} failed)"))
    out.print(finished.id)


@eval_app.command("show")
def show(
    run_id: str, tenant: Tenant = "demo", as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """A run's status, configuration and metric table."""
    _, runs = _reading()
    try:
        found = runs.get(tenant, run_id)
    except KeelError as exc:
        raise fail(exc) from exc
    if as_json:
        out.print_json(
            json.dumps(
                {"id": found.id, "status": found.status, "config": found.config, "summary": found.summary}
            )
        )
        return
    out.print(
        f"{found.id}: {found.status}, {found.done + found.failed}/{found.total} ({found.failed} failed)"
    )
    out.print(metric_table(found.summary, found.name or found.id))


def _pairwise(tenant: str, baseline: str, candidate: str, alias: str) -> Any:
    """Loads the models and judges the two runs' first-trial answers side by side."""
    import asyncio

    with local_runtime(command_settings()) as runtime:
        runtime.warm_up()
        return asyncio.run(runtime.evals.judge(tenant, baseline, candidate, alias))


def _compared(tenant: str, baseline: str, candidate: str, judge: str | None) -> dict[str, Any]:
    """The comparison as JSON (with the judge's verdicts under `pairwise`), from the server or here."""
    from keel.evals.service import compare_runs

    server = connect(command_settings())
    if server is not None:
        try:
            body = {"baseline": baseline, "candidate": candidate, "judge": judge}
            return dict(server.call("POST", "/v1/evals/compare", json=body, timeout=_JUDGING_TIMEOUT))
        finally:
            server.close()
    _, runs = _reading()
    found = compare_runs(runs, tenant, baseline, candidate).to_json()
    if judge:
        found["pairwise"] = _pairwise(tenant, baseline, candidate, judge).to_json()
    return found


def comparison_table(comparison: Any) -> Table:
    table = Table(
        title=f"{comparison.candidate_run} vs {comparison.baseline_run} ({comparison.paired_items} items)"
    )
    for column in (
        "metric",
        "baseline",
        "candidate",
        "difference",
        f"{comparison.confidence_level:.0%} CI",
        "p",
        "test",
    ):
        table.add_column(column, justify="left" if column in ("metric", "test") else "right")
    for m in comparison.metrics:
        table.add_row(
            m.metric,
            _fmt(m.baseline),
            _fmt(m.candidate),
            f"{m.difference:+.3f}",
            f"{_fmt(m.low)} to {_fmt(m.high)}",
            _fmt(m.p_value, 4),
            m.test,
        )
    return table


@eval_app.command("compare")
def compare(
    baseline: str,
    candidate: str,
    tenant: Tenant = "demo",
    as_json: Annotated[bool, typer.Option("--json", help="The comparison as JSON.")] = False,
    judge: Annotated[
        str | None, typer.Option(help="Also judge the answers side by side with this model alias.")
    ] = None,
) -> None:
    """Per-metric paired differences with intervals and tests, and the items that changed most (through
    the server at KEEL_URL when KEEL_API_KEY is set, whose key decides the tenant; else in this process)."""
    from keel.evals.compare import Comparison
    from keel.evals.pairwise import PairwiseResult

    try:
        found = _compared(tenant, baseline, candidate, judge)
    except KeelError as exc:
        raise fail(exc) from exc
    if as_json:
        out.print_json(json.dumps(found))
        return
    comparison = Comparison.from_json(found)
    judged = PairwiseResult.from_json(found["pairwise"]) if "pairwise" in found else None
    out.print(comparison_table(comparison))
    if judged is not None:
        p = judged.preference
        out.print(
            f"judge {judge}: candidate better on {judged.candidate_wins}, baseline on {judged.baseline_wins},"
            f" {judged.ties} ties, {judged.unjudged} unjudged; preference for the candidate {_fmt(p.value)}"
            f" ({_fmt(p.low)} to {_fmt(p.high)}); cost {judged.cost_micros / 1_000_000:.4f}"
        )
    if comparison.most_changed:
        changed = Table(title="most changed items")
        for column in ("item", "metric", "baseline", "candidate"):
            changed.add_column(column)
        for item in comparison.most_changed:
            changed.add_row(item.item_key, item.metric, _fmt(item.baseline), _fmt(item.candidate))
        out.print(changed)


@eval_app.command("gate")
def gate(
    baseline: Annotated[str, typer.Option(help="The run to hold the candidate to.")],
    candidate: Annotated[str, typer.Option(help="The run under test.")],
    max_drop: Annotated[list[str], typer.Option(help="METRIC=ALLOWED, repeatable.")],
    tenant: Tenant = "demo",
) -> None:
    """Exit 1 when a metric got worse by more than allowed with confidence; 0 otherwise."""
    from keel.evals.gate import gate as decide
    from keel.evals.gate import parse_allowance
    from keel.evals.service import compare_runs

    _, runs = _reading()
    try:
        allowances = [parse_allowance(text) for text in max_drop]
        result = decide(compare_runs(runs, tenant, baseline, candidate), allowances)
    except KeelError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(code=2) from exc
    for check in result.checks:
        out.print(f"{'FAIL' if check.failed else 'ok  '} {check.metric}: {check.reason}")
    out.print("gate: " + ("passed" if result.passed else "failed"))
    raise typer.Exit(code=0 if result.passed else 1)


@eval_app.command("report")
def report(
    run_id: str,
    tenant: Tenant = "demo",
    output: Annotated[Path | None, typer.Option(help="Default: <run id>.html")] = None,
    baseline: Annotated[str | None, typer.Option(help="Also compare with this run.")] = None,
) -> None:
    """Write a run's HTML report (or, with --baseline, the comparison's)."""
    from keel.evals.service import compare_runs
    from keel.server.ui.eval_reports import comparison_report, run_report

    _, runs = _reading()
    try:
        if baseline:
            html = comparison_report(compare_runs(runs, tenant, baseline, run_id))
        else:
            found = runs.get(tenant, run_id)
            html = run_report(found, runs.results(tenant, run_id), runs.items_of(found))
    except KeelError as exc:
        raise fail(exc) from exc
    path = output or Path(f"{run_id}.html")
    path.write_text(html, encoding="utf-8")
    out.print(str(path))


def register(app: typer.Typer) -> None:
    cli_eval_monitoring.register(eval_app)
    app.add_typer(eval_app, name="eval")

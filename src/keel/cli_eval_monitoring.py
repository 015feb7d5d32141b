"""`keel eval drift`: the drift monitors from the terminal (or a cron job), without loading a model."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from keel.cli_common import command_settings, migrated_database, out
from keel.evals.drift_watch import DriftReport

_TIME = "%Y-%m-%d %H:%M"


def drift_table(report: DriftReport) -> Table:
    recent, baseline = report.recent, report.baseline
    table = Table(
        title=f"{report.tenant}: recent {recent.start:{_TIME}} to {recent.end:{_TIME}} UTC, "
        f"baseline {baseline.start:{_TIME}} to {baseline.end:{_TIME}}",
        box=None,
        pad_edge=False,
        collapse_padding=True,
    )
    # Fits 80 columns without cutting a name, a verdict or a number (the test is the monitor's own).
    table.add_column("monitor", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for column in ("p-value", "effect", "baseline", "recent", "min n"):
        table.add_column(column, justify="right", no_wrap=True)
    for m in report.monitors:
        colour = {"drift": "red", "ok": "green"}.get(m.verdict, "dim")
        table.add_row(
            m.monitor,
            f"[{colour}]{m.verdict}[/{colour}]",
            f"{m.p_value:.4f}",
            f"{m.effect:.3f}",
            str(m.baseline_n),
            str(m.recent_n),
            str(m.min_samples),
        )
    return table


def register(eval_app: typer.Typer) -> None:
    @eval_app.command("drift")
    def drift(
        tenant: Annotated[str, typer.Option(help="Tenant whose traffic is checked.")] = "demo",
        record: Annotated[
            bool,
            typer.Option(
                "--record",
                help="Record the verdicts and alert for monitors that crossed into drift, as the server's "
                "periodic check does.",
            ),
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        """Check every drift monitor now, the recent window against the baseline window; exits 1 when
        a monitor finds drift."""
        from keel.evals.monitoring import build_drift_watch
        from keel.gateway.providers.embedding import build_embedding_model

        settings = command_settings()
        database = migrated_database(settings)
        # Only the model's name is needed (nothing is loaded): stored query vectors of other models are
        # left out.
        model = build_embedding_model(settings.embedding)
        watch = build_drift_watch(settings, database, model.model_id)
        try:
            report = watch.check(tenant)
            alerted = watch.record(report) if record else []
        finally:
            database.dispose()
        if as_json:
            out.print_json(json.dumps(report.model_dump(mode="json") | {"alerted": alerted}))
        else:
            out.print(drift_table(report))
            if alerted:
                out.print("alerted: " + ", ".join(alerted))
        if report.alerting:
            raise typer.Exit(code=1)

"""`keel prompts canary ...` and `keel experiments ...`: releasing prompt versions with care from the
terminal. Registered by `keel.cli_prompts`; the commands act as the administrator "cli"."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from keel.cli_common import command_settings, fail, migrated_database, out
from keel.errors import KeelError
from keel.governance.audit import AuditLog
from keel.prompts.alerts import CanaryAlerts
from keel.prompts.canary import Canaries, CanaryRequest, CanaryView
from keel.prompts.experiments import ArmSpec, ExperimentRequest, Experiments
from keel.prompts.registry import Actor, PromptRegistry
from keel.review.webhooks import WebhookSender

CLI = Actor("cli", admin=True)
Tenant = Annotated[str, typer.Option(help="Tenant the prompts belong to.")]
Reason = Annotated[str, typer.Option("--reason", "-r", help="Why: kept in the audit log.")]
T = TypeVar("T")


def _services() -> tuple[Canaries, Experiments]:
    settings = command_settings()
    database = migrated_database(settings)
    audit = AuditLog(database)
    config = settings.prompts
    registry = PromptRegistry(database, audit, frozenset(config.protected_labels), config.max_rendered_chars)
    canary = config.canary
    secret = os.environ.get(canary.webhook_secret_env) if canary.webhook_secret_env else None
    aliases = set(settings.gateway.aliases) or {settings.chat.alias}
    return (
        Canaries(database, registry, audit, canary, CanaryAlerts(WebhookSender(canary.webhook_url, secret))),
        Experiments(database, registry, audit, known_model=lambda alias: alias in aliases),
    )


def _run(action: Callable[[Canaries, Experiments], T]) -> T:
    try:
        return action(*_services())
    except KeelError as exc:
        raise fail(exc) from exc


def _arm(text: str) -> ArmSpec:
    """`name:weight`, then optionally `:version=N` and/or `:model=ALIAS`."""
    name, _, rest = text.partition(":")
    weight, *options = rest.split(":") if rest else ["1"]
    fields: dict[str, object] = {"name": name, "weight": float(weight)}
    for option in options:
        key, _, value = option.partition("=")
        if key not in ("version", "model"):
            raise typer.BadParameter(f"'{option}': an arm takes version=N or model=ALIAS")
        fields[key] = int(value) if key == "version" else value
    return ArmSpec.model_validate(fields)


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _print_canary(view: CanaryView) -> None:
    out.print(
        f"{view.prompt}:{view.label} {view.stable_version} → {view.canary_version} · {view.status} · "
        f"{view.percent:g} % (step {view.step + 1} of {len(view.rule.steps)}) · {view.reason or ''}",
        highlight=False,
    )
    if view.current is not None:
        out.print(f"now: {view.current['decision']} · {view.current['reason']}", highlight=False)
        checks = view.current.get("checks") or []
        table = Table("metric", "stable", "canary", "calls (stable/canary)", "p", "regressed")
        for check in checks:  # type: ignore[attr-defined]
            table.add_row(
                check["metric"],
                str(check["stable"]),
                str(check["canary"]),
                f"{check['stable_n']}/{check['canary_n']}",
                f"{check['p_value']:.3g}",
                "yes" if check["regressed"] else "",
            )
        if checks:
            out.print(table)


def register_rollouts(app: typer.Typer, prompts_app: typer.Typer) -> None:
    canary_app = typer.Typer(
        help="Canary releases: a label moves to a version in judged steps.", no_args_is_help=True
    )
    prompts_app.add_typer(canary_app, name="canary")
    experiments_app = typer.Typer(
        help="Sticky A/B experiments between prompt versions or models.", no_args_is_help=True
    )
    app.add_typer(experiments_app, name="experiments")

    @canary_app.command("start")
    def canary_start(
        name: Annotated[str, typer.Argument(help="The prompt.")],
        version: Annotated[int, typer.Argument(help="The version to release.")],
        label: Annotated[str, typer.Option(help="The label it moves.")] = "production",
        steps: Annotated[str | None, typer.Option(help="Traffic percentages, e.g. 5,25,50.")] = None,
        min_requests: Annotated[
            int | None, typer.Option(help="Calls per version before a step is judged.")
        ] = None,
        min_duration: Annotated[float | None, typer.Option(help="Seconds each step lasts at least.")] = None,
        tenant: Tenant = "demo",
        reason: Reason = "",
    ) -> None:
        """Start releasing a version to a label through a canary."""
        request = CanaryRequest(
            label=label,
            version=version,
            steps=[float(s) for s in steps.split(",")] if steps else None,
            min_requests=min_requests,
            min_duration_s=min_duration,
            reason=reason,
        )
        _print_canary(_run(lambda canaries, _: canaries.start(tenant, name, request, CLI)))

    @canary_app.command("status")
    def canary_status(
        name: Annotated[str, typer.Argument(help="The prompt.")],
        label: Annotated[str, typer.Option(help="The label.")] = "production",
        tenant: Tenant = "demo",
    ) -> None:
        """The label's newest canary, with its current step judged now."""
        _print_canary(_run(lambda canaries, _: canaries.status(tenant, name, label)))

    @canary_app.command("abort")
    def canary_abort(
        name: Annotated[str, typer.Argument(help="The prompt.")],
        label: Annotated[str, typer.Option(help="The label.")] = "production",
        tenant: Tenant = "demo",
        reason: Reason = "",
    ) -> None:
        """End a running canary: all traffic goes to the stable version."""
        _print_canary(_run(lambda canaries, _: canaries.abort(tenant, name, label, CLI, reason)))

    @canary_app.command("check")
    def canary_check(tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None) -> None:
        """Judge every running canary now and act (the server's queue does this every minute)."""
        moved = _run(lambda canaries, _: canaries.check_all(tenant))
        for view in moved:
            _print_canary(view)
        out.print(f"{len(moved)} canaries moved")

    @experiments_app.command("start")
    def experiment_start(
        name: Annotated[str, typer.Argument(help="The experiment's name.")],
        prompt: Annotated[str, typer.Option(help="The prompt whose traffic is split.")],
        arm: Annotated[list[str], typer.Option(help="name:weight[:version=N][:model=ALIAS], twice or more.")],
        label: Annotated[str, typer.Option(help="The label whose traffic is split.")] = "production",
        tenant: Tenant = "demo",
    ) -> None:
        """Split a label's traffic between arms, sticky per end user."""
        request = ExperimentRequest(name=name, prompt=prompt, label=label, arms=[_arm(a) for a in arm])
        view = _run(lambda _, experiments: experiments.start(tenant, request, CLI))
        out.print(f"{view.name}: {view.prompt}:{view.label} split {', '.join(a.name for a in view.arms)}")

    @experiments_app.command("list")
    def experiment_list(tenant: Tenant = "demo") -> None:
        table = Table("experiment", "prompt", "label", "arms", "status", "started")
        for view in _run(lambda _, experiments: experiments.list(tenant)):
            arms = ", ".join(f"{a.name}={a.weight:g}" for a in view.arms)
            table.add_row(
                view.name, view.prompt, view.label, arms, view.status, f"{view.created_at:%Y-%m-%d %H:%M}"
            )
        out.print(table)

    @experiments_app.command("stop")
    def experiment_stop(
        name: Annotated[str, typer.Argument(help="The experiment.")],
        tenant: Tenant = "demo",
        reason: Reason = "",
    ) -> None:
        view = _run(lambda _, experiments: experiments.stop(tenant, name, CLI, reason))
        out.print(f"{view.name}: {view.status}")

    @experiments_app.command("report")
    def experiment_report(
        name: Annotated[str, typer.Argument(help="The experiment.")],
        tenant: Tenant = "demo",
        alpha: Annotated[float, typer.Option(help="Family-wise significance level.")] = 0.05,
    ) -> None:
        """Per-arm metrics with 95 % intervals; every arm against the first, with a significance test."""
        report = _run(lambda _, experiments: experiments.report(tenant, name, alpha))
        metrics = list(report.arms[0].metrics) if report.arms else []
        table = Table("metric", *(f"{a.arm} ({a.requests} calls)" for a in report.arms))
        for metric in metrics:
            cells = []
            for arm in report.arms:
                found = arm.metrics[metric]
                cells.append(
                    "-"
                    if found.value is None
                    else f"{found.value:.4g} [{found.low:.4g}, {found.high:.4g}] n={found.n}"
                )
            table.add_row(metric, *cells)
        out.print(table)
        differences = Table("metric", "arm", "vs", "difference", "p", "test", "significant")
        for c in report.comparisons:
            difference = "-" if c.difference is None else f"{c.difference:+.4g}"
            differences.add_row(
                c.metric,
                c.arm,
                c.control,
                difference,
                f"{c.p_value:.3g}",
                c.test,
                "yes" if c.significant else "",
            )
        out.print(differences)

"""`keel prompts ...` and `keel experiments ...`: the prompt registry from the terminal (push, sync a
folder, labels, rollback, history, diff, canary releases) and experiments. Commands act on the
configured database as the administrator "cli", like `keel keys`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from keel.cli_common import command_settings, fail, migrated_database, out
from keel.cli_rollouts import register_rollouts
from keel.errors import KeelError
from keel.governance.audit import AuditLog
from keel.prompts.files import sync_folder
from keel.prompts.prompt_file import parse_prompt_file, to_yaml
from keel.prompts.registry import Actor, PromptRegistry

# The audit log's actor for changes made from the terminal (as for keys and reviews).
CLI = Actor("cli", admin=True)
Tenant = Annotated[str, typer.Option(help="Tenant the prompts belong to.")]
Reason = Annotated[str, typer.Option("--reason", "-r", help="Why: kept in the history and the audit log.")]
T = TypeVar("T")


def registry() -> PromptRegistry:
    settings = command_settings()
    database = migrated_database(settings)
    config = settings.prompts
    return PromptRegistry(
        database, AuditLog(database), frozenset(config.protected_labels), config.max_rendered_chars
    )


def run(change: Callable[[PromptRegistry], T]) -> T:
    try:
        return change(registry())
    except KeelError as exc:
        raise fail(exc) from exc


def register(app: typer.Typer) -> None:
    prompts_app = typer.Typer(help="The prompt registry: versions, labels, rollback.", no_args_is_help=True)
    app.add_typer(prompts_app, name="prompts")
    register_rollouts(app, prompts_app)

    @prompts_app.command("push")
    def push(
        file: Annotated[Path, typer.Argument(help="A prompt file (YAML).", exists=True, dir_okay=False)],
        tenant: Tenant = "demo",
        message: Annotated[str, typer.Option("--message", "-m", help="The version's commit message.")] = "",
        label: Annotated[str | None, typer.Option(help="Move this label to the pushed version.")] = None,
    ) -> None:
        """Push one prompt file; an unchanged file makes no version."""

        def change(found: PromptRegistry) -> str:
            prompt = parse_prompt_file(file.read_text(encoding="utf-8"), file.name)
            pushed = found.push(tenant, prompt.name, prompt.spec, CLI, message, prompt.description)
            line = f"{prompt.name}@{pushed.version} " + ("created" if pushed.created else "unchanged")
            if label is not None and found.prompt(tenant, prompt.name).labels.get(label) != pushed.version:
                found.move_label(tenant, prompt.name, label, pushed.version, CLI, message)
                line += f", {label} → {pushed.version}"
            return line

        out.print(run(change), highlight=False)

    @prompts_app.command("sync")
    def sync(
        folder: Annotated[Path, typer.Argument(help="A folder of prompt files (*.yaml, *.yml).")],
        tenant: Tenant = "demo",
        message: Annotated[str, typer.Option("--message", "-m", help="Commit message of new versions.")] = "",
        label: Annotated[str | None, typer.Option(help="Move this label to every pushed version.")] = None,
    ) -> None:
        """Push every changed prompt file of a folder (all are checked before any is pushed)."""
        items = run(lambda found: sync_folder(found, tenant, folder, CLI, label=label, message=message))
        table = Table("file", "prompt", "version", "change")
        for item in items:
            change = "created" if item.created else "unchanged"
            if item.label_moved:
                change += f", {label} {item.label_moved_from or '-'} → {item.version}"
            table.add_row(item.path, item.name, str(item.version), change)
        out.print(table)
        created = sum(item.created for item in items)
        out.print(f"{len(items)} prompt files: {created} new versions, {len(items) - created} unchanged")

    @prompts_app.command("list")
    def list_prompts(tenant: Tenant = "demo") -> None:
        """Every prompt with its newest version and its labels."""
        table = Table("prompt", "latest", "labels", "description")
        for prompt in run(lambda found: found.prompts(tenant)):
            labels = ", ".join(f"{name}={version}" for name, version in prompt.labels.items())
            table.add_row(prompt.name, str(prompt.latest), labels, prompt.description)
        out.print(table)

    @prompts_app.command("show")
    def show(
        name: Annotated[str, typer.Argument(help="The prompt's name.")],
        tenant: Tenant = "demo",
        label: Annotated[str | None, typer.Option(help="The label to show (default production).")] = None,
        version: Annotated[int | None, typer.Option(help="A version by number.")] = None,
        as_yaml: Annotated[bool, typer.Option("--yaml", help="Print it as a prompt file.")] = False,
    ) -> None:
        """One version: by label (default production) or number."""

        def read(found: PromptRegistry) -> tuple[str, str]:
            view = found.version(tenant, name, version=version, label=label)
            return to_yaml(name, view.spec, found.prompt(tenant, name).description), (
                f"{name}@{view.version} by {view.author} on {view.created_at:%Y-%m-%d %H:%M}"
                f" · labels: {', '.join(view.labels) or '-'} · {view.message or '(no message)'}"
            )

        text, header = run(read)
        if not as_yaml:
            out.print(f"[dim]{header}[/dim]")
        out.print(text, highlight=False, end="")

    @prompts_app.command("diff")
    def diff(
        name: Annotated[str, typer.Argument(help="The prompt's name.")],
        old: Annotated[int, typer.Argument(help="The older version.")],
        new: Annotated[int, typer.Argument(help="The newer version.")],
        tenant: Tenant = "demo",
    ) -> None:
        """A unified diff of two versions' content."""
        out.print(run(lambda found: found.diff(tenant, name, old, new)), highlight=False, end="")

    @prompts_app.command("label")
    def label(
        name: Annotated[str, typer.Argument(help="The prompt's name.")],
        label_name: Annotated[str, typer.Argument(metavar="LABEL", help="e.g. production, staging.")],
        version: Annotated[int, typer.Argument(help="The version it should point at.")],
        tenant: Tenant = "demo",
        reason: Reason = "",
    ) -> None:
        """Move a label to a version (audited)."""
        move = run(lambda found: found.move_label(tenant, name, label_name, version, CLI, reason))
        out.print(f"{name}:{label_name} {move.from_version or '-'} → {move.to_version}")

    @prompts_app.command("rollback")
    def rollback(
        name: Annotated[str, typer.Argument(help="The prompt's name.")],
        label_name: Annotated[
            str, typer.Argument(metavar="LABEL", help="The label to roll back.")
        ] = "production",
        to: Annotated[int | None, typer.Option(help="This version (default: where it came from).")] = None,
        tenant: Tenant = "demo",
        reason: Reason = "",
    ) -> None:
        """Move a label back to the version its last move took it from (audited)."""
        move = run(lambda found: found.rollback(tenant, name, label_name, CLI, reason, to))
        out.print(f"{name}:{label_name} {move.from_version} → {move.to_version} (rollback)")

    @prompts_app.command("history")
    def history(
        name: Annotated[str, typer.Argument(help="The prompt's name.")],
        label_name: Annotated[str | None, typer.Option("--label", help="Only this label.")] = None,
        tenant: Tenant = "demo",
    ) -> None:
        """Every move of the prompt's labels, newest first."""
        table = Table("when", "label", "from", "to", "kind", "who", "why")
        for move in run(lambda found: found.history(tenant, name, label_name)):
            table.add_row(
                f"{move.created_at:%Y-%m-%d %H:%M:%S}",
                move.label,
                str(move.from_version or "-"),
                str(move.to_version),
                move.kind,
                move.actor,
                move.reason,
            )
        out.print(table)

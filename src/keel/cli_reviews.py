"""`keel reviews ...`: list the review queue, release a claim or hand an item to a reviewer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from rich.table import Table

from keel.cli_common import CLI_ACTOR, command_settings, fail, migrated_database, out
from keel.errors import KeelError
from keel.governance.audit import AuditLog
from keel.review.queue import Review, ReviewQueue
from keel.review.webhooks import WebhookSender

Tenant = Annotated[str, typer.Option(help="Tenant the review item belongs to.")]


def _queue() -> ReviewQueue:
    settings = command_settings()
    database = migrated_database(settings)
    # No webhook: releasing and assigning decide nothing, so the client has nothing to hear.
    return ReviewQueue(
        database, WebhookSender(None, None), AuditLog(database), claim_ttl_s=settings.review.claim_ttl_s
    )


def _run(change: Callable[[ReviewQueue], Review]) -> Review:
    try:
        return change(_queue())
    except KeelError as exc:
        raise fail(exc) from exc


def register(app: typer.Typer) -> None:
    reviews_app = typer.Typer(help="The human review queue.", no_args_is_help=True)
    app.add_typer(reviews_app, name="reviews")

    @reviews_app.command("list")
    def reviews_list(
        tenant: Tenant = "demo",
        status: Annotated[
            str | None, typer.Option(help="pending, claimed, approved, edited, rejected.")
        ] = None,
        limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    ) -> None:
        """List review items with who holds each claim and until when."""
        queue = _queue()
        table = Table("id", "created", "status", "reasons", "claimed by", "claim expires")
        for item in queue.list(tenant, status, limit=limit):
            claim = queue.claim_of(item)
            expires = f"{claim.expires_at:%Y-%m-%d %H:%M} UTC" if claim.expires_at else ""
            if claim.state in ("expired", "holder_revoked"):
                expires += f" ({claim.state.replace('_', ' ')})"
            table.add_row(
                item.id,
                f"{item.created_at:%Y-%m-%d %H:%M}",
                item.status,
                ", ".join(item.reasons),
                claim.holder or "",
                expires,
            )
        out.print(table)

    @reviews_app.command("release")
    def reviews_release(
        review_id: Annotated[str, typer.Argument(help="The review item's id.")], tenant: Tenant = "demo"
    ) -> None:
        """Hand a claimed item back to the queue (audited)."""
        item = _run(lambda queue: queue.release(tenant, review_id, CLI_ACTOR))
        out.print(f"released {item.id}: {item.status}")

    @reviews_app.command("assign")
    def reviews_assign(
        review_id: Annotated[str, typer.Argument(help="The review item's id.")],
        to: Annotated[str, typer.Option("--to", help="The reviewer's API key id or displayed prefix.")],
        tenant: Tenant = "demo",
    ) -> None:
        """Give a pending or claimed item to a reviewer (audited); their claim starts afresh."""
        item = _run(lambda queue: queue.assign(tenant, review_id, to, CLI_ACTOR))
        out.print(f"assigned {item.id} to {item.claimed_by}")

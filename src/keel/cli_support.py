"""`keel ask`: the support copilot in the terminal."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from keel.cli_common import command_settings, err, fail, out
from keel.copilot.types import ReplyRequest
from keel.errors import KeelError
from keel.gateway.service import Caller


def register(app: typer.Typer) -> None:
    @app.command()
    def ask(
        question: Annotated[str, typer.Argument(help="The customer's message.")],
        tenant: Annotated[str, typer.Option(help="Tenant whose knowledge and CRM to use.")] = "demo",
        customer: Annotated[str | None, typer.Option(help="CRM customer id, e.g. C-1001.")] = None,
        conversation: Annotated[str | None, typer.Option(help="Continue this conversation (id).")] = None,
    ) -> None:
        """Ask the support copilot; prints the reply, its citations, confidence and status."""
        from keel.runtime import Runtime

        runtime = Runtime.build(command_settings())
        runtime.prepare()
        request = ReplyRequest(
            message=question, customer_id=customer, conversation_id=conversation, channel="cli"
        )
        try:
            reply = asyncio.run(runtime.copilot.reply(request, Caller(tenant=tenant, key_id="cli")))
        except KeelError as exc:
            raise fail(exc) from exc
        finally:
            runtime.close()
        out.print(reply.reply, highlight=False)
        for number, citation in enumerate(reply.citations, start=1):
            out.print(f"  [{number}] {citation.source} — “{citation.quote}”", highlight=False)
        reasons = f" ({', '.join(reply.escalation_reasons)})" if reply.escalation_reasons else ""
        err.print(
            f"[dim]status: {reply.status}{reasons} · confidence {reply.confidence:.2f} · "
            f"intent {reply.intent} · conversation {reply.conversation_id}[/dim]"
        )

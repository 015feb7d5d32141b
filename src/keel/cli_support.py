"""`keel ask`: the support copilot in the terminal."""

from __future__ import annotations

import asyncio
from typing import Annotated, get_args

import typer
from pydantic import ValidationError

from keel.cli_common import command_settings, err, fail, local_runtime, migrated_database, out
from keel.cli_remote import connect
from keel.copilot.types import ReplyRequest, ReplyResponse
from keel.errors import KeelError
from keel.gateway.service import Caller


def register(app: typer.Typer) -> None:
    @app.command()
    def usage(
        tenant: Annotated[str, typer.Option(help="Tenant to report on.")] = "demo",
        group_by: Annotated[
            list[str],
            typer.Option(
                "--by",
                help="day, key, model, deployment, prompt, feature, prompt_label, experiment, arm.",
            ),
        ] = [  # noqa: B006
            "day",
            "model",
        ],
        csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    ) -> None:
        """Cost and usage from the ledger, grouped as asked."""
        from rich.table import Table

        from keel.observe.usage import Dimension, to_csv, usage_report

        known = get_args(Dimension)
        dimensions = [d for d in group_by if d in known]
        if len(dimensions) != len(group_by):
            raise typer.BadParameter(f"--by takes {', '.join(known)}")
        database = migrated_database(command_settings())
        try:
            report = usage_report(database, tenant, dimensions)  # type: ignore[arg-type]
        finally:
            database.dispose()
        if csv:
            out.print(to_csv(report), end="", highlight=False)
            return
        table = Table(
            *dimensions, "requests", "errors", "cache hits", "tokens in", "tokens out", "cost", "avg ms"
        )
        for row in report.rows:
            table.add_row(
                *(row.group[d] or "" for d in dimensions),
                str(row.requests),
                str(row.errors),
                str(row.cache_hits),
                str(row.prompt_tokens),
                str(row.completion_tokens),
                f"{row.cost:f}",
                f"{row.avg_latency_ms:.0f}",
            )
        out.print(table)

    @app.command()
    def ask(
        question: Annotated[str, typer.Argument(help="The customer's message.")],
        tenant: Annotated[str, typer.Option(help="Tenant whose knowledge and CRM to use.")] = "demo",
        customer: Annotated[str | None, typer.Option(help="CRM customer id, e.g. C-1001.")] = None,
        conversation: Annotated[str | None, typer.Option(help="Continue this conversation (id).")] = None,
    ) -> None:
        """Ask the support copilot (through the server at KEEL_URL when KEEL_API_KEY is set, else in this
        process); prints the reply, its citations, confidence and status."""
        settings = command_settings()
        try:
            request = ReplyRequest(
                message=question, customer_id=customer, conversation_id=conversation, channel="cli"
            )
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise typer.BadParameter(f"{where}: {problem['msg']}") from exc
        server = connect(settings)
        try:
            if server is not None:
                body = request.model_dump(mode="json", exclude_none=True)
                reply = ReplyResponse.model_validate(server.call("POST", "/v1/support/replies", json=body))
            else:
                with local_runtime(settings) as runtime:
                    caller = Caller(tenant=tenant, key_id="cli")
                    reply = asyncio.run(runtime.copilot.reply(request, caller))
        except KeelError as exc:
            raise fail(exc) from exc
        finally:
            if server is not None:
                server.close()
        out.print(reply.reply, highlight=False)
        for number, citation in enumerate(reply.citations, start=1):
            out.print(f"  [{number}] {citation.source} — “{citation.quote}”", highlight=False)
        reasons = f" ({', '.join(reply.escalation_reasons)})" if reply.escalation_reasons else ""
        err.print(
            f"[dim]status: {reply.status}{reasons} · confidence {reply.confidence:.2f} · "
            f"intent {reply.intent} · conversation {reply.conversation_id}[/dim]"
        )

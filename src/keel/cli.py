"""`keel ...` commands: parse, call a service, print."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from keel import cli_evals, cli_knowledge, cli_models, cli_prompts, cli_reviews, cli_support
from keel.cli_common import CLI_ACTOR, command_settings, err, fail, local_runtime, migrated_database, out
from keel.cli_remote import RemoteServer, connect
from keel.errors import KeelError
from keel.governance.audit import AuditLog
from keel.keys import Role

# Errors are one line (`main`), so Typer's own traceback printer is off.
app = typer.Typer(
    help="Keel: the system around the model.", no_args_is_help=True, pretty_exceptions_enable=False
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
retention_app = typer.Typer(help="Retention of stored data.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(retention_app, name="retention")


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default: KEEL_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: KEEL_PORT or 8000).")] = None,
) -> None:
    """Start the API server."""
    import uvicorn

    from keel.server.app import create_app

    overrides = {key: value for key, value in {"host": host, "port": port}.items() if value is not None}
    settings = command_settings(quiet=False, **overrides)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    settings = command_settings()
    migrated_database(settings).dispose()
    out.print(f"database at head: {settings.sqlalchemy_url}")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key acts for.")],
    role: Annotated[Role, typer.Option(help="What the key may do.")],
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
) -> None:
    """Create a key and print it once; only its hash is stored."""
    from keel.keys import KeyStore

    database = migrated_database(command_settings())
    try:
        issued = KeyStore(database, AuditLog(database)).create(tenant, role, name, actor=CLI_ACTOR)
    except KeelError as exc:
        raise fail(exc) from exc
    err.print(
        f"created {issued.record.id} ({issued.record.role} for tenant {issued.record.tenant}); "
        "store it now, it is not shown again:"
    )
    out.print(issued.secret, soft_wrap=True, highlight=False)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked keys.")] = False,
) -> None:
    """List keys (never their secrets)."""
    from keel.keys import KeyStore

    # Ids and prefixes are what `keys revoke` takes: never cut, at any terminal width; the rest wraps.
    table = Table(box=None, pad_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("prefix", no_wrap=True)
    table.add_column("tenant", overflow="fold")
    table.add_column("role", no_wrap=True)
    table.add_column("name", overflow="fold")
    for column in ("created", "revoked") if revoked else ("created",):
        table.add_column(column, no_wrap=True)
    database = migrated_database(command_settings())
    for key in KeyStore(database, AuditLog(database)).list(tenant, include_revoked=revoked):
        row = [key.id, key.prefix, key.tenant, key.role, key.name, f"{key.created_at:%Y-%m-%d}"]
        if revoked:
            row.append(f"{key.revoked_at:%Y-%m-%d}" if key.revoked_at else "")
        table.add_row(*row)
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="The key's id or its displayed prefix.")]) -> None:
    """Revoke a key; requests with it fail with 401 from then on."""
    from keel.keys import KeyStore

    database = migrated_database(command_settings())
    try:
        record = KeyStore(database, AuditLog(database)).revoke(key, actor=CLI_ACTOR)
    except KeelError as exc:
        raise fail(exc) from exc
    out.print(f"revoked {record.id} ({record.prefix}…)")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; exits 1 and names the first broken entry if it was tampered with."""
    result = AuditLog(migrated_database(command_settings())).verify()
    if result.ok:
        out.print(f"audit log intact: {result.entries} entries")
        return
    err.print(f"[red]audit log broken at entry {result.first_broken_seq}:[/red] {result.problem}")
    raise typer.Exit(code=1)


@retention_app.command("purge")
def retention_purge() -> None:
    """Delete what is older than its retention period (settings: retention.*)."""
    from keel.governance.retention import Retention

    settings = command_settings()
    database = migrated_database(settings)
    counts = Retention(database, settings.retention, AuditLog(database)).purge(actor=CLI_ACTOR)
    out.print("deleted: " + ", ".join(f"{kind}={count}" for kind, count in counts.items()))


@app.command()
def demo(
    tenant: Annotated[str, typer.Option(help="Tenant to load the demo data into.")] = "demo",
) -> None:
    """(Re)load the demo knowledge base, tickets and CRM; create a first admin key if none exists."""
    from keel.demo.loader import load_demo

    with local_runtime(command_settings()) as runtime:
        counts = load_demo(runtime.database, runtime.ingestion, tenant)
        out.print("demo data: " + ", ".join(f"{name}={count}" for name, count in sorted(counts.items())))
        admins = [key for key in runtime.keys.list(tenant) if key.role == Role.ADMIN]
        if admins:
            out.print(
                f"admin key exists for tenant '{tenant}' ({admins[0].prefix}…); "
                f"make another with: keel keys create --tenant {tenant} --role admin"
            )
        else:
            issued = runtime.keys.create(tenant, Role.ADMIN, name="first admin key", actor=CLI_ACTOR)
            out.print(f"\nFirst admin API key for tenant '{tenant}' (shown once, store it now):\n")
            out.print(f"    {issued.secret}\n", soft_wrap=True, highlight=False)


@app.command()
def chat(
    message: Annotated[str, typer.Argument(help="What to ask.")],
    model: Annotated[str | None, typer.Option(help="Model alias (default: the local chat model).")] = None,
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most tokens to generate.")] = 256,
    kb: Annotated[
        bool, typer.Option("--kb", help="Answer from the knowledge base: its best passages, cited [n].")
    ] = False,
    tenant: Annotated[str, typer.Option(help="With --kb and no server: the tenant searched.")] = "demo",
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=10, help="With --kb: passages given.")] = 4,
) -> None:
    """Ask the model through the gateway and stream the answer to the terminal (through the server at
    KEEL_URL when KEEL_API_KEY is set, else in this process). Without --kb the model answers from what
    it knows; with --kb it is given the knowledge base's best passages and told to cite them."""
    from keel.gateway.protocol import ChatCompletionRequest, ChatMessage
    from keel.gateway.service import Caller
    from keel.knowledge.index.base import SearchScope
    from keel.knowledge.retrieval import SearchRequest
    from keel.runtime import Runtime

    settings = command_settings()
    if not message.strip():
        raise typer.BadParameter("the message is empty", param_hint="MESSAGE")
    search = SearchRequest.model_validate({"query": message, "k": k})

    def request_for(sources: list[tuple[str, str]]) -> ChatCompletionRequest:
        instructions = [system] if system else []
        if kb:
            instructions.append(grounded_instructions(sources))
        messages = [ChatMessage(role="system", content="\n\n".join(instructions))] if instructions else []
        messages.append(ChatMessage(role="user", content=message))
        return ChatCompletionRequest(
            model=model or settings.chat.alias,
            messages=messages,
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
        )

    server = connect(settings)
    if server is not None:
        sources: list[tuple[str, str]] = []
        if kb:
            try:
                found = server.call("POST", "/v1/search", json=search.model_dump(mode="json"))
            except KeelError as exc:
                server.close()
                raise fail(exc) from exc
            sources = [(r["source"], r["text"]) for r in found["results"]]
        _remote_chat(server, request_for(sources).model_dump(mode="json", exclude_none=True))
        _print_sources(sources)
        return

    async def stream(runtime: Runtime) -> list[tuple[str, str]]:
        sources = []
        if kb:
            found = await runtime.retriever.search(search, SearchScope(tenant=tenant))
            sources = [(r.source, r.text) for r in found.results]
        caller = Caller(tenant="cli", key_id="cli")
        async for chunk in runtime.gateway.chat_stream(request_for(sources), caller):
            for choice in chunk.choices:
                if choice.delta.content:
                    out.print(choice.delta.content, end="", soft_wrap=True, highlight=False)
            if chunk.usage is not None:
                err.print(
                    f"\n[dim]{chunk.usage.prompt_tokens} prompt + "
                    f"{chunk.usage.completion_tokens} completion tokens[/dim]"
                )
        return sources

    with local_runtime(settings) as runtime:
        try:
            _print_sources(asyncio.run(stream(runtime)))
        except KeelError as exc:
            raise fail(exc) from exc


def grounded_instructions(sources: list[tuple[str, str]]) -> str:
    """The system prompt of `keel chat --kb`: the numbered passages and the rule to answer from them."""
    if not sources:
        return "The knowledge base has nothing on this question: say so, and do not guess."
    numbered = "\n\n".join(f"[{n}] ({source})\n{text}" for n, (source, text) in enumerate(sources, start=1))
    return (
        "Answer only from the numbered sources below and cite each fact with its number, like [1]. If they "
        f"do not answer the question, say that the knowledge base does not.\n\nSources:\n{numbered}"
    )


def _print_sources(sources: list[tuple[str, str]]) -> None:
    for n, (source, _) in enumerate(sources, start=1):
        err.print(f"[dim]\\[{n}] {escape(source)}[/dim]", highlight=False)


def _remote_chat(server: RemoteServer, body: dict[str, object]) -> None:
    try:
        for chunk in server.stream_chat(body):
            for choice in chunk.get("choices", []):
                content = choice.get("delta", {}).get("content")
                if content:
                    out.print(content, end="", soft_wrap=True, highlight=False)
            usage = chunk.get("usage")
            if usage and not chunk.get("choices"):
                err.print(
                    f"\n[dim]{usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion "
                    f"tokens · {server.url}[/dim]"
                )
    except KeelError as exc:
        raise fail(exc) from exc
    finally:
        server.close()


def main() -> None:
    """The `keel` entry point: an error is one line and exit code 1 (KEEL_DEBUG=1 shows the traceback)."""
    try:
        app()
    except KeelError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        sys.exit(1)
    except Exception as exc:
        if os.environ.get("KEEL_DEBUG"):
            raise
        err.print(f"[red]error:[/red] {type(exc).__name__}: {exc} [dim](KEEL_DEBUG=1 shows where)[/dim]")
        sys.exit(1)


cli_knowledge.register(app)
cli_support.register(app)
cli_reviews.register(app)
cli_prompts.register(app)
cli_evals.register(app)
cli_models.register(app)

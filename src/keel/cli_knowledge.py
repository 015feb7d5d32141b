"""`keel ingest`, `keel search` and `keel worker`: the knowledge base from the terminal."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from keel.cli_common import command_settings, err, out
from keel.jobs.ingestion_jobs import NewDocument
from keel.store.models import JobItem


def _files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            found.append(path)
        else:
            raise typer.BadParameter(f"{path} does not exist")
    return found


def register(app: typer.Typer) -> None:
    @app.command()
    def ingest(
        paths: Annotated[
            list[Path], typer.Argument(help="Files and folders (folders are read recursively).")
        ],
        tenant: Annotated[str, typer.Option(help="Tenant that owns the documents.")] = "demo",
        doc_type: Annotated[
            str | None, typer.Option(help="Force one type (default: by file extension).")
        ] = None,
        acl: Annotated[
            str, typer.Option(help="Comma-separated groups that may see them (default: all).")
        ] = "",
    ) -> None:
        """Ingest documents in this process, with a progress bar; unchanged files are skipped."""
        from keel.runtime import Runtime

        runtime = Runtime.build(command_settings())
        runtime.prepare()
        files = _files(paths)
        groups = [g.strip() for g in acl.split(",") if g.strip()]
        documents = [
            NewDocument(source=str(f), data=f.read_bytes(), doc_type=doc_type, acl=groups) for f in files
        ]
        job = runtime.jobs.submit(tenant, documents, enqueue=False)
        with Progress(
            TextColumn("[bold]ingesting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[current]}"),
            console=err,
        ) as progress:
            task = progress.add_task("ingest", total=len(documents), current="")

            def advance(item: JobItem) -> None:
                progress.update(task, advance=1, current=Path(item.source).name)

            runtime.jobs.run(job.id, on_item=advance)
        finished = runtime.jobs.get(tenant, job.id)
        outcomes: dict[str, int] = {}
        for item in finished.items:
            key = item.outcome if item.status == "done" and item.outcome else item.status
            outcomes[key] = outcomes.get(key, 0) + 1
        out.print(
            f"job {finished.id}: {finished.status} — "
            + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
        )
        for item in finished.items:
            if item.status == "failed":
                err.print(f"[red]failed[/red] {item.source}: {item.error}")
        runtime.close()
        if finished.status == "failed":
            raise typer.Exit(code=1)

    @app.command()
    def search(
        query: Annotated[str, typer.Argument(help="What to look for.")],
        tenant: Annotated[str, typer.Option(help="Tenant to search.")] = "demo",
        mode: Annotated[str, typer.Option(help="keyword, vector or hybrid.")] = "hybrid",
        k: Annotated[int, typer.Option("--k", "-k", min=1, max=100, help="How many results.")] = 5,
    ) -> None:
        """Search the knowledge base as an administrator of the tenant (every ACL group)."""
        from keel.knowledge.index.base import SearchScope
        from keel.knowledge.retrieval import SearchRequest
        from keel.runtime import Runtime

        runtime = Runtime.build(command_settings())
        runtime.prepare()
        request = SearchRequest.model_validate({"query": query, "mode": mode, "k": k})
        response = asyncio.run(runtime.retriever.search(request, SearchScope(tenant=tenant)))
        table = Table("#", "score", "source", "section", "text")
        for rank, result in enumerate(response.results, start=1):
            snippet = result.text.replace("\n", " ")
            table.add_row(
                str(rank),
                f"{result.score:.3f}",
                result.source,
                result.heading_path,
                snippet[:120] + ("…" if len(snippet) > 120 else ""),
            )
        out.print(table)
        runtime.close()

    @app.command()
    def worker(
        workers: Annotated[int, typer.Option(min=1, help="Worker threads in this process.")] = 1,
    ) -> None:
        """Consume background jobs (ingestion) until stopped; run any number of these. SIGTERM or Ctrl-C
        drains: the batch in hand finishes and the rest of its job goes back to the queue."""
        from keel.jobs.queue import DrainingConsumer, workers_alive
        from keel.runtime import Runtime

        runtime = Runtime.build(command_settings(quiet=False))
        runtime.prepare()
        # Other consumers may be busy: only stale claims are released.
        runtime.jobs.resume_unfinished(sole_consumer=False)
        consumer = DrainingConsumer(runtime.queue, runtime.jobs.stop_claiming, workers=workers)
        consumer.run()
        interrupted = workers_alive(consumer)
        if interrupted:
            # The drain timed out inside a batch: hand its items back rather than wait for the timeout.
            runtime.jobs.release_in_flight()
        runtime.close()
        if interrupted:
            # A worker thread is still inside the models; leaving without interpreter teardown avoids
            # tearing them down under it.
            os._exit(1)

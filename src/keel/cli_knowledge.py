"""`keel ingest`, `keel search` and `keel worker`: the knowledge base from the terminal."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from keel.cli_common import command_settings, err, local_runtime, out
from keel.cli_remote import RemoteServer, connect
from keel.config import Settings
from keel.jobs.ingestion_jobs import JobItem, NewDocument

# Documents per progress step when ingesting in this process: small enough that the bar moves.
PROGRESS_BATCH = 4
# One upload to a server stays well under its body limit; a large folder goes as several jobs.
UPLOAD_PART_BYTES = 8 * 1024 * 1024
UPLOAD_PART_FILES = 200


class SearchMode(StrEnum):
    keyword = "keyword"
    vector = "vector"
    hybrid = "hybrid"


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


@dataclass(frozen=True)
class IngestedItem:
    source: str
    status: str
    outcome: str | None
    error: str | None


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]ingesting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[current]}"),
        console=err,
    )


def _ingest_here(
    settings: Settings,
    tenant: str,
    files: list[Path],
    doc_type: str | None,
    acl: list[str],
    progress: Progress,
    task: TaskID,
) -> tuple[list[str], list[IngestedItem]]:
    with local_runtime(settings) as runtime:
        documents = [
            NewDocument(source=str(f), data=f.read_bytes(), doc_type=doc_type, acl=acl) for f in files
        ]
        job = runtime.jobs.submit(tenant, documents, enqueue=False)

        def advance(item: JobItem) -> None:
            progress.update(task, advance=1, current=Path(item.source).name)

        runtime.jobs.run(job.id, on_item=advance, batch_size=PROGRESS_BATCH)
        finished = runtime.jobs.get(tenant, job.id)
        return [job.id], [IngestedItem(i.source, i.status, i.outcome, i.error) for i in finished.items]


def _ingest_remote(
    server: RemoteServer,
    files: list[Path],
    doc_type: str | None,
    acl: list[str],
    progress: Progress,
    task: TaskID,
) -> tuple[list[str], list[IngestedItem]]:
    """Uploads in parts of at most UPLOAD_PART_BYTES, then follows the server's jobs until they end."""
    form = {"acl": ",".join(acl)} | ({"doc_type": doc_type} if doc_type else {})
    job_ids: list[str] = []
    for part in _upload_parts(files):
        uploads = [("files", (str(f), f.read_bytes())) for f in part]
        job_ids.append(server.call("POST", "/v1/documents", files=uploads, data=form)["id"])
    finished: dict[str, dict[str, Any]] = {}
    while len(finished) < len(job_ids):
        time.sleep(0.5)
        jobs = {
            job_id: server.call("GET", f"/v1/jobs/{job_id}") for job_id in job_ids if job_id not in finished
        }
        finished |= {
            job_id: job for job_id, job in jobs.items() if job["status"] not in ("queued", "running")
        }
        every = [*finished.values(), *(job for job_id, job in jobs.items() if job_id not in finished)]
        progress.update(task, completed=sum(job["done"] + job["failed"] for job in every))
    items = [item for job in finished.values() for item in job["items"]]
    return job_ids, [IngestedItem(i["source"], i["status"], i["outcome"], i["error"]) for i in items]


def _upload_parts(files: list[Path]) -> list[list[Path]]:
    parts: list[list[Path]] = [[]]
    size = 0
    for path in files:
        length = path.stat().st_size
        if parts[-1] and (size + length > UPLOAD_PART_BYTES or len(parts[-1]) >= UPLOAD_PART_FILES):
            parts.append([])
            size = 0
        parts[-1].append(path)
        size += length
    return [part for part in parts if part]


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
        """Ingest documents with a progress bar (through the server at KEEL_URL when KEEL_API_KEY is set,
        else in this process); unchanged files are skipped. Exits 1 when any document failed."""
        settings = command_settings()
        files = _files(paths)
        groups = [g.strip() for g in acl.split(",") if g.strip()]
        with _progress() as progress:
            task = progress.add_task("ingest", total=len(files), current="")
            server = connect(settings)
            if server is not None:
                try:
                    jobs, items = _ingest_remote(server, files, doc_type, groups, progress, task)
                finally:
                    server.close()
            else:
                jobs, items = _ingest_here(settings, tenant, files, doc_type, groups, progress, task)
        outcomes = Counter(
            item.outcome if item.status == "done" and item.outcome else item.status for item in items
        )
        failed = [item for item in items if item.status == "failed"]
        status = "failed" if len(failed) == len(items) else "partial" if failed else "done"
        out.print(
            f"job {', '.join(jobs)}: {status} — " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
        )
        for item in failed:
            err.print(f"[red]failed[/red] {item.source}: {item.error}")
        if failed:
            raise typer.Exit(code=1)

    @app.command()
    def search(
        query: Annotated[str, typer.Argument(help="What to look for.")],
        tenant: Annotated[str, typer.Option(help="Tenant to search.")] = "demo",
        mode: Annotated[SearchMode, typer.Option(help="How to match.")] = SearchMode.hybrid,
        k: Annotated[int, typer.Option("--k", "-k", min=1, max=100, help="How many results.")] = 5,
    ) -> None:
        """Search the knowledge base: through the server at KEEL_URL when KEEL_API_KEY is set (as that
        key sees it), else in this process as an administrator of the tenant (every ACL group)."""
        from keel.knowledge.index.base import SearchScope
        from keel.knowledge.retrieval import SearchRequest

        settings = command_settings()
        request = SearchRequest.model_validate({"query": query, "mode": mode.value, "k": k})
        server = connect(settings)
        if server is not None:
            try:
                answer = server.call("POST", "/v1/search", json=request.model_dump(mode="json"))
            finally:
                server.close()
            results = [(r["score"], r["source"], r["heading_path"], r["text"]) for r in answer["results"]]
        else:
            with local_runtime(settings) as runtime:
                response = asyncio.run(runtime.retriever.search(request, SearchScope(tenant=tenant)))
            results = [(r.score, r.source, r.heading_path, r.text) for r in response.results]
        table = Table("#", "score", "source", "section", "text")
        for rank, (score, source, section, text) in enumerate(results, start=1):
            snippet = text.replace("\n", " ")
            table.add_row(
                str(rank),
                f"{score:.3f}",
                source,
                section,
                snippet[:120] + ("…" if len(snippet) > 120 else ""),
            )
        out.print(table)

    @app.command()
    def worker(
        workers: Annotated[int, typer.Option(min=1, help="Worker threads in this process.")] = 1,
    ) -> None:
        """Consume background jobs (ingestion) until stopped; run any number of these. SIGTERM or Ctrl-C
        drains: the batch in hand finishes and the rest of its job goes back to the queue."""
        from keel.jobs.queue import DrainingConsumer, workers_alive

        with local_runtime(command_settings(quiet=False)) as runtime:
            # Other consumers may be busy: only stale claims are released.
            runtime.jobs.resume_unfinished(sole_consumer=False)
            runtime.evals.runs.resume_unfinished(sole_consumer=False)

            def stop_claiming() -> None:
                runtime.jobs.stop_claiming()
                runtime.evals.runs.stop_claiming()

            consumer = DrainingConsumer(runtime.queue, stop_claiming, workers=workers)
            consumer.run()
            interrupted = workers_alive(consumer)
            if interrupted:
                # The drain timed out inside a batch: hand its items back rather than wait for the timeout.
                runtime.jobs.release_in_flight()
        if interrupted:
            # A worker thread is still inside the models; leaving without interpreter teardown avoids
            # tearing them down under it.
            os._exit(1)

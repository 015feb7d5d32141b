"""Periodic jobs on the queue: requeueing jobs whose consumer died (every minute), the daily
retention purge, the screening of chunks with no passage verdict (every minute, a few seconds at
most) and the daily pruning of verdicts no chunk has any more. Every consumer runs them; each is safe
to run in several places at once. What each does is passed in, so the queue knows no package it
serves."""

from __future__ import annotations

from collections.abc import Callable

from huey import Huey, crontab


def register_maintenance(
    queue: Huey,
    requeue_stale: Callable[[], object],
    retention_purge: Callable[[], None],
    prune_verdicts: Callable[[], object],
    screen_chunks: Callable[[], object] | None = None,
) -> None:
    @queue.periodic_task(crontab(minute="*"), name="keel.requeue_stale_jobs")  # type: ignore[untyped-decorator]
    def requeue_stale_jobs() -> None:
        requeue_stale()

    @queue.periodic_task(crontab(hour="3", minute="17"), name="keel.retention_purge")  # type: ignore[untyped-decorator]
    def purge() -> None:
        retention_purge()

    @queue.periodic_task(crontab(hour="3", minute="47"), name="keel.prune_passage_verdicts")  # type: ignore[untyped-decorator]
    def prune() -> None:
        prune_verdicts()

    if screen_chunks is not None:

        @queue.periodic_task(crontab(minute="*"), name="keel.screen_chunks")  # type: ignore[untyped-decorator]
        def screen() -> None:
            screen_chunks()

"""Online evaluation's jobs on the queue: scoring one sampled reply, and the periodic drift check.

The queue only carries what identifies the work (tenant, reply id, the retrieval top score the copilot
saw); the work itself is the callbacks', so this module knows nothing of how replies are scored.
"""

from __future__ import annotations

from collections.abc import Callable

from huey import Huey, crontab

ScoreReply = Callable[[str, str, float | None], object]


def register_online_jobs(
    queue: Huey, score: ScoreReply, check_drift: Callable[[], object], every_minutes: int
) -> Callable[[str, str, float | None], None]:
    """Registers both jobs; returns the function that queues one scoring job."""

    # A retry covers a database that was briefly unavailable; scoring twice is harmless (one row per reply).
    @queue.task(name="keel.online_score", retries=2, retry_delay=10)  # type: ignore[untyped-decorator]
    def online_score(tenant: str, reply_id: str, top_score: float | None) -> None:
        score(tenant, reply_id, top_score)

    @queue.periodic_task(crontab(minute=f"*/{every_minutes}"), name="keel.drift_check")  # type: ignore[untyped-decorator]
    def drift_check() -> None:
        check_drift()

    def enqueue(tenant: str, reply_id: str, top_score: float | None) -> None:
        online_score(tenant, reply_id, top_score)

    return enqueue

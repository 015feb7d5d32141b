"""Where the tier lives and how big each phase is (`Plan`: the full run or `--quick`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REDIS_URL = "redis://127.0.0.1:6379/13"
TENANT = "bench"
SEARCH_TENANT = "scale"
UI_SECRET = "bench-scale-shared-ui-secret"
RSS_EVERY_S = 30.0
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Plan:
    search_size: int
    search_queries: int
    gateway_concurrency: int
    gateway_rounds: int
    gateway_seconds: float  # per layout and round
    ingest_documents: int
    ingest_jobs: int
    soak_minutes: float
    soak_rate: float  # requests/s, all kinds together
    stop_documents: int  # per job in the stop-mid-job checks
    recovery_s: float  # how long to wait for another consumer to finish an abandoned job

    @classmethod
    def of(cls, quick: bool, soak_minutes: float | None) -> Plan:
        if quick:
            return cls(
                10_000, 30, 8, 1, 4.0, 48, 4, 1.0 if soak_minutes is None else soak_minutes, 4.0, 48, 240.0
            )
        return cls(
            100_000, 200, 16, 3, 8.0, 400, 8, 10.0 if soak_minutes is None else soak_minutes, 4.0, 400, 240.0
        )

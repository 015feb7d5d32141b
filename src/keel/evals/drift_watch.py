"""The drift monitors of one tenant: read both windows, test, decide; record the verdicts and alert
when a monitor crosses into drift (a log event, the Prometheus gauge, an optional signed webhook)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from keel.config import DriftMonitorSettings, DriftSettings
from keel.evals.drift import (
    AlertRule,
    Comparison,
    Verdict,
    decide,
    distribution_test,
    mix_test,
    mmd_test,
    rate_test,
)
from keel.evals.drift_windows import DriftObservations, Window, windows
from keel.logs import get_logger
from keel.review.webhooks import WebhookSender
from keel.store.engine import Database
from keel.store.online_eval_models import DriftState
from keel.store.records import copied

log = get_logger(__name__)

MonitorName = Literal[
    "query_embeddings",
    "retrieval_top_score",
    "groundedness",
    "intent_mix",
    "status_mix",
    "escalation_rate",
    "negative_feedback_rate",
]
MONITORS: tuple[MonitorName, ...] = get_args(MonitorName)


class WindowView(BaseModel):
    start: datetime
    end: datetime


class MonitorReport(BaseModel):
    monitor: str
    verdict: Verdict
    test: str
    statistic: float
    p_value: float
    effect: float
    baseline_n: int
    recent_n: int
    # The rule it was judged by.
    min_samples: int
    p_threshold: float
    min_effect: float
    detail: dict[str, float]


class DriftReport(BaseModel):
    object: Literal["evals.drift"] = "evals.drift"
    tenant: str
    checked_at: datetime
    baseline: WindowView
    recent: WindowView
    monitors: list[MonitorReport]

    @property
    def alerting(self) -> list[str]:
        return [m.monitor for m in self.monitors if m.verdict == "drift"]


def rule(settings: DriftMonitorSettings) -> AlertRule:
    return AlertRule(settings.min_samples, settings.p_value, settings.min_effect)


@dataclass(frozen=True)
class MonitorState:
    """The recorded verdict of one monitor for one tenant, as `DriftWatch.states` reports it: a copy of
    its row."""

    tenant: str
    monitor: str
    verdict: str
    test: str
    statistic: float
    p_value: float
    effect: float
    baseline_n: int
    recent_n: int
    detail: dict[str, Any]
    checked_at: datetime
    since: datetime

    @classmethod
    def of(cls, row: DriftState) -> MonitorState:
        return copied(cls, row)


class DriftWatch:
    def __init__(
        self,
        database: Database,
        settings: DriftSettings,
        observations: DriftObservations,
        webhook: WebhookSender | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._database = database
        self.settings = settings
        self._observations = observations
        self._webhook = webhook
        self._clock = clock

    def _test(self, monitor: MonitorName, tenant: str, baseline: Window, recent: Window) -> Comparison:
        read = self._observations
        cap = self.settings.max_samples
        if monitor == "query_embeddings":
            cap = self.settings.embedding_samples
            return mmd_test(
                read.query_embeddings(tenant, baseline, cap),
                read.query_embeddings(tenant, recent, cap),
                permutations=self.settings.permutations,
            )
        if monitor in ("retrieval_top_score", "groundedness"):
            return distribution_test(
                read.scores(tenant, monitor, baseline, cap), read.scores(tenant, monitor, recent, cap)
            )
        if monitor in ("intent_mix", "status_mix"):
            field: Literal["intent", "status"] = "intent" if monitor == "intent_mix" else "status"
            return mix_test(
                read.categories(tenant, field, baseline, cap), read.categories(tenant, field, recent, cap)
            )
        if monitor == "escalation_rate":
            return rate_test(read.escalations(tenant, baseline, cap), read.escalations(tenant, recent, cap))
        return rate_test(
            read.negative_feedback(tenant, baseline, cap), read.negative_feedback(tenant, recent, cap)
        )

    def check(self, tenant: str) -> DriftReport:
        """Every enabled monitor of one tenant, now; reads only, records nothing."""
        now = self._clock()
        baseline, recent = windows(now, self.settings.recent_hours, self.settings.baseline_hours)
        reports = []
        for monitor in MONITORS:
            configured: DriftMonitorSettings = getattr(self.settings.monitors, monitor)
            if not configured.enabled:
                continue
            result = self._test(monitor, tenant, baseline, recent)
            reports.append(
                MonitorReport(
                    monitor=monitor,
                    verdict=decide(result, rule(configured)),
                    test=result.test,
                    statistic=result.statistic,
                    p_value=result.p_value,
                    effect=result.effect,
                    baseline_n=result.baseline_n,
                    recent_n=result.recent_n,
                    min_samples=configured.min_samples,
                    p_threshold=configured.p_value,
                    min_effect=configured.min_effect,
                    detail=result.detail,
                )
            )
        return DriftReport(
            tenant=tenant,
            checked_at=now,
            baseline=WindowView(start=baseline.start, end=baseline.end),
            recent=WindowView(start=recent.start, end=recent.end),
            monitors=reports,
        )

    def record(self, report: DriftReport) -> list[str]:
        """Stores each verdict; alerts for the monitors this call moved into drift, and announces the
        ones it moved back to ok. Returns the monitors it alerted for."""
        alerted, resolved = [], []
        for monitor in report.monitors:
            previous = self._transition(report.tenant, monitor, report.checked_at)
            if previous is None:
                continue
            if monitor.verdict == "drift":
                alerted.append(monitor)
            elif previous == "drift" and monitor.verdict == "ok":
                resolved.append(monitor)
        for monitor in alerted:
            log.warning(
                "drift_alert",
                tenant=report.tenant,
                monitor=monitor.monitor,
                p_value=monitor.p_value,
                effect=monitor.effect,
                baseline_n=monitor.baseline_n,
                recent_n=monitor.recent_n,
            )
            self._notify("drift.alert", report, monitor)
        for monitor in resolved:
            log.info("drift_resolved", tenant=report.tenant, monitor=monitor.monitor)
            self._notify("drift.resolved", report, monitor)
        return [m.monitor for m in alerted]

    def _transition(self, tenant: str, monitor: MonitorReport, now: datetime) -> str | None:
        """Writes the verdict; returns the verdict it replaced when this call changed it (None: unchanged,
        or another consumer changed it first). A first verdict replaces "insufficient_data"."""
        values = {
            "test": monitor.test,
            "statistic": monitor.statistic,
            "p_value": monitor.p_value,
            "effect": monitor.effect,
            "baseline_n": monitor.baseline_n,
            "recent_n": monitor.recent_n,
            "detail": monitor.detail,
            "checked_at": now,
        }
        key = (DriftState.tenant == tenant, DriftState.monitor == monitor.monitor)
        with self._database.session() as session:
            previous = session.scalar(select(DriftState.verdict).where(*key))
            if previous is None:
                try:
                    with session.begin_nested():
                        session.add(
                            DriftState(
                                tenant=tenant,
                                monitor=monitor.monitor,
                                verdict=monitor.verdict,
                                since=now,
                                **values,
                            )
                        )
                    return "insufficient_data" if monitor.verdict != "insufficient_data" else None
                except IntegrityError:
                    # Another consumer wrote the first verdict meanwhile: change it like any other.
                    previous = session.scalar(select(DriftState.verdict).where(*key))
            changed = session.execute(
                update(DriftState)
                .where(*key, DriftState.verdict != monitor.verdict)
                .values(verdict=monitor.verdict, since=now, **values)
            ).rowcount  # type: ignore[attr-defined]
            if not changed:
                session.execute(update(DriftState).where(*key).values(**values))
                return None
            return previous

    def _notify(self, event: str, report: DriftReport, monitor: MonitorReport) -> None:
        if self._webhook is None or not self._webhook.url:
            return
        payload = {
            "tenant": report.tenant,
            "checked_at": report.checked_at.isoformat(),
            "baseline": report.baseline.model_dump(mode="json"),
            "recent": report.recent.model_dump(mode="json"),
            "monitor": monitor.model_dump(mode="json"),
        }
        # Called from a queue consumer's thread (or the CLI), where no event loop runs.
        asyncio.run(self._webhook.send(event, payload))

    def watch(self) -> list[DriftReport]:
        """The periodic job: checks and records every tenant that had replies in either window."""
        baseline, _ = windows(self._clock(), self.settings.recent_hours, self.settings.baseline_hours)
        reports = []
        for tenant in self._observations.active_tenants(baseline.start):
            report = self.check(tenant)
            self.record(report)
            reports.append(report)
        return reports

    def states(self, tenant: str | None = None) -> list[MonitorState]:
        """The recorded verdicts (of one tenant, or all of them for the Prometheus gauges)."""
        statement = select(DriftState).order_by(DriftState.tenant, DriftState.monitor)
        if tenant is not None:
            statement = statement.where(DriftState.tenant == tenant)
        with self._database.reading() as session:
            return [MonitorState.of(row) for row in session.scalars(statement)]

"""The usage ledger: one row per gateway call, written off the event loop."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal

from keel.gateway.budgets import to_micros
from keel.logs import get_logger
from keel.observe import attributes
from keel.store.engine import Database
from keel.store.models import UsageRecord

log = get_logger(__name__)


@dataclass(frozen=True)
class PromptUse:
    """The registry prompt a call was rendered from: recorded on the call's trace and usage row."""

    name: str
    version: int
    # None when the request pinned a version instead of naming a label.
    label: str | None = None
    # The experiment (or canary) that chose the version or model, and the arm it chose.
    experiment: str | None = None
    arm: str | None = None

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"

    def span_attributes(self) -> dict[str, str | int]:
        found = {
            attributes.PROMPT_NAME: self.name,
            attributes.PROMPT_VERSION: self.tag,
            attributes.PROMPT_LABEL: self.label,
            attributes.EXPERIMENT: self.experiment,
            attributes.EXPERIMENT_ARM: self.arm,
        }
        return {key: value for key, value in found.items() if value is not None}


@dataclass
class CallRecord:
    tenant: str
    key_id: str
    alias: str
    deployment: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)
    latency_ms: int = 0
    cache: str = "miss"
    retries: int = 0
    fallback_used: bool = False
    stream: bool = False
    outcome: str = "ok"
    prompt_version: str | None = None
    feature: str = "api"
    trace_id: str | None = None
    prompt_label: str | None = None
    experiment: str | None = None
    experiment_arm: str | None = None

    def mark_prompt(self, use: PromptUse | None) -> None:
        if use is not None:
            self.prompt_version, self.prompt_label = use.tag, use.label
            self.experiment, self.experiment_arm = use.experiment, use.arm


class UsageLedger:
    def __init__(self, database: Database) -> None:
        self._database = database

    def write(self, record: CallRecord) -> None:
        fields = asdict(record)
        cost = fields.pop("cost")
        with self._database.session() as session:
            session.add(UsageRecord(**fields, cost_micros=to_micros(cost)))

    def write_safely(self, record: CallRecord) -> None:
        try:
            self.write(record)
        except Exception:
            # The answer was given; a failed ledger write is logged, never turned into a failed request.
            log.exception("usage_record_failed", alias=record.alias, tenant=record.tenant)

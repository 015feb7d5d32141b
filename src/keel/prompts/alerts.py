"""The alert path of canary releases: a log event, a Prometheus counter and an optional signed webhook,
for each rollback (and, quieter, each promotion)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter

from keel.logs import get_logger
from keel.prompts.canary_judge import StepVerdict
from keel.review.webhooks import WebhookSender

if TYPE_CHECKING:
    from keel.prompts.canary import CanaryView

log = get_logger(__name__)


class CanaryAlerts:
    def __init__(
        self, webhook: WebhookSender | None = None, registry: CollectorRegistry | None = None
    ) -> None:
        self._webhook = webhook
        self.outcomes = Counter(
            "keel_prompt_canaries",
            "Canary releases of prompt versions that ended, by outcome (promoted, rolled_back).",
            ["tenant", "prompt", "label", "outcome"],
            registry=registry,
        )

    def rolled_back(self, tenant: str, canary: CanaryView, verdict: StepVerdict) -> None:
        log.warning(
            "canary_rolled_back",
            tenant=tenant,
            prompt=canary.prompt,
            label=canary.label,
            canary_version=canary.canary_version,
            stable_version=canary.stable_version,
            reason=verdict.reason,
        )
        self.outcomes.labels(tenant, canary.prompt, canary.label, "rolled_back").inc()
        self._send("prompt.canary.rolled_back", tenant, canary.model_dump(mode="json"))

    def promoted(self, tenant: str, canary: CanaryView) -> None:
        log.info("canary_promoted", tenant=tenant, prompt=canary.prompt, label=canary.label)
        self.outcomes.labels(tenant, canary.prompt, canary.label, "promoted").inc()
        self._send("prompt.canary.promoted", tenant, canary.model_dump(mode="json"))

    def _send(self, event: str, tenant: str, canary: dict[str, object]) -> None:
        if self._webhook is None or not self._webhook.url:
            return
        # Called from a queue consumer's thread or the CLI, where no event loop runs.
        asyncio.run(self._webhook.send(event, {"tenant": tenant, "canary": canary}))

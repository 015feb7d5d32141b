"""The services a route may depend on, as typed dependencies: a route names the ones it uses
(`reviews: ReviewsDep`), never the whole runtime."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends

from keel.config import LimitSettings
from keel.copilot.pipeline import Copilot
from keel.evals.monitoring import Monitoring
from keel.evals.service import Evaluation
from keel.gateway.service import Gateway
from keel.governance.audit import AuditLog
from keel.governance.retention import Retention
from keel.governance.subjects import SubjectRequests
from keel.jobs.ingestion_jobs import IngestionJobs
from keel.keys import KeyStore
from keel.knowledge.catalog import DocumentCatalog
from keel.knowledge.ingestion import Ingestion
from keel.knowledge.retrieval import Retriever
from keel.observe.dashboard import Dashboard
from keel.observe.feedback import FeedbackStore
from keel.observe.metrics import KeelMetrics
from keel.observe.usage import UsageReports
from keel.prompts.canary import Canaries
from keel.prompts.experiments import Experiments
from keel.prompts.registry import PromptRegistry
from keel.prompts.render import PromptRenderer
from keel.review.queue import ReviewQueue
from keel.runtime import Runtime
from keel.server.deps import RuntimeDep

T = TypeVar("T")


def _service(get: Callable[[Runtime], T]) -> Callable[[Runtime], Awaitable[T]]:
    """A dependency that hands a route one service of the app's runtime (a coroutine, as FastAPI would
    run a plain function on a worker thread)."""

    async def service(runtime: RuntimeDep) -> T:
        return get(runtime)

    return service


DocumentsDep = Annotated[DocumentCatalog, Depends(_service(lambda r: r.documents))]
IngestionDep = Annotated[Ingestion, Depends(_service(lambda r: r.ingestion))]
JobsDep = Annotated[IngestionJobs, Depends(_service(lambda r: r.jobs))]
RetrieverDep = Annotated[Retriever, Depends(_service(lambda r: r.retriever))]
CopilotDep = Annotated[Copilot, Depends(_service(lambda r: r.copilot))]
ReviewsDep = Annotated[ReviewQueue, Depends(_service(lambda r: r.reviews))]
EvaluationDep = Annotated[Evaluation, Depends(_service(lambda r: r.evals))]
KeysDep = Annotated[KeyStore, Depends(_service(lambda r: r.keys))]
SubjectsDep = Annotated[SubjectRequests, Depends(_service(lambda r: r.subjects))]
RetentionDep = Annotated[Retention, Depends(_service(lambda r: r.retention))]
AuditDep = Annotated[AuditLog, Depends(_service(lambda r: r.audit))]
PromptRegistryDep = Annotated[PromptRegistry, Depends(_service(lambda r: r.prompts.registry))]
ExperimentsDep = Annotated[Experiments, Depends(_service(lambda r: r.prompts.experiments))]
CanariesDep = Annotated[Canaries, Depends(_service(lambda r: r.prompts.canaries))]
MonitoringDep = Annotated[Monitoring, Depends(_service(lambda r: r.monitoring))]
GatewayDep = Annotated[Gateway, Depends(_service(lambda r: r.gateway))]
LimitsDep = Annotated[LimitSettings, Depends(_service(lambda r: r.settings.limits))]
PromptRendererDep = Annotated[PromptRenderer, Depends(_service(lambda r: r.prompts.renderer))]
FeedbackDep = Annotated[FeedbackStore, Depends(_service(lambda r: r.feedback))]
UsageDep = Annotated[UsageReports, Depends(_service(lambda r: r.usage))]
MetricsDep = Annotated[KeelMetrics, Depends(_service(lambda r: r.metrics))]
# The readiness checks by name (blocking: run it off the event loop).
ReadinessDep = Annotated[Callable[[], dict[str, bool]], Depends(_service(lambda r: r.readiness))]
DashboardDep = Annotated[Dashboard, Depends(_service(lambda r: r.dashboard))]

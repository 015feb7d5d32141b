"""The app factory: wires routers, middleware and error handlers around one Runtime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse

from keel import __version__
from keel.config import Settings
from keel.jobs.queue import EmbeddedConsumer, start_embedded_consumer, workers_alive
from keel.logs import get_logger
from keel.runtime import Runtime
from keel.server.body_limits import BodyLimitMiddleware
from keel.server.disconnect import CancelOnDisconnect
from keel.server.errors import ERROR_RESPONSES, install_error_handlers
from keel.server.middleware import RequestMiddleware
from keel.server.routers import (
    admin,
    eval_runs,
    evals_monitoring,
    health,
    knowledge,
    observe,
    openai_compat,
    prompt_rollouts,
    support,
)
from keel.server.routers import prompts as prompt_routes
from keel.server.ui import eval_pages, knowledge_page, pages, prompt_pages
from keel.server.ui.pages import LoginRequired, PageDenied, denied_page
from keel.server.ui.session import Sessions, load_secret

log = get_logger(__name__)


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    if runtime is None:
        runtime = Runtime.build(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(runtime.prepare)
        consumer = None
        if runtime.settings.serve_jobs:
            consumer = start_embedded_consumer(runtime.queue)
            runtime.jobs.resume_unfinished(sole_consumer=runtime.settings.redis_url is None)
            runtime.evals.runs.resume_unfinished(sole_consumer=runtime.settings.redis_url is None)
        warm_up = None
        if runtime.settings.preload_models:
            # Serve /healthz at once; /readyz turns 200 when both models are loaded.
            warm_up = asyncio.create_task(asyncio.to_thread(runtime.warm_up))
            warm_up.add_done_callback(_report_warm_up)
        log.info("server_started", version=__version__)
        try:
            yield
        finally:
            if warm_up is not None and not warm_up.done():
                await asyncio.wait([warm_up])
            await runtime.gateway.drain()
            if consumer is not None:
                await asyncio.to_thread(_drain, runtime, consumer)
            runtime.close()

    app = FastAPI(title="Keel", version=__version__, lifespan=lifespan, responses=ERROR_RESPONSES)
    app.state.runtime = runtime
    # Innermost: a client that goes away cancels the work, and the request is still logged (as 499).
    app.add_middleware(CancelOnDisconnect)
    # Inside the request middleware, so a refused body is logged and counted like any request.
    app.add_middleware(BodyLimitMiddleware, settings=runtime.settings, api=app)
    app.add_middleware(RequestMiddleware, tracer=runtime.tracing.tracer, metrics=runtime.metrics)
    install_error_handlers(app)
    app.state.ui_sessions = Sessions(load_secret(runtime.settings.data_dir, runtime.settings.ui_secret))

    @app.exception_handler(LoginRequired)
    async def login_required(_: Request, __: LoginRequired) -> RedirectResponse:
        return RedirectResponse("/ui/login", status_code=303)

    app.add_exception_handler(PageDenied, denied_page)

    app.include_router(health.router)
    app.include_router(openai_compat.router)
    app.include_router(knowledge.router)
    app.include_router(support.router)
    app.include_router(observe.router)
    app.include_router(admin.router)
    app.include_router(prompt_routes.router)
    app.include_router(prompt_rollouts.router)
    app.include_router(evals_monitoring.router)
    app.include_router(eval_runs.router)
    app.include_router(eval_pages.router)
    app.include_router(prompt_pages.router)
    app.include_router(knowledge_page.router)
    app.include_router(pages.router)
    return app


def _drain(runtime: Runtime, consumer: EmbeddedConsumer) -> None:
    """The batch in hand finishes; the rest of its job goes back to the queue (another consumer with
    Redis, this server's next start on the embedded tier)."""
    runtime.jobs.stop_claiming()
    runtime.evals.runs.stop_claiming()
    consumer.stop(graceful=True)
    if workers_alive(consumer):
        runtime.jobs.release_in_flight()


def _report_warm_up(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("model_load_failed", error=str(task.exception()))

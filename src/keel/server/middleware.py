"""Per request: a root span, one structured log line, and a request id echoed as `X-Request-ID`."""

from __future__ import annotations

import time

import structlog
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.ids import opaque_id
from keel.logs import get_logger
from keel.observe.metrics import KeelMetrics

log = get_logger("keel.request")


class RequestMiddleware:
    def __init__(self, app: ASGIApp, tracer: Tracer, metrics: KeelMetrics) -> None:
        self.app = app
        self.tracer = tracer
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = opaque_id()
        started = time.perf_counter()
        status = 500
        trace_id = ""

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.setdefault("headers", [])
                headers.append((b"x-request-id", request_id.encode()))
                if trace_id:
                    # Feedback on this answer names the trace (POST /v1/feedback).
                    headers.append((b"x-keel-trace-id", trace_id.encode()))
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        with self.tracer.start_as_current_span(
            f"{scope['method']} {scope['path']}", kind=SpanKind.SERVER
        ) as span:
            span.set_attribute("http.request.method", scope["method"])
            span.set_attribute("url.path", scope["path"])
            span.set_attribute("keel.request_id", request_id)
            context = span.get_span_context()
            trace_id = f"{context.trace_id:032x}" if context.is_valid else ""
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = scope.get("route")
                # The route template keeps span names and metric labels few: "GET /v1/jobs/{job_id}".
                template = route.path if route is not None and hasattr(route, "path") else "unmatched"
                span.update_name(f"{scope['method']} {template}")
                elapsed = time.perf_counter() - started
                self.metrics.requests.labels(scope["method"], template, str(status)).inc()
                self.metrics.latency.labels(scope["method"], template).observe(elapsed)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                # Path and status only: bodies may hold personal data and never reach the logs.
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                )
                structlog.contextvars.unbind_contextvars("request_id")

"""A tool is a typed function with a JSON schema for its arguments: validated, timed out, rate limited
and logged on every call, so a model (or a pipeline step) can call it safely."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from limits import RateLimitItemPerMinute, storage, strategies
from opentelemetry.trace import NoOpTracer, Status, StatusCode, Tracer
from pydantic import BaseModel, ValidationError

from keel.errors import InvalidRequestError, RateLimitError, UpstreamError
from keel.logs import get_logger
from keel.observe import attributes

log = get_logger(__name__)

Args = TypeVar("Args", bound=BaseModel)


@dataclass(frozen=True)
class ToolCall:
    tool: str
    arguments: dict[str, Any]
    result: Any
    duration_ms: float
    error: str | None = None


@dataclass
class Tool(Generic[Args]):
    name: str
    description: str
    arguments: type[Args]
    # Runs on a worker thread (tools read the database); receives the tenant and the checked arguments.
    run: Callable[[str, Args], Any]
    timeout_s: float = 2.0
    calls_per_minute: int = 120

    def schema(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.arguments.model_json_schema(),
        }


class ToolBox:
    """Holds the tools and calls them with validation, a timeout and a per-tenant rate limit."""

    def __init__(
        self, tools: list[Tool[Any]], storage_uri: str = "memory://", tracer: Tracer | None = None
    ) -> None:
        self._tools = {tool.name: tool for tool in tools}
        self._tracer = tracer or NoOpTracer()
        self._limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_uri))

    def schemas(self) -> list[dict[str, Any]]:
        return [tool.schema() for tool in self._tools.values()]

    async def call(self, tenant: str, name: str, raw_arguments: dict[str, Any]) -> ToolCall:
        tool = self._tools.get(name)
        if tool is None:
            raise InvalidRequestError(f"No tool '{name}'.", code="unknown_tool")
        try:
            arguments = tool.arguments.model_validate(raw_arguments)
        except ValidationError as exc:
            raise InvalidRequestError(
                f"Invalid arguments for {name}: {exc.errors()[0]['msg']}", code="invalid_tool_arguments"
            ) from exc
        if not self._limiter.hit(RateLimitItemPerMinute(tool.calls_per_minute), "tool", tenant, name):
            raise RateLimitError(
                f"Tool {name} is called too often for this tenant.", code="tool_rate_limited"
            )
        started = time.perf_counter()
        with self._tracer.start_as_current_span(f"tool {name}") as span:
            span.set_attribute(attributes.TOOL_NAME, name)
            try:
                work = asyncio.to_thread(tool.run, tenant, arguments)
                result = await asyncio.wait_for(work, tool.timeout_s)
            except TimeoutError as exc:
                log.warning("tool_timeout", tool=name, timeout_s=tool.timeout_s)
                span.set_status(Status(StatusCode.ERROR, "timeout"))
                message = f"Tool {name} did not answer within {tool.timeout_s:g} s."
                raise UpstreamError(message, code="tool_timeout") from exc
        duration_ms = (time.perf_counter() - started) * 1000
        # Names and timings only: arguments and results can hold personal data.
        log.info("tool_call", tool=name, duration_ms=round(duration_ms, 1))
        return ToolCall(name, arguments.model_dump(), result, duration_ms)

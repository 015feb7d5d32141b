"""Request-body limits per route, enforced as the body streams in: a body past its route's limit is
refused with 413 before it is parsed, and never read whole into memory.

A declared `Content-Length` over the limit is refused before a byte of the body is read; a chunked body
(or one that lies about its length) is counted as it arrives and refused the moment it passes the limit.
FastAPI's own `max_body_size` is fixed when a router is declared (module import, before settings are
read) and answers some refusals in plain text; this middleware takes its limits from settings and always
answers in OpenAI's error shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.config import Settings
from keel.errors import PayloadTooLargeError
from keel.server.errors import error_body

# Routes that take documents (multipart files or JSON text) rather than a small JSON request.
UPLOAD_ROUTES = frozenset({"/v1/documents"})
# Room for the multipart framing or JSON escaping around an upload's documents.
_UPLOAD_SLACK_BYTES = 1024 * 1024


class BodyTooLarge(PayloadTooLargeError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The request body is larger than the {limit} bytes this route accepts.",
            code="request_too_large",
        )
        self.limit = limit


@dataclass(frozen=True)
class BodyLimits:
    """The byte limit of a request's body: `default`, or that of the first route template in
    `by_route` (those whose limit differs) that matches the path."""

    default: int
    by_route: tuple[tuple[re.Pattern[str], str, int], ...]

    @classmethod
    def of(cls, settings: Settings, templates: Iterable[str]) -> BodyLimits:
        limits = settings.limits
        upload = limits.max_upload_body_bytes or (
            2 * settings.knowledge.max_document_bytes + _UPLOAD_SLACK_BYTES
        )
        known = set(templates)
        unknown = sorted(set(limits.route_body_bytes) - known)
        if unknown:
            raise ValueError(
                f"limits.route_body_bytes names {unknown}, which are not routes; "
                f"the routes are {sorted(known)}."
            )
        negative = sorted(template for template, limit in limits.route_body_bytes.items() if limit < 0)
        if negative:
            raise ValueError(f"limits.route_body_bytes gives {negative} a negative number of bytes.")
        chosen = {template: upload for template in UPLOAD_ROUTES & known} | limits.route_body_bytes
        return cls(
            default=limits.max_json_body_bytes,
            by_route=tuple(
                (compile_path(template)[0], template, limit) for template, limit in sorted(chosen.items())
            ),
        )

    def for_path(self, path: str) -> int:
        for pattern, _, limit in self.by_route:
            if pattern.match(path):
                return limit
        return self.default


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimitMiddleware:
    """Starlette builds middleware when the app starts, after every router is included: the API's
    routes are all known by then, and a setting that names no route fails the start."""

    def __init__(self, app: ASGIApp, settings: Settings, api: FastAPI) -> None:
        self.app = app
        self.limits = BodyLimits.of(settings, api.openapi()["paths"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.for_path(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return

        received = 0
        exceeded = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                # The app answered the overflow with an error of its own (a parse failure): the
                # client gets the 413 that names the cause instead.
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            # Whatever failed after the body overflowed failed because of it.
            if not exceeded or started:
                raise
        if exceeded and not started:
            await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    error = BodyTooLarge(limit)
    body = json.dumps(error_body(error.message, error.error_type, error.code)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The unread rest of the body makes the connection unusable for another request.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

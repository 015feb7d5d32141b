"""Tracing: one `chat` span per call, current while the answer opens (the model spans nest in it) and
ended when the answer does, annotated from the call's record."""

from __future__ import annotations

from collections.abc import AsyncIterator

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from keel.errors import KeelError
from keel.gateway.model import Answer, ChatCall, ChatModel
from keel.gateway.protocol import Usage
from keel.gateway.providers.base import StreamEnd, StreamEvent, TextDelta
from keel.guard.pii import redact
from keel.observe import attributes

_REDACTION_MARGIN = 512
_CONTENT_CHARS = 4000


class Traced:
    def __init__(self, inner: ChatModel, tracer: Tracer, capture_content: bool = False) -> None:
        self.inner = inner
        self._tracer = tracer
        self._capture_content = capture_content

    async def open(self, call: ChatCall) -> Answer:
        extra = {"keel.stream": True} if call.stream else None
        span = self._tracer.start_span(f"chat {call.request.model}", attributes=extra)
        seen = _Seen()

        async def finish(error: BaseException | None) -> None:
            if isinstance(error, KeelError):
                span.set_status(Status(StatusCode.ERROR, error.code))
            self._annotate(span, call, seen)
            span.end()

        try:
            with trace.use_span(span, end_on_exit=False):
                answer = await self.inner.open(call)
        except BaseException as exc:
            await finish(exc)
            raise
        return Answer(seen.watch(answer, self._capture_content), inner=answer, finish=finish)

    def _annotate(self, span: Span, call: ChatCall, seen: _Seen) -> None:
        request, record = call.request, call.record
        usage = seen.end.usage if seen.end else Usage.of(0, 0)
        span.set_attribute(attributes.GEN_AI_OPERATION, "chat")
        span.set_attribute(attributes.GEN_AI_REQUEST_MODEL, request.model)
        span.set_attribute(attributes.TENANT, call.caller.tenant)
        if request.prompt_version:
            span.set_attribute(attributes.PROMPT_VERSION, request.prompt_version)
        if call.caller.prompt is not None:
            span.set_attributes(call.caller.prompt.span_attributes())
        if request.user:
            span.set_attribute(attributes.USER, request.user)
        span.set_attribute(attributes.DEPLOYMENT, record.deployment or "")
        span.set_attribute(attributes.CACHE, record.cache)
        span.set_attribute(attributes.RETRIES, record.retries)
        span.set_attribute(attributes.FALLBACK, record.fallback_used)
        span.set_attribute(attributes.COST, float(record.cost))
        span.set_attribute(attributes.GEN_AI_INPUT_TOKENS, usage.prompt_tokens)
        span.set_attribute(attributes.GEN_AI_OUTPUT_TOKENS, usage.completion_tokens)
        span.set_attribute(
            attributes.GEN_AI_FINISH_REASONS, [seen.end.finish_reason if seen.end else "error"]
        )
        if self._capture_content:
            # One item per message: the exporter's name finder then meets the texts the guard scanned
            # and finds them remembered, instead of scanning a joined copy again.
            texts, room = [], _CONTENT_CHARS
            for message in request.messages:
                texts.append(_captured(message.text(), room))
                room = max(0, room - len(texts[-1]))
            span.set_attribute(attributes.GEN_AI_PROMPT, texts)
            span.set_attribute(attributes.GEN_AI_PROMPT_ROLES, [m.role for m in request.messages])
            if seen.end is not None:
                span.set_attribute(
                    attributes.GEN_AI_COMPLETION, _captured("".join(seen.pieces), _CONTENT_CHARS)
                )


def _captured(text: str, room: int) -> str:
    """Text as the span keeps it. Whole when it fits: every exporter redacts every attribute with the
    guard's detector (`ContentRedactor`). Cut, it is redacted first, so that no value is cut in two and
    left unrecognised; the margin bounds that work on a long text and is longer than any value a
    recogniser matches."""
    if len(text) <= room:
        return text
    return redact(text[: room + _REDACTION_MARGIN])[:room]


class _Seen:
    """What of the answer the span reports: how it ended and, with content capture on, its text."""

    def __init__(self) -> None:
        self.end: StreamEnd | None = None
        self.pieces: list[str] = []

    async def watch(self, events: AsyncIterator[StreamEvent], keep_text: bool) -> AsyncIterator[StreamEvent]:
        async for event in events:
            if isinstance(event, StreamEnd):
                self.end = event
            elif keep_text and isinstance(event, TextDelta):  # a tool call's arguments are not content
                self.pieces.append(event.text)
            yield event

"""A fault-injecting upstream of Keel's own: a real HTTP server on 127.0.0.1 speaking OpenAI's chat
completions and Anthropic's messages, which fails on purpose.

    with FaultUpstream.running(FaultPlan(script=["500", "ok"])) as upstream:
        openai = OpenAICompatibleProvider(upstream.base_url, "echo", timeout_s=1.0)  # base_url ends in /v1
        claude = AnthropicProvider(upstream.root_url, "echo", timeout_s=1.0)  # root_url has no path
        ...
        upstream.set_plan(FaultPlan(fault_rate=0.3, seed=7, retry_after="2"))
        assert upstream.counts["500"] == 1

Routes: POST /v1/chat/completions and /v1/messages, as JSON or (`"stream": true`) as server-sent events,
OpenAI's ending with a usage chunk and `[DONE]`; GET /v1/models. The answer is "Echo: <last user
message>" (or `FaultPlan.reply`), one word per delta. Usage: the prompt counts the words of every
message (system too), the completion the deltas; a smaller `max_tokens` cuts the answer (finish "length").

Tool calls: with `FaultPlan.tool_arguments` set, a request that offers tools (and does not choose "none")
and does not end with a tool result is answered with one call, to the named tool or the first, with those
arguments (streamed in two pieces); usage counts the call as one completion token per argument piece.

Each chat or messages request gets one outcome: the next of `script` while it lasts, then a fault with
probability `fault_rate` drawn from `faults` by `random.Random(seed)`, else ok.
  ok       the answer, after `latency_s`
  500      HTTP 500 with an error body
  429      HTTP 429 with `Retry-After: <retry_after>` (any string: seconds or an HTTP date)
  hang     nothing until the client hangs up (after `hang_s`, the connection closes)
  drop     the connection closes before any response: httpx raises RemoteProtocolError
  partial  the answer starts, then the connection closes after `partial_words` deltas (half the body when
           not streaming): httpx raises RemoteProtocolError while reading
  context  HTTP 400, code context_length_exceeded ("prompt is too long")
`received` holds every chat/messages request (path, headers, JSON body, outcome) since the plan was set,
and `counts` counts them by outcome; /v1/models always answers and is not counted. `set_plan` swaps the
plan while the server runs, restarting the script, the random draws and the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tests.support.served import serving

Outcome = Literal["ok", "500", "429", "hang", "drop", "partial", "context"]
FAULTS: tuple[Outcome, ...] = ("500", "429", "hang", "drop", "partial", "context")
OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class FaultPlan:
    script: Sequence[Outcome] = ()
    fault_rate: float = 0.0
    seed: int = 0
    faults: Sequence[Outcome] = FAULTS
    retry_after: str = "1"
    latency_s: float = 0.0
    hang_s: float = 30.0
    partial_words: int = 2
    reply: str | None = None
    tool_arguments: dict[str, Any] | None = None


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    outcome: Outcome


def _text(content: Any) -> str:
    # A plain string, or a list of OpenAI content parts or Anthropic content blocks.
    parts = content if isinstance(content, list) else [{"text": content or ""}]
    return "".join(str(part.get("text", "")) for part in parts if isinstance(part, dict))


def _tool_call(body: dict[str, Any], arguments: dict[str, Any] | None) -> tuple[str, str] | None:
    """(function name, arguments JSON) of the call to make, or None for a text answer."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice")
    messages = body.get("messages") or [{}]
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    answered = last.get("role") == "tool" or (
        isinstance(last.get("content"), list) and any(b.get("type") == "tool_result" for b in last["content"])
    )
    if arguments is None or not tools or choice in ("none", {"type": "none"}) or answered:
        return None
    names = [str(t.get("name") or t.get("function", {}).get("name")) for t in tools]
    chosen = (
        choice.get("name") or choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    )
    return str(chosen or names[0]), json.dumps(arguments)


@dataclass(frozen=True)
class _Answer:
    deltas: list[str]
    truncated: bool
    prompt_tokens: int
    model: str
    call: tuple[str, str] | None = None

    @classmethod
    def to(
        cls, body: dict[str, Any], reply: str | None, tool_arguments: dict[str, Any] | None = None
    ) -> _Answer:
        messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
        texts = [_text(m.get("content")) for m in messages] + [_text(body.get("system"))]
        user = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        text = f"Echo: {user}" if reply is None else reply
        deltas = [word if i == 0 else f" {word}" for i, word in enumerate(text.split(" "))] if text else []
        limit = body.get("max_tokens")
        truncated = isinstance(limit, int) and limit < len(deltas)
        prompt_tokens = sum(len(t.split()) for t in texts)
        model = str(body.get("model", "fault-upstream"))
        if (call := _tool_call(body, tool_arguments)) is not None:
            half = len(call[1]) // 2
            return cls([call[1][:half], call[1][half:]], False, prompt_tokens, model, call)
        return cls(deltas[:limit] if truncated else deltas, truncated, prompt_tokens, model)

    def body(self, anthropic: bool) -> dict[str, Any]:
        text = "".join(self.deltas)
        if self.call is not None:
            return self._call_body(anthropic)
        if anthropic:
            content = [{"type": "text", "text": text}]
            return {**self._message(len(self.deltas)), "content": content, "stop_reason": self._stop(True)}
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": self._stop(False)}
        return {**self._chunk("chat.completion"), "choices": [choice], "usage": self._usage()}

    def _call_body(self, anthropic: bool) -> dict[str, Any]:
        assert self.call is not None
        name, arguments = self.call
        if anthropic:
            use = {"type": "tool_use", "id": "toolu_fault", "name": name, "input": json.loads(arguments)}
            return {**self._message(len(self.deltas)), "content": [use], "stop_reason": "tool_use"}
        call = {"id": "call_fault", "type": "function", "function": {"name": name, "arguments": arguments}}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        return {**self._chunk("chat.completion"), "choices": [choice], "usage": self._usage()}

    def _call_frames(self, anthropic: bool) -> tuple[list[bytes], list[bytes], list[bytes]]:
        assert self.call is not None
        name = self.call[0]
        if anthropic:
            started = {**self._message(1), "content": [], "stop_reason": None}
            block = {"type": "tool_use", "id": "toolu_fault", "name": name, "input": {}}
            head = [
                _sse("message_start", message=started),
                _sse("content_block_start", index=0, content_block=block),
            ]
            parts = [{"type": "input_json_delta", "partial_json": d} for d in self.deltas]
            deltas = [_sse("content_block_delta", index=0, delta=part) for part in parts]
            stop = {"stop_reason": "tool_use", "stop_sequence": None}
            end = _sse("message_delta", delta=stop, usage={"output_tokens": len(self.deltas)})
            return head, deltas, [_sse("content_block_stop", index=0), end, _sse("message_stop")]
        chunk = self._chunk("chat.completion.chunk")
        opening = {
            "index": 0,
            "id": "call_fault",
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        head = [_data({**chunk, "choices": [_choice({"role": "assistant", "tool_calls": [opening]}, None)]})]
        pieces = [{"index": 0, "function": {"arguments": d}} for d in self.deltas]
        deltas = [_data({**chunk, "choices": [_choice({"tool_calls": [piece]}, None)]}) for piece in pieces]
        finish = _data({**chunk, "choices": [_choice({}, "tool_calls")]})
        usage = _data({**chunk, "choices": [], "usage": self._usage()})
        return head, deltas, [finish, usage, b"data: [DONE]\n\n"]

    def frames(self, anthropic: bool) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """The events before the deltas, one event per delta, and the events after them."""
        if self.call is not None:
            return self._call_frames(anthropic)
        if anthropic:
            started = {**self._message(1), "content": [], "stop_reason": None}
            head = [_sse("message_start", message=started), _sse("ping")]
            head.append(_sse("content_block_start", index=0, content_block={"type": "text", "text": ""}))
            texts = [{"type": "text_delta", "text": d} for d in self.deltas]
            deltas = [_sse("content_block_delta", index=0, delta=text) for text in texts]
            stop = {"stop_reason": self._stop(True), "stop_sequence": None}
            end = _sse("message_delta", delta=stop, usage={"output_tokens": len(self.deltas)})
            return head, deltas, [_sse("content_block_stop", index=0), end, _sse("message_stop")]
        chunk = self._chunk("chat.completion.chunk")
        deltas = [_data({**chunk, "choices": [_choice({"content": d}, None)]}) for d in self.deltas]
        finish = _data({**chunk, "choices": [_choice({}, self._stop(False))]})
        usage = _data({**chunk, "choices": [], "usage": self._usage()})
        return [], deltas, [finish, usage, b"data: [DONE]\n\n"]

    def _chunk(self, kind: str) -> dict[str, Any]:
        return {"id": "chatcmpl-fault", "object": kind, "created": 0, "model": self.model}

    def _usage(self) -> dict[str, int]:
        prompt, completion = self.prompt_tokens, len(self.deltas)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _message(self, output_tokens: int) -> dict[str, Any]:
        usage = {"input_tokens": self.prompt_tokens, "output_tokens": output_tokens}
        return dict(id="msg_fault", type="message", role="assistant", model=self.model, usage=usage)

    def _stop(self, anthropic: bool) -> str:
        truncated, finished = ("max_tokens", "end_turn") if anthropic else ("length", "stop")
        return truncated if self.truncated else finished


def _choice(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish}


def _data(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _sse(kind: str, **fields: Any) -> bytes:
    """An Anthropic event: its type is both the SSE event name and the payload's `type`."""
    return f"event: {kind}\n".encode() + _data({"type": kind, **fields})


# outcome: (status, OpenAI's error code, Anthropic's error type, message in Anthropic's wording)
_ERRORS: dict[str, tuple[int, str, str, str]] = {
    "500": (500, "server_error", "api_error", "The server had an error."),
    "429": (429, "rate_limit_exceeded", "rate_limit_error", "Rate limit reached; try again later."),
    "context": (400, "context_length_exceeded", "invalid_request_error", "prompt is too long: 9 > 8 tokens"),
}


def _error(anthropic: bool, outcome: Outcome) -> tuple[int, dict[str, Any]]:
    status, code, kind, message = _ERRORS[outcome]
    if anthropic:
        return status, {"type": "error", "error": {"type": kind, "message": message}}
    return status, {"error": {"message": message, "type": kind, "param": None, "code": code}}


async def _start(send: Send, status: int, headers: dict[str, str]) -> None:
    raw = [(name.encode(), value.encode()) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})


async def _send_json(send: Send, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    await _start(send, status, {"content-type": "application/json", **(headers or {})})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


class FaultUpstream:
    def __init__(self, plan: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self._received: list[ReceivedRequest] = []  # by the plan now in force
        self.port = 0
        self.set_plan(plan or FaultPlan())

    @classmethod
    @contextlib.contextmanager
    def running(cls, plan: FaultPlan | None = None) -> Iterator[FaultUpstream]:
        """Serves on a free port, from a thread with its own event loop, until the block ends."""
        upstream = cls(plan)
        with serving(upstream._app, "The fault upstream", "asgi3") as port:
            upstream.port = port
            yield upstream

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def set_plan(self, plan: FaultPlan) -> None:
        with self._lock:
            self._plan = plan
            self._received = []
            self._script = deque(plan.script)
            self._random = random.Random(plan.seed)

    @property
    def received(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._received)

    @property
    def counts(self) -> Counter[str]:
        return Counter(request.outcome for request in self.received)

    def _next(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[FaultPlan, Outcome]:
        with self._lock:
            plan = self._plan
            if self._script:
                outcome = self._script.popleft()
            elif self._random.random() < plan.fault_rate:
                outcome = self._random.choice(list(plan.faults))
            else:
                outcome = "ok"
            self._received.append(ReceivedRequest(path, headers, body, outcome))
        return plan, outcome

    async def _app(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/v1/models":
            card = {"id": "fault-upstream", "object": "model", "created": 0, "owned_by": "keel-tests"}
            return await _send_json(send, 200, {"object": "list", "data": [card]})
        if method != "POST" or path not in (OPENAI_PATH, ANTHROPIC_PATH):
            return await _send_json(send, 404, {"error": {"message": f"No route for {method} {path}."}})
        raw, more = b"", True
        while more:
            message = await receive()
            raw, more = raw + message.get("body", b""), message.get("more_body", False)
        body = json.loads(raw or b"{}")
        plan, outcome = self._next(path, {k.decode(): v.decode() for k, v in scope["headers"]}, body)
        anthropic = path == ANTHROPIC_PATH
        answer = _Answer.to(body, plan.reply, plan.tool_arguments)
        if outcome in ("500", "429", "context"):
            status, error = _error(anthropic, outcome)
            retry = {"retry-after": plan.retry_after} if status == 429 else {}
            return await _send_json(send, status, error, retry)
        if outcome == "hang":
            # receive() answers only once the client hangs up, which a client that times out does.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(receive(), plan.hang_s)
        if outcome in ("hang", "drop"):
            return await self._cut(send, receive)
        await asyncio.sleep(plan.latency_s if outcome == "ok" else 0)
        if body.get("stream"):
            head, deltas, tail = answer.frames(anthropic)
            parts = [*head, *(deltas[: plan.partial_words] if outcome == "partial" else [*deltas, *tail])]
            headers = {"content-type": "text/event-stream", "cache-control": "no-cache"}
        else:
            payload = json.dumps(answer.body(anthropic)).encode()
            # The length promises the whole body, so stopping halfway is a protocol error at the client.
            parts = [payload[: len(payload) // 2]] if outcome == "partial" else [payload]
            headers = {"content-type": "application/json", "content-length": str(len(payload))}
        await _start(send, 200, headers)
        for part in parts:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        if outcome == "partial":
            return await self._cut(send, receive)
        await send({"type": "http.response.body", "body": b""})

    async def _cut(self, send: Send, receive: Receive) -> None:
        """Closes the connection, with no (more) response. ASGI cannot drop a connection and uvicorn answers
        500 for an app that raises, so the socket is reached through uvicorn's cycle, whose `send` this is."""
        send.__self__.transport.close()  # type: ignore[attr-defined]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receive(), 5)  # once uvicorn sees the disconnect, it sends no 500 for us

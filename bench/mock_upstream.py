"""A fast mock of an OpenAI-compatible upstream for gateway benchmarks: a raw asyncio HTTP/1.1 server
(keep-alive, no framework) so that it adds as little latency as possible to what is measured.

`POST /v1/chat/completions` answers a small completion with usage, after an optional fixed delay (a
fixed sentence and the answer's number, so that no answer text repeats: a proxy that remembers what it
scanned must not look cheaper than it is);
with `--echo` the answer names the last user message instead (the semantic-cache bench uses that to
tell which cached question served a hit). `GET /v1/models` lists the one model. Anything else: 404.

    .venv/bin/python -m bench.mock_upstream --port 9100 [--delay-ms 0] [--echo]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from typing import Any

_ANSWERS = itertools.count(1)
FIXED_TEXT = "The battery charges fully in about four hours; store it half charged in a cool, dry place."


def completion_body(model: str, text: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 24, "completion_tokens": 18, "total_tokens": 42},
        },
        separators=(",", ":"),
    ).encode()


def _response(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


class MockUpstream(asyncio.Protocol):
    def __init__(self, delay_s: float, echo: bool, models: bytes) -> None:
        self._delay_s = delay_s
        self._echo = echo
        self._models = models
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (request := self._next_request()) is not None:
            self._answer(*request)

    def _next_request(self) -> tuple[str, str, bytes] | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body, consumed = _dechunk(self._buffer, start)
            if body is None:
                return None
            del self._buffer[:consumed]
            return method, path, body
        length = int(headers.get("content-length", "0"))
        if len(self._buffer) < start + length:
            return None
        body = bytes(self._buffer[start : start + length])
        del self._buffer[: start + length]
        return method, path, body

    def _answer(self, method: str, path: str, body: bytes) -> None:
        path = path.split("?", 1)[0].rstrip("/")
        if method == "POST" and path.endswith("/chat/completions"):
            if self._echo:
                request: dict[str, Any] = json.loads(body)
                users = [m.get("content") for m in request.get("messages", []) if m.get("role") == "user"]
                payload = _response("200 OK", completion_body("mock", f"echo: {users[-1] if users else ''}"))
            else:
                payload = _response(
                    "200 OK", completion_body("mock", f"{FIXED_TEXT} (answer {next(_ANSWERS)})")
                )
        elif method == "GET" and path.endswith("/models"):
            payload = self._models
        else:
            payload = _response("404 Not Found", b'{"error":{"message":"not found"}}')
        if self._delay_s > 0:
            asyncio.get_running_loop().call_later(self._delay_s, self._write, payload)
        else:
            self._write(payload)

    def _write(self, payload: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(payload)


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes | None, int]:
    body = bytearray()
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None, 0
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        position = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n", position)
            return (bytes(body), trailer_end + 2) if trailer_end >= 0 else (None, 0)
        if len(buffer) < position + size + 2:
            return None, 0
        body += buffer[position : position + size]
        position += size + 2


async def serve(host: str, port: int, delay_s: float, echo: bool) -> None:
    models = _response(
        "200 OK", b'{"object":"list","data":[{"id":"mock","object":"model","created":0,"owned_by":"bench"}]}'
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: MockUpstream(delay_s, echo, models), host, port, reuse_address=True, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--echo", action="store_true")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.delay_ms / 1000, args.echo))


if __name__ == "__main__":
    main()

"""The way from a `keel` command to a running server, so commands that need the models do not load them.

A command calls `connect()`: with a key configured (`KEEL_API_KEY`) and a server answering at
`KEEL_URL` (default http://<host>:<port>) it gets a `RemoteServer`; otherwise None, and the command
runs in its own process as before. The key decides the tenant on a server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from keel.cli_common import err
from keel.config import Settings
from keel.errors import KeelError

# Generous: a copilot reply on the embedded model takes seconds, a queued one longer.
_TIMEOUT = httpx.Timeout(300.0, connect=2.0)


class RemoteError(KeelError):
    """The server refused a request; the message is the server's own."""


@dataclass
class RemoteServer:
    url: str
    client: httpx.Client

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer of one request; a 4xx or 5xx becomes a `RemoteError` with the server's message."""
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(f"{self.url} did not answer: {exc}") from exc
        _raise_for_error(response)
        return response.json() if response.content else None

    def stream_chat(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The chunks of a streamed chat completion, parsed from server-sent events."""
        try:
            with self.client.stream("POST", "/v1/chat/completions", json=body | {"stream": True}) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for_error(response)
                for line in response.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        yield json.loads(line.removeprefix("data: "))
        except httpx.HTTPError as exc:
            raise RemoteError(f"{self.url} did not answer: {exc}") from exc

    def close(self) -> None:
        self.client.close()


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:300] or response.reason_phrase
    raise RemoteError(f"{response.status_code} from the server: {message}")


def server_url(settings: Settings) -> str:
    return (settings.url or f"http://{settings.host}:{settings.port}").rstrip("/")


def connect(settings: Settings) -> RemoteServer | None:
    """The configured server when a key is set and it answers; None (run in this process) otherwise."""
    if settings.api_key is None:
        return None
    url = server_url(settings)
    headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}
    client = httpx.Client(base_url=url, headers=headers, timeout=_TIMEOUT)
    try:
        client.get("/healthz", timeout=2.0).raise_for_status()
    except httpx.HTTPError:
        client.close()
        err.print(f"[dim]no Keel server answers at {url}; running in this process[/dim]")
        return None
    return RemoteServer(url, client)

"""Signed webhooks: a decision is POSTed to the client's URL with an HMAC-SHA256 signature.

The receiver recomputes `sha256=HMAC(secret, f"{timestamp}.{body}")` and compares it with the
`X-Keel-Signature` header (and rejects old timestamps), so it knows the call came from Keel unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from keel.logs import get_logger

log = get_logger(__name__)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookSender:
    def __init__(
        self, url: str | None, secret: str | None, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url
        self._secret = secret or ""
        self._transport = transport

    async def send(self, event: str, payload: dict[str, Any]) -> bool:
        """Delivers one event with retries; returns whether it was accepted (2xx)."""
        if not self.url:
            return False
        body = json.dumps({"event": event, "data": payload}, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Keel-Event": event,
            "X-Keel-Timestamp": timestamp,
            "X-Keel-Signature": sign(self._secret, timestamp, body),
        }
        try:
            async with httpx.AsyncClient(timeout=5.0, transport=self._transport) as client:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(3),
                    wait=wait_exponential_jitter(multiplier=0.2, max=2.0),
                    retry=retry_if_exception_type(httpx.HTTPError),
                    reraise=True,
                ):
                    with attempt:
                        response = await client.post(self.url, content=body, headers=headers)
                        if response.status_code >= 500:
                            response.raise_for_status()
            return response.is_success
        except httpx.HTTPError as exc:
            # The decision is stored either way; the client can still poll for it.
            log.warning("webhook_failed", webhook_event=event, error=type(exc).__name__)
            return False

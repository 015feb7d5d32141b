"""Rate limits per key and per tenant, requests and tokens per minute, on the `limits` library.

Moving windows, in memory embedded (`memory://`) and in Redis for scale-out (`redis://...`), so replicas
share one count. Every applicable limit is tested before any is charged, so a request refused by one
limit does not use up another.
"""

from __future__ import annotations

import math
import threading
import time

from limits import RateLimitItem, RateLimitItemPerMinute, storage, strategies

from keel.config import GatewaySettings, RateLimitSettings
from keel.errors import RateLimitError


class RateLimiter:
    def __init__(self, settings: GatewaySettings, storage_uri: str = "memory://") -> None:
        self._settings = settings
        self._limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_uri))
        # Counted over the network (Redis): async callers must not wait for it on their event loop.
        self.blocking = not storage_uri.startswith("memory://")
        # Test-then-hit must not interleave between two requests of this process.
        self._lock = threading.Lock()

    def _checks(self, key_id: str, tenant: str, tokens: int) -> list[tuple[RateLimitItem, str, int, str]]:
        tenant_limits = self._settings.tenant_limit_overrides.get(tenant, self._settings.tenant_limits)
        checks: list[tuple[RateLimitItem, str, int, str]] = []
        for scope, limits in (
            (f"key:{key_id}", self._settings.key_limits),
            (f"tenant:{tenant}", tenant_limits),
        ):
            checks.extend(self._items(scope, limits, tokens))
        return checks

    @staticmethod
    def _items(
        scope: str, limits: RateLimitSettings, tokens: int
    ) -> list[tuple[RateLimitItem, str, int, str]]:
        items: list[tuple[RateLimitItem, str, int, str]] = []
        if limits.requests_per_minute:
            items.append(
                (RateLimitItemPerMinute(limits.requests_per_minute), f"{scope}:requests", 1, "requests")
            )
        if limits.tokens_per_minute:
            # A request larger than the whole limit could never pass: charge it the limit, not more.
            cost = min(tokens, limits.tokens_per_minute)
            items.append(
                (RateLimitItemPerMinute(limits.tokens_per_minute), f"{scope}:tokens", cost, "tokens")
            )
        return items

    def acquire(self, key_id: str, tenant: str, tokens: int) -> None:
        """Charges one request and `tokens` against every limit, or raises 429 with Retry-After."""
        self._charge(self._checks(key_id, tenant, tokens))

    def acquire_tokens(self, tenant: str, tokens: int) -> None:
        """Charges `tokens` against the tenant's tokens per minute only: Keel's own model work for a
        tenant (embedding its documents and queries) is made by no key and is no API request."""
        limits = self._settings.tenant_limit_overrides.get(tenant, self._settings.tenant_limits)
        checks = self._items(f"tenant:{tenant}", limits, tokens)
        self._charge([check for check in checks if check[3] == "tokens"])

    def _charge(self, checks: list[tuple[RateLimitItem, str, int, str]]) -> None:
        with self._lock:
            for item, identifier, cost, what in checks:
                if not self._limiter.test(item, identifier, cost=cost):
                    reset = self._limiter.get_window_stats(item, identifier).reset_time
                    scope = identifier.split(":")[0]
                    raise RateLimitError(
                        f"Rate limit reached: {item.amount} {what} per minute for this {scope}.",
                        code=f"{what}_per_minute",
                        retry_after=max(1.0, math.ceil(reset - time.time())),
                    )
            for item, identifier, cost, _ in checks:
                self._limiter.hit(item, identifier, cost=cost)

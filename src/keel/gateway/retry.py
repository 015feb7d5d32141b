"""Retries of one deployment with tenacity: exponential backoff with full jitter, honouring Retry-After,
on retryable provider errors only."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from keel.config import RetrySettings
from keel.gateway.providers.base import ProviderError, ProviderTimeout

T = TypeVar("T")


def is_retryable(error: BaseException) -> bool:
    return isinstance(error, ProviderError) and error.retryable


def backoff(settings: RetrySettings) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        ceiling = min(settings.max_delay_s, settings.base_delay_s * 2 ** (state.attempt_number - 1))
        delay = random.uniform(0, ceiling)
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ProviderError) and error.retry_after is not None:
            delay = max(delay, min(error.retry_after, settings.max_retry_after_s))
        return delay

    return wait


async def with_timeout(call: Awaitable[T], timeout_s: float) -> T:
    try:
        return await asyncio.wait_for(call, timeout_s)
    except TimeoutError as exc:
        raise ProviderTimeout(f"No answer within {timeout_s:g} s.") from exc


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    settings: RetrySettings,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Runs `attempt` until it succeeds, raises a non-retryable error, or runs out of attempts."""

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.outcome.exception() is not None:
            on_retry(state.outcome.exception())  # type: ignore[arg-type]

    retrying = AsyncRetrying(
        stop=stop_after_attempt(settings.attempts),
        wait=backoff(settings),
        retry=retry_if_exception(is_retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    result: T = await retrying(attempt)
    return result

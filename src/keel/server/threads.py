"""The one way async routes run synchronous work (database, files, Redis): on the thread pool FastAPI runs
synchronous routes on, with the caller's context (its current span) carried over, so the event loop
never waits on I/O."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio.to_thread

P = ParamSpec("P")
T = TypeVar("T")


async def off_loop(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs))

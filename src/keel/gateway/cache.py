"""Response caches: exact (a hash of the normalised request) and semantic (the last user message's
embedding above a similarity threshold), both scoped by tenant, alias and prompt version, with a TTL.

Embedded, both live in process memory; a tenant's entries are dropped whenever its knowledge changes,
since a cached answer may rest on documents that are now different.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from cachetools import TTLCache

from keel.config import CacheSettings
from keel.gateway.protocol import ChatCompletionRequest, FinishReason, Usage


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    finish_reason: FinishReason
    usage: Usage
    deployment: str | None


@dataclass(frozen=True)
class CacheKeys:
    tenant: str
    # Everything but the last user message: alias, prompt version, earlier turns, sampling, format.
    scope: str
    # The whole normalised request.
    exact: str
    last_user_message: str


def cache_keys(tenant: str, request: ChatCompletionRequest) -> CacheKeys:
    messages = [{"role": m.role, "content": m.text()} for m in request.messages]
    last_user = next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "user"), None)
    context = {
        "alias": request.model,
        "prompt_version": request.prompt_version,
        "messages": [m for i, m in enumerate(messages) if i != last_user],
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.token_limit(),
        "stop": request.stop_sequences(),
        "seed": request.seed,
        "response_format": request.response_format.model_dump(mode="json")
        if request.response_format
        else None,
    }
    scope = _digest({"tenant": tenant, **context})
    question = messages[last_user]["content"] if last_user is not None else ""
    return CacheKeys(tenant=tenant, scope=scope, exact=_digest([scope, question]), last_user_message=question)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class _SemanticEntry:
    tenant: str
    vector: npt.NDArray[np.float32]
    answer: CachedAnswer
    expires: float


class ResponseCache(Protocol):
    """Where answers are cached: process memory embedded, Redis for scale-out (`cache_redis.py`)."""

    settings: CacheSettings
    # Whether its calls wait on the network (async callers then make them off the event loop).
    blocking: bool

    def get_exact(self, keys: CacheKeys) -> CachedAnswer | None: ...

    def get_semantic(
        self, keys: CacheKeys, vector: npt.NDArray[np.float32]
    ) -> tuple[CachedAnswer, float] | None: ...

    def put(self, keys: CacheKeys, answer: CachedAnswer, vector: npt.NDArray[np.float32] | None) -> None: ...

    def invalidate_tenant(self, tenant: str) -> None: ...


def best_match(
    vectors: list[npt.NDArray[np.float32]], vector: npt.NDArray[np.float32], threshold: float
) -> tuple[int, float] | None:
    """The index and similarity of the closest cached question, if it is close enough."""
    if not vectors:
        return None
    similarities = np.stack(vectors) @ vector
    best = int(np.argmax(similarities))
    return (best, float(similarities[best])) if float(similarities[best]) >= threshold else None


class MemoryResponseCache:
    blocking = False

    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings
        self._exact: TTLCache[str, tuple[str, CachedAnswer]] = TTLCache(settings.max_entries, settings.ttl_s)
        self._semantic: OrderedDict[str, list[_SemanticEntry]] = OrderedDict()
        self._lock = threading.Lock()

    def get_exact(self, keys: CacheKeys) -> CachedAnswer | None:
        with self._lock:
            found = self._exact.get(keys.exact)
        return found[1] if found is not None else None

    def get_semantic(
        self, keys: CacheKeys, vector: npt.NDArray[np.float32]
    ) -> tuple[CachedAnswer, float] | None:
        now = time.monotonic()
        with self._lock:
            entries = [e for e in self._semantic.get(keys.scope, []) if e.expires > now]
            self._semantic[keys.scope] = entries
        match = best_match([e.vector for e in entries], vector, self.settings.semantic_threshold)
        return (entries[match[0]].answer, match[1]) if match else None

    def put(self, keys: CacheKeys, answer: CachedAnswer, vector: npt.NDArray[np.float32] | None) -> None:
        with self._lock:
            self._exact[keys.exact] = (keys.tenant, answer)
            if vector is None:
                return
            entries = self._semantic.setdefault(keys.scope, [])
            entries.append(
                _SemanticEntry(keys.tenant, vector, answer, time.monotonic() + self.settings.ttl_s)
            )
            self._semantic.move_to_end(keys.scope)
            del entries[: max(0, len(entries) - self.settings.max_entries)]
            while sum(len(v) for v in self._semantic.values()) > self.settings.max_entries:
                self._semantic.popitem(last=False)

    def invalidate_tenant(self, tenant: str) -> None:
        with self._lock:
            for key in [k for k, (owner, _) in self._exact.items() if owner == tenant]:
                del self._exact[key]
            for scope in list(self._semantic):
                kept = [e for e in self._semantic[scope] if e.tenant != tenant]
                if kept:
                    self._semantic[scope] = kept
                else:
                    del self._semantic[scope]

"""The response caches in Redis, shared by every replica.

Exact answers are plain keys with a TTL. Semantic entries of one scope sit in one hash (vector + answer
per entry) with a TTL on the hash; a lookup reads the scope's entries and compares in Python, which
stays cheap because a scope (tenant, alias, prompt version, earlier turns, sampling) holds few entries.
A tenant's entries are invalidated by bumping its generation, which is part of every key: stale entries
are never read again and expire on their own.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict

import numpy as np
import numpy.typing as npt
import redis

from keel.config import CacheSettings
from keel.gateway.cache import CachedAnswer, CacheKeys, best_match
from keel.gateway.protocol import Usage


def _encode(answer: CachedAnswer) -> str:
    return json.dumps({**asdict(answer), "usage": answer.usage.model_dump()})


def _decode(raw: bytes | str) -> CachedAnswer:
    data = json.loads(raw)
    return CachedAnswer(data["text"], data["finish_reason"], Usage(**data["usage"]), data["deployment"])


class RedisResponseCache:
    blocking = True

    def __init__(self, settings: CacheSettings, client: redis.Redis, prefix: str = "keel:cache") -> None:
        self.settings = settings
        self._redis = client
        self._prefix = prefix

    def _generation(self, tenant: str) -> int:
        return int(self._redis.get(f"{self._prefix}:gen:{tenant}") or 0)

    def _exact_key(self, keys: CacheKeys) -> str:
        return f"{self._prefix}:exact:{keys.tenant}:{self._generation(keys.tenant)}:{keys.exact}"

    def _semantic_key(self, keys: CacheKeys) -> str:
        return f"{self._prefix}:semantic:{keys.tenant}:{self._generation(keys.tenant)}:{keys.scope}"

    def get_exact(self, keys: CacheKeys) -> CachedAnswer | None:
        raw = self._redis.get(self._exact_key(keys))
        return _decode(raw) if raw is not None else None

    def get_semantic(
        self, keys: CacheKeys, vector: npt.NDArray[np.float32]
    ) -> tuple[CachedAnswer, float] | None:
        entries = [json.loads(v) for v in self._redis.hvals(self._semantic_key(keys))]
        vectors = [np.asarray(e["vector"], dtype=np.float32) for e in entries]
        match = best_match(vectors, vector, self.settings.semantic_threshold)
        return (_decode(entries[match[0]]["answer"]), match[1]) if match else None

    def put(self, keys: CacheKeys, answer: CachedAnswer, vector: npt.NDArray[np.float32] | None) -> None:
        pipe = self._redis.pipeline()
        pipe.set(self._exact_key(keys), _encode(answer), ex=self.settings.ttl_s)
        if vector is not None:
            key = self._semantic_key(keys)
            entry = json.dumps({"vector": [float(x) for x in vector], "answer": _encode(answer)})
            pipe.hset(key, uuid.uuid4().hex, entry)
            pipe.expire(key, self.settings.ttl_s)
        pipe.execute()

    def invalidate_tenant(self, tenant: str) -> None:
        self._redis.incr(f"{self._prefix}:gen:{tenant}")

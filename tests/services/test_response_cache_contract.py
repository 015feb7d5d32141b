"""One contract for every ResponseCache: the same cases on process memory and on Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from keel.config import CacheSettings
from keel.gateway.cache import CachedAnswer, MemoryResponseCache, ResponseCache, cache_keys
from keel.gateway.cache_redis import RedisResponseCache
from keel.gateway.protocol import ChatCompletionRequest, Usage

REDIS_URL = "redis://127.0.0.1:6379/15"
SETTINGS = CacheSettings(semantic=True, semantic_threshold=0.9, ttl_s=60)
NEAR, FAR = np.array([0.99, 0.14], dtype=np.float32), np.array([0.0, 1.0], dtype=np.float32)
VECTOR = np.array([1.0, 0.0], dtype=np.float32)


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[ResponseCache]:
    if request.param == "memory":
        yield MemoryResponseCache(SETTINGS)
        return
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not running at {REDIS_URL}: {exc}")
    prefix = f"keel:contract:{uuid.uuid4().hex}"  # its own keys: the shared Redis is never flushed
    yield RedisResponseCache(SETTINGS, client, prefix=prefix)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def ask(text: str, **extra: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": text}], **extra}
    )


def answer(text: str) -> CachedAnswer:
    return CachedAnswer(text, "stop", Usage.of(3, 2), "d")


def test_an_exact_repeat_is_found_and_nothing_else(cache: ResponseCache) -> None:
    keys = cache_keys("acme", ask("opening hours?"))
    assert cache.get_exact(keys) is None
    cache.put(keys, answer("At nine."), None)
    assert cache.get_exact(keys) == answer("At nine.")
    assert cache.get_exact(cache_keys("acme", ask("opening hours?", temperature=0.5))) is None
    assert cache.get_exact(cache_keys("acme", ask("closing hours?"))) is None


def test_a_paraphrase_is_found_by_meaning_within_its_scope(cache: ResponseCache) -> None:
    cache.put(cache_keys("acme", ask("opening hours?")), answer("At nine."), VECTOR)
    paraphrase = cache_keys("acme", ask("when do you open?"))
    found = cache.get_semantic(paraphrase, NEAR)
    assert found is not None and found[0] == answer("At nine.") and found[1] >= 0.9
    assert cache.get_semantic(paraphrase, FAR) is None
    assert cache.get_semantic(cache_keys("acme", ask("when do you open?", seed=7)), VECTOR) is None


def test_tenants_never_see_each_others_answers(cache: ResponseCache) -> None:
    cache.put(cache_keys("acme", ask("q")), answer("acme's"), VECTOR)
    globex = cache_keys("globex", ask("q"))
    assert cache.get_exact(globex) is None and cache.get_semantic(globex, VECTOR) is None


def test_invalidating_a_tenant_drops_only_its_entries(cache: ResponseCache) -> None:
    acme, globex = cache_keys("acme", ask("q")), cache_keys("globex", ask("q"))
    cache.put(acme, answer("a"), VECTOR)
    cache.put(globex, answer("g"), VECTOR)
    cache.invalidate_tenant("acme")
    assert cache.get_exact(acme) is None and cache.get_semantic(acme, VECTOR) is None
    assert cache.get_exact(globex) == answer("g")
    cache.put(acme, answer("a2"), None)  # a tenant caches again after its knowledge changed
    assert cache.get_exact(acme) == answer("a2")

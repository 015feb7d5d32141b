"""The scale-out backends on a real Redis: rate limits and caches shared by every replica, and the queue."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from huey import RedisHuey

from keel.config import CacheSettings, GatewaySettings, RateLimitSettings
from keel.errors import RateLimitError
from keel.gateway.cache import CachedAnswer, cache_keys
from keel.gateway.cache_redis import RedisResponseCache
from keel.gateway.limits import RateLimiter
from keel.gateway.protocol import ChatCompletionRequest, Usage
from keel.jobs.queue import build_queue

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(REDIS_URL)
    try:
        connection.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not running at {REDIS_URL}: {exc}")
    connection.flushdb()
    yield connection
    connection.flushdb()


def request(text: str, **extra: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": text}], **extra}
    )


def answer(text: str) -> CachedAnswer:
    return CachedAnswer(text, "stop", Usage.of(3, 2), "d")


def test_two_replicas_share_one_rate_limit(client: redis.Redis) -> None:
    settings = GatewaySettings(tenant_limits=RateLimitSettings(requests_per_minute=5))
    replicas = [RateLimiter(settings, REDIS_URL), RateLimiter(settings, REDIS_URL)]
    tenant = f"t{uuid.uuid4().hex[:8]}"
    for i in range(5):
        replicas[i % 2].acquire(f"key{i}", tenant, tokens=10)
    for replica in replicas:
        with pytest.raises(RateLimitError):
            replica.acquire("key9", tenant, tokens=10)


def test_two_replicas_share_one_cache_scoped_by_tenant(client: redis.Redis) -> None:
    settings = CacheSettings(semantic=True, semantic_threshold=0.9)
    first, second = RedisResponseCache(settings, client), RedisResponseCache(settings, client)
    keys = cache_keys("acme", request("opening hours?"))
    vector = np.array([1.0, 0.0], dtype=np.float32)
    first.put(keys, answer("At nine."), vector)
    assert second.get_exact(keys) == answer("At nine.")
    assert second.get_exact(cache_keys("globex", request("opening hours?"))) is None
    paraphrase = cache_keys("acme", request("when do you open?"))
    found = second.get_semantic(paraphrase, np.array([0.99, 0.14], dtype=np.float32))
    assert found is not None and found[0].text == "At nine."
    assert second.get_semantic(paraphrase, np.array([0.0, 1.0], dtype=np.float32)) is None
    assert second.get_semantic(cache_keys("globex", request("when do you open?")), vector) is None


def test_invalidating_a_tenant_reaches_every_replica(client: redis.Redis) -> None:
    settings = CacheSettings(semantic=True)
    first, second = RedisResponseCache(settings, client), RedisResponseCache(settings, client)
    acme, globex = cache_keys("acme", request("q")), cache_keys("globex", request("q"))
    vector = np.array([1.0, 0.0], dtype=np.float32)
    first.put(acme, answer("a"), vector)
    first.put(globex, answer("g"), vector)
    second.invalidate_tenant("acme")
    assert first.get_exact(acme) is None and first.get_semantic(acme, vector) is None
    assert first.get_exact(globex) == answer("g")


def test_queue_on_redis(client: redis.Redis, tmp_path: object) -> None:
    queue = build_queue(tmp_path, REDIS_URL, name=f"keel-test-{uuid.uuid4().hex[:6]}")  # type: ignore[arg-type]
    assert isinstance(queue, RedisHuey)
    seen: list[str] = []

    @queue.task(name="keel.test.echo")  # type: ignore[untyped-decorator]
    def echo(value: str) -> None:
        seen.append(value)

    echo("hello")
    assert len(queue) == 1
    task = queue.dequeue()
    queue.execute(task)
    assert seen == ["hello"]
    queue.flush()

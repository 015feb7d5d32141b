"""Two stateless `keel serve` replicas on one PostgreSQL (pgvector) and one Redis behave as one system:
rate limits, budgets, the response cache, review claims and documents are shared."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.integration.live import KEEL, free_port
from tests.services.pg import TestPostgres

REDIS_URL = "redis://127.0.0.1:6379/12"
# A priced copy of the local model for the budget test: ~24 tokens a request at 400 per million is about
# 0.01 a request, so tenant `beta`'s daily 0.05 covers a handful of requests.
CONFIG = """
[gateway.deployments.local]
provider = "local"
timeout_s = 300
[gateway.deployments.local-priced]
provider = "local"
input_price = "400"
output_price = "400"
timeout_s = 300
[gateway.aliases.keel-local]
deployments = ["local"]
[gateway.aliases.priced]
deployments = ["local-priced"]
[gateway.tenant_budget_overrides.beta]
daily = "0.05"
[gateway.tenant_limit_overrides.beta]
requests_per_minute = 1000
"""


@pytest.fixture(scope="module")
def cluster(
    postgres_server: TestPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    database = postgres_server.create_database()
    redis.Redis.from_url(REDIS_URL).flushdb()
    config = tmp_path_factory.mktemp("config") / "keel.toml"
    config.write_text(CONFIG)
    shared = {
        "KEEL_CONFIG_FILE": str(config),
        "KEEL_DATABASE_URL": postgres_server.url(database),
        "KEEL_REDIS_URL": REDIS_URL,
        "KEEL_UI_SECRET": "replica-test-secret",
        "KEEL_LOG_LEVEL": "warning",
        "KEEL_GATEWAY__TENANT_LIMITS__REQUESTS_PER_MINUTE": "6",
    }
    processes: list[subprocess.Popen[bytes]] = []
    bases = []
    try:
        for n in range(2):
            env = {**os.environ, **shared, "KEEL_DATA_DIR": str(tmp_path_factory.mktemp(f"replica{n}"))}
            port = free_port()
            processes.append(subprocess.Popen([*KEEL, "serve", "--port", str(port)], env=env))
            bases.append(f"http://127.0.0.1:{port}")
        env = {**os.environ, **shared, "KEEL_DATA_DIR": str(tmp_path_factory.mktemp("cli"))}
        keys = {
            name: subprocess.run(
                [*KEEL, "keys", "create", "--tenant", tenant, "--role", role],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            for name, tenant, role in (
                ("app", "acme", "app"),
                ("reviewer", "acme", "reviewer"),
                ("second_reviewer", "acme", "reviewer"),
                ("beta", "beta", "app"),
            )
        }
        for base, process in zip(bases, processes, strict=True):
            _wait_ready(base, process)
        yield {"bases": bases, "keys": keys, "database_url": postgres_server.url(database)}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        postgres_server.drop_database(database)
        redis.Redis.from_url(REDIS_URL).flushdb()


def _wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    import time

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, "a replica exited"
        time.sleep(0.5)
    pytest.fail("a replica did not become ready")


def chat(base: str, key: str, text: str) -> httpx.Response:
    body = {"model": "keel-local", "messages": [{"role": "user", "content": text}], "max_tokens": 4}
    return httpx.post(
        f"{base}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120
    )


def test_the_cache_is_shared(cluster: dict[str, Any]) -> None:
    first, second = cluster["bases"]
    key = cluster["keys"]["app"]
    assert chat(first, key, "Shared cache?").headers["x-keel-cache"] == "miss"
    again = chat(second, key, "Shared cache?")
    assert again.status_code == 200 and again.headers["x-keel-cache"] == "exact"


def test_review_claims_are_shared(cluster: dict[str, Any]) -> None:
    first, second = cluster["bases"]
    keys = cluster["keys"]
    reply = httpx.post(
        f"{first}/v1/support/replies",
        json={"message": "Can I talk to a human?"},
        headers={"Authorization": f"Bearer {keys['app']}"},
        timeout=120,
    ).json()
    review = reply["review_id"]
    claimed = httpx.post(
        f"{second}/v1/reviews/{review}/claim", headers={"Authorization": f"Bearer {keys['reviewer']}"}
    )
    assert claimed.status_code == 200
    again = httpx.post(
        f"{first}/v1/reviews/{review}/claim", headers={"Authorization": f"Bearer {keys['second_reviewer']}"}
    )
    assert again.status_code == 400


def test_a_label_moved_on_one_replica_is_served_by_the_other_at_once(cluster: dict[str, Any]) -> None:
    first, second = cluster["bases"]
    auth = {"Authorization": f"Bearer {cluster['keys']['beta']}"}
    version = {
        "name": "replica-greeting",
        "model": "keel-local",
        "params": {"max_tokens": 4},
        "messages": [{"role": "user", "content": "What colour is a {{ word }}?"}],
        "variables": {"type": "object", "properties": {"word": {"type": "string"}}},
    }
    # Questions, not orders: the injection guard in front of the API refuses instruction-like messages.
    for number, wording in enumerate(
        ("What colour is a {{ word }}?", "Which colour is a {{ word }} usually?"), start=1
    ):
        pushed = httpx.post(
            f"{first}/v1/prompts",
            json={**version, "messages": [{"role": "user", "content": wording}]},
            headers=auth,
        )
        assert pushed.json()["version"] == number
    body = {"prompt": {"name": "replica-greeting", "label": "staging", "variables": {"word": "hi"}}}

    def served_by_second() -> str:
        response = httpx.post(f"{second}/v1/chat/completions", json=body, headers=auth, timeout=120)
        assert response.status_code == 200, response.text
        return response.headers["x-keel-prompt-version"]

    for target in (1, 2, 1):
        moved = httpx.put(
            f"{first}/v1/prompts/replica-greeting/labels/staging", json={"version": target}, headers=auth
        )
        assert moved.status_code == 200
        # The very next request on the other replica, with no wait: its cached label is already stale.
        assert served_by_second() == f"replica-greeting@{target}"


def test_the_rate_limit_is_shared(cluster: dict[str, Any]) -> None:
    first, second = cluster["bases"]
    key = cluster["keys"]["app"]
    # Earlier tests spent some of the tenant's 6 requests per minute (the copilot's model call counts
    # too); whatever is left is shared by both replicas, then both refuse.
    statuses = [chat(base, key, f"limit {i}").status_code for i, base in enumerate([first, second] * 4)]
    assert 200 in statuses and 429 in statuses
    assert statuses.count(200) <= 4, statuses
    assert statuses.index(429) >= 1 and all(s == 429 for s in statuses[statuses.index(429) :])


def test_a_document_uploaded_to_one_replica_is_found_by_the_other(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    import time

    first, second = cluster["bases"]
    headers = {"Authorization": f"Bearer {cluster['keys']['app']}"}
    job = httpx.post(
        f"{first}/v1/documents",
        headers=headers,
        json={"source": "bells.txt", "text": "Every bike ships with a brass bell."},
    ).json()
    deadline = time.monotonic() + 120
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.3)
        job = httpx.get(f"{second}/v1/jobs/{job['id']}", headers=headers).json()
    assert job["status"] == "succeeded"
    found = httpx.post(
        f"{second}/v1/search", headers=headers, json={"query": "brass bell"}, timeout=60
    ).json()
    assert found["results"][0]["source"] == "bells.txt"


def test_a_budget_is_shared_and_never_overspent(cluster: dict[str, Any]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import create_engine, text

    key = cluster["keys"]["beta"]

    def priced(n: int) -> int:
        body = {
            "model": "priced",
            "messages": [{"role": "user", "content": f"Budget request number {n}."}],
            "max_tokens": 4,
            "cache": False,
        }
        return httpx.post(
            f"{cluster['bases'][n % 2]}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=300,
        ).status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(priced, range(12)))
    assert 200 in statuses and 429 in statuses, statuses
    assert set(statuses) == {200, 429}
    engine = create_engine(cluster["database_url"])
    try:
        with engine.connect() as connection:
            spent, reserved = connection.execute(
                text(
                    "SELECT spent_micros, reserved_micros FROM budget_counters "
                    "WHERE scope = 'tenant:beta' AND period LIKE 'd%'"
                )
            ).one()
    finally:
        engine.dispose()
    assert reserved == 0, "every reservation settled"
    assert 0 < spent <= 50_000, "spent across both replicas, never past the daily 0.05"

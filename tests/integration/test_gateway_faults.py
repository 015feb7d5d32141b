"""The gateway against a fault-injecting upstream (a real HTTP server on 127.0.0.1), through Keel's HTTP
API: with a fallback deployment and 30 % faults every request still gets a correct answer; the breaker
opens and recovers; rate limits answer 429 with Retry-After exactly at the limit."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from keel.config import (
    AliasSettings,
    BreakerSettings,
    DeploymentSettings,
    GatewaySettings,
    RateLimitSettings,
    RetrySettings,
    Settings,
)
from keel.keys import Role
from keel.runtime import Runtime
from keel.server.app import create_app
from tests.support.fault_upstream import FaultPlan, FaultUpstream


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FaultUpstream, FaultUpstream]]:
    with FaultUpstream.running() as flaky, FaultUpstream.running() as backup:
        yield flaky, backup


@pytest.fixture(scope="module")
def gateway_app(
    tmp_path_factory: pytest.TempPathFactory,
    upstreams: tuple[FaultUpstream, FaultUpstream],
    tier_settings: dict[str, str],
) -> Iterator[tuple[TestClient, str, Runtime]]:
    flaky, backup = upstreams
    gateway = GatewaySettings(
        deployments={
            "flaky": DeploymentSettings(
                provider="openai",
                base_url=flaky.base_url,
                model="echo",
                timeout_s=0.5,
                input_price=1,
                output_price=1,
            ),
            "backup": DeploymentSettings(
                provider="openai",
                base_url=backup.base_url,
                model="echo",
                timeout_s=5,
                input_price=2,
                output_price=2,
            ),
        },
        aliases={"support": AliasSettings(deployments=["flaky", "backup"], strategy="lowest_cost")},
        retry=RetrySettings(attempts=2, base_delay_s=0.01, max_delay_s=0.05, max_retry_after_s=0.05),
        breaker=BreakerSettings(failures=3, window_s=60, cooldown_s=1.0),
        key_limits=RateLimitSettings(requests_per_minute=1000),
    )
    data_dir: Path = tmp_path_factory.mktemp("keel-gateway")
    runtime = Runtime.build(
        Settings(data_dir=data_dir, preload_models=False, gateway=gateway, **tier_settings)  # type: ignore[arg-type]
    )
    with TestClient(create_app(runtime=runtime)) as client:
        key = runtime.keys.create("acme", Role.APP).secret
        yield client, key, runtime
    runtime.close()


def ask(client: TestClient, key: str, text: str, **extra: Any) -> Any:
    body = {"model": "support", "messages": [{"role": "user", "content": text}], "cache": False, **extra}
    return client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body)


def reset_breakers(runtime: Runtime) -> None:
    for deployment in runtime.gateway.dispatcher.deployments.values():
        deployment.breaker.record_success()


def test_thirty_percent_faults_and_every_answer_is_right(
    gateway_app: tuple[TestClient, str, Runtime], upstreams: tuple[FaultUpstream, FaultUpstream]
) -> None:
    client, key, runtime = gateway_app
    flaky, backup = upstreams
    flaky.set_plan(FaultPlan(fault_rate=0.3, seed=11, retry_after="1", hang_s=2))
    backup.set_plan(FaultPlan())
    reset_breakers(runtime)
    answers = []
    for i in range(40):
        response = ask(client, key, f"question number {i}")
        assert response.status_code == 200, response.text
        answers.append((i, response))
        if runtime.gateway.dispatcher.deployments["flaky"].breaker.state != "closed":
            time.sleep(1.05)  # let the breaker probe again, so flaky keeps taking a share of the traffic
    for i, response in answers:
        assert response.json()["choices"][0]["message"]["content"] == f"Echo: question number {i}"
    faults = sum(count for outcome, count in flaky.counts.items() if outcome != "ok")
    assert faults >= 8, flaky.counts
    assert flaky.counts["ok"] > 0 and backup.counts["ok"] > 0
    served_by = {r.headers["x-keel-deployment"] for _, r in answers}
    assert served_by == {"flaky", "backup"}
    assert any(r.headers["x-keel-retries"] != "0" for _, r in answers)


def test_streams_survive_faults_before_the_first_token(
    gateway_app: tuple[TestClient, str, Runtime], upstreams: tuple[FaultUpstream, FaultUpstream]
) -> None:
    client, key, runtime = gateway_app
    flaky, backup = upstreams
    flaky.set_plan(FaultPlan(script=["500", "drop", "429", "context"], retry_after="1"))
    backup.set_plan(FaultPlan())
    reset_breakers(runtime)
    for i in range(4):
        text = ""
        with client.stream(
            "POST",
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "model": "support",
                "stream": True,
                "cache": False,
                "messages": [{"role": "user", "content": f"stream {i}"}],
            },
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    assert "error" not in chunk, chunk
                    text += "".join(c["delta"].get("content") or "" for c in chunk["choices"])
        assert text.strip() == f"Echo: stream {i}"


def test_the_breaker_opens_and_recovers(
    gateway_app: tuple[TestClient, str, Runtime], upstreams: tuple[FaultUpstream, FaultUpstream]
) -> None:
    client, key, runtime = gateway_app
    flaky, backup = upstreams
    breaker = runtime.gateway.dispatcher.deployments["flaky"].breaker
    reset_breakers(runtime)
    flaky.set_plan(FaultPlan(script=["500"] * 50))
    backup.set_plan(FaultPlan())
    for i in range(4):
        assert ask(client, key, f"down {i}").status_code == 200
    assert breaker.state == "open"
    calls_while_open = flaky.counts["500"]
    for i in range(5):
        assert ask(client, key, f"still down {i}").headers["x-keel-deployment"] == "backup"
    assert flaky.counts["500"] == calls_while_open, "an open breaker sends nothing to the deployment"
    assert 'keel_breaker_state{deployment="flaky"} 2.0' in client.get("/metrics").text
    flaky.set_plan(FaultPlan())
    time.sleep(1.1)
    assert ask(client, key, "probe").headers["x-keel-deployment"] == "flaky"
    assert breaker.state == "closed"


def test_rate_limit_is_exact_and_says_when_to_retry(gateway_app: tuple[TestClient, str, Runtime]) -> None:
    client, _, runtime = gateway_app
    runtime.gateway.settings.tenant_limit_overrides["limited"] = RateLimitSettings(requests_per_minute=3)
    key = runtime.keys.create("limited", Role.APP).secret
    assert [ask(client, key, f"r{i}").status_code for i in range(3)] == [200, 200, 200]
    refused = ask(client, key, "r4")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["error"]["type"] == "rate_limit_error"


def test_personal_data_never_reaches_an_external_provider(
    gateway_app: tuple[TestClient, str, Runtime], upstreams: tuple[FaultUpstream, FaultUpstream]
) -> None:
    client, key, runtime = gateway_app
    flaky, _ = upstreams
    flaky.set_plan(FaultPlan())
    reset_breakers(runtime)
    response = ask(client, key, "Please mail jonas.weber@example.com about card 4111 1111 1111 1111")
    assert response.status_code == 200
    sent = json.dumps(flaky.received[-1].body)
    assert "jonas.weber@example.com" not in sent and "4111" not in sent
    assert "<EMAIL_1>" in sent
    # The upstream echoes the placeholders; Keel puts the values back for its own caller.
    answer = response.json()["choices"][0]["message"]["content"]
    assert "jonas.weber@example.com" in answer and "<EMAIL_1>" not in answer

"""Experiments and canary releases over HTTP with the real local model: sticky arms recorded on every
call, the experiment report, a canary promoted and one rolled back by its own errors. Runs on both tiers."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from keel.runtime import Runtime
from keel.store.models import UsageRecord
from tests.integration.conftest import Keys

# Questions, not orders: the injection guard in front of the API refuses instruction-like messages.
ECHO = {
    "model": "keel-local",
    "params": {"max_tokens": 4, "temperature": 0},
    "messages": [{"role": "user", "content": "What colour is a {{ word }}?"}],
    "variables": {"type": "object", "required": ["word"], "properties": {"word": {"type": "string"}}},
}


def setup_prompt(client: TestClient, keys: Keys, second: dict[str, Any]) -> str:
    name = f"echo-{uuid.uuid4().hex[:8]}"
    assert (
        client.post("/v1/prompts", headers=keys.header(keys.app), json={**ECHO, "name": name}).status_code
        == 201
    )
    pushed = client.post("/v1/prompts", headers=keys.header(keys.app), json={**ECHO, **second, "name": name})
    assert pushed.json()["version"] == 2
    moved = client.put(
        f"/v1/prompts/{name}/labels/production", headers=keys.header(keys.admin), json={"version": 1}
    )
    assert moved.status_code == 200
    return name


def call(client: TestClient, keys: Keys, name: str, user: str) -> int:
    body = {"prompt": {"name": name, "variables": {"word": "hello"}}, "user": user}
    return client.post("/v1/chat/completions", headers=keys.header(keys.app), json=body).status_code


def rows(runtime: Runtime, experiment: str, expected: int) -> list[UsageRecord]:
    for _ in range(200):
        with runtime.database.session() as session:
            found = list(session.scalars(select(UsageRecord).where(UsageRecord.experiment == experiment)))
        if len(found) >= expected:
            return found
        time.sleep(0.05)
    return found


def test_an_experiment_splits_users_stickily_and_reports_per_arm(
    client: TestClient, keys: Keys, runtime: Runtime
) -> None:
    name = setup_prompt(
        client, keys, {"messages": [{"role": "user", "content": "Which colour is a {{ word }} usually?"}]}
    )
    body = {
        "name": f"wording-{name}",
        "prompt": name,
        "label": "production",
        "arms": [{"name": "plain", "weight": 1}, {"name": "polite", "weight": 1, "version": 2}],
    }
    assert client.post("/v1/experiments", headers=keys.header(keys.app), json=body).status_code == 403
    started = client.post("/v1/experiments", headers=keys.header(keys.admin), json=body)
    assert started.status_code == 201, started.text
    users = [f"user-{i}" for i in range(12)]
    # Each call's arm, read from the one usage row it added (rows written in the same instant have no
    # order of their own).
    arm_of_call: list[str | None] = []
    seen: set[str] = set()
    for count, user in enumerate(users * 2, start=1):
        assert call(client, keys, name, user) == 200
        added = [row for row in rows(runtime, body["name"], count) if row.id not in seen]
        assert len(added) == 1
        seen.add(added[0].id)
        arm_of_call.append(added[0].experiment_arm)
    found = rows(runtime, body["name"], 24)
    arms_of: dict[str, set[str]] = {}
    for row in found:
        arms_of.setdefault(row.experiment_arm or "", set()).add(row.prompt_version or "")
    assert arms_of.keys() <= {"plain", "polite"} and len(found) == 24
    assert arms_of.get("plain", {f"{name}@1"}) == {f"{name}@1"}
    assert arms_of.get("polite", {f"{name}@2"}) == {f"{name}@2"}
    # Each user's two calls went to one arm.
    assert arm_of_call[:12] == arm_of_call[12:]

    report = client.get(f"/v1/experiments/{body['name']}/report", headers=keys.header(keys.viewer))
    assert report.status_code == 200
    arms = {a["arm"]: a for a in report.json()["arms"]}
    assert sum(a["requests"] for a in arms.values()) == 24
    assert {c["metric"] for c in report.json()["comparisons"]} >= {"error_rate", "latency_ms", "cost"}
    stopped = client.post(f"/v1/experiments/{body['name']}/stop", headers=keys.header(keys.admin), json={})
    assert stopped.json()["status"] == "stopped"


def start_canary(client: TestClient, keys: Keys, name: str) -> Any:
    body = {"version": 2, "steps": [50], "min_requests": 10, "min_duration_s": 0, "reason": "new"}
    refused = client.post(f"/v1/prompts/{name}/canary", headers=keys.header(keys.app), json=body)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "protected_label"
    started = client.post(f"/v1/prompts/{name}/canary", headers=keys.header(keys.admin), json=body)
    assert started.status_code == 201, started.text
    return started.json()


def test_a_good_canary_is_promoted(client: TestClient, keys: Keys, runtime: Runtime) -> None:
    name = setup_prompt(
        client, keys, {"messages": [{"role": "user", "content": "Which colour is a {{ word }} usually?"}]}
    )
    canary = start_canary(client, keys, name)
    status = client.get(f"/v1/prompts/{name}/canary", headers=keys.header(keys.viewer)).json()
    assert status["status"] == "running" and status["current"]["decision"] == "hold"
    for i in range(60):
        assert call(client, keys, name, f"customer-{i}") == 200
    rows(runtime, canary["id"], 60)
    # The queue's periodic check may have judged the step already; the explicit check does it otherwise.
    moved = client.post("/v1/canaries/check", headers=keys.header(keys.admin)).json()["data"]
    assert [c["id"] for c in moved] in ([canary["id"]], [])
    status = client.get(f"/v1/prompts/{name}/canary", headers=keys.header(keys.viewer)).json()
    assert (status["id"], status["status"], status["percent"]) == (canary["id"], "promoted", 100)
    assert client.get(f"/v1/prompts/{name}", headers=keys.header(keys.app)).json()["version"] == 2


def test_a_canary_whose_calls_fail_is_rolled_back(client: TestClient, keys: Keys, runtime: Runtime) -> None:
    # The new version names a model alias that does not exist: every call it serves fails.
    name = setup_prompt(client, keys, {"model": "keel-missing"})
    canary = start_canary(client, keys, name)
    statuses = [call(client, keys, name, f"customer-{i}") for i in range(60)]
    assert set(statuses) == {200, 404}
    rows(runtime, canary["id"], 60)
    moved = client.post("/v1/canaries/check", headers=keys.header(keys.admin)).json()["data"]
    assert [c["id"] for c in moved] in ([canary["id"]], [])
    status = client.get(f"/v1/prompts/{name}/canary", headers=keys.header(keys.viewer)).json()
    assert (status["id"], status["status"], status["percent"]) == (canary["id"], "rolled_back", 0)
    assert "error_rate" in status["reason"]
    # At once: every call is stable again.
    assert {call(client, keys, name, f"customer-{i}") for i in range(20)} == {200}
    audit = [e for e in runtime.audit.entries("acme", limit=500) if e.target == f"{name}:production"]
    assert "prompt.canary.rollback" in [e.action for e in audit]
    listed = client.get("/v1/canaries", headers=keys.header(keys.viewer)).json()["data"]
    assert canary["id"] in [c["id"] for c in listed]


def test_the_dashboard_shows_prompts_canaries_and_experiments(
    client: TestClient, keys: Keys, runtime: Runtime
) -> None:
    name = setup_prompt(
        client, keys, {"messages": [{"role": "user", "content": "What colour is a {{ word }}, please?"}]}
    )
    client.post(f"/v1/prompts/{name}/canary", headers=keys.header(keys.admin), json={"version": 2})
    experiment = {
        "name": f"look-{name}",
        "prompt": name,
        "label": "staging",
        "arms": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "version": 2}],
    }
    client.put(f"/v1/prompts/{name}/labels/staging", headers=keys.header(keys.app), json={"version": 1})
    assert client.post("/v1/experiments", headers=keys.header(keys.app), json=experiment).status_code == 201

    # A client of its own keeps the session cookie away from the other tests.
    viewer = TestClient(client.app)
    assert viewer.post("/ui/login", data={"api_key": keys.viewer}, follow_redirects=False).status_code == 303
    listing = viewer.get("/ui/prompts").text
    assert f'href="/ui/prompts/{name}"' in listing and f"look-{name}" in listing and "running" in listing
    page = viewer.get(f"/ui/prompts/{name}").text
    assert "Canary on production: v1 → v2" in page and "hold" in page and 'id="history"' in page
    assert "Roll back" not in page, "a viewer gets no admin controls"
    assert 'id="arms"' in viewer.get(f"/ui/experiments/look-{name}").text

    admin = TestClient(client.app)
    admin.post("/ui/login", data={"api_key": keys.admin}, follow_redirects=False)
    page = admin.get(f"/ui/prompts/{name}").text
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    aborted = admin.post(
        f"/ui/prompts/{name}/canary/abort",
        data={"csrf": csrf, "label": "production", "reason": "looked wrong"},
        follow_redirects=False,
    )
    assert aborted.status_code == 303
    assert runtime.prompts.canaries.status("acme", name).status == "aborted"
    refused = viewer.post(
        f"/ui/prompts/{name}/labels/staging/rollback", data={"csrf": "x"}, follow_redirects=False
    )
    assert refused.status_code == 403

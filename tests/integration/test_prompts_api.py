"""The prompt registry over HTTP with the real local model: pushes and labels with their roles and audit
trail, rollback, a chat request that names a prompt, and the copilot's prompt served from the registry.
Runs on both tiers (`make test` runs it again on PostgreSQL + Redis)."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from keel.copilot.prompt import reply_variables
from keel.keys import Role
from keel.runtime import Runtime
from keel.store.models import SpanRecord, UsageRecord
from tests.integration.conftest import Keys
from tests.integration.live import KEEL, keel_env

# Questions, not orders: the injection guard in front of the API refuses instruction-like messages.
TRANSLATE = {
    "description": "Asks about a word's colour.",
    "model": "keel-local",
    "params": {"max_tokens": 6, "temperature": 0},
    "messages": [{"role": "user", "content": "What colour is a {{ word }} at {{ shop }}?"}],
    "variables": {
        "type": "object",
        "required": ["shop", "word"],
        "properties": {"shop": {"type": "string"}, "word": {"type": "string", "maxLength": 40}},
    },
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def push(client: TestClient, key: str, name: str, **changes: Any) -> Any:
    return client.post(
        "/v1/prompts", headers={"Authorization": f"Bearer {key}"}, json={**TRANSLATE, "name": name, **changes}
    )


def move(client: TestClient, key: str, name: str, label: str, version: int, reason: str = "") -> Any:
    return client.put(
        f"/v1/prompts/{name}/labels/{label}",
        headers={"Authorization": f"Bearer {key}"},
        json={"version": version, "reason": reason},
    )


def usage_of(runtime: Runtime, prompt_version_prefix: str) -> list[UsageRecord]:
    # Usage rows are written off the request path: wait for them a moment.
    for _ in range(100):
        with runtime.database.session() as session:
            rows = list(
                session.scalars(
                    select(UsageRecord)
                    .where(UsageRecord.prompt_version.startswith(prompt_version_prefix))
                    .order_by(UsageRecord.created_at)
                )
            )
        if rows:
            return rows
        time.sleep(0.05)
    return []


def test_push_dedupes_and_labels_move_with_roles_and_audit(
    client: TestClient, keys: Keys, runtime: Runtime
) -> None:
    name = unique("repeat")
    first = push(client, keys.app, name, message="first")
    assert first.status_code == 201 and first.json()["version"] == 1 and first.json()["created"]
    same = push(client, keys.app, name, message="again")
    assert same.json()["created"] is False and same.json()["version"] == 1
    second = push(client, keys.app, name, message="warmer", params={"max_tokens": 6, "temperature": 0.3})
    assert second.json()["version"] == 2

    assert move(client, keys.app, name, "staging", 2, "try").status_code == 200
    refused = move(client, keys.app, name, "production", 2, "ship")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "protected_label"
    assert move(client, keys.viewer, name, "staging", 1).status_code == 403
    shipped = move(client, keys.admin, name, "production", 2, "ship it")
    assert shipped.status_code == 200 and shipped.json()["from_version"] is None

    got = client.get(f"/v1/prompts/{name}", headers=keys.header(keys.viewer)).json()
    assert got["version"] == 2 and sorted(got["labels"]) == ["latest", "production", "staging"]
    assert (
        client.get(f"/v1/prompts/{name}?version=1", headers=keys.header(keys.app)).json()["message"]
        == "first"
    )
    summary = client.get(f"/v1/prompts/{name}/summary", headers=keys.header(keys.app)).json()
    assert summary["labels"] == {"latest": 2, "production": 2, "staging": 2}
    diff = client.get(f"/v1/prompts/{name}/diff?from=1&to=2", headers=keys.header(keys.app)).json()["diff"]
    assert '+    "temperature": 0.3' in diff

    moves = [e for e in runtime.audit.entries("acme", limit=500) if e.target == f"{name}:production"]
    assert [(e.action, e.details["reason"]) for e in moves] == [("prompt.label.move", "ship it")]
    listed = client.get("/v1/prompts", headers=keys.header(keys.app)).json()["data"]
    assert name in [p["name"] for p in listed]


def test_a_chat_request_can_name_a_prompt(client: TestClient, keys: Keys, runtime: Runtime) -> None:
    name = unique("repeat")
    push(client, keys.app, name)
    move(client, keys.admin, name, "production", 1)
    body = {"prompt": {"name": name, "variables": {"shop": "Larkspur", "word": "bell"}}, "user": "u-1"}
    response = client.post("/v1/chat/completions", headers=keys.header(keys.app), json=body)
    assert response.status_code == 200, response.text
    completion = response.json()
    assert completion["model"] == "keel-local" and completion["usage"]["completion_tokens"] <= 6
    [record] = usage_of(runtime, f"{name}@")
    assert (record.prompt_version, record.prompt_label, record.alias) == (
        f"{name}@1",
        "production",
        "keel-local",
    )
    assert response.headers["x-keel-prompt-version"] == f"{name}@1"
    # The trace of the call says the same (spans are stored off the request path: wait a moment).
    attributes: dict[str, Any] = {}
    for _ in range(400):
        with runtime.database.session() as session:
            spans = session.scalars(select(SpanRecord).where(SpanRecord.trace_id == record.trace_id))
            attributes = next((s.attributes for s in spans if "keel.prompt.name" in s.attributes), {})
        if attributes:
            break
        time.sleep(0.05)
    assert (attributes["keel.prompt.name"], attributes["keel.prompt.label"]) == (name, "production")
    assert attributes["keel.prompt.version"] == f"{name}@1"

    missing = client.post(
        "/v1/chat/completions",
        headers=keys.header(keys.app),
        json={"prompt": {"name": name, "variables": {"shop": "Larkspur"}}},
    )
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "invalid_prompt_variables"
    assert (
        "'word'" in missing.json()["error"]["message"]
        and missing.json()["error"]["param"] == "prompt.variables.word"
    )
    wrong = client.post(
        "/v1/chat/completions",
        headers=keys.header(keys.app),
        json={"prompt": {"name": name, "variables": {"shop": "Larkspur", "word": 7}}},
    )
    assert wrong.status_code == 400 and "'word'" in wrong.json()["error"]["message"]
    unknown = client.post(
        "/v1/chat/completions", headers=keys.header(keys.app), json={"prompt": {"name": "no-such-prompt"}}
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "prompt_not_found"


def test_rollback_changes_what_the_next_request_gets(
    client: TestClient, keys: Keys, runtime: Runtime
) -> None:
    name = unique("repeat")
    push(client, keys.app, name)
    push(
        client,
        keys.app,
        name,
        messages=[{"role": "user", "content": "Which colour is a {{ word }} at {{ shop }} usually?"}],
    )
    move(client, keys.admin, name, "production", 1)
    move(client, keys.admin, name, "production", 2, "new wording")
    body = {"prompt": {"name": name, "variables": {"shop": "Larkspur", "word": "wheel"}}}
    assert client.post("/v1/chat/completions", headers=keys.header(keys.app), json=body).status_code == 200
    back = client.post(
        f"/v1/prompts/{name}/labels/production/rollback",
        headers=keys.header(keys.admin),
        json={"reason": "worse answers"},
    )
    assert back.status_code == 200 and (back.json()["from_version"], back.json()["to_version"]) == (2, 1)
    assert client.post("/v1/chat/completions", headers=keys.header(keys.app), json=body).status_code == 200
    records = usage_of(runtime, f"{name}@")
    for _ in range(100):
        if len(records) >= 2:
            break
        time.sleep(0.05)
        records = usage_of(runtime, f"{name}@")
    assert [r.prompt_version for r in records] == [f"{name}@2", f"{name}@1"]
    history = client.get(f"/v1/prompts/{name}/history?label=production", headers=keys.header(keys.app)).json()
    assert [(m["kind"], m["to_version"], m["reason"]) for m in history["data"]] == [
        ("rollback", 1, "worse answers"),
        ("move", 2, "new wording"),
        ("move", 1, ""),
    ]


def test_another_tenant_sees_none_of_the_prompts(client: TestClient, keys: Keys, runtime: Runtime) -> None:
    name = unique("repeat")
    push(client, keys.app, name)
    stranger = runtime.keys.create("elsewhere", Role.ADMIN).secret
    theirs = {"Authorization": f"Bearer {stranger}"}
    assert client.get(f"/v1/prompts/{name}?version=1", headers=theirs).status_code == 404
    assert name not in [p["name"] for p in client.get("/v1/prompts", headers=theirs).json()["data"]]
    assert move(client, stranger, name, "staging", 1).status_code == 404
    body = {"prompt": {"name": name, "version": 1, "variables": {"shop": "x", "word": "y"}}}
    assert client.post("/v1/chat/completions", headers=theirs, json=body).status_code == 404


def test_the_copilots_prompt_is_seeded_and_follows_its_label(client: TestClient, runtime: Runtime) -> None:
    """The copilot's prompt source as the runtime wires it (the pipeline's use of it, a reply's model call
    carrying the version, is tests/unit/prompts/test_copilot_prompt.py): seeded on first use, then
    whatever `production` points at, changed and rolled back over the API."""
    admin = {"Authorization": f"Bearer {runtime.keys.create('prompt-copilot', Role.ADMIN).secret}"}
    source = runtime.prompts.copilot
    variables = reply_variables("Larkspur Cycles", "How long does delivery take?", [], None, [], [])

    def rendered() -> str:
        prompt = source.render("prompt-copilot", variables, unit="C-1", model="keel-local", max_tokens=200)
        assert prompt.use is not None and prompt.use.label == "production"
        return prompt.tag

    assert client.get("/v1/prompts/support-reply/summary", headers=admin).status_code == 404
    assert rendered() == "support-reply@1"
    summary = client.get("/v1/prompts/support-reply/summary", headers=admin).json()
    assert summary["labels"] == {"latest": 1, "production": 1}
    shipped = client.get("/v1/prompts/support-reply?version=1", headers=admin).json()
    assert shipped["author"] == "keel" and shipped["spec"]["output_schema"]["required"] == [
        "reply",
        "sources",
    ]

    changed = {**shipped["spec"], "params": {"temperature": 0.0}}
    pushed = client.post(
        "/v1/prompts",
        headers=admin,
        json={**changed, "name": "support-reply", "message": "colder", "label": "production"},
    )
    assert pushed.status_code == 201 and pushed.json()["label_move"]["to_version"] == 2
    assert rendered() == "support-reply@2"
    back = client.post(
        "/v1/prompts/support-reply/labels/production/rollback",
        headers=admin,
        json={"reason": "back to shipped"},
    )
    assert back.json()["to_version"] == 1
    assert rendered() == "support-reply@1"


def keel(data_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KEEL, "prompts", *args, "--tenant", "shop"],
        env={**keel_env(data_dir), **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_cli_syncs_a_folder_moves_labels_and_rolls_back(
    tmp_path: Path, live_tier_env: dict[str, str]
) -> None:
    folder = tmp_path / "prompts"
    folder.mkdir()
    greeting = folder / "greeting.yaml"
    greeting.write_text(
        "messages:\n  - role: user\n    content: Hello {{ name }}\nvariables:\n"
        "  type: object\n  required: [name]\n  properties: {name: {type: string}}\n"
    )
    data = tmp_path / "data"
    first = keel(data, live_tier_env, "sync", str(folder), "--label", "staging", "-m", "PR 1")
    assert first.returncode == 0, first.stderr
    assert "greeting.yaml" in first.stdout and "created, staging - → 1" in first.stdout
    unchanged = keel(data, live_tier_env, "sync", str(folder), "--label", "staging")
    assert "0 new versions, 1 unchanged" in unchanged.stdout

    greeting.write_text(greeting.read_text().replace("Hello", "Good morning"))
    second = keel(data, live_tier_env, "sync", str(folder), "--label", "staging", "-m", "PR 2")
    assert "created, staging 1 → 2" in second.stdout
    assert keel(data, live_tier_env, "label", "greeting", "production", "2", "-r", "ship").returncode == 0
    shown = keel(data, live_tier_env, "show", "greeting", "--yaml")
    assert "Good morning {{ name }}" in shown.stdout and shown.stdout.startswith("name: greeting")

    back = keel(data, live_tier_env, "rollback", "greeting", "staging", "-r", "too formal")
    assert back.returncode == 0 and "greeting:staging 2 → 1 (rollback)" in back.stdout
    history = keel(data, live_tier_env, "history", "greeting", "--label", "staging")
    rows = [line for line in history.stdout.splitlines() if "staging" in line]
    assert "rollback" in rows[0] and "too formal" in rows[0] and "PR 2" in rows[1]
    diff = keel(data, live_tier_env, "diff", "greeting", "1", "2")
    assert '-      "content": "Hello {{ name }}"' in diff.stdout
    missing = keel(data, live_tier_env, "rollback", "greeting", "production")
    assert missing.returncode == 1 and "no earlier version" in missing.stderr

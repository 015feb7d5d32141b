"""Evaluation end to end on the demo knowledge base with the real local models: datasets over HTTP
and from the review queue, queued runs with progress, comparison and the gate, and `keel eval`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from keel.cli import app
from keel.evals.drift_windows import DriftObservations, Window
from keel.keys import Role
from keel.observe.dashboard import overview, recent_traces
from keel.runtime import Runtime
from tests.integration.conftest import Keys, demo_documents

QUESTIONS = [
    ("How long does a refund take?", ["help-center/returns-and-refunds.md"], "answerable"),
    ("What does motor error code E3 mean?", ["help-center/motor-error-codes.md"], "answerable"),
    (
        "How should I store the battery over winter?",
        ["help-center/battery-care-and-charging.md"],
        "answerable",
    ),
    ("Do you ship to other countries?", ["help-center/shipping-and-delivery.md"], "answerable"),
    ("What does the warranty cover?", ["help-center/warranty.md"], "answerable"),
    ("How do I turn on two-factor sign-in?", ["help-center/account-security.md"], "answerable"),
]


@pytest.fixture(scope="module")
def demo(runtime: Runtime, client: TestClient) -> Iterator[None]:
    with demo_documents(runtime):
        yield


def items(questions: list[tuple[str, list[str], str]]) -> list[dict[str, Any]]:
    return [
        {
            "input": q,
            "expected_sources": sources,
            "answerability": answerability,
            "tags": [sources[0].split("/")[1]],
        }
        for q, sources, answerability in questions
    ]


def wait_for(client: TestClient, run_id: str, headers: dict[str, str]) -> dict[str, Any]:
    # Up to 15 minutes: the run shares one queue consumer and two cores with the rest of the session.
    for _ in range(3600):
        run: dict[str, Any] = client.get(f"/v1/evals/runs/{run_id}", headers=headers).json()
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.25)
    raise AssertionError(f"run {run_id} did not finish: {run}")


def test_datasets_runs_compare_and_gate_over_http(client: TestClient, keys: Keys, demo: None) -> None:
    app_key, viewer = keys.header(keys.app), keys.header(keys.viewer)
    created = client.post(
        "/v1/evals/datasets", headers=app_key, json={"name": "help", "items": items(QUESTIONS)}
    )
    assert created.status_code == 201, created.text
    assert (created.json()["version"], created.json()["item_count"]) == (1, len(QUESTIONS))
    same = client.post(
        "/v1/evals/datasets", headers=app_key, json={"name": "help", "items": items(QUESTIONS)}
    )
    assert same.json()["version"] == 1
    assert client.post("/v1/evals/datasets", headers=app_key, json={"name": "x"}).status_code == 422
    csv = client.get("/v1/evals/datasets/help/items?format=csv", headers=viewer)
    assert csv.status_code == 200 and csv.text.startswith("key,input,")

    assert client.post("/v1/evals/runs", headers=viewer, json={"dataset": "help"}).status_code == 403
    queued = client.post("/v1/evals/runs", headers=app_key, json={"dataset": "help", "target": "retrieval"})
    assert queued.status_code == 202, queued.text
    baseline = wait_for(client, queued.json()["id"], viewer)
    assert baseline["status"] == "succeeded" and baseline["progress"] == 1.0
    recall = baseline["summary"]["metrics"]["recall@5"]
    assert 0.0 <= recall["low"] <= recall["value"] <= recall["high"] <= 1.0 and recall["n"] == len(QUESTIONS)
    assert baseline["config"]["retrieval"]["candidates"] == 100
    results = client.get(f"/v1/evals/runs/{baseline['id']}/results", headers=viewer).json()["data"]
    assert all(r["trace_id"] and r["status"] == "done" for r in results)

    worse = client.post(
        "/v1/evals/runs",
        headers=app_key,
        json={
            "dataset": "help",
            "target": "retrieval",
            "config": {"knowledge": {"retrieval": {"candidates": 1}}, "evals": {"retrieval_k": 1}},
        },
    )
    candidate = wait_for(client, worse.json()["id"], viewer)
    assert candidate["config"]["retrieval"]["candidates"] == 1
    comparison = client.get(
        f"/v1/evals/compare?baseline={baseline['id']}&candidate={candidate['id']}", headers=viewer
    ).json()
    by_metric = {m["metric"]: m for m in comparison["metrics"]}
    assert by_metric["recall@5"]["difference"] <= 0 and comparison["paired_items"] == len(QUESTIONS)
    itself = client.post(
        "/v1/evals/gate",
        headers=viewer,
        json={"baseline": baseline["id"], "candidate": baseline["id"], "max_drop": {"recall@5": 0.0}},
    ).json()
    assert itself["passed"] is True
    unknown = client.post(
        "/v1/evals/gate",
        headers=viewer,
        json={"baseline": baseline["id"], "candidate": baseline["id"], "max_drop": {"nope": 1}},
    )
    assert unknown.status_code == 400

    page = client.get(f"/ui/evals/runs/{baseline['id']}", follow_redirects=False)
    assert page.status_code == 303  # the dashboard needs a session

    stranger = {
        "Authorization": f"Bearer {client.app.state.runtime.keys.create('stranger', Role.ADMIN).secret}"
    }  # type: ignore[attr-defined]
    assert client.get(f"/v1/evals/runs/{baseline['id']}", headers=stranger).status_code == 404
    assert client.get("/v1/evals/datasets/help", headers=stranger).status_code == 404


def test_copilot_run_with_trials_keeps_a_trace_per_trial(client: TestClient, keys: Keys, demo: None) -> None:
    app_key = keys.header(keys.app)
    client.post("/v1/evals/datasets", headers=app_key, json={"name": "one", "items": items(QUESTIONS[:1])})
    queued = client.post("/v1/evals/runs", headers=app_key, json={"dataset": "one", "trials": 2}).json()
    run = wait_for(client, queued["id"], app_key)
    assert run["status"] == "succeeded" and run["done"] == 2
    metrics = run["summary"]["metrics"]
    assert len(metrics["latency_p50"]["per_trial"]) == 2
    assert {"answerability", "escalated", "recall@5"} <= set(metrics)
    results = client.get(f"/v1/evals/runs/{run['id']}/results", headers=app_key).json()["data"]
    assert all(r["output"]["status"] in ("answered", "escalated", "needs_clarification") for r in results)
    # Each trial is its own trace.
    assert len({r["trace_id"] for r in results}) == 2
    assert all(r["latency_ms"] > 50 for r in results if r["output"]["status"] == "answered")


def test_a_copilot_run_records_the_prompt_version_its_label_serves(
    client: TestClient, keys: Keys, runtime: Runtime, demo: None
) -> None:
    admin, app_key = keys.header(keys.admin), keys.header(keys.app)
    served = runtime.copilot.served_prompt("acme")  # seeds the shipped prompt when no test has yet
    assert served is not None and served.label == "production"
    current = client.get(f"/v1/prompts/support-reply?version={served.version}", headers=admin).json()
    changed = {**current["spec"], "params": {**current["spec"]["params"], "temperature": 0.05}}
    pushed = client.post(
        "/v1/prompts",
        headers=admin,
        json={**changed, "name": "support-reply", "message": "a little colder", "label": "production"},
    )
    assert pushed.status_code == 201, pushed.text
    version = pushed.json()["version"]
    assert version != served.version
    try:
        client.post(
            "/v1/evals/datasets", headers=app_key, json={"name": "served", "items": items(QUESTIONS[:1])}
        )
        queued = client.post("/v1/evals/runs", headers=app_key, json={"dataset": "served"}).json()
        run = wait_for(client, queued["id"], app_key)
        expected = {"name": "support-reply", "version": version, "label": "production"}
        assert run["config"]["prompt"] == expected
        results = client.get(f"/v1/evals/runs/{run['id']}/results", headers=app_key).json()["data"]
        # Each item's own model calls, as the gateway recorded them (an item the copilot answered
        # without a model call, a clarification, has none).
        assert all(r["output"]["prompts"] in ([], [expected]) for r in results)
        assert f"support-reply@{version}" in run["summary"]["prompt_versions"] or not any(
            r["output"]["prompts"] for r in results
        )
    finally:
        client.post(
            "/v1/prompts/support-reply/labels/production/rollback",
            headers=admin,
            json={"reason": "back after the evaluation test"},
        )


def test_pairwise_judging_over_http(client: TestClient, keys: Keys, runtime: Runtime, demo: None) -> None:
    app_key, viewer = keys.header(keys.app), keys.header(keys.viewer)
    item = {"key": "refund", "input": QUESTIONS[0][0], "reference_answer": "Refunds take 5 to 10 days."}
    client.post("/v1/evals/datasets", headers=app_key, json={"name": "judged", "items": [item]})

    def chat_run() -> str:
        queued = client.post("/v1/evals/runs", headers=app_key, json={"dataset": "judged", "target": "chat"})
        return str(wait_for(client, queued.json()["id"], app_key)["id"])

    baseline, candidate = chat_run(), chat_run()
    body = {"baseline": baseline, "candidate": candidate, "judge": runtime.settings.chat.alias}
    # Judging spends model calls: the roles that may start runs, not viewers.
    assert client.post("/v1/evals/compare", headers=viewer, json=body).status_code == 403
    unknown = client.post("/v1/evals/compare", headers=app_key, json={**body, "judge": "no-such-model"})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "judge"
    assert client.post("/v1/evals/compare", headers=app_key, json={**body, "judge": ""}).status_code == 422

    judged = client.post("/v1/evals/compare", headers=app_key, json=body)
    assert judged.status_code == 200, judged.text
    found = judged.json()
    assert (found["baseline_run"], found["candidate_run"]) == (baseline, candidate) and found["metrics"]
    pairwise = found["pairwise"]
    assert (
        pairwise["candidate_wins"] + pairwise["baseline_wins"] + pairwise["ties"] + pairwise["unjudged"] == 1
    )
    assert set(pairwise["preference"]) == {"value", "low", "high", "n"}
    plain = client.post("/v1/evals/compare", headers=app_key, json={**body, "judge": None})
    assert plain.status_code == 200 and "pairwise" not in plain.json()


def test_evaluation_replies_are_listed_only_when_asked_for(
    client: TestClient, keys: Keys, runtime: Runtime, demo: None
) -> None:
    app_key = keys.header(keys.app)
    database = runtime.database
    day = Window(datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(hours=1))

    def counted() -> tuple[int, int]:
        statuses = DriftObservations(database, "").categories("acme", "status", day, 100_000)
        return overview(database, "acme").replies, len(statuses)

    before = counted()
    live = client.post("/v1/support/replies", headers=app_key, json={"message": "Do you ship abroad?"})
    assert live.status_code == 200
    client.post("/v1/evals/datasets", headers=app_key, json={"name": "hidden", "items": items(QUESTIONS[:1])})
    queued = client.post("/v1/evals/runs", headers=app_key, json={"dataset": "hidden"}).json()
    run = wait_for(client, queued["id"], app_key)
    assert run["status"] == "succeeded"
    (result,) = client.get(f"/v1/evals/runs/{run['id']}/results", headers=app_key).json()["data"]
    # The live reply counts on the overview and in the drift windows; the evaluated one does not.
    assert counted() == (before[0] + 1, before[1] + 1)
    assert runtime.tracing.flush()  # spans are exported in batches
    listed = {t.trace_id for t in recent_traces(database, "acme", limit=1000)}
    evaluated = {t.trace_id for t in recent_traces(database, "acme", channel="eval", limit=1000)}
    assert live.json()["trace_id"] in listed and live.json()["trace_id"] not in evaluated
    assert result["trace_id"] in evaluated and result["trace_id"] not in listed


def test_a_dataset_from_review_decisions_and_traces(
    client: TestClient, keys: Keys, runtime: Runtime, demo: None
) -> None:
    app_key, reviewer = keys.header(keys.app), keys.header(keys.reviewer)
    reply = client.post(
        "/v1/support/replies", headers=app_key, json={"message": "Can I talk to a human please?"}
    ).json()
    review_id = reply["review_id"]
    assert review_id
    client.post(f"/v1/reviews/{review_id}/claim", headers=reviewer)
    final = "A colleague will call you today."
    decided = client.post(
        f"/v1/reviews/{review_id}/decision", headers=reviewer, json={"action": "edit", "final_reply": final}
    )
    assert decided.status_code == 200
    made = client.post(
        "/v1/evals/datasets", headers=reviewer, json={"name": "reviewed", "from_reviews": True}
    )
    assert made.status_code == 201, made.text
    listed = client.get("/v1/evals/datasets/reviewed/items", headers=reviewer).json()["data"]
    assert {"key": review_id, "reference": final} in [
        {"key": i["key"], "reference": i["reference_answer"]} for i in listed
    ]
    traced = client.post(
        "/v1/evals/datasets", headers=app_key, json={"name": "traced", "from_traces": [reply["trace_id"]]}
    )
    assert traced.status_code == 201
    (item,) = client.get("/v1/evals/datasets/traced/items", headers=app_key).json()["data"]
    assert (item["input"], item["reference_answer"]) == ("Can I talk to a human please?", final)
    missing = client.post(
        "/v1/evals/datasets", headers=app_key, json={"name": "t", "from_traces": ["0" * 32]}
    )
    assert missing.status_code == 404


def test_the_cli_imports_runs_compares_and_gates(
    runtime: Runtime, demo: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = runtime.settings
    monkeypatch.setenv("KEEL_DATA_DIR", str(settings.data_dir))
    for name, value in (("KEEL_DATABASE_URL", settings.database_url), ("KEEL_REDIS_URL", settings.redis_url)):
        if value:
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("KEEL_LOG_JSON", "false")
    cli = CliRunner()
    source = tmp_path / "faq.jsonl"
    source.write_text("".join(json.dumps(i) + "\n" for i in items(QUESTIONS)))
    imported = cli.invoke(app, ["eval", "dataset", "import", "faq", str(source), "--tenant", "acme"])
    assert imported.exit_code == 0 and "version 1, 6 items" in imported.output, imported.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "ok"}\n{"input": ""}\n')
    refused = cli.invoke(app, ["eval", "dataset", "import", "faq", str(bad), "--tenant", "acme"])
    assert refused.exit_code == 1 and "line 2" in refused.output
    exported = cli.invoke(app, ["eval", "dataset", "export", "faq", "--tenant", "acme", "--format", "csv"])
    assert exported.exit_code == 0 and exported.output.count("help-center/") == len(QUESTIONS)

    baseline = cli.invoke(app, ["eval", "run", "faq", "--target", "retrieval", "--tenant", "acme"])
    assert baseline.exit_code == 0, baseline.output
    baseline_id = baseline.output.strip().splitlines()[-1]
    assert baseline_id.startswith("run_") and "recall@5" in baseline.output
    config = tmp_path / "worse.toml"
    config.write_text("[knowledge.retrieval]\ncandidates = 1\n[evals]\nretrieval_k = 1\n")
    worse = cli.invoke(
        app, ["eval", "run", "faq", "--target", "retrieval", "--config", str(config), "--tenant", "acme"]
    )
    worse_id = worse.output.strip().splitlines()[-1]

    compared = cli.invoke(app, ["eval", "compare", baseline_id, worse_id, "--tenant", "acme", "--json"])
    assert compared.exit_code == 0 and json.loads(compared.output)["candidate_run"] == worse_id
    passes = cli.invoke(
        app,
        [
            "eval",
            "gate",
            "--baseline",
            baseline_id,
            "--candidate",
            baseline_id,
            "--max-drop",
            "recall@5=0",
            "--tenant",
            "acme",
        ],
    )
    assert passes.exit_code == 0 and "gate: passed" in passes.output
    usage = cli.invoke(
        app,
        [
            "eval",
            "gate",
            "--baseline",
            baseline_id,
            "--candidate",
            worse_id,
            "--max-drop",
            "nope=1",
            "--tenant",
            "acme",
        ],
    )
    assert usage.exit_code == 2
    report = cli.invoke(
        app, ["eval", "report", baseline_id, "--tenant", "acme", "--output", str(tmp_path / "r.html")]
    )
    assert report.exit_code == 0 and "recall@5" in (tmp_path / "r.html").read_text()

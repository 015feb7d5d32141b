"""The `keel` commands that need the models, pointed at a running server (KEEL_URL + KEEL_API_KEY), use
it instead of loading the models themselves; errors are one line with an exit code that says so."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.live import KEEL, create_key, free_port, keel_env, start_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data_dir = tmp_path_factory.mktemp("served")
    key = create_key(data_dir, "shop", "admin")
    port = free_port()
    process = start_server(data_dir, port)
    try:
        # Model paths that cannot load: a command that tried to load a model itself would fail.
        yield {
            "KEEL_URL": f"http://127.0.0.1:{port}",
            "KEEL_API_KEY": key,
            "KEEL_CHAT__MODEL_PATH": "/nonexistent/model.gguf",
            "KEEL_EMBEDDING__MODEL_PATH": "/nonexistent/embedding-model",
        }
    finally:
        process.terminate()
        process.wait(timeout=60)


def keel(data_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KEEL, *args],
        env={**keel_env(data_dir), "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ingest_search_and_ask_go_through_the_server(server: dict[str, str], tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "tyres.md").write_text("# Tyres\n\n## Pressure\n\nPump the tyres to 3.5 bar every two weeks.\n")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    client_dir = tmp_path / "client"  # the command's own data dir stays empty: nothing local is used

    ingested = keel(client_dir, server, "ingest", str(docs))
    assert ingested.returncode == 1, ingested.stderr  # one of two documents failed
    assert "partial" in ingested.stdout and "created=1" in ingested.stdout and "failed=1" in ingested.stdout
    assert "broken.pdf" in ingested.stderr

    found = keel(client_dir, server, "search", "how much air pressure for tyres", "-k", "1")
    assert found.returncode == 0, found.stderr
    assert "tyres.md" in found.stdout and "Tyres > Pressure" in found.stdout

    asked = keel(client_dir, server, "ask", "How often should I pump my tyres?")
    assert asked.returncode == 0, asked.stderr
    assert "status:" in asked.stderr and "Traceback" not in asked.stderr

    chatted = keel(client_dir, server, "chat", "Say hello", "--max-tokens", "8")
    assert chatted.returncode == 0, chatted.stderr
    assert chatted.stdout.strip()
    assert "completion tokens" in chatted.stderr and server["KEEL_URL"] in chatted.stderr

    # --kb: the knowledge base's passages go to the model, and the answer's sources are listed.
    grounded = keel(client_dir, server, "chat", "--kb", "-k", "1", "--max-tokens", "16", "Tyre pressure?")
    assert grounded.returncode == 0, grounded.stderr
    assert grounded.stdout.strip() and "[1] " in grounded.stderr and "tyres.md\n" in grounded.stderr
    assert not client_dir.exists() or not (client_dir / "keel.db").exists()


def finished_chat_run(server: dict[str, str], dataset: str) -> str:
    """A `chat` target run on the server (the model answers each item on its own), once it has finished."""
    headers = {"Authorization": f"Bearer {server['KEEL_API_KEY']}"}
    with httpx.Client(base_url=server["KEEL_URL"], headers=headers, timeout=60) as client:
        run_id = str(client.post("/v1/evals/runs", json={"dataset": dataset, "target": "chat"}).json()["id"])
        for _ in range(2400):
            if client.get(f"/v1/evals/runs/{run_id}").json()["status"] not in ("queued", "running"):
                return run_id
            time.sleep(0.25)
    raise AssertionError(f"run {run_id} did not finish")


def test_eval_compare_judges_through_the_server(server: dict[str, str], tmp_path: Path) -> None:
    headers = {"Authorization": f"Bearer {server['KEEL_API_KEY']}"}
    item = {"key": "pressure", "input": "Say hello to a cyclist.", "reference_answer": "Hello, cyclist!"}
    created = httpx.post(
        f"{server['KEEL_URL']}/v1/evals/datasets",
        headers=headers,
        json={"name": "greetings", "items": [item]},
        timeout=60,
    )
    assert created.status_code == 201, created.text
    baseline, candidate = finished_chat_run(server, "greetings"), finished_chat_run(server, "greetings")

    judged = keel(tmp_path, server, "eval", "compare", baseline, candidate, "--judge", "keel-local", "--json")
    assert judged.returncode == 0, judged.stderr
    found = json.loads(judged.stdout)
    assert (found["baseline_run"], found["candidate_run"]) == (baseline, candidate)
    pairwise = found["pairwise"]
    assert (
        pairwise["candidate_wins"] + pairwise["baseline_wins"] + pairwise["ties"] + pairwise["unjudged"] == 1
    )
    table = keel(tmp_path, server, "eval", "compare", baseline, candidate, "--judge", "keel-local")
    assert table.returncode == 0 and "judge keel-local:" in table.stdout, table.stderr
    unknown = keel(tmp_path, server, "eval", "compare", baseline, candidate, "--judge", "no-such-model")
    assert unknown.returncode == 1 and "no-such-model" in unknown.stderr and "Traceback" not in unknown.stderr
    assert not (tmp_path / "keel.db").exists(), "nothing was read or judged in the command's own process"


def test_server_refusals_are_one_line(server: dict[str, str], tmp_path: Path) -> None:
    refused = keel(tmp_path, server | {"KEEL_API_KEY": "keel_not_a_real_key"}, "search", "tyres")
    assert refused.returncode == 1
    assert "401" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["search", "tyres", "--mode", "sql"], 2),
        (["ask", ""], 2),
        (["chat", "  "], 2),
        (["keys", "revoke", "keel_nothing"], 1),
    ],
)
def test_bad_input_is_an_error_line_not_a_traceback(tmp_path: Path, args: list[str], code: int) -> None:
    done = keel(tmp_path, {}, *args)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    assert "error" in done.stderr.lower()

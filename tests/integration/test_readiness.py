"""`/readyz` means the copilot can answer: asked the moment a fresh server on freshly loaded demo data turns
ready, the README's questions are answered, not declined (the classifiers are fitted by then)."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.integration.live import KEEL, create_key, free_port, keel_env, start_server

pytestmark = pytest.mark.integration


def test_the_first_questions_after_ready_are_answered(tmp_path: pytest.TempPathFactory) -> None:
    data_dir = tmp_path  # type: ignore[assignment]
    subprocess.run([*KEEL, "demo"], env=keel_env(data_dir), check=True, capture_output=True, timeout=600)
    key = create_key(data_dir, "demo", "app")
    port = free_port()
    process = start_server(data_dir, port)  # returns at the first 200 from /readyz
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/readyz").json()["checks"]["copilot"] is True
        headers = {"Authorization": f"Bearer {key}"}

        def ask(message: str, **extra: str) -> dict[str, object]:
            response = httpx.post(
                f"{base}/v1/support/replies", headers=headers, json={"message": message, **extra}, timeout=300
            )
            assert response.status_code == 200, response.text
            return dict(response.json())

        delivery = ask("How long does delivery to Germany take?")
        assert delivery["status"] == "answered", delivery
        order = ask("Where is my order?", customer_id="C-1002")
        assert order["status"] == "answered" and "LC-50877" in str(order["reply"]), order
    finally:
        process.terminate()
        process.wait(timeout=120)

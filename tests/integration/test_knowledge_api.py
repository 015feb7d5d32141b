"""The knowledge base over HTTP: upload as jobs, incremental re-ingest, delete, ACL and tenant isolation,
bad files, search modes with per-stage scores, and context packing — real models, real SQLite."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from keel.keys import Role
from keel.runtime import Runtime
from keel.store.models import UsageRecord
from tests.integration.conftest import Keys
from tests.unit.knowledge.samples import make_pdf

RETURNS = "Returns are accepted within 30 days of delivery. Refunds reach the card within 5 working days."
CHARGING = "A full charge of the 540 Wh battery takes about 4.5 hours with the standard charger."
SECRET_PLAN = "The 2027 pricing plan raises the Care subscription to 14 euros per month."


def wait_for_job(client: TestClient, key: str, job: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = client.get(f"/v1/jobs/{job['id']}", headers={"Authorization": f"Bearer {key}"}).json()
    return job


def upload(client: TestClient, key: str, documents: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post(
        "/v1/documents", headers={"Authorization": f"Bearer {key}"}, json={"documents": documents}
    )
    assert response.status_code == 202, response.text
    return wait_for_job(client, key, response.json())


def search(client: TestClient, key: str, query: str, **options: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/search", headers={"Authorization": f"Bearer {key}"}, json={"query": query, **options}
    )
    assert response.status_code == 200, response.text
    return response.json()


def sources(result: dict[str, Any]) -> list[str]:
    return [r["source"] for r in result["results"]]


@pytest.fixture(scope="module")
def kb(client: TestClient, keys: Keys) -> dict[str, Any]:
    job = upload(
        client,
        keys.app,
        [
            {"source": "kb/returns.md", "text": f"# Returns\n\n## Window\n\n{RETURNS}"},
            {"source": "kb/charging.txt", "text": CHARGING, "metadata": {"product": "battery"}},
            {"source": "kb/plan-2027.txt", "text": SECRET_PLAN, "acl": ["finance"]},
        ],
    )
    assert job["status"] == "succeeded", job
    return {item["source"]: item["document_id"] for item in job["items"]}


@pytest.mark.parametrize("mode", ["keyword", "vector", "hybrid"])
def test_each_mode_finds_the_right_document(
    client: TestClient, keys: Keys, kb: dict[str, Any], mode: str
) -> None:
    result = search(client, keys.app, "how many hours to charge the battery", mode=mode, k=3)
    assert sources(result)[0] == "kb/charging.txt"
    top = result["results"][0]
    expected_stages = {"keyword", "vector"} if mode == "hybrid" else {mode}
    assert set(top["scores"]) == expected_stages
    assert top["scores"][next(iter(expected_stages))]["rank"] == 1


def test_results_carry_heading_path_and_metadata(client: TestClient, keys: Keys, kb: dict[str, Any]) -> None:
    returns = search(client, keys.app, "refund after returning", k=1)["results"][0]
    assert returns["heading_path"] == "Returns > Window"
    assert returns["doc_type"] == "markdown"
    charging = search(client, keys.app, "battery charge time", k=1)["results"][0]
    assert charging["doc_type"] == "text"


def test_acl_is_enforced_inside_the_search(client: TestClient, keys: Keys, kb: dict[str, Any]) -> None:
    query = "pricing plan for 2027 subscription"
    for mode in ("keyword", "vector", "hybrid"):
        assert "kb/plan-2027.txt" not in sources(search(client, keys.app, query, mode=mode))
        assert "kb/plan-2027.txt" not in sources(
            search(client, keys.app, query, mode=mode, acl_groups=["support"])
        )
        allowed = search(client, keys.app, query, mode=mode, acl_groups=["finance"])
        assert sources(allowed)[0] == "kb/plan-2027.txt"
    # An administrator of the tenant sees every group unless it narrows itself.
    assert sources(search(client, keys.admin, query))[0] == "kb/plan-2027.txt"


def test_other_tenants_see_nothing(client: TestClient, runtime: Runtime, kb: dict[str, Any]) -> None:
    other = runtime.keys.create("globex", Role.ADMIN).secret
    headers = {"Authorization": f"Bearer {other}"}
    assert search(client, other, "battery charge", mode="hybrid")["results"] == []
    document_id = kb["kb/charging.txt"]
    assert client.get(f"/v1/documents/{document_id}", headers=headers).status_code == 404
    assert client.delete(f"/v1/documents/{document_id}", headers=headers).status_code == 404
    assert client.get("/v1/documents", headers=headers).json()["total"] == 0


def test_filters(client: TestClient, keys: Keys, kb: dict[str, Any]) -> None:
    only_markdown = search(client, keys.app, "battery charge returns", filters={"doc_types": ["markdown"]})
    assert set(sources(only_markdown)) == {"kb/returns.md"}
    by_prefix = search(client, keys.app, "battery", filters={"source_prefix": "kb/charg"})
    assert set(sources(by_prefix)) == {"kb/charging.txt"}


def test_reingest_unchanged_is_a_no_op_and_changed_replaces(
    client: TestClient, keys: Keys, runtime: Runtime
) -> None:
    first = upload(
        client, keys.app, [{"source": "kb/warranty.txt", "text": "The frame has a 5 year warranty."}]
    )
    again = upload(
        client, keys.app, [{"source": "kb/warranty.txt", "text": "The frame has a 5 year warranty."}]
    )
    assert again["items"][0]["outcome"] == "unchanged"
    assert again["items"][0]["document_id"] == first["items"][0]["document_id"]
    changed = upload(
        client, keys.app, [{"source": "kb/warranty.txt", "text": "The frame has a lifetime warranty."}]
    )
    assert changed["items"][0]["outcome"] == "updated"
    texts = [r["text"] for r in search(client, keys.app, "frame warranty years", mode="keyword")["results"]]
    assert "The frame has a lifetime warranty." in texts
    assert not any("5 year" in t for t in texts)


def test_delete_removes_chunks_from_every_index(client: TestClient, keys: Keys) -> None:
    job = upload(
        client, keys.app, [{"source": "kb/bells.txt", "text": "Every bike ships with a brass bell."}]
    )
    document_id = job["items"][0]["document_id"]
    assert sources(search(client, keys.app, "brass bell", mode="keyword"))[0] == "kb/bells.txt"
    headers = keys.header(keys.app)
    assert client.delete(f"/v1/documents/{document_id}", headers=headers).status_code == 204
    for mode in ("keyword", "vector"):
        assert "kb/bells.txt" not in sources(search(client, keys.app, "brass bell", mode=mode))
    assert client.get(f"/v1/documents/{document_id}", headers=headers).status_code == 404
    assert client.delete(f"/v1/documents/{document_id}", headers=headers).status_code == 404


def test_multipart_batch_with_bad_files_fails_only_those(client: TestClient, keys: Keys) -> None:
    files = [
        ("files", ("guide.md", b"# Guide\n\n## Brakes\n\nDisc brakes need bedding in.", "text/markdown")),
        (
            "files",
            (
                "page.html",
                b"<html><body><main><h1>Lights</h1><p>Lights run from the main battery.</p>"
                b"</main></body></html>",
                "text/html",
            ),
        ),
        (
            "files",
            (
                "manual.pdf",
                make_pdf([["Page one: the kickstand."], ["Page two: the rack holds 25 kg."]]),
                "application/pdf",
            ),
        ),
        ("files", ("broken.pdf", b"%PDF-1.7\n1 0 obj <<", "application/pdf")),
        ("files", ("junk.txt", bytes(range(256)) * 8, "text/plain")),
        ("files", ("empty.md", b"", "text/markdown")),
        ("files", ("tool.exe", b"MZ\x90\x00", "application/octet-stream")),
    ]
    response = client.post("/v1/documents", headers=keys.header(keys.app), files=files)
    assert response.status_code == 202, response.text
    job = wait_for_job(client, keys.app, response.json())
    assert job["status"] == "partial"
    by_source = {item["source"]: item for item in job["items"]}
    assert {s for s, i in by_source.items() if i["status"] == "done"} == {
        "guide.md",
        "page.html",
        "manual.pdf",
    }
    for bad in ("broken.pdf", "junk.txt", "empty.md", "tool.exe"):
        assert by_source[bad]["status"] == "failed" and by_source[bad]["error"], bad
    rack = search(client, keys.app, "how much weight does the rack hold", k=1)["results"][0]
    assert rack["source"] == "manual.pdf" and rack["meta"]["page"] == 2


def test_oversized_upload_is_413_and_nothing_is_stored(
    client: TestClient, keys: Keys, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.ingestion, "max_document_bytes", 64)
    before = client.get("/v1/documents", headers=keys.header(keys.app)).json()["total"]
    response = client.post(
        "/v1/documents", headers=keys.header(keys.app), json={"source": "big.txt", "text": "x" * 65}
    )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "payload_too_large"
    assert client.get("/v1/documents", headers=keys.header(keys.app)).json()["total"] == before


@pytest.mark.parametrize(
    "body",
    [{}, {"source": "a.txt"}, {"documents": []}, {"source": "", "text": "x"}, {"documents": [{"text": "x"}]}],
)
def test_malformed_uploads_are_400(client: TestClient, keys: Keys, body: dict[str, Any]) -> None:
    response = client.post("/v1/documents", headers=keys.header(keys.app), json=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_roles(client: TestClient, keys: Keys) -> None:
    viewer = keys.header(keys.viewer)
    assert (
        client.post("/v1/documents", headers=viewer, json={"source": "a.txt", "text": "x"}).status_code == 403
    )
    assert client.post("/v1/search", headers=viewer, json={"query": "x"}).status_code == 403
    assert client.get("/v1/documents", headers=viewer).status_code == 200
    assert client.post("/v1/search", json={"query": "x"}).status_code == 401


def test_packing_fits_the_budget(
    client: TestClient, keys: Keys, kb: dict[str, Any], runtime: Runtime
) -> None:
    result = search(client, keys.app, "battery charge returns refund", k=5, pack={"token_budget": 40})
    assert result["packed"]
    assert result["packed_tokens"] <= 40
    for passage in result["packed"]:
        assert runtime.chat_model.count_tokens(passage["text"]) == passage["tokens"]


def test_document_listing(client: TestClient, keys: Keys, kb: dict[str, Any]) -> None:
    listing = client.get("/v1/documents?doc_type=markdown", headers=keys.header(keys.app)).json()
    returns = next(d for d in listing["data"] if d["source"] == "kb/returns.md")
    assert returns["chunks"] == 1 and returns["title"] == "Returns"
    assert client.get("/v1/jobs/job_nothere", headers=keys.header(keys.app)).status_code == 404


def test_dashboard_lists_documents_with_their_chunks_and_jobs(
    client: TestClient, keys: Keys, kb: dict[str, Any]
) -> None:
    # A client of its own keeps the session cookie away from the other tests.
    viewer = TestClient(client.app)
    assert viewer.post("/ui/login", data={"api_key": keys.viewer}, follow_redirects=False).status_code == 303
    page = viewer.get("/ui/knowledge").text
    row = page.split("<td>kb/returns.md</td>", 1)[1].split("</tr>", 1)[0]
    assert "<td>Returns</td><td>markdown</td><td>1</td>" in row
    assert "<code>job_" in page and "<td>succeeded</td>" in page


def test_ingestion_and_search_embeddings_are_metered(client: TestClient, runtime: Runtime) -> None:
    key = runtime.keys.create("metered", Role.APP).secret
    document = {"source": "kb/lights.txt", "text": "Lights must be switched on after sunset."}

    def usage() -> list[tuple[str, str, str, int]]:
        with runtime.database.reading() as session:
            found = session.scalars(select(UsageRecord).where(UsageRecord.tenant == "metered"))
            return sorted((r.feature, r.alias, r.outcome, r.prompt_tokens) for r in found)

    upload(client, key, [document])
    ((feature, alias, outcome, tokens),) = usage()
    assert (feature, alias, outcome) == ("ingestion", runtime.settings.embedding.alias, "ok") and tokens > 5
    upload(client, key, [document])
    assert len(usage()) == 1, "an unchanged document reaches no model"
    search(client, key, "when do the lights go on?", mode="vector")
    assert [row[0] for row in usage()] == ["ingestion", "search"]

"""The authorisation matrix: every route declares the roles it allows, and each role gets exactly that.

Routes are enumerated from the app itself, so a new route that forgets its role check fails here."""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from keel.keys import Role
from keel.runtime import Runtime

# Routes open to everyone on purpose: probes and metrics.
PUBLIC = {"/healthz", "/readyz", "/metrics"}


def declared_roles(route: APIRoute) -> frozenset[str] | None:
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        roles = getattr(dependant.call, "allowed_roles", None)
        if roles is not None:
            return frozenset(str(r) for r in roles)
        pending.extend(dependant.dependencies)
    return None


def api_routes(client: TestClient) -> list[APIRoute]:
    """Every route of the app, those of included routers too (newer FastAPI keeps an included router
    as one entry of `app.routes`, its routes inside it)."""
    pending = list(client.app.routes)  # type: ignore[attr-defined]
    found = []
    while pending:
        route = pending.pop(0)
        if isinstance(route, APIRoute):
            found.append(route)
        else:
            pending.extend(getattr(getattr(route, "original_router", None), "routes", []))
    assert found, "no routes found: the app's routing changed shape"
    return found


def test_every_route_declares_its_roles(client: TestClient) -> None:
    missing = [
        f"{sorted(r.methods)} {r.path}"
        for r in api_routes(client)
        if r.path not in PUBLIC
        and r.path != "/ui/login"
        and r.path != "/ui/logout"
        and declared_roles(r) is None
    ]
    assert missing == [], f"routes without a role check: {missing}"


def call(client: TestClient, method: str, path: str, key: str | None) -> int:
    concrete = re.sub(r"\{[^}]+\}", "nothere", path)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body: dict[str, Any] = {}
    return client.request(method, concrete, headers=headers, json=body, follow_redirects=False).status_code


def test_each_role_gets_exactly_its_routes(client: TestClient, runtime: Runtime) -> None:
    keys = {role: runtime.keys.create("matrix", role).secret for role in Role}
    failures = []
    for route in api_routes(client):
        roles = declared_roles(route)
        if roles is None or route.path.startswith("/ui"):
            continue
        for method in route.methods - {"HEAD"}:
            if call(client, method, route.path, None) != 401:
                failures.append(f"{method} {route.path}: no key should be 401")
            for role, key in keys.items():
                status = call(client, method, route.path, key)
                if role.value in roles and status in (401, 403):
                    failures.append(f"{method} {route.path}: {role} is allowed but got {status}")
                if role.value not in roles and status != 403:
                    failures.append(f"{method} {route.path}: {role} is not allowed but got {status}")
    assert failures == []


def test_dashboard_pages_need_a_session(client: TestClient) -> None:
    for route in api_routes(client):
        if (
            route.path.startswith("/ui")
            and route.path not in ("/ui/login", "/ui/logout")
            and "GET" in route.methods
        ):
            response = client.get(re.sub(r"\{[^}]+\}", "nothere", route.path), follow_redirects=False)
            assert response.status_code == 303 and response.headers["location"] == "/ui/login", route.path


def test_a_foreign_tenant_sees_none_of_another_tenants_resources(
    client: TestClient, runtime: Runtime
) -> None:
    owner = runtime.keys.create("owner", Role.ADMIN).secret
    stranger = runtime.keys.create("stranger", Role.ADMIN).secret
    auth = {"Authorization": f"Bearer {owner}"}
    job = client.post(
        "/v1/documents", headers=auth, json={"source": "secret.txt", "text": "Owner's secret."}
    ).json()
    document_id = None
    for _ in range(200):
        job = client.get(f"/v1/jobs/{job['id']}", headers=auth).json()
        if job["status"] not in ("queued", "running"):
            document_id = job["items"][0]["document_id"]
            break
        time.sleep(0.1)
    assert document_id
    reply = client.post(
        "/v1/support/replies", headers=auth, json={"message": "Can I talk to a human?"}
    ).json()
    theirs = {"Authorization": f"Bearer {stranger}"}
    assert client.get(f"/v1/jobs/{job['id']}", headers=theirs).status_code == 404
    assert client.get(f"/v1/documents/{document_id}", headers=theirs).status_code == 404
    assert client.delete(f"/v1/documents/{document_id}", headers=theirs).status_code == 404
    assert client.get(f"/v1/support/replies/{reply['id']}", headers=theirs).status_code == 404
    assert client.get(f"/v1/reviews/{reply['review_id']}", headers=theirs).status_code == 404
    assert client.post(f"/v1/reviews/{reply['review_id']}/claim", headers=theirs).status_code == 404
    assert client.post(f"/v1/reviews/{reply['review_id']}/release", headers=theirs).status_code == 404
    stranger_reviewer = runtime.keys.create("stranger", Role.REVIEWER).record.id
    assigned = client.post(
        f"/v1/reviews/{reply['review_id']}/assign", headers=theirs, json={"reviewer": stranger_reviewer}
    )
    assert assigned.status_code == 404
    assert (
        client.post(
            "/v1/support/replies",
            headers=theirs,
            json={"message": "hi", "conversation_id": reply["conversation_id"]},
        ).status_code
        == 404
    )
    found = client.post("/v1/search", headers=theirs, json={"query": "owner secret"}).json()
    assert found["results"] == []
    assert client.get("/v1/documents/" + document_id, headers=auth).status_code == 200


def test_online_scores_and_drift_are_for_administrators_and_viewers(client: TestClient) -> None:
    # Operations data of the whole tenant: not for the application's keys nor for reviewers.
    declared = {r.path: declared_roles(r) for r in api_routes(client) if r.path.startswith("/v1/evals/")}
    for path in ("/v1/evals/online", "/v1/evals/drift"):
        assert declared[path] == {"admin", "viewer"}, path

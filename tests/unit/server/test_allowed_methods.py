"""A 405 names every method the path serves, however many routes serve it."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from keel.server.errors import install_error_handlers


def test_allow_lists_the_methods_of_every_route_at_the_path() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/v1/admin/keys")
    def list_keys() -> list[str]:
        return []

    @app.post("/v1/admin/keys")
    def create_key() -> dict[str, str]:
        return {}

    @app.delete("/v1/admin/keys/{key_id}")
    def revoke_key(key_id: str) -> dict[str, str]:
        return {"id": key_id}

    client = TestClient(app)
    for method in ("OPTIONS", "PUT", "PATCH"):
        response = client.request(method, "/v1/admin/keys")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, POST"
        assert response.json()["error"]["code"] == "method_not_allowed"
    assert client.request("OPTIONS", "/v1/admin/keys/key_1").headers["allow"] == "DELETE"

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from keel.errors import (
    AuthenticationError,
    InvalidRequestError,
    KeelError,
    ModelNotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
)
from keel.keys import Principal, Role
from keel.server.deps import AnyCaller, ModelCaller
from keel.server.errors import install_error_handlers


class Body(BaseModel):
    count: int


class KnownKeys:
    """Stands in for the key store: two known keys."""

    principals: ClassVar[dict[str, Principal]] = {
        "keel_app": Principal("key_1", "keel_app", "acme", Role.APP),
        "keel_viewer": Principal("key_2", "keel_viewer", "acme", Role.VIEWER),
    }

    def verified(self, secret: str) -> Principal | None:
        return None  # nothing verified before: every call authenticates

    def authenticate(self, secret: str) -> Principal:
        if secret not in self.principals:
            raise AuthenticationError("Invalid API key.", code="invalid_api_key")
        return self.principals[secret]


def make_app() -> FastAPI:
    app = FastAPI()
    app.state.runtime = SimpleNamespace(keys=KnownKeys())
    install_error_handlers(app)

    @app.get("/raise/{kind}")
    def raise_error(kind: str) -> None:
        errors: dict[str, Exception] = {
            "invalid": InvalidRequestError("bad field", param="x"),
            "model": ModelNotFoundError("gpt-9"),
            "limit": RateLimitError("slow down"),
            "upstream": UpstreamError("model broke"),
            "unavailable": ServiceUnavailableError("loading"),
            "forbidden": PermissionDeniedError("no"),
            "crash": RuntimeError("secret internals"),
        }
        raise errors[kind]

    @app.post("/body")
    def take_body(body: Body) -> int:
        return body.count

    @app.post("/model-call")
    def model_call(caller: ModelCaller) -> str:
        return caller.tenant

    @app.get("/listing")
    def listing(caller: AnyCaller) -> str:
        return caller.role

    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app(), raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("kind", "status", "error_type", "code"),
    [
        ("invalid", 400, "invalid_request_error", "invalid_request_error"),
        ("model", 404, "invalid_request_error", "model_not_found"),
        ("limit", 429, "rate_limit_error", "rate_limit_error"),
        ("upstream", 502, "upstream_error", "upstream_error"),
        ("unavailable", 503, "service_unavailable", "service_unavailable"),
        ("forbidden", 403, "permission_error", "permission_error"),
    ],
)
def test_keel_errors_map_to_status_and_openai_shape(
    client: TestClient, kind: str, status: int, error_type: str, code: str
) -> None:
    response = client.get(f"/raise/{kind}")
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["type"], error["code"]) == (error_type, code)
    assert error["message"]


def test_unexpected_errors_are_500_without_internals(client: TestClient) -> None:
    response = client.get("/raise/crash")
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "internal_error"
    assert "secret" not in response.text


def test_every_error_class_has_a_client_or_server_status() -> None:
    def walk(cls: type[KeelError]) -> list[type[KeelError]]:
        return [cls, *(sub for child in cls.__subclasses__() for sub in walk(child))]

    for cls in walk(KeelError)[1:]:
        assert 400 <= cls.status_code < 600, cls


@pytest.mark.parametrize(
    ("payload", "param"),
    [({"count": "many"}, "count"), ({}, "count")],
)
def test_validation_errors_are_422_in_openai_shape(
    client: TestClient, payload: dict[str, object], param: str
) -> None:
    response = client.post("/body", json=payload)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_malformed_json_is_400_and_says_so(client: TestClient) -> None:
    response = client.post("/body", content=b'{"count": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert "not valid JSON" in response.json()["error"]["message"]


def test_unknown_route_is_404_in_openai_shape(client: TestClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_missing_key_is_401_with_challenge(client: TestClient) -> None:
    response = client.post("/model-call")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "missing_api_key"


def test_bad_key_is_401(client: TestClient) -> None:
    response = client.post("/model-call", headers={"Authorization": "Bearer keel_wrong"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_role_outside_the_route_is_403(client: TestClient) -> None:
    response = client.post("/model-call", headers={"Authorization": "Bearer keel_viewer"})
    assert response.status_code == 403
    assert client.get("/listing", headers={"Authorization": "Bearer keel_viewer"}).json() == "viewer"
    assert client.post("/model-call", headers={"Authorization": "Bearer keel_app"}).json() == "acme"

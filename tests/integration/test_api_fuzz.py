"""A bounded schemathesis run over Keel's OpenAPI document, on the real app with its real models.

Every documented operation is called with generated requests (valid ones, invalid ones, and the
examples the document gives) under an admin key of a tenant of its own. Two checks: no response is a
server error, and every response matches the schema the document declares for its status (errors
included: `{"error": {...}}`).

A few examples per operation keep the run well under two minutes; generation is derandomized so a
failure reproduces. No route is left out: the chat route's generation length is capped below, so the
budget goes to inputs rather than to tokens of the local model (about 85 a second).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from keel.config import Settings
from keel.keys import Role
from keel.runtime import Runtime
from keel.server.app import create_app

EXAMPLES_PER_OPERATION = 6
MAX_GENERATED_TOKENS = 4
# The copilot answers with the local model: a reply takes a few seconds on two cores.
CALL_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def fuzz_runtime(
    tmp_path_factory: pytest.TempPathFactory, tier_settings: dict[str, str]
) -> Iterator[Runtime]:
    """A runtime of its own: schemathesis runs the app's lifespan, whose shutdown stops the job
    consumers and drains the services; on the session's runtime that left later tests' queued work
    unconsumed."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("keel-fuzz"), **tier_settings)  # type: ignore[arg-type]
    runtime = Runtime.build(settings)
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def fuzz_client(fuzz_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=fuzz_runtime)) as client:
        fuzz_runtime.warm_up()
        yield client


@pytest.fixture(scope="module")
def fuzz_key(fuzz_runtime: Runtime) -> str:
    return fuzz_runtime.keys.create("fuzz", Role.ADMIN).secret


@pytest.fixture
def unseeded_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypothesis seeds the global `random` for each example, and OpenTelemetry draws trace and span
    ids from it: without this, the same ids repeat and stored spans collide."""
    monkeypatch.setattr(random, "getrandbits", secrets.randbits)


def _cap_generation(case: Any) -> None:
    if case.operation.path == "/v1/chat/completions" and isinstance(case.body, dict):
        for field in ("max_tokens", "max_completion_tokens"):
            if isinstance(case.body.get(field), int) and case.body[field] > MAX_GENERATED_TOKENS:
                case.body[field] = MAX_GENERATED_TOKENS


@pytest.mark.usefixtures("unseeded_ids")
def test_no_server_errors_and_every_response_as_declared(
    fuzz_client: TestClient, fuzz_key: str, subtests: pytest.Subtests
) -> None:
    client = fuzz_client
    # schemathesis's own pytest plugin does not run on pytest 9: each operation is a subtest here.
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20

    for operation in operations:
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
            *operation.get_strategies_from_examples(),
        )

        @given(case=cases)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            _cap_generation(case)
            case.call_and_validate(
                headers={"Authorization": f"Bearer {fuzz_key}"},
                checks=[not_a_server_error, response_schema_conformance],
                timeout=CALL_TIMEOUT_S,
            )

        with subtests.test(msg=operation.label):
            call()

"""Review claims over HTTP: a revoked or expired claim is taken over, an administrator releases and
reassigns one, and each change of hands lands in the audit log with who did it and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from keel.config import Settings
from keel.keys import Role
from keel.runtime import Runtime
from keel.store.models import ReviewItem
from tests.integration.conftest import Keys


def escalate(client: TestClient, keys: Keys, message: str) -> str:
    reply = client.post("/v1/support/replies", headers=keys.header(keys.app), json={"message": message})
    assert reply.status_code == 200 and reply.json()["review_id"], reply.text
    return str(reply.json()["review_id"])


def key_id(runtime: Runtime, secret: str) -> str:
    return runtime.keys.authenticate(secret).key_id


def review_audit(client: TestClient, keys: Keys, review_id: str) -> list[dict[str, Any]]:
    entries = client.get("/v1/admin/audit?limit=1000", headers=keys.header(keys.admin)).json()["data"]
    return sorted((e for e in entries if e["target"] == review_id), key=lambda e: e["seq"])


def test_a_revoked_reviewers_claim_is_taken_over_released_and_reassigned(
    client: TestClient, keys: Keys, runtime: Runtime
) -> None:
    review_id = escalate(client, keys, "I want to talk to a person, not a bot.")
    leaving = runtime.keys.create("acme", Role.REVIEWER, "leaving")
    admin, reviewer = keys.header(keys.admin), keys.header(keys.reviewer)
    claimed = client.post(f"/v1/reviews/{review_id}/claim", headers=keys.header(leaving.secret)).json()
    assert claimed["claimed_by"] == leaving.record.id
    expires_at = datetime.fromisoformat(claimed["claim_expires_at"])
    ttl = timedelta(seconds=runtime.settings.review.claim_ttl_s)
    assert expires_at - datetime.fromisoformat(claimed["claimed_at"]) == ttl
    assert client.post(f"/v1/reviews/{review_id}/claim", headers=reviewer).status_code == 400
    assert client.delete(f"/v1/admin/keys/{leaving.record.id}", headers=admin).status_code == 204
    # The holder's key is gone, so the claim lapsed at once.
    taken = client.post(f"/v1/reviews/{review_id}/claim", headers=reviewer)
    assert taken.status_code == 200 and taken.json()["claimed_by"] == key_id(runtime, keys.reviewer)

    other = keys.header(keys.second_reviewer)
    assert client.post(f"/v1/reviews/{review_id}/release", headers=other).status_code == 403
    released = client.post(f"/v1/reviews/{review_id}/release", headers=admin).json()
    assert (released["status"], released["claimed_by"], released["claim_expires_at"]) == (
        "pending",
        None,
        None,
    )
    again = client.post(f"/v1/reviews/{review_id}/release", headers=admin)
    assert again.status_code == 400 and again.json()["error"]["code"] == "review_not_held"

    second_id = key_id(runtime, keys.second_reviewer)
    for body, status, code in [
        ({"reviewer": key_id(runtime, keys.app)}, 400, "reviewer_not_allowed"),
        ({"reviewer": leaving.record.id}, 400, "reviewer_not_found"),
        ({}, 422, "invalid_request"),
    ]:
        refused = client.post(f"/v1/reviews/{review_id}/assign", headers=admin, json=body)
        assert (refused.status_code, refused.json()["error"]["code"]) == (status, code)
    assigned = client.post(f"/v1/reviews/{review_id}/assign", headers=admin, json={"reviewer": second_id})
    assert assigned.status_code == 200 and assigned.json()["claimed_by"] == second_id
    approve = {"action": "approve"}
    assert client.post(f"/v1/reviews/{review_id}/decision", headers=reviewer, json=approve).status_code == 403
    decided = client.post(f"/v1/reviews/{review_id}/decision", headers=other, json=approve)
    assert decided.status_code == 200 and decided.json()["status"] == "approved"

    admin_id, reviewer_id = key_id(runtime, keys.admin), key_id(runtime, keys.reviewer)
    trail = [(e["action"], e["actor"], e["details"]) for e in review_audit(client, keys, review_id)]
    assert trail == [
        ("review.takeover", reviewer_id, {"from": leaving.record.id, "claim": "holder_revoked"}),
        ("review.release", admin_id, {"from": reviewer_id, "claim": "held"}),
        ("review.assign", admin_id, {"to": second_id, "from": None, "claim": "none"}),
        ("review.approve", second_id, {}),
    ]


def test_an_expired_claim_can_be_taken_over_and_its_old_holder_cannot_decide(
    client: TestClient, keys: Keys, runtime: Runtime
) -> None:
    review_id = escalate(client, keys, "Can I speak to a human?")
    first, second = keys.header(keys.reviewer), keys.header(keys.second_reviewer)
    assert client.post(f"/v1/reviews/{review_id}/claim", headers=first).status_code == 200
    assert client.post(f"/v1/reviews/{review_id}/claim", headers=second).status_code == 400
    # The claim was taken longer ago than its ttl (the server reads the real clock).
    lapsed = datetime.now(UTC) - timedelta(seconds=runtime.settings.review.claim_ttl_s + 5)
    with runtime.database.session() as session:
        session.execute(update(ReviewItem).where(ReviewItem.id == review_id).values(claimed_at=lapsed))
    view = client.get(f"/v1/reviews/{review_id}", headers=second).json()
    assert datetime.fromisoformat(view["claim_expires_at"]) < datetime.now(UTC)
    assert client.post(f"/v1/reviews/{review_id}/claim", headers=second).status_code == 200
    late = client.post(f"/v1/reviews/{review_id}/decision", headers=first, json={"action": "reject"})
    assert (late.status_code, late.json()["error"]["code"]) == (403, "review_not_claimed")
    [takeover] = review_audit(client, keys, review_id)
    assert (takeover["action"], takeover["actor"], takeover["details"]) == (
        "review.takeover",
        key_id(runtime, keys.second_reviewer),
        {"from": key_id(runtime, keys.reviewer), "claim": "expired"},
    )


def test_another_tenants_admin_can_neither_release_nor_assign(
    client: TestClient, keys: Keys, runtime: Runtime
) -> None:
    review_id = escalate(client, keys, "I want to talk to a person, please.")
    stranger = keys.header(runtime.keys.create("stranger", Role.ADMIN).secret)
    stranger_reviewer = runtime.keys.create("stranger", Role.REVIEWER).record.id
    assert client.post(f"/v1/reviews/{review_id}/release", headers=stranger).status_code == 404
    assigned = client.post(
        f"/v1/reviews/{review_id}/assign", headers=stranger, json={"reviewer": stranger_reviewer}
    )
    assert assigned.status_code == 404
    # Nor can this tenant's admin hand the item to the other tenant's reviewer.
    crossed = client.post(
        f"/v1/reviews/{review_id}/assign",
        headers=keys.header(keys.admin),
        json={"reviewer": stranger_reviewer},
    )
    assert crossed.status_code == 400 and crossed.json()["error"]["code"] == "reviewer_not_found"
    assert (
        client.get(f"/v1/reviews/{review_id}", headers=keys.header(keys.reviewer)).json()["status"]
        == "pending"
    )


def test_the_claim_ttl_setting_reaches_the_queue(tmp_path: Path) -> None:
    runtime = Runtime.build(Settings(data_dir=tmp_path, review={"claim_ttl_s": 60}))
    try:
        assert runtime.reviews.rules.ttl == timedelta(seconds=60)
    finally:
        runtime.close()

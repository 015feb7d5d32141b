"""The registry over a real SQLite file: immutable versions and content-hash dedupe, labels and their
moves, protected labels, the audit trail, rollback, and resolution caches that follow every move."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from keel.errors import ConflictError, InvalidRequestError, NotFoundError, PermissionDeniedError
from keel.prompts.registry import PromptRegistry
from keel.prompts.resolver import PromptResolver
from keel.store.prompt_models import PromptVersion
from tests.unit.prompts.conftest import ADMIN, APP, TENANT, Registry, spec


def test_a_push_makes_a_version_only_when_the_content_changed(setup: Registry) -> None:
    registry = setup.registry
    first = registry.push(TENANT, "greeting", spec(), APP, "first")
    again = registry.push(TENANT, "greeting", spec(), APP, "same content")
    changed = registry.push(TENANT, "greeting", spec("Hi {{ name }}!"), APP, "friendlier")
    assert (first.version, first.created) == (1, True)
    assert (again.version, again.created) == (1, False)
    assert (changed.version, changed.created) == (2, True)
    # A revert is a change: it makes a new version with the old content.
    reverted = registry.push(TENANT, "greeting", spec(), APP, "back")
    assert (reverted.version, reverted.created) == (3, True)
    assert reverted.content_hash == first.content_hash
    assert [v.version for v in registry.versions(TENANT, "greeting")] == [3, 2, 1]
    assert registry.version(TENANT, "greeting", version=2).message == "friendlier"
    assert registry.version(TENANT, "greeting", version=2).author == APP.id


def test_latest_moves_by_itself_and_never_by_hand(setup: Registry) -> None:
    registry = setup.registry
    registry.push(TENANT, "greeting", spec(), APP)
    registry.push(TENANT, "greeting", spec("v2 {{ name }}"), APP)
    assert registry.prompt(TENANT, "greeting").labels == {"latest": 2}
    assert registry.version(TENANT, "greeting", label="latest").version == 2
    with pytest.raises(InvalidRequestError):
        registry.move_label(TENANT, "greeting", "latest", 1, ADMIN)


def test_versions_are_immutable(setup: Registry) -> None:
    registry = setup.registry
    registry.push(TENANT, "greeting", spec(), APP)
    before = registry.version(TENANT, "greeting", version=1)
    registry.push(TENANT, "greeting", spec("Changed {{ name }}"), APP)
    registry.move_label(TENANT, "greeting", "staging", 2, APP)
    after = registry.version(TENANT, "greeting", version=1)
    assert after.spec == before.spec and after.content_hash == before.content_hash
    # The stored content still hashes to what was recorded: nothing rewrote it.
    assert after.spec.content_hash() == after.content_hash


def test_labels_move_and_every_move_is_audited_with_who_and_why(setup: Registry) -> None:
    registry = setup.registry
    registry.push(TENANT, "greeting", spec(), APP)
    registry.push(TENANT, "greeting", spec("v2 {{ name }}"), APP)
    registry.move_label(TENANT, "greeting", "staging", 1, APP, "try it")
    move = registry.move_label(TENANT, "greeting", "staging", 2, APP, "second try")
    assert (move.from_version, move.to_version, move.actor, move.reason) == (1, 2, APP.id, "second try")
    assert registry.version(TENANT, "greeting", label="staging").version == 2
    entries = [e for e in setup.audit.entries(TENANT) if e.action == "prompt.label.move"]
    assert [
        (e.actor, e.target, e.details["from"], e.details["to"], e.details["reason"]) for e in entries
    ] == [
        (APP.id, "greeting:staging", 1, 2, "second try"),
        (APP.id, "greeting:staging", None, 1, "try it"),
    ]
    assert setup.audit.verify().ok


def test_a_protected_label_moves_only_for_an_administrator(setup: Registry) -> None:
    registry = setup.registry
    registry.push(TENANT, "greeting", spec(), APP)
    with pytest.raises(PermissionDeniedError) as caught:
        registry.move_label(TENANT, "greeting", "production", 1, APP, "ship it")
    assert caught.value.code == "protected_label"
    with pytest.raises(PermissionDeniedError):
        registry.rollback(TENANT, "greeting", "production", APP)
    registry.move_label(TENANT, "greeting", "production", 1, ADMIN, "ship it")
    assert registry.prompt(TENANT, "greeting").labels["production"] == 1
    assert not [e for e in setup.audit.entries(TENANT) if e.actor == APP.id and "label" in e.action]
    # Protection is configured, not hard-wired.
    open_registry = PromptRegistry(setup.database, setup.audit, protected_labels=frozenset())
    open_registry.move_label(TENANT, "greeting", "production", 1, APP, "no protection here")


def test_rollback_returns_the_label_to_where_it_came_from(setup: Registry) -> None:
    registry = setup.registry
    for text in ("one {{ name }}", "two {{ name }}", "three {{ name }}"):
        registry.push(TENANT, "greeting", spec(text), APP)
    registry.move_label(TENANT, "greeting", "production", 2, ADMIN, "release 2")
    registry.move_label(TENANT, "greeting", "production", 3, ADMIN, "release 3")
    back = registry.rollback(TENANT, "greeting", "production", ADMIN, "3 is worse")
    assert (back.from_version, back.to_version, back.kind) == (3, 2, "rollback")
    assert registry.version(TENANT, "greeting").version == 2
    pinned = registry.rollback(TENANT, "greeting", "production", ADMIN, "all the way", to_version=1)
    assert pinned.to_version == 1
    rollbacks = [e for e in setup.audit.entries(TENANT) if e.action == "prompt.label.rollback"]
    assert [e.details["reason"] for e in rollbacks] == ["all the way", "3 is worse"]
    history = registry.history(TENANT, "greeting", "production")
    assert [(m.kind, m.to_version) for m in history] == [
        ("rollback", 1),
        ("rollback", 2),
        ("move", 3),
        ("move", 2),
    ]


def test_a_label_without_an_earlier_version_cannot_roll_back(setup: Registry) -> None:
    registry = setup.registry
    registry.push(TENANT, "greeting", spec(), APP)
    registry.move_label(TENANT, "greeting", "staging", 1, APP)
    with pytest.raises(InvalidRequestError) as caught:
        registry.rollback(TENANT, "greeting", "staging", APP)
    assert caught.value.code == "nothing_to_roll_back"


def test_unknown_prompts_versions_and_labels_are_404(setup: Registry) -> None:
    registry = setup.registry
    with pytest.raises(NotFoundError):
        registry.version(TENANT, "nope")
    registry.push(TENANT, "greeting", spec(), APP)
    with pytest.raises(NotFoundError):
        registry.version(TENANT, "greeting", version=9)
    with pytest.raises(NotFoundError):
        registry.version(TENANT, "greeting", label="production")
    with pytest.raises(NotFoundError):
        registry.move_label(TENANT, "greeting", "staging", 9, APP)
    # Tenants do not see each other's prompts.
    with pytest.raises(NotFoundError):
        registry.version("other", "greeting", version=1)


def test_names_and_labels_are_checked(setup: Registry) -> None:
    with pytest.raises(InvalidRequestError):
        setup.registry.push(TENANT, "Bad Name", spec(), APP)
    setup.registry.push(TENANT, "greeting", spec(), APP)
    with pytest.raises(InvalidRequestError):
        setup.registry.move_label(TENANT, "greeting", "PROD!", 1, APP)


def test_deleting_needs_an_administrator(setup: Registry) -> None:
    registry = setup.registry
    registry.push(TENANT, "greeting", spec(), APP)
    with pytest.raises(PermissionDeniedError):
        registry.delete_prompt(TENANT, "greeting", APP)
    registry.delete_prompt(TENANT, "greeting", ADMIN)
    assert registry.prompts(TENANT) == []


def test_the_diff_shows_what_changed(setup: Registry) -> None:
    registry = setup.registry
    registry.push(TENANT, "greeting", spec(), APP)
    registry.push(TENANT, "greeting", spec(params={"temperature": 0.3}), APP)
    diff = registry.diff(TENANT, "greeting", 1, 2)
    assert "+++ greeting@2" in diff and '+    "temperature": 0.3' in diff


def test_resolution_follows_a_label_move_made_elsewhere(setup: Registry) -> None:
    """Two resolvers on one database stand for two replicas: a move through either (or through the CLI's
    own registry) is what the next resolution on both serves."""
    registry = setup.registry
    registry.push(TENANT, "greeting", spec("one {{ name }}"), APP)
    registry.push(TENANT, "greeting", spec("two {{ name }}"), APP)
    registry.move_label(TENANT, "greeting", "production", 1, ADMIN)
    replica_a, replica_b = setup.resolver, PromptResolver(setup.database)
    assert replica_a.resolve(TENANT, "greeting").use.version == 1
    assert replica_b.resolve(TENANT, "greeting").use.version == 1
    registry.move_label(TENANT, "greeting", "production", 2, ADMIN)
    for replica in (replica_a, replica_b):
        resolution = replica.resolve(TENANT, "greeting")
        assert (resolution.use.version, resolution.use.label) == (2, "production")
        assert resolution.prompt.render({"name": "Ada"})[1]["content"] == "two Ada"


def test_the_cache_is_used_while_nothing_moved(setup: Registry) -> None:
    registry = setup.registry
    registry.push(TENANT, "greeting", spec(), APP)
    registry.move_label(TENANT, "greeting", "production", 1, ADMIN)
    first = setup.resolver.resolve(TENANT, "greeting")
    # Changing the row behind the registry's back (no epoch bump) is invisible to the cached route...
    with setup.database.session() as session:
        session.execute(update(PromptVersion).values(spec=spec("tampered {{ name }}").canonical()))
    second = setup.resolver.resolve(TENANT, "greeting")
    assert second.prompt is first.prompt
    # ...and a pinned version that was never read comes from the database.
    assert (
        PromptResolver(setup.database)
        .resolve(TENANT, "greeting", version=1)
        .prompt.render({"name": "x"})[1]["content"]
        == "tampered x"
    )


def test_a_label_in_a_running_rollout_cannot_be_moved_by_hand(setup: Registry) -> None:
    from keel.store.prompt_models import Prompt, PromptCanary

    registry = setup.registry
    registry.push(TENANT, "greeting", spec(), APP)
    registry.push(TENANT, "greeting", spec("v2 {{ name }}"), APP)
    registry.move_label(TENANT, "greeting", "production", 1, ADMIN)
    with setup.database.session() as session:
        prompt_id = session.query(Prompt.id).scalar()
        session.add(
            PromptCanary(
                tenant=TENANT,
                prompt_id=prompt_id,
                label="production",
                stable_version=1,
                canary_version=2,
                steps=[5],
                rule={},
            )
        )
    with pytest.raises(ConflictError) as caught:
        registry.move_label(TENANT, "greeting", "production", 2, ADMIN)
    assert caught.value.status_code == 409

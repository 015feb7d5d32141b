"""Prompts as code: a folder of YAML prompt files synced into the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.copilot.prompt import SHIPPED_PROMPT
from keel.errors import InvalidRequestError, PermissionDeniedError
from keel.prompts.files import sync_folder
from keel.prompts.prompt_file import parse_prompt_file, to_yaml
from tests.unit.prompts.conftest import ADMIN, APP, TENANT, Registry

GREETING = """\
description: Greets a customer.
model: keel-local
params: {temperature: 0.2}
messages:
  - role: system
    content: You greet customers of {{ company }}.
  - role: user
    content: |-
      Say hello to {{ name }}.
variables:
  type: object
  required: [company, name]
  properties:
    company: {type: string}
    name: {type: string}
"""


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_sync_pushes_changed_files_only_and_moves_the_label(setup: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "prompts"
    write(folder, "greeting.yaml", GREETING)
    write(folder / "support", "farewell.yml", GREETING.replace("greet", "bid farewell to"))
    first = sync_folder(setup.registry, TENANT, folder, APP, label="staging", message="PR #1")
    assert [(i.name, i.version, i.created, i.label_moved) for i in first] == [
        ("greeting", 1, True, True),
        ("farewell", 1, True, True),
    ]
    again = sync_folder(setup.registry, TENANT, folder, APP, label="staging", message="PR #2")
    assert [(i.created, i.label_moved) for i in again] == [(False, False), (False, False)]

    write(folder, "greeting.yaml", GREETING.replace("temperature: 0.2", "temperature: 0.4"))
    third = sync_folder(setup.registry, TENANT, folder, APP, label="staging", message="PR #3")
    assert [(i.name, i.version, i.created, i.label_moved_from) for i in third if i.created] == [
        ("greeting", 2, True, 1)
    ]
    assert setup.registry.version(TENANT, "greeting", label="staging").spec.params.temperature == 0.4
    assert setup.registry.version(TENANT, "greeting", version=2).message == "PR #3"
    assert setup.registry.prompt(TENANT, "greeting").description == "Greets a customer."


def test_a_broken_file_pushes_nothing(setup: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "prompts"
    write(folder, "a-good.yaml", GREETING)
    write(folder, "b-broken.yaml", GREETING.replace("Say hello to {{ name }}.", "Say {% if %} hello"))
    with pytest.raises(InvalidRequestError) as caught:
        sync_folder(setup.registry, TENANT, folder, APP)
    assert "b-broken.yaml" in caught.value.message
    assert setup.registry.prompts(TENANT) == []


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("messages: [\n", "not valid YAML"),
        ("- just a list", "does not hold a prompt"),
        ("messages: []", "messages"),
        (GREETING + "temperature: 3\n", "temperature"),
        (GREETING.replace("type: string}", "type: strin}"), "variables"),
    ],
)
def test_invalid_files_are_refused_with_the_reason(text: str, complaint: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_prompt_file(text, "greeting.yaml")
    assert caught.value.message.startswith("greeting.yaml") and complaint in caught.value.message


def test_two_files_of_one_prompt_are_refused(setup: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "prompts"
    write(folder, "one.yaml", "name: greeting\n" + GREETING)
    write(folder, "two.yaml", "name: greeting\n" + GREETING)
    with pytest.raises(InvalidRequestError, match="both hold the prompt 'greeting'"):
        sync_folder(setup.registry, TENANT, folder, ADMIN)


def test_a_protected_label_is_refused_before_anything_is_pushed(setup: Registry, tmp_path: Path) -> None:
    write(tmp_path / "prompts", "greeting.yaml", GREETING)
    with pytest.raises(PermissionDeniedError):
        sync_folder(setup.registry, TENANT, tmp_path / "prompts", APP, label="production")
    assert setup.registry.prompts(TENANT) == []


def test_a_version_written_back_as_a_file_parses_to_the_same_content(setup: Registry) -> None:
    shipped = parse_prompt_file(SHIPPED_PROMPT.read_text(), SHIPPED_PROMPT.name)
    text = to_yaml(shipped.name, shipped.spec, shipped.description)
    again = parse_prompt_file(text, "support-reply.yaml")
    assert again.spec.content_hash() == shipped.spec.content_hash()
    assert "content: |-" in text or "content: |" in text

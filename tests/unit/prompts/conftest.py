"""A migrated SQLite database with the prompt registry and its resolver over it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from keel.governance.audit import AuditLog
from keel.prompts.registry import Actor, PromptRegistry
from keel.prompts.resolver import PromptResolver
from keel.prompts.spec import PromptSpec
from keel.store.engine import Database

ADMIN = Actor("key_admin", admin=True)
APP = Actor("key_app", admin=False)
TENANT = "acme"


def spec(text: str = "Hello {{ name }}", **extra: Any) -> PromptSpec:
    return PromptSpec.model_validate(
        {
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
            "variables": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
            **extra,
        }
    )


@dataclass
class Registry:
    database: Database
    registry: PromptRegistry
    resolver: PromptResolver
    audit: AuditLog


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Registry]:
    database = Database(f"sqlite:///{tmp_path / 'keel.db'}")
    database.migrate()
    audit = AuditLog(database)
    yield Registry(database, PromptRegistry(database, audit), PromptResolver(database), audit)
    database.dispose()

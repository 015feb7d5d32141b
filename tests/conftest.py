"""Marks every test by the folder it lives in (strict markers are declared in pyproject)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Models are always read from disk; a test must never reach for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        # The tier is the first folder under tests/: tests/unit/knowledge/... is a unit test.
        tier = Path(str(item.fspath)).relative_to(root).parts[0]
        if tier in ("unit", "integration", "services", "browser"):
            item.add_marker(getattr(pytest.mark, tier))

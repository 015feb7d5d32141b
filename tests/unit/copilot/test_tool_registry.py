"""The copilot's tools: the built-in CRM lookups, and a plugin's tools through the `keel.copilot_tools`
entry points, callable through the tool box like the built-in ones."""

from __future__ import annotations

import asyncio
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel

from keel.copilot.tools import registry
from keel.copilot.tools.base import Tool, ToolBox
from keel.store.engine import Database


class StoreArgs(BaseModel):
    city: str


def store_tools(database: Database) -> list[Tool[Any]]:
    """A plugin's tools: one that answers from its own data, and one that replaces a built-in tool."""
    hours = Tool("store_hours", "Opening hours of a store.", StoreArgs, lambda tenant, a: f"{a.city}: 9-18")
    return [hours, Tool("lookup_orders", "Orders from the shop system.", StoreArgs, lambda t, a: [])]


@pytest.fixture
def database(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'tools.db'}")
    database.migrate()
    return database


def test_the_built_in_tools_without_plugins(database: Database) -> None:
    names = {tool.name for tool in registry.copilot_tools(database)}
    assert {"lookup_customer", "lookup_orders"} <= names


def test_a_plugin_adds_and_replaces_tools(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = metadata.EntryPoint(
        name="stores", value=f"{__name__}:store_tools", group=registry.ENTRY_POINT_GROUP
    )

    def entry_points(*, group: str) -> list[metadata.EntryPoint]:
        return [entry] if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry, "metadata", SimpleNamespace(entry_points=entry_points))
    tools = {tool.name: tool for tool in registry.copilot_tools(database)}
    assert "lookup_customer" in tools and tools["lookup_orders"].description == "Orders from the shop system."
    called = asyncio.run(ToolBox(list(tools.values())).call("acme", "store_hours", {"city": "Graz"}))
    assert called.result == "Graz: 9-18" and called.error is None

"""The copilot's tools: the built-in CRM lookups, then every installed plugin's from the
`keel.copilot_tools` entry points. A plugin's entry point is a callable taking the `Database` and
returning a list of `Tool`s; a plugin tool replaces a built-in one of the same name."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from keel.copilot.tools.base import Tool
from keel.copilot.tools.crm import crm_tools
from keel.store.engine import Database

ENTRY_POINT_GROUP = "keel.copilot_tools"


def copilot_tools(database: Database) -> list[Tool[Any]]:
    tools = {tool.name: tool for tool in crm_tools(database)}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        tools.update({tool.name: tool for tool in entry_point.load()(database)})
    return list(tools.values())

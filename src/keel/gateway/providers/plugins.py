"""Named factories from Keel and from installed packages: the built-in ones, then every entry point of a
group (a plugin wins a name it shares with a built-in)."""

from __future__ import annotations

from importlib import metadata
from typing import TypeVar

T = TypeVar("T")


def with_plugins(group: str, built_in: dict[str, T]) -> dict[str, T]:
    factories = dict(built_in)
    for entry_point in metadata.entry_points(group=group):
        factories[entry_point.name] = entry_point.load()
    return factories

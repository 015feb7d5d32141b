"""The string values inside a JSON document (a tool call's arguments), read or rewritten one by one, so
personal data in them is masked like message text while the JSON stays valid whatever replaces them."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any


def json_strings(document: str) -> list[str]:
    """The document's string values (not its keys), in the order `map_json_strings` visits them; none
    when it is not JSON."""
    found: list[str] = []

    def keep(value: str) -> str:
        found.append(value)
        return value

    with contextlib.suppress(json.JSONDecodeError):
        _map_strings(json.loads(document), keep)
    return found


def map_json_strings(document: str, change: Callable[[str], str]) -> str:
    """The document with every string value changed (keys and other values kept); a document that is
    not JSON, or that the change leaves as it was, is returned as it is."""
    try:
        parsed = json.loads(document)
    except json.JSONDecodeError:
        return document
    changed = json.dumps(_map_strings(parsed, change), ensure_ascii=False)
    return document if changed == json.dumps(parsed, ensure_ascii=False) else changed


def _map_strings(value: Any, change: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [_map_strings(item, change) for item in value]
    if isinstance(value, dict):
        return {key: _map_strings(item, change) for key, item in value.items()}
    return value

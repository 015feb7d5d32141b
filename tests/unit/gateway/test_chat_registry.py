"""Chat providers by name: the built-in remote ones, a plugin's through the `keel.chat_providers`
entry points, and a clear error for a name nothing provides."""

from __future__ import annotations

from importlib import metadata
from types import SimpleNamespace
from typing import Any

import pytest

from keel.config import BreakerSettings, DeploymentSettings
from keel.errors import InvalidRequestError
from keel.gateway.deployments import build_deployments
from keel.gateway.providers import chat_registry, plugins
from keel.gateway.providers.anthropic import AnthropicProvider
from keel.gateway.providers.openai_compat import OpenAICompatibleProvider


class PluginProvider:
    """What a plugin's factory returns (the provider's own behaviour lies outside this unit)."""

    def __init__(self, name: str, settings: DeploymentSettings, api_key: str | None) -> None:
        self.name, self.settings, self.api_key = name, settings, api_key


def plugin_factory(name: str, settings: DeploymentSettings, api_key: str | None) -> Any:
    return PluginProvider(name, settings, api_key)


@pytest.fixture
def installed_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = metadata.EntryPoint(
        name="echo", value=f"{__name__}:plugin_factory", group=chat_registry.ENTRY_POINT_GROUP
    )

    def entry_points(*, group: str) -> list[metadata.EntryPoint]:
        return [entry] if group == chat_registry.ENTRY_POINT_GROUP else []

    # The installed distributions' metadata, as the registry reads it, now lists one plugin.
    monkeypatch.setattr(plugins, "metadata", SimpleNamespace(entry_points=entry_points))


def test_built_in_providers_are_found_by_name() -> None:
    built = build_deployments(
        {
            "a": DeploymentSettings(provider="openai", model="m", base_url="http://127.0.0.1:1/v1"),
            "b": DeploymentSettings(provider="anthropic", model="claude"),
        },
        local_provider=None,  # type: ignore[arg-type]
        breaker=BreakerSettings(),
    )
    assert isinstance(built["a"].provider, OpenAICompatibleProvider)
    assert isinstance(built["b"].provider, AnthropicProvider)


def test_a_plugin_registers_through_its_entry_point(installed_plugin: None) -> None:
    settings = DeploymentSettings(provider="echo", model="tiny")
    provider = build_deployments({"edge": settings}, None, BreakerSettings())["edge"].provider  # type: ignore[arg-type]
    assert isinstance(provider, PluginProvider)
    assert (provider.name, provider.settings.model, provider.api_key) == ("edge", "tiny", None)


def test_an_unknown_provider_names_the_installed_ones(installed_plugin: None) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        build_deployments({"x": DeploymentSettings(provider="nope")}, None, BreakerSettings())  # type: ignore[arg-type]
    assert "unknown provider 'nope'" in refused.value.message
    assert "local, anthropic, echo, openai" in refused.value.message

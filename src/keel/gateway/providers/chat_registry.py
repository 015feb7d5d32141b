"""Chat providers by name: the built-in remote ones ("openai" for any OpenAI-compatible server,
"anthropic"), then every installed plugin's from the `keel.chat_providers` entry points (a plugin wins a
name it shares). A deployment's `provider` names one; "local" is the in-process model, built once by the
runtime. A plugin's entry point is a callable `(deployment name, DeploymentSettings, api key or None)`
returning a `ChatProvider`."""

from __future__ import annotations

from collections.abc import Callable

from keel.config import DeploymentSettings
from keel.gateway.providers.base import ChatProvider
from keel.gateway.providers.plugins import with_plugins

ENTRY_POINT_GROUP = "keel.chat_providers"
ChatFactory = Callable[[str, DeploymentSettings, str | None], ChatProvider]


def _openai(name: str, settings: DeploymentSettings, api_key: str | None) -> ChatProvider:
    from keel.gateway.providers.openai_compat import OpenAICompatibleProvider

    return OpenAICompatibleProvider(
        base_url=settings.base_url or "https://api.openai.com/v1",
        model=settings.model,
        api_key=api_key,
        timeout_s=settings.timeout_s,
    )


def _anthropic(name: str, settings: DeploymentSettings, api_key: str | None) -> ChatProvider:
    from keel.gateway.providers.anthropic import AnthropicProvider

    return AnthropicProvider(
        base_url=settings.base_url or "https://api.anthropic.com",
        model=settings.model,
        api_key=api_key,
        timeout_s=settings.timeout_s,
    )


def chat_factories() -> dict[str, ChatFactory]:
    return with_plugins(ENTRY_POINT_GROUP, {"openai": _openai, "anthropic": _anthropic})

"""A run's configuration: the server's settings with the run's own overrides (a TOML file shaped like
keel.toml), resolved once and recorded with the run so it can be read back and repeated.

Only what can change without a restart may be overridden: `[knowledge.retrieval]`, `[copilot]` and
`[evals]`. Models, databases and the gateway's deployments are the process's own.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from keel.config import CopilotSettings, EvalSettings, RetrievalSettings, Settings
from keel.errors import InvalidRequestError

OVERRIDABLE = "[knowledge.retrieval], [copilot] and [evals]"


def parse_overrides(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequestError(
            f"The run's config is not valid TOML: {exc}.", code="invalid_run_config"
        ) from exc


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            _merge(merged[key], value)
            if isinstance(value, dict) and isinstance(merged.get(key), dict)
            else value
        )
    return merged


@dataclass(frozen=True)
class RunConfig:
    retrieval: RetrievalSettings
    copilot: CopilotSettings
    evals: EvalSettings
    chat_alias: str

    @property
    def model_alias(self) -> str:
        return self.copilot.model or self.chat_alias

    def record(self) -> dict[str, Any]:
        """What a run stores: enough to read back what was run, and to rebuild this configuration. The
        prompt versions the calls used are read from the gateway's records into the run's summary."""
        return {
            "model_alias": self.model_alias,
            "chat_alias": self.chat_alias,
            "retrieval": self.retrieval.model_dump(mode="json"),
            "copilot": self.copilot.model_dump(mode="json"),
            "evals": self.evals.model_dump(mode="json"),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RunConfig:
        return cls(
            retrieval=RetrievalSettings.model_validate(record["retrieval"]),
            copilot=CopilotSettings.model_validate(record["copilot"]),
            evals=EvalSettings.model_validate(record["evals"]),
            chat_alias=record["chat_alias"],
        )


def resolve(settings: Settings, overrides: dict[str, Any]) -> RunConfig:
    """The settings in force for a run; an override outside what may change per run is refused."""
    unknown = set(overrides) - {"knowledge", "copilot", "evals"}
    knowledge = overrides.get("knowledge", {})
    if not isinstance(knowledge, dict) or set(knowledge) - {"retrieval"}:
        unknown.add("knowledge")
    if unknown:
        raise InvalidRequestError(
            f"A run may override only {OVERRIDABLE}, not {sorted(unknown)}.", code="invalid_run_config"
        )
    try:
        return RunConfig(
            retrieval=RetrievalSettings.model_validate(
                _merge(settings.knowledge.retrieval.model_dump(), knowledge.get("retrieval", {}))
            ),
            copilot=CopilotSettings.model_validate(
                _merge(settings.copilot.model_dump(), overrides.get("copilot", {}))
            ),
            evals=EvalSettings.model_validate(
                _merge(settings.evals.model_dump(), overrides.get("evals", {}))
            ),
            chat_alias=settings.chat.alias,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequestError(
            f"The run's config: {where}: {first['msg']}.", code="invalid_run_config"
        ) from exc

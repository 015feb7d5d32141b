"""What a prompt version holds: message templates, the JSON schema of their variables, the model alias
and parameters of the call, an optional output schema and the overflow policy; checked when pushed.

The content hash is taken over this spec in a canonical JSON form, so the same content pushed twice
(from another machine, in another key order) is recognised as unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from keel.errors import InvalidRequestError
from keel.gateway.protocol import MAX_COMPLETION_TOKENS

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,199}$")
LABEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# Moved by every push, never by hand.
LATEST = "latest"


class MessageTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    # A Jinja2 template, rendered in a sandbox with the request's variables.
    content: str = Field(min_length=1, max_length=200_000)


class PromptParams(BaseModel):
    """The call's parameters; a request's own value wins over the version's."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=MAX_COMPLETION_TOKENS)
    stop: list[str] | None = Field(None, max_length=4)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)


class OverflowPolicy(BaseModel):
    """What happens when the rendered prompt does not fit the model's context window.

    "error" refuses the request (400 `context_length_exceeded`). "drop" removes items of two list
    variables until it fits: first from `context` (retrieved passages, from its end: the least relevant
    go first), then from `history` (the oldest turns first). Instructions are never cut: when nothing
    is left to drop, the request is refused.
    """

    model_config = ConfigDict(extra="forbid")

    policy: Literal["error", "drop"] = "error"
    context: str | None = Field(None, max_length=200)
    history: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _drop_needs_a_variable(self) -> OverflowPolicy:
        if self.policy == "drop" and not (self.context or self.history):
            raise ValueError("the 'drop' overflow policy names a 'context' or 'history' variable")
        return self


class PromptSpec(BaseModel):
    """The content of a version (everything the content hash covers)."""

    model_config = ConfigDict(extra="forbid")

    messages: list[MessageTemplate] = Field(min_length=1, max_length=64)
    # JSON schema (draft 2020-12) the variables are validated against before rendering.
    variables: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    # A model alias; None: the request names it.
    model: str | None = Field(None, min_length=1, max_length=200)
    params: PromptParams = PromptParams()
    # The answer must be a JSON object of this schema (the gateway's structured output, with one repair).
    output_schema: dict[str, Any] | None = None
    overflow: OverflowPolicy = OverflowPolicy()

    @field_validator("variables", "output_schema")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is None:
            return None
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ValueError(f"not a valid JSON schema: {exc.message}") from None
        return schema

    @model_validator(mode="after")
    def _overflow_names_declared_lists(self) -> PromptSpec:
        declared = self.variables.get("properties", {})
        for variable in (self.overflow.context, self.overflow.history):
            if variable is None:
                continue
            kind = declared.get(variable, {}).get("type") if isinstance(declared, dict) else None
            if kind != "array":
                raise ValueError(
                    f"the overflow policy names '{variable}', which the variables schema must declare "
                    "as an array"
                )
        return self

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def content_hash(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


def check_name(name: str, what: str = "prompt name") -> str:
    if not NAME.match(name):
        raise InvalidRequestError(
            f"'{name}' is not a valid {what}: lower-case letters, digits, '.', '_' and '-', at most 200.",
            code="invalid_name",
            param="name",
        )
    return name


def check_label(label: str) -> str:
    if not LABEL.match(label):
        raise InvalidRequestError(
            f"'{label}' is not a valid label: lower-case letters, digits, '.', '_' and '-', at most 64.",
            code="invalid_label",
            param="label",
        )
    return label

"""Rendering a prompt version: variables checked against its JSON schema first, then its message
templates rendered in Jinja2's immutable sandbox, then its overflow policy applied against a token budget.

Templates are written by people with a key, not by end users, yet they run inside the server: the
sandbox refuses attribute access to Python internals, `range` is bounded, and a rendered prompt longer
than `max_chars` is stopped while it is produced rather than after.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.environment import Template
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jsonschema import Draft202012Validator, ValidationError

from keel.errors import InvalidRequestError
from keel.prompts.spec import PromptSpec

# One rendered message as the chat API takes it.
Message = dict[str, str]
# Tokens of a list of messages, for the overflow policy.
TokenCount = Callable[[Sequence[Message]], int]

_ENVIRONMENT = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False
)
# JSON as a model reads it: Jinja's own `tojson` escapes <, > and & for HTML.
_ENVIRONMENT.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False, default=str)
# Errors a template can raise while it renders: its author's mistake, reported to the caller as a 400.
_RENDER_ERRORS = (TemplateError, TypeError, ValueError, ArithmeticError, LookupError, AttributeError)


@dataclass(frozen=True)
class Rendered:
    messages: list[Message]
    # Items the overflow policy removed to make the prompt fit.
    dropped_context: int = 0
    dropped_history: int = 0


def _variable_path(error: ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        required: list[str] = list(error.validator_value)  # type: ignore[arg-type]
        missing = [name for name in required if name not in error.instance]
        if missing:
            return f"{path}.{missing[0]}" if path else str(missing[0])
    return path or "(all)"


class CompiledPrompt:
    """One version, compiled once: immutable, shared by every request that uses the version."""

    def __init__(self, name: str, spec: PromptSpec, max_chars: int = 1_000_000) -> None:
        self.name = name
        self.spec = spec
        self._max_chars = max_chars
        self._validator = Draft202012Validator(spec.variables)
        self._templates: list[tuple[str, Template]] = []
        for index, message in enumerate(spec.messages):
            try:
                self._templates.append((message.role, _ENVIRONMENT.from_string(message.content)))
            except TemplateSyntaxError as exc:
                raise InvalidRequestError(
                    f"messages[{index}] of prompt '{name}' is not a valid template: {exc.message} "
                    f"(line {exc.lineno})",
                    code="invalid_prompt_template",
                    param=f"messages[{index}].content",
                ) from None

    def validate(self, variables: dict[str, Any]) -> None:
        """Raises a 400 that names the first wrong or missing variable."""
        errors = sorted(self._validator.iter_errors(variables), key=lambda e: list(e.absolute_path))
        if not errors:
            return
        error = errors[0]
        path = _variable_path(error)
        raise InvalidRequestError(
            f"Prompt '{self.name}': variable '{path}' is invalid: {error.message}",
            code="invalid_prompt_variables",
            param=f"prompt.variables.{path}",
        )

    def render(self, variables: dict[str, Any]) -> list[Message]:
        messages = []
        budget = self._max_chars
        for index, (role, template) in enumerate(self._templates):
            pieces: list[str] = []
            try:
                for piece in template.generate(**variables):
                    budget -= len(piece)
                    if budget < 0:
                        raise InvalidRequestError(
                            f"Prompt '{self.name}' renders to more than {self._max_chars} characters.",
                            code="prompt_too_long",
                            param="prompt",
                        )
                    pieces.append(piece)
            except UndefinedError as exc:
                raise InvalidRequestError(
                    f"Prompt '{self.name}' uses a variable the request does not give: {exc.message}",
                    code="invalid_prompt_variables",
                    param="prompt.variables",
                ) from None
            except SecurityError as exc:
                raise InvalidRequestError(
                    f"Prompt '{self.name}' tried something its sandbox refuses: {exc}",
                    code="prompt_render_failed",
                    param=f"messages[{index}].content",
                ) from None
            except _RENDER_ERRORS as exc:
                raise InvalidRequestError(
                    f"Prompt '{self.name}' failed to render messages[{index}]: {exc}",
                    code="prompt_render_failed",
                    param=f"messages[{index}].content",
                ) from None
            messages.append({"role": role, "content": "".join(pieces)})
        return messages

    def render_within(self, variables: dict[str, Any], budget: int, count: TokenCount) -> Rendered:
        """Validates, renders and applies the overflow policy: the fewest items dropped (context first,
        from its end; then history, oldest first) that bring the prompt within `budget` tokens."""
        self.validate(variables)
        messages = self.render(variables)
        if count(messages) <= budget:
            return Rendered(messages)
        policy = self.spec.overflow
        context = list(variables.get(policy.context, [])) if policy.context else []
        history = list(variables.get(policy.history, [])) if policy.history else []
        if policy.policy == "error" or not (context or history):
            raise _overflow(self.name, budget)

        def attempt(drops: int) -> list[Message]:
            trimmed = copy.copy(variables)
            from_context = min(drops, len(context))
            if policy.context:
                trimmed[policy.context] = context[: len(context) - from_context]
            if policy.history:
                trimmed[policy.history] = history[drops - from_context :]
            return self.render(trimmed)

        # Fewer items never make more tokens, so the smallest number of drops that fits is found by
        # bisection: a handful of renders however long the history.
        low, high = 1, len(context) + len(history)
        if count(attempt(high)) > budget:
            raise _overflow(self.name, budget)
        while low < high:
            middle = (low + high) // 2
            if count(attempt(middle)) <= budget:
                high = middle
            else:
                low = middle + 1
        fitted = attempt(high)
        from_context = min(high, len(context))
        return Rendered(fitted, from_context, high - from_context)


def _overflow(name: str, budget: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"Prompt '{name}' does not fit the model's context window ({budget} tokens for the prompt) even "
        "with everything its overflow policy may drop removed; its instructions are never cut.",
        code="context_length_exceeded",
        param="prompt",
    )


def compile_prompt(name: str, spec: PromptSpec, max_chars: int = 1_000_000) -> CompiledPrompt:
    return CompiledPrompt(name, spec, max_chars)

"""A chat request that names a registry prompt, turned into an ordinary one before the gateway sees it.

The version's messages are rendered (variables validated first, overflow policy applied), followed by
any messages of the request; the version's model and parameters apply where the request leaves them
out (an experiment's model arm decides the model); its output schema becomes the response format
unless the request asks for one. The call carries a `PromptUse` so its trace and usage row say which
prompt, version, label and arm it came from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from keel.errors import InvalidRequestError
from keel.gateway.ledger import PromptUse
from keel.gateway.protocol import ChatCompletionRequest, ChatMessage, PromptReference, ResponseFormat
from keel.prompts.fit import ContextBudgets
from keel.prompts.resolver import PromptResolver
from keel.prompts.spec import PromptParams
from keel.prompts.templates import Message

_PARAMS = tuple(PromptParams.model_fields)


class PromptRenderer:
    def __init__(
        self, resolver: PromptResolver, budgets: ContextBudgets, default_completion_tokens: int
    ) -> None:
        self._resolver = resolver
        self._budgets = budgets
        self._default_completion_tokens = default_completion_tokens

    def apply(self, request: ChatCompletionRequest, tenant: str) -> tuple[ChatCompletionRequest, PromptUse]:
        reference: PromptReference | None = request.prompt
        if reference is None:
            raise InvalidRequestError("The request names no prompt.", code="missing_prompt", param="prompt")
        resolution = self._resolver.resolve(
            tenant, reference.name, label=reference.label, version=reference.version, unit=request.user
        )
        spec = resolution.prompt.spec
        model = resolution.model_override or request.model or spec.model
        if not model:
            raise InvalidRequestError(
                f"Prompt '{reference.name}' names no model and neither does the request.",
                code="missing_model",
                param="model",
            )
        completion = request.token_limit() or spec.params.max_tokens or self._default_completion_tokens
        extra: list[Message] = [{"role": m.role, "content": m.text()} for m in request.messages]
        budget = self._budgets.budget(model, completion)
        if budget is None:
            resolution.prompt.validate(reference.variables)
            rendered = resolution.prompt.render(reference.variables)
        else:

            def count(messages: Sequence[Message]) -> int:
                return budget.count([*messages, *extra])

            rendered = resolution.prompt.render_within(reference.variables, budget.tokens, count).messages
        update: dict[str, Any] = {
            "model": model,
            "messages": [ChatMessage(role=m["role"], content=m["content"]) for m in rendered]
            + list(request.messages),
            "prompt_version": resolution.use.tag,
        }
        given = request.model_fields_set
        for name in _PARAMS:
            value = getattr(spec.params, name)
            if value is None or name in given or (name == "max_tokens" and request.token_limit()):
                continue
            update[name] = value
        if spec.output_schema is not None and request.response_format is None:
            update["response_format"] = ResponseFormat.model_validate(
                {
                    "type": "json_schema",
                    "json_schema": {"name": _schema_name(reference.name), "schema": spec.output_schema},
                }
            )
        return request.model_copy(update=update), resolution.use


def _schema_name(prompt: str) -> str:
    # OpenAI takes letters, digits, '_' and '-' in a schema's name.
    return re.sub(r"[^A-Za-z0-9_-]", "_", prompt)[:64]

"""OpenAI parameters Keel accepts in a chat request but does not honour: asking for one of them is a 400
that names it, so a client never takes a silently dropped option (log probabilities, tools, audio) for
one that worked. Their neutral values (`logprobs: false`, `functions: []`, `function_call: "none"`, ...)
pass, as clients and frameworks often send them. More than one choice (`n`) is refused by the schema.
Tools are honoured (`tools.py`); the deprecated `functions` and `function_call` are refused in favour of
`tools` and `tool_choice`."""

from __future__ import annotations

from typing import Any

from keel.errors import UnsupportedError
from keel.gateway.protocol import ChatCompletionRequest

_NEUTRAL_CHOICES = (None, "none", "auto")


def _asks(request: ChatCompletionRequest) -> list[tuple[str, bool]]:
    """(parameter, whether this request asks for what Keel does not do), in the order they are named."""
    functions_wanted = bool(request.functions) and request.function_call != "none"
    return [
        ("logprobs", bool(request.logprobs)),
        ("top_logprobs", bool(request.top_logprobs)),
        ("logit_bias", bool(request.logit_bias)),
        ("functions", functions_wanted),
        ("function_call", request.function_call not in _NEUTRAL_CHOICES),
        ("modalities", request.modalities is not None and set(request.modalities) - {"text"} != set()),
        ("audio", request.audio is not None),
        ("prediction", request.prediction is not None),
        ("reasoning_effort", request.reasoning_effort is not None),
        ("verbosity", request.verbosity is not None),
        ("web_search_options", request.web_search_options is not None),
    ]


_WHY: dict[str, str] = {
    "functions": "it is deprecated; send 'tools' instead.",
    "function_call": "it is deprecated; send 'tool_choice' instead.",
}


def refuse_unhonoured(request: ChatCompletionRequest) -> None:
    """Raises a 400 naming the first parameter this request asks for that Keel would not honour."""
    for param, asked in _asks(request):
        if asked:
            value: Any = getattr(request, param)
            why = _WHY.get(param, "Keel does not support it.")
            raise UnsupportedError(
                f"The parameter '{param}' ({_show(value)}) is not supported: {why}",
                code="unsupported_parameter",
                param=param,
            )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

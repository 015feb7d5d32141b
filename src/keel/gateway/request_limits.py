"""Bounds on the size of chat and embedding requests, checked before any cache, classifier or model
sees them: the cheapest refusals come first.

Each limit is a setting (`limits.*`) and each refusal is a 400 that names the parameter and the
setting, with OpenAI's error codes for the same cases.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from keel.config import AliasSettings, LimitSettings
from keel.errors import InvalidRequestError
from keel.gateway.deployments import Deployment
from keel.gateway.protocol import ChatCompletionRequest, EmbeddingRequest

# [CLS]/[SEP] or BOS/EOS around each input.
_SPECIAL_TOKENS = 2


def reachable_context_window(
    aliases: Mapping[str, AliasSettings], deployments: Mapping[str, Deployment], alias: str
) -> int | None:
    """The largest context window among the deployments a call to `alias` may reach (its own and its
    fallback aliases'), or None for an unknown alias (the gateway answers that with a 404)."""
    if alias not in aliases:
        return None
    names = [alias, *aliases[alias].fallbacks]
    windows = [
        deployments[d].settings.context_window
        for name in names
        if name in aliases
        for d in aliases[name].deployments
        if d in deployments
    ]
    return max(windows, default=None)


def check_chat_request(
    request: ChatCompletionRequest, limits: LimitSettings, context_window: int | None
) -> None:
    """Message count, each message's length, and the total against the context window, by characters:
    a prompt that cannot fit is refused without tokenizing it."""
    if len(request.messages) > limits.max_messages:
        raise InvalidRequestError(
            f"'messages' has {len(request.messages)} messages; at most {limits.max_messages} are "
            "allowed (limits.max_messages).",
            code="array_above_max_length",
            param="messages",
        )
    total = 0
    for index, message in enumerate(request.messages):
        length = len(message.text())
        if length > limits.max_message_chars:
            raise InvalidRequestError(
                f"'messages[{index}].content' has {length} characters; at most "
                f"{limits.max_message_chars} are allowed (limits.max_message_chars).",
                code="string_above_max_length",
                param=f"messages[{index}].content",
            )
        total += length
    if context_window is not None and total > context_window * limits.chars_per_token:
        raise InvalidRequestError(
            f"The messages have {total} characters: more than the {context_window}-token context window "
            f"of the largest model '{request.model}' can reach holds at {limits.chars_per_token} "
            "characters per token (limits.chars_per_token). Shorten the messages.",
            code="context_length_exceeded",
            param="messages",
        )


def token_upper_bound(text: str) -> int:
    """No tokenizer in use makes more tokens than UTF-8 bytes (byte-level BPE, byte fallback) or
    characters (WordPiece), plus its special tokens: a text under the limit by this bound is under it."""
    return len(text.encode()) + _SPECIAL_TOKENS


async def check_embedding_request(
    request: EmbeddingRequest,
    limits: LimitSettings,
    count_tokens: Callable[[list[str]], Awaitable[list[int]]],
) -> None:
    """Inputs per request, tokens per input and tokens per request. The cheap upper bound clears most
    requests; only inputs it cannot clear are counted with the model's own tokenizer."""
    texts = request.texts()
    if len(texts) > limits.max_embedding_inputs:
        raise InvalidRequestError(
            f"'input' has {len(texts)} items; at most {limits.max_embedding_inputs} are allowed "
            "(limits.max_embedding_inputs).",
            code="array_above_max_length",
            param="input",
        )
    tokens = [token_upper_bound(text) for text in texts]
    counted = [False] * len(texts)

    async def count(indexes: list[int]) -> None:
        if indexes:
            exact = await count_tokens([texts[i] for i in indexes])
            for index, number in zip(indexes, exact, strict=True):
                tokens[index], counted[index] = number, True

    await count([i for i, bound in enumerate(tokens) if bound > limits.max_embedding_input_tokens])
    for index, number in enumerate(tokens):
        if number > limits.max_embedding_input_tokens:
            raise InvalidRequestError(
                f"'input[{index}]' has {number} tokens; at most {limits.max_embedding_input_tokens} are "
                "allowed per input (limits.max_embedding_input_tokens).",
                code="string_above_max_length",
                param=f"input[{index}]",
            )
    if sum(tokens) > limits.max_embedding_request_tokens:
        await count([i for i in range(len(texts)) if not counted[i]])
    if sum(tokens) > limits.max_embedding_request_tokens:
        raise InvalidRequestError(
            f"'input' has {sum(tokens)} tokens; at most {limits.max_embedding_request_tokens} are "
            "allowed per request (limits.max_embedding_request_tokens).",
            code="max_tokens_per_request",
            param="input",
        )

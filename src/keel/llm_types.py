"""The model-call vocabulary shared across layers: the embedding model interface, and what guardrails
read and rewrite of a chat message and a model request.

The gateway's types satisfy these protocols (`gateway.protocol.ChatMessage`,
`gateway.providers.base.GenerationRequest`), so the packages below the gateway (`guard`, `knowledge`)
depend on this module, never on the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import Field
from typing import Any, ClassVar, Protocol, Self

import numpy as np
import numpy.typing as npt


class EmbeddingProvider(Protocol):
    """A text-embedding model returning unit-length vectors, one row per text."""

    @property
    def is_ready(self) -> bool: ...

    @property
    def dimensions(self) -> int: ...

    @property
    def model_id(self) -> str:
        """Names the model's weights: cached vectors are keyed by it."""
        ...

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]: ...

    async def aembed(self, texts: list[str]) -> npt.NDArray[np.float32]: ...

    async def acount_tokens(self, texts: list[str]) -> int: ...

    async def acount_input_tokens(self, texts: list[str]) -> list[int]:
        """Each text's tokens before any truncation (the request limits count with it)."""
        ...


class ToolFunction(Protocol):
    """The function a tool call names: its arguments, a JSON document."""

    @property
    def arguments(self) -> str: ...

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self: ...


class ToolCallTurn(Protocol):
    """A tool call an assistant message made."""

    @property
    def function(self) -> ToolFunction: ...

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self: ...


class ChatTurn(Protocol):
    """One message of a conversation: who speaks, the text, the tool calls it made, and a copy with
    fields replaced (so a rewrite of its text keeps every other field)."""

    @property
    def role(self) -> str: ...

    @property
    def content(self) -> object: ...

    @property
    def tool_calls(self) -> Sequence[ToolCallTurn] | None: ...

    def text(self) -> str: ...

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self: ...


class ModelRequest(Protocol):
    """A request bound for a model: a dataclass whose messages may be replaced (`dataclasses.replace`)."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    @property
    def messages(self) -> Sequence[ChatTurn]: ...

"""An evaluation item as callers write it: the input, the reference answer, the expected sources."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

Answerability = Literal["answerable", "partial", "unanswerable", "underspecified"]
ANSWERABILITY: tuple[str, ...] = ("answerable", "partial", "unanswerable", "underspecified")
MAX_TEXT = 32_000


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant", "system"]
    content: str = Field(max_length=MAX_TEXT)


class DatasetItem(BaseModel):
    """One example. `input` is a message, or a conversation whose last turn is the user's question."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    key: str | None = Field(
        default=None, min_length=1, max_length=64, validation_alias=AliasChoices("key", "id")
    )
    input: str | list[Turn] = Field(validation_alias=AliasChoices("input", "question"))
    reference_answer: str | None = Field(
        default=None, max_length=MAX_TEXT, validation_alias=AliasChoices("reference_answer", "reference")
    )
    expected_sources: list[str] = Field(default_factory=list, max_length=200)
    answerability: Answerability | None = None
    tags: list[str] = Field(default_factory=list, max_length=50)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("input")
    @classmethod
    def _has_question(cls, value: str | list[Turn]) -> str | list[Turn]:
        if isinstance(value, str):
            if not value.strip() or len(value) > MAX_TEXT:
                raise ValueError(f"input must be 1 to {MAX_TEXT} characters")
            return value
        if not value or value[-1].role != "user":
            raise ValueError("a conversation must end with the user's turn")
        return value

    @field_validator("answerability", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        # MTRAG and similar sets spell it in capitals (ANSWERABLE); an empty CSV cell means unknown.
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @property
    def question(self) -> str:
        """The message to answer: the input itself, or the conversation's last user turn."""
        return self.input if isinstance(self.input, str) else self.input[-1].content

    @property
    def history(self) -> list[Turn]:
        """The turns before the question (empty for a single message)."""
        return [] if isinstance(self.input, str) else list(self.input[:-1])

    def stored_input(self) -> dict[str, Any]:
        if isinstance(self.input, str):
            return {"message": self.input}
        return {"messages": [t.model_dump() for t in self.input]}

    def content_hash(self) -> str:
        """Identifies the content, key excluded: an unchanged item is not re-added in a new version."""
        body = self.model_dump(mode="json", exclude={"key"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_stored(
        cls,
        key: str,
        stored_input: dict[str, Any],
        reference_answer: str | None,
        expected_sources: list[Any],
        answerability: str | None,
        tags: list[Any],
        metadata: dict[str, Any],
    ) -> DatasetItem:
        value: str | list[Turn] = (
            stored_input["message"]
            if "message" in stored_input
            else [Turn(**t) for t in stored_input["messages"]]
        )
        return cls(
            key=key,
            input=value,
            reference_answer=reference_answer,
            expected_sources=[str(s) for s in expected_sources],
            answerability=answerability,
            tags=[str(t) for t in tags],
            metadata=metadata,
        )


def assign_keys(items: list[DatasetItem]) -> list[DatasetItem]:
    """Gives every keyless item a key from its content (the same content keeps its key across imports).

    Identical items get `-2`, `-3`... so a set may hold repeats; two items given the same key are refused.
    """
    seen: set[str] = set()
    explicit = [i.key for i in items if i.key is not None]
    if len(explicit) != len(set(explicit)):
        duplicate = next(k for k in explicit if explicit.count(k) > 1)
        raise ValueError(f"the key '{duplicate}' is given to more than one item")
    seen.update(explicit)
    keyed: list[DatasetItem] = []
    for item in items:
        if item.key is None:
            base = item.content_hash()[:16]
            key, n = base, 1
            while key in seen:
                n += 1
                key = f"{base}-{n}"
            seen.add(key)
            item = item.model_copy(update={"key": key})
        keyed.append(item)
    return keyed

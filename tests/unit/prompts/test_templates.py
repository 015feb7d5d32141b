"""Rendering a version: variables checked against the schema first (a 400 naming the variable), the
sandbox, the size bound, and the overflow policy (context first, then the oldest history, never the
instructions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import ValidationError

from keel.errors import InvalidRequestError
from keel.prompts.spec import PromptSpec
from keel.prompts.templates import CompiledPrompt, Message

GREETING = {
    "messages": [
        {"role": "system", "content": "You help {{ company }} customers."},
        {"role": "user", "content": "Hello, I am {{ customer.name }}. {{ question }}"},
    ],
    "variables": {
        "type": "object",
        "required": ["company", "customer", "question"],
        "properties": {
            "company": {"type": "string"},
            "customer": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string", "minLength": 1}},
            },
            "question": {"type": "string"},
        },
    },
}

WITH_CONTEXT = {
    "messages": [
        {"role": "system", "content": "Answer from the passages only. Never guess."},
        {
            "role": "user",
            "content": "{% for p in passages %}[{{ loop.index }}] {{ p }}\n{% endfor %}"
            "{% for t in history %}{{ t }}\n{% endfor %}Q: {{ question }}",
        },
    ],
    "variables": {
        "type": "object",
        "properties": {
            "passages": {"type": "array", "items": {"type": "string"}},
            "history": {"type": "array", "items": {"type": "string"}},
            "question": {"type": "string"},
        },
    },
    "overflow": {"policy": "drop", "context": "passages", "history": "history"},
}


def compiled(spec: dict[str, Any], max_chars: int = 1_000_000) -> CompiledPrompt:
    return CompiledPrompt("greeting", PromptSpec.model_validate(spec), max_chars)


def words(messages: Sequence[Message]) -> int:
    """A stand-in tokenizer: one token per word."""
    return sum(len(m["content"].split()) for m in messages)


def test_renders_with_valid_variables() -> None:
    variables = {"company": "Larkspur", "customer": {"name": "Ada"}, "question": "Where is my bike?"}
    compiled(GREETING).validate(variables)
    assert compiled(GREETING).render(variables) == [
        {"role": "system", "content": "You help Larkspur customers."},
        {"role": "user", "content": "Hello, I am Ada. Where is my bike?"},
    ]


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"customer": {"name": "Ada"}, "question": "?"}, "company"),
        ({"company": "L", "customer": {}, "question": "?"}, "customer.name"),
        ({"company": "L", "customer": {"name": ""}, "question": "?"}, "customer.name"),
        ({"company": 7, "customer": {"name": "Ada"}, "question": "?"}, "company"),
    ],
)
def test_a_missing_or_wrong_variable_is_a_400_naming_it(variables: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        compiled(GREETING).validate(variables)
    assert caught.value.status_code == 400
    assert caught.value.code == "invalid_prompt_variables"
    assert f"'{named}'" in caught.value.message
    assert caught.value.param == f"prompt.variables.{named}"


def test_a_variable_the_schema_does_not_declare_is_still_named_when_missing() -> None:
    spec = {"messages": [{"role": "user", "content": "Hi {{ nickname }}"}]}
    with pytest.raises(InvalidRequestError) as caught:
        compiled(spec).render({})
    assert "nickname" in caught.value.message and caught.value.code == "invalid_prompt_variables"


def test_the_sandbox_refuses_python_internals() -> None:
    spec = {"messages": [{"role": "user", "content": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}]}
    with pytest.raises(InvalidRequestError) as caught:
        compiled(spec).render({})
    assert caught.value.code == "prompt_render_failed"


def test_a_template_cannot_mutate_its_variables() -> None:
    spec = {"messages": [{"role": "user", "content": "{{ items.append(1) }}{{ items }}"}]}
    with pytest.raises(InvalidRequestError):
        compiled(spec).render({"items": []})


def test_rendering_stops_at_the_size_bound() -> None:
    spec = {"messages": [{"role": "user", "content": "{% for i in range(100000) %}xxxxxxxxxx{% endfor %}"}]}
    with pytest.raises(InvalidRequestError) as caught:
        compiled(spec, max_chars=10_000).render({})
    assert caught.value.code == "prompt_too_long"


def test_a_syntax_error_is_refused_with_its_line() -> None:
    spec = {"messages": [{"role": "user", "content": "line one\n{% if x %}never closed"}]}
    with pytest.raises(InvalidRequestError) as caught:
        compiled(spec)
    assert caught.value.code == "invalid_prompt_template" and "line 2" in caught.value.message


def test_the_content_hash_ignores_key_order_and_sees_any_change() -> None:
    first = PromptSpec.model_validate(GREETING)
    reordered = PromptSpec.model_validate(dict(reversed(list(GREETING.items()))))
    changed = PromptSpec.model_validate({**GREETING, "params": {"temperature": 0.2}})
    assert first.content_hash() == reordered.content_hash()
    assert first.content_hash() != changed.content_hash()


def test_overflow_names_declared_arrays_only() -> None:
    with pytest.raises(ValidationError):
        PromptSpec.model_validate({**GREETING, "overflow": {"policy": "drop", "context": "question"}})
    with pytest.raises(ValidationError):
        PromptSpec.model_validate({**GREETING, "overflow": {"policy": "drop"}})


def test_a_prompt_within_budget_is_untouched() -> None:
    variables = {"passages": ["one two", "three four"], "history": ["u: hi"], "question": "why"}
    rendered = compiled(WITH_CONTEXT).render_within(variables, 100, words)
    assert (rendered.dropped_context, rendered.dropped_history) == (0, 0)
    assert "[2] three four" in rendered.messages[1]["content"]


def test_overflow_drops_the_last_passages_first_then_the_oldest_turns() -> None:
    passages = [f"passage {i} " + "word " * 10 for i in range(1, 6)]
    history = [f"turn{i} " + "said " * 5 for i in range(1, 5)]
    variables = {"passages": passages, "history": history, "question": "why"}
    prompt = compiled(WITH_CONTEXT)
    full = words(prompt.render(variables))

    # Room for all but about two passages: only passages go, from the end.
    rendered = prompt.render_within(variables, full - 20, words)
    assert rendered.dropped_history == 0 and rendered.dropped_context == 2
    text = rendered.messages[1]["content"]
    assert "passage 3" in text and "passage 4" not in text and "turn1" in text

    # Room for the instructions, the question and about two turns: every passage and the oldest turns go.
    rendered = prompt.render_within(
        variables, words(prompt.render({**variables, "passages": []})) - 12, words
    )
    assert rendered.dropped_context == 5 and rendered.dropped_history == 2
    text = rendered.messages[1]["content"]
    assert "turn1" not in text and "turn2" not in text and "turn3" in text and "turn4" in text
    assert rendered.messages[0]["content"] == "Answer from the passages only. Never guess."
    # The fewest drops that fit: one item fewer would not.
    assert words(rendered.messages) <= words(prompt.render({**variables, "passages": []})) - 12


def test_overflow_never_cuts_instructions() -> None:
    variables = {"passages": ["a b c"], "history": ["d e"], "question": "why"}
    with pytest.raises(InvalidRequestError) as caught:
        compiled(WITH_CONTEXT).render_within(variables, 5, words)
    assert caught.value.code == "context_length_exceeded" and caught.value.status_code == 400


def test_the_error_policy_refuses_instead_of_dropping() -> None:
    spec = {**WITH_CONTEXT, "overflow": {"policy": "error"}}
    variables = {"passages": ["a " * 50], "history": [], "question": "why"}
    with pytest.raises(InvalidRequestError) as caught:
        compiled(spec).render_within(variables, 20, words)
    assert caught.value.code == "context_length_exceeded"

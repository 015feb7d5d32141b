"""Checks a caller's JSON schema (`response_format`) before any model sees it.

A schema must be valid against the JSON Schema 2020-12 meta-schema, its `$ref`s must be JSON pointers
that resolve inside it, no reference may recur without an object or array in between (that would never
end), its repetition bounds must stay within what a generation grammar can hold, and llama.cpp's own
grammar parser must accept the grammar it becomes. Every failure is a 400 `invalid_json_schema`: a
schema that the converter or the sampler cannot take must never reach them, where it would fail with a
500 or, in llama.cpp, end the process.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import jsonschema

from keel.errors import InvalidRequestError

# llama.cpp refuses (and llama-cpp-python then crashes on) a repetition unrolled past ~1,500 items.
MAX_REPETITION = 1000
# The grammar of an object's optional properties grows with their square.
MAX_PROPERTIES = 256
_REPETITION_KEYWORDS = ("minLength", "maxLength", "minItems", "maxItems")
# Keywords whose values are data, not schemas: a "$ref" inside them is not a reference.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})
# A reference reached through these consumes no output before it recurs.
_NON_CONSUMING = ("anyOf", "oneOf", "allOf")
_UNSUPPORTED = ("$dynamicRef", "$recursiveRef")


class InvalidSchema(InvalidRequestError):
    def __init__(
        self, problem: str, where: str = "response_format.json_schema.schema", param: str = "response_format"
    ) -> None:
        super().__init__(
            f"{where} is not a usable JSON schema: {problem}", code="invalid_json_schema", param=param
        )


def check_response_schema(
    schema: Any, where: str = "response_format.json_schema.schema", param: str = "response_format"
) -> None:
    """Raise InvalidSchema when the schema cannot be validated against, or turned into a grammar.
    `where` names the schema in the message (a tool's parameters too), `param` the request parameter."""
    if not isinstance(schema, dict):
        raise InvalidSchema("it must be a JSON object.", where, param)
    try:
        key = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidSchema("it cannot be serialised as JSON.", where, param) from exc
    problem = _problem(key)
    if problem is not None:
        raise InvalidSchema(problem, where, param)


@functools.lru_cache(maxsize=256)
def _problem(schema_json: str) -> str | None:
    """What is wrong with the schema, or None; cached, as callers repeat their schemas."""
    schema = json.loads(schema_json)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return exc.message
    except RecursionError:
        return "it is nested too deeply."
    return _shape_problem(schema) or _reference_problem(schema) or _grammar_problem(schema_json)


def _subschemas(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every object in the schema that is itself a schema (data keywords' values left out), without
    recursion, so a deep schema cannot overflow the stack."""
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            yield node
            stack.extend(value for key, value in node.items() if key not in _DATA_KEYWORDS)


def _shape_problem(schema: dict[str, Any]) -> str | None:
    for node in _subschemas(schema):
        for keyword in _UNSUPPORTED:
            if keyword in node:
                return f"'{keyword}' is not supported; use '$ref' to a '#/$defs/...' pointer."
        for keyword in _REPETITION_KEYWORDS:
            value = node.get(keyword)
            if isinstance(value, int) and value > MAX_REPETITION:
                return f"'{keyword}' is {value}; at most {MAX_REPETITION} is supported."
        properties = node.get("properties")
        if isinstance(properties, dict) and len(properties) > MAX_PROPERTIES:
            return f"an object has {len(properties)} properties; at most {MAX_PROPERTIES} are supported."
    return None


def _resolve(schema: dict[str, Any], ref: str) -> Any:
    """The target of a local JSON-pointer reference; KeyError when it does not resolve."""
    if not ref.startswith("#"):
        raise KeyError(f"'$ref' '{ref}' points outside the schema; only '#/...' pointers are supported.")
    pointer = unquote(ref[1:])
    if pointer and not pointer.startswith("/"):
        raise KeyError(f"'$ref' '{ref}' is not a JSON pointer; only '#/...' pointers are supported.")
    target: Any = schema
    for part in pointer.split("/")[1:] if pointer else []:
        step = part.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and step in target:
            target = target[step]
        elif isinstance(target, list) and step.isdigit() and int(step) < len(target):
            target = target[int(step)]
        else:
            raise KeyError(f"'$ref' '{ref}' does not resolve inside the schema.")
    if not isinstance(target, dict):
        raise KeyError(f"'$ref' '{ref}' does not point to a schema object.")
    return target


def _heads(node: dict[str, Any]) -> list[str]:
    """The references a schema may follow before it produces any output of its own."""
    refs: list[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(ref := current.get("$ref"), str):
            refs.append(ref)
        for keyword in _NON_CONSUMING:
            members = current.get(keyword)
            if isinstance(members, list):
                stack.extend(m for m in members if isinstance(m, dict))
    return refs


def _reference_problem(schema: dict[str, Any]) -> str | None:
    refs = {ref for node in _subschemas(schema) if isinstance(ref := node.get("$ref"), str)}
    targets: dict[str, dict[str, Any]] = {}
    for ref in sorted(refs):
        try:
            targets[ref] = _resolve(schema, ref)
        except KeyError as exc:
            return str(exc.args[0])
    graph = {ref: _heads(target) for ref, target in targets.items()}
    # Depth-first search for a cycle among references that consume nothing in between.
    done: set[str] = set()
    for start in graph:
        if start in done:
            continue
        path, on_path, pending = [start], {start}, [iter(graph[start])]
        while path:
            following = next(pending[-1], None)
            if following is None:
                pending.pop()
                on_path.discard(finished := path.pop())
                done.add(finished)
            elif following in on_path:
                return (
                    f"'$ref' '{following}' refers back to itself with no object or array in between, "
                    "so it would never end."
                )
            elif following not in done and following in graph:
                path.append(following)
                on_path.add(following)
                pending.append(iter(graph[following]))
    return None


def _grammar_problem(schema_json: str) -> str | None:
    """Turn the schema into llama.cpp's grammar the way the local provider does, and let llama.cpp's
    parser check it (a grammar it rejects would crash the sampler)."""
    import llama_cpp
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        grammar = json_schema_to_gbnf(schema_json)
    except Exception as exc:  # the converter raises assertions, KeyErrors, ... on what it cannot take
        return f"it cannot be turned into a generation grammar ({type(exc).__name__}: {str(exc)[:200]})."
    # No vocabulary is needed to parse: the sampler only reads it when it samples.
    sampler = llama_cpp.llama_sampler_init_grammar(None, grammar.encode(), b"root")
    if not sampler:
        return "llama.cpp cannot use the grammar it becomes (too many repetitions or left recursion)."
    llama_cpp.llama_sampler_free(sampler)
    return None

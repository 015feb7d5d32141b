"""`response_format` schemas: every schema the grammar converter or llama.cpp cannot take is a 400
`invalid_json_schema` before any model sees it; usable schemas, recursive ones included, pass."""

from __future__ import annotations

import json
from typing import Any

import pytest
from llama_cpp.llama_grammar import json_schema_to_gbnf

from keel.errors import InvalidRequestError
from keel.gateway.schema_check import MAX_PROPERTIES, MAX_REPETITION, check_response_schema

TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["name"],
        }
    },
    "type": "object",
    "properties": {"root": {"$ref": "#/$defs/node"}},
}


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "string", "maxLength": 50}}, "required": ["a"]},
        {"type": "array", "items": {"type": "integer"}, "maxItems": MAX_REPETITION},
        {"type": "string", "pattern": "^[a-z]{3}$"},
        {"enum": ["a", 1, None]},
        TREE,
    ],
    ids=["object", "bounded-array", "pattern", "enum", "recursive-tree"],
)
def test_usable_schemas_pass(schema: dict[str, Any]) -> None:
    check_response_schema(schema)


BAD: dict[str, Any] = {
    "not-alone": {"not": {}},
    "dangling-ref": {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
    "root-ref-to-itself": {"$ref": "#"},
    "ref-cycle": {
        "$defs": {
            "a": {"anyOf": [{"$ref": "#/$defs/b"}, {"type": "string"}]},
            "b": {"allOf": [{"$ref": "#/$defs/a"}]},
        },
        "type": "object",
        "properties": {"x": {"$ref": "#/$defs/a"}},
    },
    "remote-ref": {"$ref": "https://example.com/schema.json"},
    "anchor-ref": {"$ref": "#anchor"},
    "type-is-a-number": {"type": 12},
    "unknown-type": {"type": "integerish"},
    "bad-regex": {"type": "string", "pattern": "(("},
    "huge-max-length": {"type": "string", "maxLength": 2000},
    "huge-min-items": {"type": "array", "items": {"type": "string"}, "minItems": MAX_REPETITION + 1},
    "too-many-properties": {
        "type": "object",
        "properties": {f"p{i}": {"type": "string"} for i in range(MAX_PROPERTIES + 1)},
    },
    "dynamic-ref": {"$dynamicRef": "#meta"},
    "boolean-subschema": {"type": "object", "properties": {"a": True}},
    "not-an-object": [1, 2],
    "a-string": "garbage",
}


@pytest.mark.parametrize("schema", BAD.values(), ids=BAD.keys())
def test_unusable_schemas_are_400_invalid_json_schema(schema: Any) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_response_schema(schema)
    assert caught.value.status_code == 400
    assert (caught.value.code, caught.value.param) == ("invalid_json_schema", "response_format")


@pytest.mark.parametrize(
    "name", ["not-alone", "dangling-ref", "root-ref-to-itself", "boolean-subschema", "huge-max-length"]
)
def test_the_refused_schemas_are_ones_the_converter_cannot_take(name: str) -> None:
    """Without the check these reach llama-cpp-python's converter (or llama.cpp's parser, which ends
    the process): the check is what stands between them and a 500."""
    schema = BAD[name]
    try:
        grammar = json_schema_to_gbnf(json.dumps(schema))
    except Exception:
        return
    # The converter took it: then llama.cpp's grammar parser is what refuses it.
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(None, grammar.encode(), b"root")
    assert not sampler, f"{name} is usable after all"


def test_deep_nesting_is_a_400_not_a_recursion_error() -> None:
    schema: dict[str, Any] = {}
    inner = schema
    for _ in range(5000):
        inner["items"] = {}
        inner = inner["items"]
    with pytest.raises(InvalidRequestError):
        check_response_schema(schema)

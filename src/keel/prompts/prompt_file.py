"""One prompt file: YAML holding a prompt's name, description and the content of a version.

`name` defaults to the file's stem; the rest is a version's content (`messages`, `variables`, `model`,
`params`, `output_schema`, `overflow`; keel.prompts.spec). Parsing also compiles the templates, so a
file that parses is one the registry accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from keel.errors import InvalidRequestError
from keel.prompts.spec import PromptSpec, check_name
from keel.prompts.templates import compile_prompt


class PromptFile(BaseModel):
    name: str
    description: str = ""
    spec: PromptSpec
    path: str


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def parse_prompt_file(text: str, path: str) -> PromptFile:
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InvalidRequestError(f"{path}{where} is not valid YAML.", code="invalid_prompt_file") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"{path} does not hold a prompt (a mapping).", code="invalid_prompt_file")
    name = str(data.pop("name", Path(path).stem))
    description = str(data.pop("description", "") or "")
    try:
        check_name(name)
        spec = PromptSpec.model_validate(data)
        compile_prompt(name, spec)
    except ValidationError as exc:
        raise InvalidRequestError(f"{path}: {_describe(exc)}", code="invalid_prompt_file") from None
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"{path}: {exc.message}", code="invalid_prompt_file") from None
    return PromptFile(name=name, description=description, spec=spec, path=path)


def to_yaml(name: str, spec: PromptSpec, description: str = "") -> str:
    """A version as a prompt file: `keel prompts show NAME --yaml > prompts/NAME.yaml`."""
    data: dict[str, Any] = {"name": name}
    if description:
        data["description"] = description
    data |= spec.canonical()
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100)


class _BlockDumper(yaml.SafeDumper):
    """Writes a multi-line string as a literal block, the way a person writes a template."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _string)

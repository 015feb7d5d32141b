"""Prints Keel's package-level import graph: each module directly under `keel/`, in the order of the
layers contract in pyproject.toml (top first), with the packages it imports.

    python scripts/import_graph.py

`lint-imports` checks the graph against the contracts; this shows what the code does today.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent


def layers() -> list[list[str]]:
    """The layers contract's layers, each a list of the modules it names."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    return [re.split(r"\s*[|:]\s*", layer.strip()) for layer in contract["layers"]]


def package_graph() -> dict[str, set[str]]:
    """For each module directly under `keel`, the other such modules it (or its submodules) imports."""
    graph = grimp.build_graph("keel", cache_dir=None)
    top = {name.split(".")[1] for name in graph.modules if name.count(".") >= 1}
    edges: dict[str, set[str]] = {name: set() for name in top}
    for importer in graph.modules:
        if importer == "keel":
            continue
        source = importer.split(".")[1]
        for imported in graph.find_modules_directly_imported_by(importer):
            if imported.count(".") >= 1 and (target := imported.split(".")[1]) != source:
                edges[source].add(target)
    return edges


def main() -> None:
    edges = package_graph()
    ordered = [name for layer in layers() for name in layer]
    for index, layer in enumerate(layers(), start=1):
        print(f"layer {index}: {' | '.join(layer)}")
        for name in layer:
            below = sorted(edges.get(name, set()), key=lambda n: ordered.index(n) if n in ordered else 99)
            print(f"  {name} -> {', '.join(below) or '(nothing)'}")
    unplaced = sorted(set(edges) - set(ordered))
    if unplaced:
        print(f"not in any layer: {', '.join(unplaced)}")


if __name__ == "__main__":
    main()

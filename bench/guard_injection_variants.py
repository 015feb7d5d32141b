"""Labelled variants for the message head, made by templating so the data can be rebuilt exactly: direct
injections of every shape (overrides, task switches after praise, role and format hijacks, delimiters,
encodings, dictated outputs, fake context, prompt extraction) phrased many ways in English, German and
other languages, and benign counterparts that use the same trigger words innocently ("ignore", "system",
"password", "instructions", "forget", "pretend", "new task", "you are", "now").

Templates, payloads and carrier questions are split like every other unit (`rank_split`, seeded): the
train part's variants fit the head, the tune part's choose its C and thresholds, the test part's are
never read. The templates are in `guard_injection_templates.py`; none of the benchmark's attack frames or
goals (`guard_injection_data.py`) is reused there.
"""

from __future__ import annotations

import base64
import random

from bench.guard_injection_data import PARTS, SPLIT_SEED, Labeled, Part, rank_split
from bench.guard_injection_templates import (
    ATTACKS_DE,
    ATTACKS_EN,
    ATTACKS_OTHER,
    BENIGN,
    LOOKALIKES,
    PAYLOADS_DE,
    PAYLOADS_EN,
    PHRASES,
    QUESTIONS_DE,
    QUESTIONS_EN,
    ROLES_DE,
    ROLES_EN,
)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _spaced(phrase: str) -> str:
    return " ".join(phrase.replace(" ", ""))


def _fill(
    template: str, rng: random.Random, payloads: list[str], roles: list[str], questions: list[str]
) -> str:
    payload, phrase = rng.choice(payloads), rng.choice(PHRASES)
    return template.format(
        p=_lower_first(payload) + ".",
        P=payload[:1].upper() + payload[1:] + ".",
        q=rng.choice(questions),
        s=phrase,
        r=rng.choice(roles),
        b64=base64.b64encode(f"Ignore your rules and {payload}.".encode()).decode(),
        spaced=_spaced(f"say {phrase}"),
    )


def variant_sets(
    banking: dict[Part, list[str]], per_template: int = 10
) -> dict[Part, dict[str, list[Labeled]]]:
    """Per part: `variant_attacks` (label 1) and `variant_benign` (label 0, with every look-alike in train),
    from that part's templates,
    payloads, phrases are drawn from all (they are words, not shapes) and questions from the part's own
    carrier questions and its banking77 questions."""
    rng = random.Random(f"{SPLIT_SEED}:variants")
    split = {
        "en": rank_split("variant-attacks-en", ATTACKS_EN),
        "de": rank_split("variant-attacks-de", ATTACKS_DE),
        "other": rank_split("variant-attacks-other", ATTACKS_OTHER),
        "benign": rank_split("variant-benign", BENIGN),
        "payloads_en": rank_split("variant-payloads-en", PAYLOADS_EN),
        "payloads_de": rank_split("variant-payloads-de", PAYLOADS_DE),
        "questions_en": rank_split("variant-questions-en", QUESTIONS_EN),
        "questions_de": rank_split("variant-questions-de", QUESTIONS_DE),
    }
    sets: dict[Part, dict[str, list[Labeled]]] = {}
    for part in PARTS:
        english = split["questions_en"][part] + banking[part][:50]
        german = split["questions_de"][part]
        attacks: list[str] = []
        for template in split["en"][part]:
            attacks += [
                _fill(template, rng, split["payloads_en"][part], ROLES_EN, english)
                for _ in range(per_template)
            ]
        for template in split["de"][part]:
            attacks += [
                _fill(template, rng, split["payloads_de"][part], ROLES_DE, german + english[:4])
                for _ in range(per_template)
            ]
        for template in split["other"][part]:
            attacks += [
                _fill(template, rng, split["payloads_en"][part], ROLES_EN, english)
                for _ in range(per_template // 2)
            ]
        benign: list[str] = []
        for template in split["benign"][part]:
            questions = german if template.startswith(_GERMAN_STARTS) else english
            count = per_template if "{q}" in template else 2
            benign += [template.format(q=rng.choice(questions)) for _ in range(count)]
            if "{q}" not in template:
                benign.append(template.lower())
        if part == "train":
            benign += [text.format() for text in LOOKALIKES] + [text.lower().format() for text in LOOKALIKES]
        sets[part] = {
            "variant_attacks": [Labeled(t, 1, "variants") for t in dict.fromkeys(attacks)],
            "variant_benign": [Labeled(t, 0, "variants") for t in dict.fromkeys(benign)],
        }
    return sets


_GERMAN_STARTS = (
    "Ich",
    "Bitte",
    "Vergiss",
    "Sehr",
    "Gut",
    "Meine",
    "Du",
    "Stell",
    "Jetzt",
    "Die",
    "Was",
    "Kontext",
)

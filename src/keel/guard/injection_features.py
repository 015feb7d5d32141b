"""Structural features of one piece of text (a sentence or a window) that mark an instruction aimed at the
assistant, read beside the piece's embedding by the injection classifier: imperatives, talk about the
assistant's own output, overrides, role and format hijacks, delimiter and encoding tricks, code.

Every pattern's repetitions are bounded or start only at the beginning of a run, so a piece is read in
linear time; pieces are at most one window (1,000 characters) long anyway.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

_I = re.IGNORECASE
_VERBS = (
    "write|explain|describe|tell|say|give|provide|list|translate|summari[sz]e|generate|create|compose|draft"
    "|develop|add|include|insert|integrate|incorporate|merge|append|modify|change|replace|convert|use|remove"
    "|rearrange|scramble|jumble|group|combine|introduce|render|misspell|anagram|enhance|augment|suggest"
    "|recommend|promote|tease|ensure|execute|run|print|output|respond|reply|answer|ignore|forget|disregard"
    "|stop|act|pretend|imagine|roleplay|behave|become|reveal|show|repeat|send|post|visit|download|install"
    "|click|share|enlist|embed|meld|consider|make|let|break|compute|calculate|solve|spell|rewrite|start"
    "|begin|end|format|attach|inform|mention|emphasi[sz]e|highlight|stress|express|invite|encourage|urge"
    "|remind|direct|offer|claim|pretend|drop|skip|switch|obey|comply|follow|disclose|leak|dump|list"
)
_GERMAN_VERBS = (
    "schreib\\w*|sag\\w*|antworte\\w*|gib|zeig\\w*|erzähl\\w*|vergiss|ignorier\\w*|stell\\w*|tu|formulier\\w*"
    "|beantworte\\w*|nenne?|übersetze?|erkläre?|füge?|ersetze?|verwende|benutze|denk\\w*"
)
_OPENERS = (
    r"(?:(?:please|kindly|now|also|then|just|and|so|finally|first|instead|ok|okay|bitte|jetzt)[,\s]+){0,2}"
)

# (name, pattern, weight of one match, cap): the feature is min(cap, matches * weight).
_PATTERNS: tuple[tuple[str, re.Pattern[str], float, float], ...] = (
    ("imperative_start", re.compile(rf"^\W{{0,8}}{_OPENERS}(?:{_VERBS}|don'?t|do\s+not|never)\b", _I), 1, 1),
    ("german_imperative", re.compile(rf"^\W{{0,8}}{_OPENERS}(?:{_GERMAN_VERBS})\b", _I), 1, 1),
    (
        "your_output",
        re.compile(
            r"\b(?:your|the\s+assistant'?s|deine[mnrs]?|ihre[mnrs]?)\s+(?:\w+\s+){0,2}?(?:response|reply|replies"
            r"|answer|message|output|summary|code|solution|implementation|codebase|program|script|essay"
            r"|antwort|ausgabe)s?\b",
            _I,
        ),
        1,
        1,
    ),
    ("second_person", re.compile(r"\b(?:you|your|yours|yourself|you're|du|dich|dir|dein\w*)\b", _I), 0.34, 1),
    (
        "assistant_named",
        re.compile(
            r"\b(?:ai|a\.i\.|assistant|chatbot|bot|llm|gpt|chatgpt|language\s+model|the\s+model|ki"
            r"|sprachmodell|assistent\w*)\b",
            _I,
        ),
        1,
        1,
    ),
    (
        "override",
        re.compile(
            r"\b(?:ignore|ignoring|disregard|forget|instead|override|overrides|bypass|supersedes?|no\s+longer"
            r"|never\s+mind|nevermind|does\s+not\s+apply|doesn'?t\s+apply|vergiss|ignorier\w*|stattdessen"
            r"|nicht\s+mehr)\b",
            _I,
        ),
        1,
        1,
    ),
    (
        "role_change",
        re.compile(
            r"\b(?:act\s+as|acting\s+as|pretend|roleplay|role-play|you\s+are\s+now|you\s+are\s+no\s+longer"
            r"|imagine\s+(?:that\s+)?you|from\s+now\s+on|from\s+here\s+on|stell\s+dir\s+vor|tu\s+so"
            r"|du\s+bist\s+(?:jetzt|nun))\b|\byour\s+(?:new\s+|only\s+|real\s+)?(?:task|job|role|goal|mission"
            r"|purpose)\b|\b(?:deine|ihre)\s+(?:neue\s+)?(?:aufgabe|rolle)\b",
            _I,
        ),
        1,
        1,
    ),
    (
        "format_hijack",
        re.compile(
            r"\b(?:respond|reply|answer|write|speak|talk|antworte\w*)\b(?:\W+\w+){0,3}?\W+(?:only|exclusively"
            r"|in\s+(?:french|spanish|german|russian|japanese|chinese|italian|pirate|capital|upper|all\s+caps"
            r"|emojis?|base64|morse|reverse|rhymes?|verse)|with\s+(?:only|just)|without\s+(?:any\s+)?(?:spaces"
            r"|punctuation|restrictions|filters)|nur)\b|\b(?:anagrams?|misspell\w*|typos|substitution|vowels"
            r"|every\s+(?:second|third|fourth|other)\s+(?:word|letter))\b",
            _I,
        ),
        1,
        1,
    ),
    (
        "quoted_output",
        re.compile(
            r"\b(?:say|print|output|write|reply|respond|answer|add|include|sag\w*|schreib\w*)\s+(?:only\s+"
            r"|just\s+|exactly\s+|with\s+|the\s+(?:words?|text|phrase)\s+)?[\"'\u201c\u2018\u00ab]",
            _I,
        ),
        1,
        1,
    ),
    (
        "delimiter",
        re.compile(
            r"(?:^|\n)[ \t]*(?:#{3,}|-{3,}|={3,}|\*{3,}|`{3})|(?:^|\n)[ \t]*(?:system|assistant|user"
            r"|human|ai)[ \t]*:|<\||\|>|\[/?(?:INST|SYS)\]|</?(?:system|user|assistant|instructions?)>"
            r"|\b(?:END|BEGIN)\s+OF\b|\{\{|\}\}",
            _I,
        ),
        1,
        1,
    ),
    ("base64_run", re.compile(r"(?<![A-Za-z0-9+/])(?=[A-Za-z0-9+/]*\d)[A-Za-z0-9+/]{24,}={0,2}"), 1, 1),
    ("invisible", re.compile(r"[\u200b-\u200f\u2060-\u2064\ufeff\u202a-\u202e\u2066-\u2069]"), 1, 1),
    ("leetspeak", re.compile(r"\b[a-z]+[013457@$][a-z]", _I), 0.5, 1),
    (
        "code",
        re.compile(
            r"```|(?:^|\n)\s*(?:import|from|def|class|function|const|let|var)\s+\w|\b(?:os\.system|subprocess"
            r"|requests\.\w+|exec|eval|urllib|socket|psutil|chmod|curl|wget|powershell|base64\.b64decode)\b",
            _I,
        ),
        1,
        1,
    ),
    ("url", re.compile(r"\bhttps?://|\bwww\.|\b[\w-]+\.(?:com|xyz|net|org|io|ru)\b", _I), 1, 1),
    (
        "secrets",
        re.compile(
            r"\b(?:password|passwort|secret|api\s+key|token|credentials?|system\s+prompt|prompt|instructions"
            r"|anweisungen|confidential|geheim\w*)\b",
            _I,
        ),
        1,
        1,
    ),
)
_QUESTION = re.compile(r"\?\W{0,3}$")
_LETTER = re.compile(r"[^\W\d_]")
_UPPER = re.compile(r"[A-ZÄÖÜ]")

FEATURES: tuple[str, ...] = (*(name for name, *_ in _PATTERNS), "question", "length", "shouting")


def piece_features(text: str) -> npt.NDArray[np.float64]:
    """The features of one piece, each in [0, 1], in the order of `FEATURES`."""
    values = [
        min(cap, weight * sum(1 for _ in pattern.finditer(text))) for _, pattern, weight, cap in _PATTERNS
    ]
    words = len(text.split())
    letters = len(_LETTER.findall(text))
    shouting = letters >= 12 and len(_UPPER.findall(text)) > 0.6 * letters
    values += [float(bool(_QUESTION.search(text))), min(1.0, words / 40), float(shouting)]
    return np.asarray(values, dtype=np.float64)

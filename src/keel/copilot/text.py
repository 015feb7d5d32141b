"""Reading passages and replies: sentences (list items and wrapped lines handled), words that carry
content, numbers, names and contact details, and the page furniture (navigation, menus, breadcrumbs)
that is never an answer. Shared by composition, grounding and the cited extracts."""

from __future__ import annotations

import functools
import re

import snowballstemmer

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[\u201c\u2018])")
_STEMMER = snowballstemmer.stemmer("english")
_GLUED = re.compile(r"(?<=[a-z]{2}[.!?])(?=[A-Z][a-z])")
_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
# Numbers with their decimal part and thousands separators; a range "3-5" gives 3 and 5.
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_STOP_WORDS = """a an and are as at be been but by can do does for from has have i if in into is it its me my
no not of on or our so than that the their them then there these they this to up us was we were what when
which who will with you your yes please thanks"""
STOP = frozenset(_STOP_WORDS.split())
# Words that say nothing about what is asked ("can you tell me how ..."): left out when a question is
# matched against passages, though a reply's claims keep them.
_NOISE_WORDS = """how where why would could should may might must about also just any some all more most other
such only own same very get got know tell like want need let give find out does did done doing go going much
many one ok okay hi hello thank thanks sure well really still"""
_QUESTION_NOISE = frozenset(_NOISE_WORDS.split())
_NEGATION = re.compile(
    r"\b(?:not|no|never|none|nobody|nothing|neither|nor|cannot|can't|won't|isn't|aren't|doesn't|don't|"
    r"didn't|wasn't|weren't|hasn't|haven't|shouldn't|wouldn't|couldn't|mustn't|without|unable)\b|n't\b",
    re.I,
)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"')\]]+", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_PHONE = re.compile(r"(?<![\w])(?:\+?\d[\d ().-]{6,}\d)(?![\w])")
_BULLET = re.compile(r"^\s*(?:[-*•·▪◦]|\d{1,2}[.)])\s+")
_HEADING = re.compile(r"^\s*#{1,6}\s+")
_MARKUP = re.compile(r"\*\*|__|`")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
# Capitalised words inside a sentence, acronyms and codes such as E04 or SR-22.
_NAME = re.compile(
    r"\b(?:[A-Z][a-zA-Z'\u2019-]*[a-z][a-zA-Z'\u2019-]*|[A-Z]{2,}[0-9]*|[A-Z]+[0-9]+[A-Z0-9-]*)\b"
)
_NAME_TOKEN = re.compile(r"[a-z0-9]+(?:['\u2019][a-z]+)?")
# A sentence's first word is capitalised anyway; a nationality there still names something.
_DEMONYM = re.compile(
    r"(?=[A-Z][a-z]{5})[A-Z][a-z]+(?:ese|ian|ish|an)|French|Dutch|Greek|Swiss|Thai|Welsh|Czech|Israeli|Iraqi"
)
_COMMON_CAPITALS = """I I'm I've I'll I'd OK Yes No Please Thanks Thank Hello Hi Dear Note However Also If
When The This That These Those There Here It Its You Your We Our They Their He She His Her Mr Mrs Ms Dr"""
_NOT_NAMES = frozenset(_COMMON_CAPITALS.split())
_FURNITURE = re.compile(
    r"\b(?:skip to (?:main )?content|main menu|toggle navigation|breadcrumbs?|back to top|share this page|"
    r"print this page|sign in|log ?in|log ?out|subscribe|follow us|cookie|all rights reserved|copyright|"
    r"privacy policy|terms of use|site ?map|last (?:updated|modified|reviewed)|was this page helpful|"
    r"related (?:links|content|pages)|increase font size|decrease font size|high contrast|"
    r"official website of|an official website|here's how you know|search this site|you are here)\b",
    re.I,
)
_RUN_TOGETHER = re.compile(r"[a-z][A-Z][a-z]")


def sentences(text: str) -> list[str]:
    """A reply's sentences (the model writes prose, one paragraph). Scraped pages also glue sentences
    together without a space ("once.This illustration"): split there too."""
    text = _GLUED.sub(" ", text.strip())
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def clean_markup(line: str) -> str:
    """A line as a reader sees it: no bullet, heading marks, emphasis or link syntax."""
    line = _HEADING.sub("", _BULLET.sub("", line))
    line = _LINK.sub(lambda m: f"{m.group(1)} ({m.group(2)})", line)
    return " ".join(_MARKUP.sub("", line).split())


def passage_units(text: str) -> list[str]:
    """A passage's sentences: each list item and heading on its own, lines wrapped mid-sentence joined
    again (help-centre Markdown and scraped pages both wrap), then split into sentences."""
    blocks: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            blocks.append("")
            continue
        starts_item = bool(_BULLET.match(line) or _HEADING.match(line))
        cleaned = clean_markup(line)
        if not cleaned:
            continue
        continues = blocks and blocks[-1] and not starts_item and cleaned[:1].islower()
        if continues:
            blocks[-1] = f"{blocks[-1]} {cleaned}"
        else:
            blocks.append(cleaned)
    return [s for block in blocks if block for s in sentences(block)]


def is_furniture(unit: str) -> bool:
    """Page navigation, menus, breadcrumbs, titles and labels: text a page carries that answers nothing."""
    words = unit.split()
    if len(words) < 3:
        return True
    if _FURNITURE.search(unit) or " | " in unit or " > " in unit or _URL.sub("", unit).count("/") >= 3:
        return True
    if len(_RUN_TOGETHER.findall(unit)) >= 2:  # "Programs & ServicesFacilitiesContact Us": a menu
        return True
    if unit[-1] not in ".!?:;)\"\u201d'\u2019":
        # No sentence ending: a heading or label unless it is long enough to be a clipped sentence.
        capitalised = sum(w[:1].isupper() for w in words)
        return len(words) < 8 or capitalised / len(words) > 0.6
    return False


@functools.lru_cache(maxsize=65_536)
def stem(word: str) -> str:
    """The Snowball (Porter 2) stem: "tracking" and "track", "charges" and "charging" meet. Numbers stay
    as they are."""
    if word[:1].isdigit():
        return word
    return str(_STEMMER.stemWord(word))


def content_words(text: str) -> set[str]:
    return {stem(w) for w in _WORD.findall(text.lower()) if w not in STOP}


def question_words(text: str) -> set[str]:
    """The words of a question that say what is asked."""
    return {w for w in content_words(text) if w not in _QUESTION_NOISE}


def word_tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def negated(text: str) -> bool:
    return bool(_NEGATION.search(text))


def canonical_number(raw: str) -> str:
    """1,200 and 1200 are one number, as are 5.00 and 5; 4.5 and 4,5 too."""
    value = re.sub(r",(?=\d{3}\b)", "", raw).replace(",", ".")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return value.lstrip("0") or "0"


def numbers(text: str) -> set[str]:
    return {canonical_number(n) for n in _NUMBER.findall(text)}


def names(text: str) -> set[str]:
    """Capitalised words after a sentence's first word, acronyms, codes and a leading nationality,
    lower-cased and split as `name_tokens` splits them: the names of people, places, nationalities,
    offices and programmes a claim binds to."""
    found: set[str] = set()
    for sentence in sentences(text):
        for match in _NAME.finditer(sentence):
            word = match.group(0)
            first = match.start() == len(sentence) - len(sentence.lstrip())
            coded = any(c.isdigit() for c in word) or word.isupper()
            if word in _NOT_NAMES or (first and not coded and not _DEMONYM.fullmatch(word)):
                continue
            found |= {t for t in name_tokens(word) if len(t) > 1}
    return found


def name_tokens(text: str) -> frozenset[str]:
    return frozenset(_NAME_TOKEN.findall(text.lower()))


def contacts(text: str) -> set[str]:
    """Links, e-mail addresses and phone numbers, normalised (a phone by its digits, a link without its
    scheme or trailing punctuation)."""
    found = {e.lower() for e in _EMAIL.findall(text)}
    for url in _URL.findall(text):
        found.add(re.sub(r"^(?:https?://)?(?:www\.)?", "", url.lower()).rstrip(".,;:/"))
    without = _EMAIL.sub(" ", _URL.sub(" ", text))
    for phone in _PHONE.findall(without):
        digits = re.sub(r"\D", "", phone)
        # Seven digits or more, not a date or a range of years.
        if len(digits) >= 7 and not re.fullmatch(r"\d{4}[-\u2013]\d{4}", phone.strip()):
            found.add(digits)
    return found

"""Street addresses by pattern: a house number with a street word (``12 Baker Street``, ``Rue de Rivoli
8``, ``Hauptstraße 5``), post-office and military boxes, flat and suite numbers, and, after a cue such as
"lives at" or "ship to", a name with a house number. A found address is then extended over the city,
region and postcode lines that follow it, and adjacent pieces are merged into one span."""

from __future__ import annotations

import re
from collections.abc import Iterator

from keel.guard.pii_patterns import PiiSpan, span

_WORD = r"[^\W\d_][\w'\u2019-]*\.?"
_NUM = r"\d{1,6}[A-Za-z]?"
_POSTCODE = r"\d{4,6}(?:-\d{3,4})?"
_SUFFIX = (
    r"Street|St|Str|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Way|Court|Ct|Place|Pl|Square|Sq|"
    r"Terrace|Crescent|Close|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Trail|Row|Alley|Gardens|Grove|Mews|"
    r"Plaza|Loop|Pike|Parade|Quay|Wharf|Esplanade|Broadway"
)
# A house number, up to four name words and a street word: "14 Crown Street", "159 Venizelou str".
_NUMBER_FIRST = re.compile(
    rf"(?<![\w.]){_NUM}(?:[ \t]+\d{{1,6}})?[ \t]+(?P<name>{_WORD}(?:[ \t]+{_WORD}){{0,3}}?)[ \t]+"
    rf"(?:{_SUFFIX})\b\.?",
    re.I,
)
# A street word first, as in French, Portuguese, Italian and Spanish; capitalised, since "via" is English.
_CAP = r"[A-ZÀ-ÖØ-ÞĀ-žΑ-ΩА-Я][\w'\u2019-]*\.?"
_LINK = r"(?:(?:de|du|des|da|do|dos|das|del|della|di|la|le|les|al|el)[ \t]+)?"
_PREFIX_FIRST = re.compile(
    rf"(?<![\w.])(?:(?P<num>{_NUM})[ \t]+)?(?:Rue|Rua|Via|Viale|Vicolo|Calle|Avenida|Avenue|Piazza|Praça|"
    rf"Boulevard|Chemin|Route|Strada|Carrer|Camino|Rambla|Ulica|ul\.)"
    rf"[ \t]+{_LINK}{_CAP}(?:[ \t]+{_LINK}{_CAP}){{0,3}}"
    rf"(?:[ \t,]+(?P<num2>{_NUM})\b\.?)?"
)
# Compound street names (Germanic, Nordic, Finnish, Dutch, Hungarian) followed by the house number.
_COMPOUND = re.compile(
    rf"(?<![\w.])(?:{_NUM}[ \t]+)?(?:[^\W\d_]{{2,}}(?:strasse|straße|str\.|gasse|weg|platz|allee|gade|vej|"
    rf"vænget|gata|gatan|vägen|väg|veien|vegen|tie|katu|kuja|polku|straat|laan|plein|gracht|stræti|braut)"
    rf"|{_WORD}[ \t]+(?:strasse|straße|straeti|str\.|gasse|weg|platz|allee|gate|gata|gatan|vej|u\.|utca|"
    rf"útja|út|tér|körút|kapu))[ \t]+{_NUM}\b\.?",
    re.I,
)
_BOX = re.compile(
    r"\b(?:P\.?[ \t]?O\.?[ \t]?Box|Post(?:al)?[ \t]Office[ \t]Box|Postbox|Postfach)[ \t]*#?\d{1,6}"
    r"|\b(?:PSC|CMR|Unit)[ \t]+\d{3,5},?[ \t]+Box[ \t]+\d{3,5}(?:\s+(?:APO|FPO|DPO)[ \t]+A[AEP][ \t]+\d{5})?",
    re.I,
)
_UNIT = re.compile(r"\b(?:Apt|Apartment|Suite|Ste|Unit|Flat|apt)\.?[ \t]*#?[ \t]*\d{1,5}[A-Za-z]?\b")
_CUED = re.compile(
    r"(?:address(?:es)?|lives?|living|resid(?:e|es|ing)|located|moved|ship(?:ped)?|send|sent|deliver(?:ed)?|"
    r"mail|meet (?:me|you)|drops? you off|stop)\b[^\n.?!]{0,24}?\b(?:at|to|on|is|:)[ \t:]+(?:the corner of )?"
    rf"(?P<address>(?:{_NUM}[ \t]+)?{_WORD}(?:[ \t]+{_WORD}){{0,3}}?[ \t]+{_NUM}\b\.?)",
    re.I,
)
# A line that starts with a house number, then a name and another number ("20789 Allika 46"): the
# shape of an address block in a letter or a signature.
_LINE = re.compile(
    rf"(?m)^[ \t>]*(?P<address>\d{{1,6}}[ \t]+{_WORD}(?:[ \t]+{_WORD}){{0,3}}?[ \t]+{_NUM}\b\.?)"
)
# "At the corner of X and Y": both streets, with or without numbers.
_CORNER = re.compile(
    rf"\b(?i:corner of)[ \t]+(?P<address>[^\n.?!,]{{3,60}}?[ \t]+and[ \t]+{_WORD}(?:[ \t]+{_WORD}){{0,2}})"
)
# What may follow an address on the same or the next lines: a unit, a postcode, a region code, a city.
_TAIL = re.compile(
    rf"(?:[ \t]*,[ \t]*\n?|[ \t]*\n[ \t>]*\n?[ \t>]*,?[ \t]*|[ \t]+(?=(?:Apt|Suite|Unit|apt)\b))"
    rf"(?P<part>{_UNIT.pattern}|{_POSTCODE}(?:[ \t]+{_WORD}(?:[ \t]+{_WORD})?)?|"
    rf"[A-Z]{{2}}\b(?:[ \t]+{_POSTCODE})?|"
    rf"{_WORD}(?:[ \t]+{_WORD}){{0,2}}(?:[ \t]+\(\w+\))?(?:,?[ \t]+[A-Z]{{2}})?(?:[ \t]+{_POSTCODE})?)"
)
_GAP = re.compile(r"[\s,>]*")
_ABBREVIATION = re.compile(r"(?<![\w.])[^\W\d_]{1,3}\.$")
_LEAD = re.compile(r"(?<![\w.,-])\d{1,6}[ \t]+$")
_PARTICLES = frozenset(("de", "da", "do", "del", "la", "le", "von", "van", "der", "di", "sur", "am", "im"))


def _capitalised(words: str) -> bool:
    first = words.lstrip()[:1]
    return first.isupper() or first.isdigit()


def _extend(text: str, end: int) -> int:
    """Take in the unit, city, region and postcode lines that follow an address (at most four); a city
    ends at its first lower-case word, so "12 Baker Street, London and I" stops after "London"."""
    for _ in range(4):
        match = _TAIL.match(text, end)
        if match is None:
            break
        kept = match.start("part")
        for word in re.finditer(r"\S+", match.group("part")):
            token = word.group()
            if not (_capitalised(token) or token.startswith("(") or token.lower() in _PARTICLES):
                break
            kept = match.start("part") + word.end()
        if kept == match.start("part"):
            break
        end = kept
        if kept < match.end():
            break
    return end


# What every pattern above needs somewhere: a number beside a space or comma, a box or unit word with its
# number, or "corner of". One scan for it spares the eight patterns on text that has none (most log
# values and messages); it finds exactly the texts that could match, so it changes no result.
_MAY_HOLD_ADDRESS = re.compile(
    r"\d[A-Za-z]?[ \t]|[ \t,]\d|(?i:box|postfach|apt|apartment|suite|ste|unit|flat)\.?[ \t]*#?[ \t]*\d"
    r"|(?i:corner of)"
)


def _candidates(text: str) -> Iterator[tuple[int, int, float]]:
    if _MAY_HOLD_ADDRESS.search(text) is None:
        return
    for match in _NUMBER_FIRST.finditer(text):
        if _capitalised(match.group("name")):
            yield match.start(), match.end(), 0.85
    for match in _PREFIX_FIRST.finditer(text):
        if match.group("num") or match.group("num2"):
            yield match.start(), match.end(), 0.85
    for match in _COMPOUND.finditer(text):
        yield match.start(), match.end(), 0.8
    for match in _BOX.finditer(text):
        yield match.start(), match.end(), 0.9
    for match in _UNIT.finditer(text):
        yield match.start(), match.end(), 0.6
    for match in _LINE.finditer(text):
        if _capitalised(match.group("address").split(maxsplit=1)[1]):
            yield match.start("address"), match.end("address"), 0.7
    for match in _CORNER.finditer(text):
        second = match.group("address").rsplit(" and ", 1)[-1]
        if _capitalised(match.group("address")) and _capitalised(second):
            yield match.start("address"), match.end("address"), 0.8
    for match in _CUED.finditer(text):
        if _capitalised(match.group("address")):
            yield match.start("address"), match.end("address"), 0.75


def find_addresses(text: str) -> Iterator[PiiSpan]:
    """Merged address spans: pieces that touch or are separated only by spaces, commas or line breaks."""
    merged: list[tuple[int, int, float]] = []
    for start, end, score in sorted(_candidates(text)):
        end = _extend(text, end)
        # A bare number just before the street ("45818 P.O. Box 242") is part of it.
        lead = _LEAD.search(text, max(0, start - 12), start)
        start = lead.start() if lead else start
        if merged and _GAP.fullmatch(text, merged[-1][1], max(start, merged[-1][1])):
            last = merged.pop()
            merged.append((last[0], max(last[1], end), max(last[2], score)))
        else:
            merged.append((start, end, score))
    for start, end, score in merged:
        # A full stop after the last word ends the sentence, unless the word is an abbreviation (St.).
        cut = 1 if text[end - 1] == "." and not _ABBREVIATION.search(text, start, end) else 0
        yield span("ADDRESS", text, start, end - cut, score)

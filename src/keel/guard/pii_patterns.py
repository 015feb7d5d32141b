"""Keel's own recognisers for structured personal data: pure functions from text to scored spans.

Each recogniser finds candidates with a regular expression and keeps only what a checksum (Luhn, IBAN
mod-97), a numbering rule (SSN areas, IP octets) or a nearby cue word confirms, so look-alikes such as
order numbers, prices, dates and version strings stay. Street addresses live in `pii_addresses`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

PiiType = Literal["EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "ADDRESS", "PERSON"]
ALL_TYPES: frozenset[PiiType] = frozenset(
    ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "ADDRESS", "PERSON")
)


@dataclass(frozen=True, slots=True)
class PiiSpan:
    """One finding: `text == source[start:end]`; `score` in 0..1 says how sure the recogniser is."""

    type: PiiType
    start: int
    end: int
    text: str
    score: float


def span(kind: PiiType, text: str, start: int, end: int, score: float) -> PiiSpan:
    return PiiSpan(kind, start, end, text[start:end], score)


def cue_before(text: str, start: int, cue: re.Pattern[str], window: int = 40) -> bool:
    """Whether a cue word (``card``, ``phone``...) stands shortly before `start`."""
    return cue.search(text, max(0, start - window), start) is not None


# --- e-mail -------------------------------------------------------------------------------------------
_EMAIL = re.compile(r"(?<![\w.+-])[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b")


def find_emails(text: str) -> Iterator[PiiSpan]:
    for match in _EMAIL.finditer(text):
        yield span("EMAIL", text, match.start(), match.end(), 0.95)


# --- payment cards ------------------------------------------------------------------------------------
_CARD = re.compile(r"(?<![\w+-])\d(?:[ -]?\d){11,18}(?![\w-])")
_CARD_CUE = re.compile(r"card|visa|master|maestro|amex|american express|discover|credit|debit|cc\b", re.I)
# Issuer prefixes (Visa 4, Mastercard 2/5, Amex/Diners/JCB 3, Discover/Maestro/UnionPay 6, old JCB
# 1800/2131); a number outside them is a card only with a cue word beside it.
_CARD_PREFIX = re.compile(r"[2-6]|1800|2131")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card_grouping(candidate: str) -> bool:
    """Printed cards use one separator in groups of four (Amex 4-6-5); phone-like groupings are not cards."""
    groups = re.split(r"[ -]", candidate)
    if len(groups) == 1:
        return True
    if len({sep for sep in re.findall(r"[ -]", candidate)}) != 1:
        return False
    sizes = [len(group) for group in groups]
    return all(size == 4 for size in sizes[:-1]) or sizes in ([4, 6, 5], [4, 6, 4])


def find_cards(text: str) -> Iterator[PiiSpan]:
    for match in _CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if not (12 <= len(digits) <= 19 and luhn_valid(digits) and _card_grouping(match.group())):
            continue
        if len(set(digits)) == 1:  # 0000 0000 0000 0000 passes Luhn
            continue
        cued = cue_before(text, match.start(), _CARD_CUE)
        if cued or (len(digits) >= 13 and _CARD_PREFIX.match(digits)):
            yield span("CARD", text, match.start(), match.end(), 0.95 if cued else 0.85)


# --- IBAN ---------------------------------------------------------------------------------------------
_IBAN = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?!\w)", re.I)
_IBAN_TABLE = (  # country code and IBAN length
    "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DK18 DO28 EE20 EG29 "
    "ES24 FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 "
    "LB28 LC32 LI21 LT20 LU20 LV21 MC27 MD24 ME22 MK19 MR27 MT31 MU30 NL18 NO15 PK24 PL28 PS29 PT25 QA29 "
    "RO24 RS22 SA24 SC31 SE24 SI19 SK24 SM27 ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20"
)
_IBAN_LENGTHS = {entry[:2]: int(entry[2:]) for entry in _IBAN_TABLE.split()}


def iban_valid(candidate: str) -> bool:
    """Country length and the ISO 13616 mod-97 check: one mistyped character fails it."""
    iban = candidate.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def find_ibans(text: str) -> Iterator[PiiSpan]:
    for match in _IBAN.finditer(text):
        candidate = match.group()
        # The regex may take one group too many ("... 1234 5678" of the next number): trim and retry.
        while candidate and not iban_valid(candidate):
            trimmed = re.sub(r" ?[A-Z0-9]{1,4}$", "", candidate, flags=re.I)
            candidate = "" if trimmed == candidate or len(trimmed) < 15 else trimmed
        if candidate:
            yield span("IBAN", text, match.start(), match.start() + len(candidate), 0.95)


# --- US social security numbers ------------------------------------------------------------------------
_SSN = re.compile(r"(?<![\w-])(\d{3})([- ]?)(\d{2})\2(\d{4})(?![\w-])")
_SSN_CUE = re.compile(r"\bssn\b|social security|\bss#|\bsocial\b", re.I)


def find_ssns(text: str) -> Iterator[PiiSpan]:
    for match in _SSN.finditer(text):
        area, separator, group, serial = match.groups()
        # Never issued: area 000, 666 or 900-999, group 00, serial 0000.
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        cued = cue_before(text, match.start(), _SSN_CUE)
        if separator == "-" or cued:  # nine bare digits are an SSN only when the text says so
            yield span("SSN", text, match.start(), match.end(), 0.95 if cued else 0.85)


# --- IP addresses ---------------------------------------------------------------------------------------
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w]|\.\d)"
)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])"
)
_VERSION_CUE = re.compile(r"\b(?:v|version|release|build)\s*$", re.I)


def find_ips(text: str) -> Iterator[PiiSpan]:
    for match in _IPV4.finditer(text):
        if not _VERSION_CUE.search(text, max(0, match.start() - 12), match.start()):
            yield span("IP", text, match.start(), match.end(), 0.9)
    for match in _IPV6.finditer(text):
        candidate = match.group()
        if sum(char.isalnum() for char in candidate) < 2:
            continue  # "::" alone, or a C++ scope operator
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        yield span("IP", text, match.start(), match.end(), 0.9)


# --- phone numbers --------------------------------------------------------------------------------------
_PHONE = re.compile(
    r"(?<![\w+/.$€£¥#-])(?<!\d,)"
    r"(?P<plus>\+\d{1,3}[ .-]?)?(?:\(0\)[ ]?)?(?P<area>\(\d{1,4}\)[ .-]?)?"
    r"\d{1,12}(?:[ .-]\d{1,8}){0,5}"
    r"(?P<ext>[ ]?(?:x|ext\.?|extension)[ ]?\d{1,5})?"
    r"(?!\w|[-./,:]\d)"
)
# A phone word makes even a bare run of digits a phone number; a weaker one only confirms a grouped one.
_PHONE_CUE = re.compile(r"phone|call|tel\b|mobile|cell|fax|whatsapp|sms|dial", re.I)
_WEAK_PHONE_CUE = re.compile(r"text me|message|reach|contact|number", re.I)
_DAY, _MONTH = r"(?:0?[1-9]|[12]\d|3[01])", r"(?:0?[1-9]|1[0-2])"
_DATE = re.compile(
    rf"\d{{4}}[-./]{_MONTH}[-./]{_DAY}|{_DAY}[-./]{_MONTH}[-./]\d{{2,4}}|{_MONTH}[-./]{_DAY}[-./]\d{{2,4}}"
    r"|(?:19|20)\d\d[ -](?:19|20)\d\d"
)


def find_phones(text: str) -> Iterator[PiiSpan]:
    for match in _PHONE.finditer(text):
        number = match.group()[: match.start("ext") - match.start()] if match.group("ext") else match.group()
        digits = sum(char.isdigit() for char in number)
        if not 7 <= digits <= 15 or _DATE.fullmatch(number) or _IPV4.fullmatch(number):
            continue
        groups = re.findall(r"\d+", number)
        strong = cue_before(text, match.start(), _PHONE_CUE)
        if match.group("plus") or match.group("area"):
            score = 0.8
        elif digits > 12:
            score = 0.0  # national numbers are at most 12 digits; longer needs the country code
        elif len(groups) == 1:
            score = 0.6 if strong else 0.0  # otherwise an order or account number
        elif re.fullmatch(r"(?:19|20)\d\d", groups[0]) and len(groups) == 2:
            score = 0.0  # "2023-0098": a year-numbered reference
        elif re.fullmatch(r"\d{1,3}(?:[ .]\d{3})+", number):
            score = 0.5  # "1 500 000" is grouped like a count: a phone number only with a cue
        else:
            score = 0.6  # grouped like a phone number
        if score and (strong or cue_before(text, match.start(), _WEAK_PHONE_CUE)):
            yield span("PHONE", text, match.start(), match.end(), round(min(score + 0.3, 0.9), 2))
        elif score >= 0.6:
            yield span("PHONE", text, match.start(), match.end(), score)

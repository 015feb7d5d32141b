"""Features of the shape of an instruction override in a user's message, read by the message head only
(the passage head keeps `injection_features` alone): a switch to a new task after praise or a "now",
an identity handed to the assistant, an output dictated word for word, a reference back to what came
before, overrides and imperatives in German and other languages (where the English-trained embedding
is weak), fake context frames, letters spaced or shouted to slip past filters, and a turn from a
question to an order inside one message.

Every pattern's repetitions are bounded or anchored, so a piece (at most one window) is read in linear
time, and all of them together cost a fraction of a millisecond beside the message's one embedding.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

_I = re.IGNORECASE
_START = r"^\W{0,8}"
# Interjections and fillers a directive may open with: "Ok.", "But now", "Und jetzt".
_LEAD = r"(?:(?:ok(?:ay)?|so|and|but|also|then|und|aber|also|doch|bitte|please)[,.!\s]+){0,2}"
_EN_VERBS = (
    r"write|say|tell|print|output|show|give|list|repeat|generate|create|compose|draft|explain|describe"
    r"|answer|respond|reply|translate|spell|focus|concentrate|forget|ignore|disregard|drop|leave|start"
    r"|begin|act|pretend|imagine|be|become|play|make|state|claim|include|insult|praise|reveal|display"
)
_DE_VERBS = (
    r"schreib\w*|sag\w*|zeig\w*|gib|nenn\w*|verfass\w*|formulier\w*|konzentrier\w*|berechn\w*|erstell\w*"
    r"|beantwort\w*|antworte\w*|vergiss|ignorier\w*|lass\w*|fang\w*|beginn\w*|hör\w*|mach\w*|tu|sprich"
    r"|stell\w*|erklär\w*|übersetz\w*|wiederhol\w*|spiel\w*|sei|werde|behaupte\w*|lob\w*|beleidig\w*"
    r"|ersetz\w*|vergessen|ignorieren|schreiben|sagen|zeigen|geben|lassen|beantworten|formulieren"
)
# Imperatives of Spanish, French, Italian, Portuguese, Dutch, Russian, Croatian, Polish and Turkish.
_OTHER_VERBS = (
    r"olvid[ae]\w*|ignor[ae]\w*|di|dime|escrib[ae]\w*|muestra|oublie\w*|ignorez|dis|écri[st]\w*|montre\w*"
    r"|dimentica\w*|scrivi|mostra|esque[cç]a\w*|escreva|vergeet|negeer|schrijf|zeg|забуд\w*|игнорир\w*"
    r"|напиш\w*|скаж\w*|покаж\w*|zaboravi|napiši|reci|zapomnij|zignoruj|napisz|powiedz|unut|yaz|söyle"
)

# (name, pattern, weight of one match, cap): the feature is min(cap, matches * weight).
_PATTERNS: tuple[tuple[str, re.Pattern[str], float, float], ...] = (
    (
        "task_switch",
        re.compile(
            r"\b(?:new|next|another|further|additional|different|real|actual)\s+(?:\w+\s+)?(?:tasks?"
            r"|instructions?|assignments?|orders?|job|mission)\b|\b(?:start|begin)\s+(?:over|again|from"
            r"\s+(?:scratch|the\s+(?:front|beginning)))\b|\b(?:focus|concentrate)\s+(?:\w+\s+){0,2}?on\s+(?:your"
            r"|the|a|this)\s+(?:\w+\s+)?(?:task|instruction|question)|\b(?:neue|nächste|weitere|andere"
            r"|zusätzliche)[nrs]?\s+(?:\w+\s+)?(?:aufgabe|anweisung|instruktion|auftr[aä]g|befehl)\w*"
            r"|\b(?:nun|jetzt)\s+(?:folg|komm)\w*\b|\bvon\s+vorne?\b|\bkonzentrier\w*\s+(?:dich|sich)\b"
            r"|\bnouvelle\s+t[aâ]che\b|\bnueva\s+tarea\b|\bnuova\s+attivit[aà]\b",
            _I,
        ),
        1,
        1,
    ),
    (
        "closure_praise",
        re.compile(
            rf"{_START}(?:(?!good\s+(?:morning|afternoon|evening|day|night)\b)(?:very\s+|really\s+|simply\s+)?(?:good|great|well\s+done|excellent|perfect"
            r"|fantastic|wonderful|brilliant|awesome|nice\s+(?:work|job)|good\s+job|great\s+job|bravo|wow"
            r"|that\s+is\s+done|that'?s\s+done|done|congratulations|(?:sehr\s+)?gut(?:\s+gemacht)?|super"
            r"|toll|prima|klasse|ausgezeichnet\w*|hervorragend\w*|fantastisch|herzlichen\s+glückwunsch\w*"
            r"|das\s+ist\s+erledigt|erledigt|mann|man)\b(?:\s+\w+){0,2}?\s*[!.,:;]|\b(?:you'?ve|you\s+have|du\s+hast|sie"
            r"\s+haben)\s+(?:\w+\s+){0,3}?(?:outdone|great|well|super|gut|toll)\b)",
            _I,
        ),
        1,
        1,
    ),
    (
        "now_directive",
        re.compile(
            rf"{_START}{_LEAD}(?:now|then|jetzt|nun|maintenant|ahora|adesso|agora|теперь)\b[,:]?\s+(?:\w+\s+){{0,2}}?"
            rf"(?:{_EN_VERBS}|{_DE_VERBS}|you\s+(?:are|will|must|should)|du\s+bist|bist\s+du)\b"
            r"|(?:^|[.!?:\-]\s*)(?:stop|stopp|halt|attention|achtung|wait|warte)\s*[:\-!,.]",
            _I,
        ),
        1,
        1,
    ),
    (
        "identity_assignment",
        re.compile(
            rf"{_START}{_LEAD}(?:now\s+|jetzt\s+|nun\s+)?(?:you\s+are|you'?re|du\s+bist|sie\s+sind|bist\s+du)\s+"
            r"(?:now\s+|jetzt\s+|nun\s+)?(?!(?:not|right|wrong|welcome|correct|able|so|very|too|really|always"
            r"|sure|still|just|back|open|closed|charging|asking|telling|going|nicht|sehr|so|wirklich|immer"
            r"|noch|auch|ja|gerade|zu)\b)(?:(?:a|an|the|my|ein|eine|einen|der|die|das)\s+)?[\w\"'“]"
            r"|\b(?:i\s+(?:want|would\s+like|need)\s+you\s+to\s+(?:act|be|play|become|pretend|behave)"
            r"|(?:ich\s+möchte|ich\s+will),?\s+dass\s+(?:du|sie)\s+(?:\w+\s+){0,3}?als\b"
            r"|\bals\s+(?:\w+\s+){0,3}?(?:fungier|agier|handel)\w*|imagine\s+(?:that\s+)?you\s+(?:are|were)"
            r"|stell\s+dir\s+vor|be\s+an?\s+\w+\s*[.!]|you\s+are\s+(?:completely\s+)?(?:absorbed|in\s+(?:your"
            r"|the)\s+role)|stay\s+(?:\w+\s+){0,2}?in\s+(?:their|your|the(?:ir)?)\s+roles?)\b",
            _I,
        ),
        1,
        1,
    ),
    (
        "dictated_output",
        re.compile(
            r"\b(?:say|tell\s+me|state|claim|write|print|output|answer|reply|respond|repeat\s+after\s+me"
            r"|include)\s+(?:\w+\s+){0,2}?(?:that\s+(?:you|\w+\s+(?:is|are|was))|with\s+[\"'“]|[\"'“:])"
            r"|\brepeat\s+after\s+me\b|\bjust\s+(?:say|output|print|write)\b|\b(?:sag\w*|schreib\w*"
            r"|behaupte\w*|antworte\w*)\s+(?:\w+\s+){0,2}?(?:dass|mit\s+[\"'„]|[\"'„:])|\bgeben\s+sie\s+"
            r"(?:\w+\s+){0,3}?aus\b|\bdi\s+(?:lo\s+siguiente|que)\b|\bdis\s+(?:que|le\s+suivant)\b"
            r"|\bскажите\b|\bскажи\b",  # noqa: RUF001
            _I,
        ),
        1,
        1,
    ),
    (
        "prior_reference",
        re.compile(
            r"\b(?:before\s+(?:that|this)|everything\s+(?:above|before)|beforehand|previous\s+(?:information"
            r"|tasks?|assignments?|instructions?|orders|context)|preceding|you'?ve\s+been\s+told|you\s+were\s+told"
            r"|(?:beginning|start)\s+of\s+(?:this|the)\s+(?:prompt|conversation|text)|(?:written|said|stated)"
            r"\s+(?:above|before)|(?:this|the|your)\s+prompt|provided\s+(?:documents|context|articles)"
            r"|davor|zuvor|vorher\w*|bisher\w*|obige\w*|vorangegangen\w*|vorangehend\w*|vorig\w*"
            r"|aus\s+dem\s+kopf|hinter\s+(?:dir|sich)|antes|précédent\w*|prima\s+di|anteriores?)\b",
            _I,
        ),
        1,
        1,
    ),
    (
        "foreign_override",
        re.compile(
            r"\b(?:disregarding|olvid[ae]\w*|ignora(?!nt)\w*|oubliez|oublie|ignorez|dimentica\w*|esque[cç]a\w*|vergeet|negeer"
            r"|zaboravi|zapomnij|zignoruj|unut|vergessen\s+sie|ignorieren\s+sie|missachte\w*|verwirf|übergeh\w*"
            r"|abweichend|streichen|забуд\w*|игнорир\w*)\b|\b(?:todo|todas?|tout|tutto|tutte|alles|sve|все"
            r"|wszystk\w*)\s+(?:\w+\s+)?(?:instrucciones|instructions|istruzioni|instrukcije|инструкции"
            r"|instrukcje|anweisungen|regeln|was|que|davor)\b",
            _I,
        ),
        1,
        1,
    ),
    (
        "foreign_imperative",
        re.compile(rf"{_START}{_LEAD}(?:{_DE_VERBS}|{_OTHER_VERBS})\b(?!\s*\?)", _I),
        1,
        1,
    ),
    (
        "fake_context",
        re.compile(
            r"(?:^|\s|\$)(?:context|kontext|documents?|dokumente?|artikel|articles?|source|quelle)\s*[:{=]"
            r"|\b(?:context|kontext|artikel|article)\b[^?\n]{0,200}?\b(?:question|frage)\b\s*:?",
            _I,
        ),
        1,
        1,
    ),
    # "S a y t h a t": six single characters in a row, each followed by one space.
    ("spaced_letters", re.compile(r"(?<!\S)(?:\w ){5}\w(?!\S)"), 1, 1),
    # Three shouted words in a row inside otherwise ordinary text: "IGNORE ALL DOCUMENTS".
    ("shouted_run", re.compile(r"\b[A-ZÄÖÜ]{2,}[!?,]?\s+[A-ZÄÖÜ]{2,}[!?,]?\s+[A-ZÄÖÜ]{2,}\b"), 1, 1),
)

# A sentence that turns to an order after the message asked something: "{question}? Instead, write ...".
_TURN = re.compile(
    rf"{_START}(?:(?:actually|instead|rather|but|now|then|so|also|and|okay|ok|oh|wait|however|aber|doch|jetzt"
    rf"|nun|stattdessen|dann|und)[,.!:\s]+){{0,3}}(?:{_EN_VERBS}|{_DE_VERBS}|{_OTHER_VERBS}|skip|never\s+mind"
    r"|don'?t|do\s+not|wipe|throw|quit|switch)\b",
    _I,
)
_ASKS = re.compile(r"\?\W{0,3}$")

OVERRIDE_FEATURES: tuple[str, ...] = (*(name for name, *_ in _PATTERNS), "cues", "turn")


def turns(pieces: list[str]) -> list[float]:
    """Per piece of one text, in order: 1 when the piece gives an order after an earlier piece asked a
    question (one pass; the flag is carried forward)."""
    asked, out = False, []
    for piece in pieces:
        out.append(float(asked and bool(_TURN.search(piece))))
        asked = asked or bool(_ASKS.search(piece.rstrip()))
    return out


def override_features(text: str, turn: float = 0.0) -> npt.NDArray[np.float64]:
    """The features of one piece, each in [0, 1], in the order of `OVERRIDE_FEATURES`; `cues` counts how
    many of the others fire (one is often innocent, several together rarely are); `turn` is the piece's
    value from `turns` over its text."""
    values = [
        min(cap, weight * sum(1 for _ in pattern.finditer(text))) for _, pattern, weight, cap in _PATTERNS
    ]
    values += [min(1.0, sum(1 for v in values if v > 0) / 4), turn]
    return np.asarray(values, dtype=np.float64)

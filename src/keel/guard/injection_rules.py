"""The injection detector's first tier: curated patterns for direct injection in English and German
(instruction overrides, role changes, system-prompt extraction, jailbreak markers, chat-template role
tags). Every repetition is bounded or anchored on a literal, so a scan is linear in the text."""

from __future__ import annotations

import hashlib
import json
import re

RULE_SCORE = 0.95

# fmt: off
_RULE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("ignore_previous_instructions", r"\b(?:ignor(?:e|ing)|disregard(?:ing)?|forget(?:ting)?|skip|override"
     r"|discard|drop|abandon)\b(?:\W+\w+){0,3}?\W+(?:previous|prior|above|earlier|preceding|foregoing"
     r"|initial|original|all|any|your|the)\b(?:\W+\w+){0,2}?\W+(?:instructions?|prompts?|rules|directions"
     r"|guidelines|directives|commands|orders|tasks|assignments|context|programming|persona|role)\b|"
     r"\b(?:previous|prior|earlier|above|original)\s+(?:instructions|guidelines|rules|directives)\s+(?:are"
     r"|have\s+been)\s+(?:cancel+ed|void|revoked|irrelevant|no\s+longer\s+(?:valid|apply))"),
    ("forget_everything", r"\b(?:ignore|disregard)\s+everything\s*(?:\b(?:above|before|and|previous|prior"
     r"|so\s+far|you)\b|[,.;:!]|$)|\bforget\s+(?:about\s+)?everything\b(?:\W+\w+){0,3}?\W*\b(?:above|before"
     r"|previous|prior|so\s+far|you\s+know|you\s+(?:were|have\s+been)\s+(?:told|given))\b"
     r"|\bleave\s+(?:all\s+)?(?:the\s+)?(?:previous|prior|earlier)\s+(?:\w+\s+)?behind\b"),
    ("ignoriere_anweisungen", r"\b(?:ignorier\w*|vergiss|vergessen\s+sie|missachte\w*|verwirf"
     r"|verwerfen\s+sie|übergeh\w*)\b(?:\W+\w+){0,3}?\W+(?:alle\w*|vorherig\w*|vorig\w*|bisherig\w*|obig\w*"
     r"|vorangehend\w*|vorangegangen\w*|früher\w*|deine|ihre|die)\b(?:\W+\w+){0,2}?\W+(?:anweisung\w*"
     r"|instruktion\w*|befehl\w*|regeln|vorgaben|informationen|angaben|aufgaben|ausführungen|richtlinien"
     r"|kontext|prompts?|rolle)\b"),
    ("anweisungen_ignorieren", r"\b(?:vorherig|vorig|bisherig|obig|vorangehend)\w*\s+(?:anweisung"
     r"|instruktion|befehl|ausführung|regel|vorgabe)\w*\s+(?:ignorieren|vergessen|missachten|verwerfen"
     r"|gelten\s+nicht\s+mehr|sind\s+(?:irrelevant|ungültig|aufgehoben))|\b(?:filter|sicherheitsrichtlinien"
     r"|inhaltsrichtlinien|schutzmechanismen)\s+(?:zu\s+)?(?:umgehen|deaktivieren|ignorieren|abschalten)"
     r"|\babweichend\s+(?:zu|von)\s+(?:den\s+|deinen\s+|ihren\s+)?(?:vorherig|bisherig"
     r"|obig)\w*\s+(?:anweisung|instruktion)|\blass\w*\s+(?:sie\s+)?(?:\w+\s+){0,3}?(?:informationen"
     r"|anweisungen|aufgaben|vorgaben|regeln)\s+hinter\s+(?:dir|sich)\b"),
    ("vergiss_alles", r"\b(?:vergiss|vergessen\s+sie)\s+(?:einfach\s+|bitte\s+)?alles\b|\b(?:ignorier\w*"
     r"|vergiss|lass)\s+(?:\w+\s+)?alles\s+(?:obige|bisherige|vorherige)"),
    ("you_are_now", r"\byou\s+are\s+now\s+(?:(?:an?|the|my|in)\s+)?(?:\w+\s+){0,2}?(?:dan|ai|assistant|bot"
     r"|chatbot|model|mode|jailbroken|unrestricted|unfiltered|uncensored|no\s+longer|evil)\b"),
    ("from_now_on", r"\bfrom\s+now\s+on,?\s+(?:you\s+(?:are|must|shall|only|will\s+(?:be|act|only|always"
     r"|respond|answer|reply|ignore|pretend|follow|obey|say))|(?:only\s+)?(?:respond|answer"
     r"|reply)\s+(?:\w+\s+){0,3}?(?:with|as)\b)"),
    ("du_bist_jetzt", r"\b(?:(?:du\s+bist|sie\s+sind)\s+(?:jetzt|nun|ab\s+(?:jetzt|sofort))|ab\s+(?:jetzt"
     r"|sofort)\s+(?:bist\s+du|sind\s+sie))\s+(?:\w+\s+){0,2}?(?:dan|ki|assistent\w*|bot|chatbot|modell"
     r"|uneingeschränkt\w*|unzensiert\w*|böse\w*|nicht\s+mehr)\b"),
    ("act_as_privileged_role", r"\b(?:act|acting|pretend|pretending|behave|roleplay|role-play|pose"
     r"|imagine(?:\s+that)?)\w*\s+(?:as|to\s+be|like|you\s+are)\s+(?:an?\s+|the\s+|my\s+"
     r"|your\s+)?(?:\w+\s+)?(?:system|developer|dev|admin\w*|root|superuser|operator|unrestricted"
     r"|unfiltered|uncensored|jailbroken|evil)\b"),
    ("tu_so_als_ob", r"\b(?:tu|tun\s+sie|stell\s+dir\s+vor)\b,?\s+(?:so,?\s+)?(?:als\s+(?:wärst\s+du"
     r"|wären\s+sie)|du\s+(?:bist|wärst))\s+(?:\w+\s+){0,2}?(?:system\w*|entwickler\w*|admin\w*"
     r"|betreiber\w*|uneingeschränkt\w*|unzensiert\w*|böse\w*|(?:ki|modell)\s+ohne)\b"),
    ("reveal_system_prompt", r"\b(?:reveal|print|show|display|output|repeat|leak|dump|expose|quote"
     r"|tell\s+me|give\s+me|what\s+(?:is|are|was|were))\b[^.?!\n]{0,40}?\b(?:system|developer|hidden|secret"
     r"|initial|original|internal)\s+(?:prompt|instructions?|message|rules|configuration)"),
    ("reveal_your_prompt", r"\b(?:reveal|print|show|display|output|repeat|leak|dump|expose"
     r"|tell\s+me)\s+(?:me\s+)?your\s+(?:\w+\s+)?(?:prompt|instructions|rules|configuration)\b"
     # "your rules on cash withdrawals", "your instructions for returns": a customer's question.
     r"(?!\s+(?:on|for|about|regarding|of|to)\b)|\b(?:print"
     r"|output)\s+(?:me\s+)?(?:all\s+)?(?:the\s+)?(?:text|words|everything|content)\s+(?:above|before)\b"
     r"|\brepeat\s+(?:all\s+of\s+)?everything\s+(?:above|before)\b"),
    ("zeige_systemprompt", r"\b(?:zeig\w*|gib\w*|nenn\w*|verrat\w*"
     r"|wiederhol\w*)\b[^.?!\n]{0,40}?(?:system-?\s?prompt|systemanweisung\w*|systemnachricht\w*"
     r"|deine\s+(?:\w+\s+)?(?:anweisungen|instruktionen|regeln)|(?:ihre|die|alle)\s+(?:geheimen|internen"
     r"|versteckten)\s+(?:anweisungen|instruktionen|regeln))|\b(?:was\s+steht\s+in"
     r"|wie\s+lautet)\s+(?:deinem|ihrem|dem)\s+system-?\s?prompt|\bwiederhol\w*\s+(?:den"
     r"|alle[ns]?)\s+(?:text|inhalt)\w*\s+(?:über|oberhalb|vor)\b"),
    ("new_instructions", r"\b(?:new|real|actual)\s+(?:system\s+)?instructions?\s*:"
     r"|\bneue\s+(?:system)?(?:anweisung|instruktion)\w*\s*:"),
    ("jailbreak_marker", r"\b(?:you\s+are|act\s+as|called|named|become|du\s+bist)\s+(?-i:DAN)\b"
     r"|(?-i:\bDAN\b)\s+(?:mode|prompt)\b|\bdo\s+anything\s+now\b|\bgod\s+mode\b|"
     # A jailbroken phone is not a jailbroken assistant.
     r"\bjailbr(?:ea|o)k\w*+(?!\s+(?:\w+\s+){0,2}?(?:phones?|iphones?|ipads?|devices?|tablets?|consoles?"
     r"|android|kindles?|ps\d|switch)\b)|"
     r"\b(?:enable|activate|enter|switch\s+(?:in)?to|turn\s+on|now\s+in)\s+(?:the\s+)?developer\s+mode\b"
     r"|\bdeveloper\s+mode\s+(?:enabled|activated|on)\b(?!\s+(?:my|your|his|her|the|a|this|our)\b)|\b(?:aktiviere"
     r"|aktivieren\s+sie)\s+den\s+entwicklermodus\b"),
    ("no_restrictions", r"\b(?:ai|assistant|model|chatbot|ki|assistent)\s+(?:with\s+no|without(?:\s+any)?"
     r"|ohne(?:\s+jegliche)?)\s+(?:rules|restrictions|filters|limits|regeln|einschränkungen|filter)\b|"
     r"\b(?:answer|respond|reply|antworte\w*|beantworte\w*)\s+(?:\w+\s+){0,2}?(?:without|ohne)\s+(?:any\s+"
     r"|jegliche\s+)?(?:restrictions|filters|limits|censorship|einschränkung\w*|filter|zensur)\b"),
    ("safety_override", r"\b(?:bypass|override|disable|ignore|switch\s+off|turn\s+off"
     r"|circumvent)\s+(?:all\s+|any\s+)?(?:your\s+|the\s+)?(?:safety\s+|content\s+|security\s+)?(?:filters?"
     r"|guardrails?|restrictions|safeguards|polic(?:y|ies)|safety\s+(?:rules|guidelines))\b|\b(?:umgeh\w*"
     r"|deaktivier\w*|schalte\w*)\s+(?:\w+\s+){0,2}?(?:filter|sicherheitsrichtlinien|inhaltsrichtlinien"
     r"|schutzmechanismen)\b"),
    ("role_tag", r"<\|im_start\|>\s*(?:system|assistant)|<\|(?:system|assistant|user|endoftext)\|>"
     r"|\[/?INST\]|<<SYS>>|(?:^|\s)#{2,}\s*(?:system|assistant)\s*(?::|$)|</?(?:system|instructions?)>"),
    ("addressed_to_ai", r"\b(?:note|message|instructions?|notice|hint)\s+(?:to|for)\s+(?:the\s+|any\s+"
     r"|all\s+)?(?:ai|assistant(?=\s*[:,.])|llm|chatbot|language\s+models?)\b"
     r"|\bif\s+you\s+are\s+an?\s+(?:ai|llm|language\s+model|assistant|chatbot|bot)\b"
     r"|\bif\s+(?:an?\s+)?(?:ai|llm|language)\s+(?:\w+\s+)?(?:reads|processes|summari[sz]es)\b|\b(?:hinweis"
     r"|nachricht|anweisung)\s+(?:an|für)\s+(?:die\s+|den\s+|das\s+|alle\s+)?(?:ki|assistent\w*"
     r"|sprachmodell\w*|chatbot)\b|\b(?:falls|wenn)\s+du\s+(?:eine?\s+)?(?:ki|sprachmodell|assistent"
     r"|bot)\s+bist\b|<!--[^>]{0,40}\b(?:ai|assistant|llm|ki|assistent|chatbot)\b|\b(?:wenn"
     r"|falls)\s+(?:eine?\s+)?(?:ki|sprachmodell|assistent)\S*\s+(?:\w+\s+){0,2}?(?:liest|verarbeitet"
     r"|zusammenfasst)\b"),
    ("ignore_documents", r"\b(?:do\s+not|don'?t|never)\s+(?:\w+\s+){0,2}?(?:use|look\s+(?:in|at)"
     r"|answer\s+(?:\w+\s+){0,4}?(?:from|according\s+to))\s+(?:the\s+|any\s+)?(?:provided\s+)?(?:documents"
     r"|sources|context)\b"),
)
# fmt: on
_RULES = tuple((name, re.compile(pattern, re.IGNORECASE | re.MULTILINE)) for name, pattern in _RULE_PATTERNS)


def match_rule(text: str) -> str | None:
    """The name of the first rule the text matches, or None."""
    return next((name for name, pattern in _RULES if pattern.search(text)), None)


def rule_spans(text: str) -> list[tuple[str, int, int]]:
    """Every rule match in the text as (rule, start, end), in text order: what a passage's
    neutralisation removes. Each rule scans the text once."""
    found = [(name, m.start(), m.end()) for name, pattern in _RULES for m in pattern.finditer(text)]
    return sorted(found, key=lambda item: item[1])


def rules_digest() -> str:
    """Names the rule set: a verdict kept under one rule set is not reused under another."""
    return hashlib.sha256(json.dumps(_RULE_PATTERNS).encode()).hexdigest()

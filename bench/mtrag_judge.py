"""An answer judge for the MTRAG bench that shares nothing with Keel's grounding check: it reads the data
set's own gold answers (`targets`) and gold reference passages (`contexts`), never Keel's retrieval, its
embedding model or its sentence checks.

A reply is
- **supported** when every one of its sentences is (nearly) word for word in one of the task's reference
  passages: at least 80 % of the sentence's normalised tokens occur in that passage;
- **on the answer** when it recalls at least a fifth of the gold answer's content tokens (normalised,
  without stop words): the reply says what the annotator's answer says, at least in part;
- **judged correct** when both hold.

Token F1 (SQuAD normalisation) against the best gold answer is reported as well.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass

SUPPORTED_CONTAINMENT = 0.8
ON_ANSWER_RECALL = 0.2

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation + "\u2018\u2019\u201c\u201d\u2013\u2014")
_SENTENCES = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
# Function words only: what is left says what an answer is about.
_FUNCTION_WORDS = """a an and are as at be been but by can could do does for from has have he her his i if in into
is it its me my no not of on or our she so than that the their them then there these they this to up us was
we were what when where which who will with would you your yes also just about more"""
_STOP = frozenset(_FUNCTION_WORDS.split())


def normalise(text: str) -> str:
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalise(prediction).split(), normalise(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def containment(part: str, whole: str) -> float:
    words = set(normalise(part).split())
    return len(words & set(normalise(whole).split())) / len(words) if words else 0.0


def gold_recall(reply: str, gold: str) -> float:
    wanted = {w for w in normalise(gold).split() if w not in _STOP}
    said = set(normalise(reply).split())
    return len(wanted & said) / len(wanted) if wanted else 0.0


@dataclass(frozen=True)
class Judgement:
    supported: bool  # every sentence is in a reference passage
    unsupported_sentences: list[str]
    recall: float  # best gold answer's content tokens the reply recalls
    f1: float

    @property
    def on_answer(self) -> bool:
        return self.recall >= ON_ANSWER_RECALL

    @property
    def correct(self) -> bool:
        return self.supported and self.on_answer


def judge(reply: str, golds: list[str], references: list[str]) -> Judgement:
    claims = [s.strip() for s in _SENTENCES.split(reply.strip()) if normalise(s)]
    missing = [s for s in claims if not any(containment(s, r) >= SUPPORTED_CONTAINMENT for r in references)]
    return Judgement(
        supported=bool(claims) and not missing,
        unsupported_sentences=missing,
        recall=max((gold_recall(reply, g) for g in golds), default=0.0),
        f1=max((token_f1(reply, g) for g in golds), default=0.0),
    )

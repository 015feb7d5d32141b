"""Passage verdicts kept in the database, so that a knowledge base's chunks are screened when they are
ingested and a request reads their verdicts instead of screening them.

A row holds the detector state (`passage_state.py`), the SHA-256 of the passage's text (for a chunk, its
`content_hash`) and the verdict's fields: no text and no tenant. Like the embedding cache, rows are
content-addressed and shared: two documents with the same chunk share its verdict, a re-ingested
document finds its unchanged chunks' verdicts, and a deleted document's verdicts stay behind as
harmless orphans (a digest, a score, offsets and a rule name or two) until the daily `prune` removes
them. The store reads the knowledge base's `chunks` (which digests are live; which texts have no
verdict yet) and never writes them."""

from __future__ import annotations

from typing import Literal, Protocol, cast

from sqlalchemy import delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite

from keel.guard.passage_verdict import PassageVerdict
from keel.store.digests import text_digest
from keel.store.engine import Database
from keel.store.models import Chunk, PassageVerdictRow

# Bound parameters per lookup query stay well under every database's limit.
_LOOKUP_BATCH = 500


class StoredVerdicts(Protocol):
    """Where the detector finds verdicts judged earlier (at ingestion) and keeps new ones."""

    def lookup(self, state: str, texts: list[str]) -> list[PassageVerdict | None]: ...

    def keep(self, state: str, texts: list[str], verdicts: list[PassageVerdict]) -> None: ...


def _verdict(row: PassageVerdictRow) -> PassageVerdict:
    tier = cast(Literal["rules", "classifier", "judge"], row.tier)
    spans = tuple((int(start), int(end)) for start, end in row.spans)
    return PassageVerdict(row.score, row.is_injection, tier, row.reason, spans)


class PassageVerdictStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def lookup(self, state: str, texts: list[str]) -> list[PassageVerdict | None]:
        """The verdict kept for each text under `state`, None where there is none."""
        digests = [text_digest(text) for text in texts]
        wanted = sorted(set(digests))
        found: dict[str, PassageVerdict] = {}
        with self._database.reading() as session:
            for start in range(0, len(wanted), _LOOKUP_BATCH):
                rows = session.scalars(
                    select(PassageVerdictRow).where(
                        PassageVerdictRow.state == state,
                        PassageVerdictRow.text_hash.in_(wanted[start : start + _LOOKUP_BATCH]),
                    )
                )
                found.update({row.text_hash: _verdict(row) for row in rows})
        return [found.get(digest) for digest in digests]

    def keep(self, state: str, texts: list[str], verdicts: list[PassageVerdict]) -> None:
        """Stores the verdicts; one already kept for a text under `state` stays (it is the same)."""
        rows = {
            text_digest(text): {
                "state": state,
                "text_hash": text_digest(text),
                "score": verdict.score,
                "is_injection": verdict.is_injection,
                "tier": verdict.tier,
                "reason": verdict.reason[:200],
                "spans": [list(span) for span in verdict.spans],
            }
            for text, verdict in zip(texts, verdicts, strict=True)
        }
        if not rows:
            return
        insert = sqlite.insert if self._database.is_sqlite else postgresql.insert
        with self._database.session() as session:
            session.execute(insert(PassageVerdictRow).on_conflict_do_nothing(), list(rows.values()))

    def unscreened(self, state: str, limit: int, start: str = "") -> list[str]:
        """Texts of up to `limit` chunks with no verdict kept under `state`, in digest order from `start`
        (then from the beginning): chunks ingested before screening at ingestion, or under another
        detector state. A fresh `start` keeps two consumers doing this at once mostly apart."""
        # NOT EXISTS, an anti-join on the verdicts' key: NOT IN over a large subquery may not be hashed.
        kept = exists().where(
            PassageVerdictRow.state == state, PassageVerdictRow.text_hash == Chunk.content_hash
        )
        query = select(Chunk.content_hash, Chunk.text).where(~kept).order_by(Chunk.content_hash).limit(limit)
        with self._database.reading() as session:
            rows = list(session.execute(query.where(Chunk.content_hash >= start)))
            if len(rows) < limit and start:
                rows += session.execute(query.where(Chunk.content_hash < start))
        return list(dict.fromkeys(row.text for row in rows))[:limit]

    def prune(self) -> int:
        """Removes the verdicts whose text no chunk has any more (a deleted or changed document's);
        returns how many went. Verdicts of an earlier detector state stay: a replica not yet upgraded
        still reads them."""
        with self._database.session() as session:
            result = session.execute(
                delete(PassageVerdictRow).where(
                    ~exists().where(Chunk.content_hash == PassageVerdictRow.text_hash)
                )
            )
            return int(getattr(result, "rowcount", 0) or 0)

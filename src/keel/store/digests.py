"""The SHA-256 that names a text: a chunk's `content_hash`, and the `text_hash` a passage verdict is kept
under. One function, so that a verdict stored at ingestion is always found again by its chunk."""

from __future__ import annotations

import hashlib


def text_digest(text: str) -> str:
    # A lone surrogate (from a damaged file) is hashed as it stands rather than refused.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

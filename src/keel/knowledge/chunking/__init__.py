"""Chunkers, one per document type; each returns `ChunkDraft`s that keep where their text came from."""

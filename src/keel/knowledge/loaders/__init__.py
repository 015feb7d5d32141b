"""Loaders, one per document type: bytes in, a `LoadedDocument` with its type's chunks out."""

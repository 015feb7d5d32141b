"""The search index: keyword and vector search over chunks, behind one interface per database."""

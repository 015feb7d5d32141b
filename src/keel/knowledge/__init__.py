"""The knowledge base: loaders, chunking, embeddings, the index and retrieval."""

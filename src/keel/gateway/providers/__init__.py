"""Model providers, each implementing `ChatProvider` for one wire format or runtime."""

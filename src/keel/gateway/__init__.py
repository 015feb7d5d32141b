"""The model layer: OpenAI-compatible protocol, providers and the gateway that routes to them."""

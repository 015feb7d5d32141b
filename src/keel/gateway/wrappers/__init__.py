"""The gateway's concerns, each a `ChatModel` wrapping an inner one (`gateway/model.py`)."""

"""The web dashboard at /ui: server-rendered pages, logged in with an API key."""

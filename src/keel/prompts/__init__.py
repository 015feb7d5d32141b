"""Prompt management: a registry of immutable versions and movable labels, prompts as code, rendering
into chat requests, sticky experiments and canary releases (docs/prompts.md)."""

"""Guardrails: prompt injection, personal data, output policy."""

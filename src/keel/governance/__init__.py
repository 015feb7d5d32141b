"""Governance: the tamper-evident audit log, retention, and data-subject requests (GDPR)."""

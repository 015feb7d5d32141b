"""The support copilot: cited replies from the knowledge base and the CRM, checked, scored, escalated."""

"""The human review queue: escalated replies wait here for a reviewer's decision."""

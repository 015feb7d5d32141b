"""Evaluation: versioned datasets, runs with confidence intervals, paired comparison and CI gates."""

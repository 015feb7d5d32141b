"""Keel: the system around the model."""

__version__ = "0.1.0"

"""Relational state: engine, ORM models, Alembic migrations and repositories."""

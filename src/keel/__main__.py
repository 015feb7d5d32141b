"""`python -m keel` runs the CLI."""

from keel.cli import app

app()

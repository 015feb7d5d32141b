"""`python -m keel` runs the CLI."""

from keel.cli import main

main()

"""`python -m clipsearch` runs the CLI."""

from .cli import main

main()

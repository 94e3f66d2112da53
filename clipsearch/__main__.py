"""`python -m clipsearch` runs the CLI."""

from clipsearch.cli import main

main()

"""Thin entry point for running from a checkout: `python cli.py index ./photos`."""

from clipsearch.cli import main

if __name__ == "__main__":
    main()

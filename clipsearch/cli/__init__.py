"""The `clipsearch` command: a thin typer layer over the library API. Heavy imports happen inside commands.

`common` holds the app and what commands share; each command module reads arguments, calls one library verb
and prints.
"""

from __future__ import annotations

from clipsearch.cli import (  # noqa: F401 - registers the commands on the app
    model_commands,
    serve_commands,  # noqa: F401,I001 - after the store commands in --help
    store_commands,
)
from clipsearch.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    app()

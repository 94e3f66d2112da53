"""The `clipsearch` command: a thin typer layer over the library API. Heavy imports happen inside commands.

`common` holds the app and what typer commands share, `plain` what needs no typer; each command module reads
arguments, calls one library verb and prints. `fast` runs the commonest invocations (a plain text query, a plain
re-index) without typer's start-up; `main` tries it first. Importing this package is cheap: `app` (typer, every
command registered) is built on first access.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import typer

# importing a command module registers its commands on the app; --help lists them in this order
COMMAND_MODULES = ("model_commands", "store_commands", "serve_commands")

__all__ = ["app", "main"]


def _app() -> typer.Typer:
    from clipsearch.cli.common import app

    for module in COMMAND_MODULES:
        importlib.import_module(f"clipsearch.cli.{module}")
    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _app()
    raise AttributeError(name)


def main() -> None:
    from clipsearch.cli import fast

    if not fast.run(sys.argv[1:]):
        _app()()

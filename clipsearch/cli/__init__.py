"""The `clipsearch` command: a thin typer layer over the library API. Heavy imports happen inside commands.

`common` holds the app and what commands share; each command module reads arguments, calls one library verb
and prints.
"""

from __future__ import annotations

import importlib

from clipsearch.cli.common import app

# importing a command module registers its commands on the app; --help lists them in this order
COMMAND_MODULES = ("model_commands", "store_commands", "serve_commands")
for _module in COMMAND_MODULES:
    importlib.import_module(f"clipsearch.cli.{_module}")

__all__ = ["app", "main"]


def main() -> None:
    app()

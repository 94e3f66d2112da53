"""What every typer command shares: the app, its shared options, and the wrapper that turns failures into one line.

What needs no typer (consoles, printers, the progress adapter, `failure_code`) lives in `plain.py`, shared with
the fast path; it is re-exported here, and `out` / `err` here are this invocation's consoles.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from clipsearch.cli import plain
from clipsearch.cli.plain import (  # noqa: F401 - what command modules take from here
    OPTION_OF,
    RichProgress,
    _print_note,
    _print_problems,
    _shell_quote,
    cli_terms,
    emit_json,
    failure_code,
    human_size,
)

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Search your image collections by text or by example image (CLIP + FAISS).")


def __getattr__(name: str) -> Console:
    """`out` and `err`: the consoles of this invocation (`plain.console`), made when first printed to."""
    if name in ("out", "err"):
        return plain.console(stderr=name == "err")
    raise AttributeError(name)


def _print_version(asked: bool) -> None:
    if asked:
        from clipsearch import __version__

        print(f"clipsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _setup(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                        help="Print the version and exit.")) -> None:
    """Consoles are made per invocation, so width and TTY detection follow the streams of this run."""
    plain.reset_consoles()

IndexOpt = typer.Option(None, "--index", envvar="CLIPSEARCH_INDEX",
                        help="Store folder (default: ./index of the checkout, else ~/.local/share/clipsearch/index).")
JsonOpt = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")
BackendOpt = typer.Option(None, "--backend", help="Image encoder: onnx (ONNX Runtime, from a model export made once "
                          "and cached) or torch. Default: onnx where the model exports, else torch.")


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every failure becomes one line plus a hint, never a traceback (`plain.failure_code`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except BaseException as exc:
            code = failure_code(exc, fn.__name__)
            if code is None:
                raise
            raise typer.Exit(code) from None

    return wrapper

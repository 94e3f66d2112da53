"""What commands share that needs neither typer nor rich to import: the consoles (made on first use), library
terms in CLI words, one-line failures, JSON and sizes, the progress adapter and notes.

The typer app (`common.py`) and the fast path (`fast.py`, which skips typer for the commonest invocations) both
print through these, so a command prints the same either way.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from clipsearch.errors import ClipsearchError

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

_consoles: dict[bool, Console] = {}


def console(stderr: bool = False) -> Console:
    """This invocation's console for stdout (or stderr): made on first use, so output that never needs rich
    (--paths, --json) never imports it."""
    if stderr not in _consoles:
        from clipsearch.terminal import make_console

        _consoles[stderr] = make_console(stderr=stderr)
    return _consoles[stderr]


def reset_consoles() -> None:
    """Consoles are made per invocation, so width and TTY detection follow the streams of this run."""
    _consoles.clear()


def safe(text: object) -> str:
    from clipsearch.terminal import safe as escaped

    return escaped(text)


# library parameter → the option that sets it, for errors the library reports by parameter
OPTION_OF = {"language": "--lang",
             "alpha": "--alpha", "val": "--val", "labels": "--labels", "templates": "--template", "int8": "--int8",
             "model": "--model", "frame_interval": "--frame-interval", "k": "-k", "after": "--after",
             "before": "--before", "under": "--under", "threshold": "--threshold", "grid": "--grid",
             "token": "--token", "port": "--port", "host": "--host", "backend": "--backend", "device": "--device",
             "ray_address": "--ray-address", "db": "--db", "like": "--like", "taken_after": "--taken-after",
             "taken_before": "--taken-before", "camera": "--camera", "near": "--near",
             "test": "--test", "val_fraction": "--val-fraction", "unlocked_layers": "--unlocked-layers",
             "lock_image": "--lock-image", "accumulate": "--accumulate",
             "unlocked_text_layers": "--unlocked-text-layers", "resume": "--resume", "restart": "--restart",
             "folds": "--folds", "test_fraction": "--test-fraction", "grad_checkpointing": "--grad-checkpointing"}


def cli_terms(text: str) -> str:
    """The library names its parameters in backticks (`resume`); the CLI shows the option (--resume)."""
    import re

    return re.sub(r"`(\w+)`", lambda m: OPTION_OF.get(m.group(1), m.group(1)), text)


def _in_cli_terms(exc: ClipsearchError) -> str:
    """A message that starts with the library parameter's name starts with the option instead."""
    option = OPTION_OF.get(exc.param or "")
    message = cli_terms(exc.message)
    if not option:
        return message
    if message.startswith(f"{exc.param} "):
        return option + message[len(exc.param or ""):]
    return f"{message} (option {option})"


def failure_code(exc: BaseException, command: str) -> int | None:
    """Print what a failed command tells the user — one line plus a hint, never a traceback — and return the exit
    code; None when the exception should propagate (CLIPSEARCH_DEBUG=1 shows the traceback of an unexpected one)."""
    err = console(stderr=True)
    if isinstance(exc, ClipsearchError):
        err.print(f"[bold red]error:[/] {safe(_in_cli_terms(exc))}")
        if exc.hint:
            err.print(f"[yellow]hint:[/] {safe(cli_terms(exc.hint))}")
        return 1
    if isinstance(exc, KeyboardInterrupt):
        err.print("[bold red]interrupted:[/] committed work is kept; run the same command again to resume")
        return 130
    if not isinstance(exc, Exception):
        return None
    if isinstance(exc, ImportError):  # a path that needs the [torch] extra and did not say so first
        from clipsearch.encoders.torch_needed import TorchMissingError, is_torch_module

        if not is_torch_module(exc.name):
            return None
        missing = TorchMissingError(f"clipsearch {command}", exc.name)
        err.print(f"[bold red]error:[/] {safe(missing.message)}")
        err.print(f"[yellow]hint:[/] {safe(missing.hint or '')}")
        return 1
    from clipsearch.config import settings

    if settings().debug:
        return None
    from clipsearch.errors import is_disk_full, server_short_of

    short = server_short_of(exc)  # a database server short of disk, memory or connections
    if short is not None:
        err.print(f"[bold red]error:[/] {safe(short.message)}")
        err.print(f"[yellow]hint:[/] {safe(short.hint or '')}")
        return 1
    if is_disk_full(exc):
        err.print("[bold red]error:[/] the disk is full (no space left on device); nothing half-written "
                  "was kept")
        err.print("[yellow]hint:[/] free some space, then run the same command again")
        return 1
    first = str(exc).splitlines()[0] if str(exc) else ""
    err.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {safe(first)}")
    err.print("[yellow]hint:[/] run again with CLIPSEARCH_DEBUG=1 for the full traceback and report it")
    return 1


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


class RichProgress:
    """Adapter from the library's Progress protocol to rich: a bar with files/s and ETA, a status line for
    work without a count (loading a model), and notes printed the moment they happen."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=False,
        )
        self.task: Any = None
        self._stage: Any = None

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._end_stage()
        self.progress.stop()

    def _end_stage(self) -> None:
        if self._stage is not None:
            self.progress.remove_task(self._stage)
            self._stage = None

    def stage(self, message: str) -> None:
        self._end_stage()
        self._stage = self.progress.add_task(safe(message), total=None, rate="")

    def note(self, message: Any) -> None:
        _print_note(message)

    def start(self, total: int, description: str) -> None:
        self._end_stage()
        self.task = self.progress.add_task(safe(description), total=total, rate="")

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)
        speed = next(t.speed for t in self.progress.tasks if t.id == self.task)
        self.progress.update(self.task, rate=f"{speed:.1f} files/s" if speed else "")


def _print_note(notice: Any) -> None:
    """Notes go to stderr, whatever the bar's console; a model fallback says how to switch in CLI terms."""
    from clipsearch.encoders.spec import ModelNotice

    if isinstance(notice, ModelNotice):
        notice = f"{notice.message} Switch later with: clipsearch index FOLDER --model {notice.switch_to} --reembed"
    console(stderr=True).print(f"[yellow]note:[/] {safe(notice)}")


def _print_problems(summary: Any) -> None:
    err = console(stderr=True)
    for path, why in summary.failures[:20]:
        err.print(f"[red]failed:[/] {safe(path)}: {safe(why)}")
    if len(summary.failures) > 20:
        err.print(f"... and {len(summary.failures) - 20} more: clipsearch info --failures")
    for path, why in summary.problems[:20]:
        err.print(f"[yellow]could not read:[/] {safe(path)}: {safe(why)} (what was indexed there is kept)")
    for root in summary.vanished_roots:
        err.print(f"[yellow]vanished:[/] {safe(root)} no longer exists; its images are hidden from results "
                  f"(drop them: clipsearch forget {safe(_shell_quote(root))})")


def _shell_quote(path: str) -> str:
    import shlex

    return shlex.quote(path)

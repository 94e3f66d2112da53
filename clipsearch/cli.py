"""The `clipsearch` command: a thin typer layer over the library API. Heavy imports happen inside commands."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import ClipsearchError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Search your image collections by text or by example image (CLIP + FAISS).")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

IndexOpt = typer.Option(None, "--index", envvar="CLIPSEARCH_INDEX", help="Store folder (default: ./index of the checkout, else ~/.local/share/clipsearch/index).")
JsonOpt = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every failure becomes one line plus a hint, never a traceback (CLIPSEARCH_DEBUG=1 shows it)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ClipsearchError as exc:
            err.print(f"[bold red]error:[/] {exc.message}", markup=True, highlight=False)
            if exc.hint:
                err.print(f"[yellow]hint:[/] {exc.hint}")
            raise typer.Exit(1)
        except KeyboardInterrupt:
            err.print("[bold red]interrupted:[/] committed work is kept; run the same command again to resume")
            raise typer.Exit(130)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence for the user
            if os.environ.get("CLIPSEARCH_DEBUG"):
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            err.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {first}")
            err.print("[yellow]hint:[/] run again with CLIPSEARCH_DEBUG=1 for the full traceback and report it")
            raise typer.Exit(1)

    return wrapper


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
    """Adapter from the indexer's Progress protocol to a rich progress bar with files/s and ETA."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=False,
        )
        self.task: Any = None

    def __enter__(self) -> "RichProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, total: int, description: str) -> None:
        self.task = self.progress.add_task(description, total=total, rate="")

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)
        speed = self.progress.tasks[self.task].speed
        self.progress.update(self.task, rate=f"{speed:.1f} files/s" if speed else "")


@app.command()
@friendly_errors
def index(
    paths: List[Path] = typer.Argument(..., help="Folders (recursed) and single image files."),
    index_path: Optional[Path] = IndexOpt,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="ARCH:TAG, a model folder, or a shipped config. New stores default to ViT-B-32:laion2b_s34b_b79k."),
    exclude: List[str] = typer.Option([], "--exclude", help="Glob on the relative path or name; repeatable."),
    include_hidden: bool = typer.Option(False, "--include-hidden", help="Also index dot-files and dot-folders."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Images per encoder batch."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Decoding threads."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when present)."),
    as_json: bool = JsonOpt,
) -> None:
    """Index folders incrementally: new, changed, moved and deleted files are handled."""
    from .store import open_store

    for p in paths:
        if not p.expanduser().exists():
            raise ClipsearchError(f"no such file or folder: {p}", "check the path and try again")
    with open_store(index_path, model, create=True, device=device) as store:
        progress_console = err if as_json else out
        with RichProgress(progress_console) as progress:
            summary = store.add(paths, exclude=exclude, include_hidden=include_hidden, batch_size=batch_size,
                                workers=workers, progress=progress)
    if as_json:
        emit_json(summary.to_dict())
        return
    table = Table(title=f"indexed into {store.path}", show_header=False)
    for key in ("scanned", "added", "updated", "moved", "removed", "unchanged", "failed", "not_images"):
        table.add_row(key.replace("_", " "), str(getattr(summary, key)))
    table.add_row("time", f"{summary.seconds:.2f} s")
    if summary.encoded:
        table.add_row("speed", f"{summary.images_per_second:.1f} images/s")
    out.print(table)
    for path, why in summary.failures[:20]:
        err.print(f"[red]failed:[/] {path}: {why}")
    if len(summary.failures) > 20:
        err.print(f"... and {len(summary.failures) - 20} more: clipsearch info --failures")
    for path, why in summary.problems[:20]:
        err.print(f"[yellow]skipped:[/] {path}: {why}")


@app.command()
@friendly_errors
def query(
    text: List[str] = typer.Argument(None, help="Text terms; a term may end in ::WEIGHT, e.g. 'beach::2'."),
    image: List[Path] = typer.Option([], "--image", "-i", help="Query image (repeatable)."),
    minus: List[str] = typer.Option([], "--minus", help="Text to steer away from (repeatable)."),
    minus_image: List[Path] = typer.Option([], "--minus-image", help="Image to steer away from (repeatable)."),
    k: int = typer.Option(10, "-k", "--top", min=1, help="Number of results."),
    under: List[Path] = typer.Option([], "--under", help="Only results inside this folder (repeatable)."),
    ext: List[str] = typer.Option([], "--ext", help="Only these extensions, e.g. --ext jpg (repeatable)."),
    index_path: Optional[Path] = IndexOpt,
    as_json: bool = JsonOpt,
    paths_only: bool = typer.Option(False, "--paths", help="One path per line (for xargs)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda."),
) -> None:
    """Find images by text, by example image, or both."""
    if not any(t.strip() for t in (text or [])) and not image:
        raise ClipsearchError("empty query", 'give some text, e.g. clipsearch query "a dog on grass", or --image PATH')
    from .store import open_store

    with open_store(index_path, device=device) as store:
        hits = store.search(text or [], image=[str(i) for i in image], minus=minus,
                            minus_image=[str(i) for i in minus_image], k=k,
                            under=[str(u) for u in under] or None, ext=ext or None)
    if as_json:
        emit_json([h.to_dict() for h in hits])
    elif paths_only:
        for h in hits:
            sys.stdout.write(h.path + "\n")
    elif not hits:
        out.print("no results")
    else:
        table = Table()
        for col, justify in (("rank", "right"), ("score", "right"), ("path", "left"), ("size", "right"), ("pixels", "right")):
            table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
        for h in hits:
            table.add_row(str(h.rank), f"{h.score:.3f}", f"[link=file://{h.path}]{h.path}[/link]",
                          human_size(h.size), f"{h.width}x{h.height}" if h.width else "-")
        out.print(table)


@app.command()
@friendly_errors
def info(
    index_path: Optional[Path] = IndexOpt,
    failures: bool = typer.Option(False, "--failures", help="List the files that could not be indexed."),
    as_json: bool = JsonOpt,
) -> None:
    """What is in the store: images, model, vector index, size on disk, last run, failures."""
    from .store import open_store

    with open_store(index_path) as store:
        data = store.info()
        fails = store.failures() if failures else None
    if as_json:
        emit_json({**data, "failures_list": fails} if fails is not None else data)
        return
    if fails is not None:
        table = Table(title=f"{len(fails)} files could not be indexed")
        table.add_column("path", overflow="fold")
        table.add_column("error", overflow="fold")
        for f in fails:
            table.add_row(f["path"], f["error"] or "")
        out.print(table)
        return
    model = data["model"] or {}
    table = Table(show_header=False, title=f"store {data['store']}")
    table.add_row("images", str(data["images"]))
    table.add_row("failed", str(data["failed"]))
    table.add_row("model", f"{model.get('spec')} ({model.get('embed_dim')}-d, {model.get('image_size')}px)")
    table.add_row("vector index", f"{data['index_type']}, {data['vectors']} vectors")
    table.add_row("size on disk", human_size(data["disk_bytes"]))
    table.add_row("roots", "\n".join(data["roots"]) or "-")
    last = data["last_run"]
    if last:
        table.add_row("last run", f"{last['started_at']} {last['status']}: +{last['added']} ~{last['updated']} "
                                  f">{last['moved']} -{last['removed']} !{last['failed']} in {last['seconds']} s")
    out.print(table)


@app.command()
@friendly_errors
def models(as_json: bool = JsonOpt) -> None:
    """List the models: shipped configs, open_clip architectures with pretrained tags, weights on disk."""
    from .models import list_models

    rows = list_models()
    if as_json:
        emit_json(rows)
        return
    table = Table()
    for col in ("spec", "kind", "on disk"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["spec"], r["kind"], "yes" if r["cached"] else "")
    out.print(table)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

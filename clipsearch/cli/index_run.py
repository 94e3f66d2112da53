"""The index command's work and output, shared by the typer command and the fast path (no typer)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clipsearch.cli import plain
from clipsearch.cli.plain import RichProgress, _print_problems, emit_json, safe
from clipsearch.errors import ClipsearchError


def run_index(paths: Sequence[Path], *, index_path: Path | None = None, model: str | None = None,
              exclude: Sequence[str] = (), include_hidden: bool = False, frame_interval: float | None = None,
              verify: bool = False, batch_size: int | None = None, workers: int | None = None,
              device: str | None = None, reembed: bool = False, int8: bool | None = None, backend: str | None = None,
              thumbnails: bool = False, ray: bool = False, ray_address: str | None = None, ocr: bool = False,
              db: str | None = None, as_json: bool = False) -> None:
    """`clipsearch index`: index the paths into the store (a progress bar), then print the run's summary."""
    from clipsearch.store.store import open_store

    if reembed and not model:
        raise ClipsearchError("--reembed needs --model NEW_MODEL")
    progress_console = plain.console(stderr=as_json)
    with open_store(index_path, None if reembed else model, create=True, device=device, backend=backend,
                    db=db) as store, \
            RichProgress(progress_console) as progress:
        reembedded = None
        if reembed and model:
            reembedded = store.switch_model(model, batch_size=batch_size, workers=workers, progress=progress)
        summary = store.add(paths, exclude=exclude, include_hidden=include_hidden, verify=verify,
                            frame_interval=frame_interval, batch_size=batch_size, workers=workers,
                            progress=progress, int8=int8, thumbnails=thumbnails,
                            ray_address=ray_address or ("local" if ray else None), ocr=ocr)
    if as_json:
        emit_json({**summary.to_dict(), **({"reembedded": reembedded.encoded, "reembed_waiting": reembedded.waiting}
                                           if reembedded is not None else {})})
        return
    _print_problems(summary)
    if not summary.scanned:
        plain.console(stderr=True).print(f"[yellow]no images found[/] in {', '.join(safe(p) for p in paths)}")
        return
    from clipsearch.terminal import table as new_table

    t = new_table(show_header=False, title=f"indexed into {safe(store.path)}")
    t.add_column()
    t.add_column(overflow="fold")
    if reembedded is not None:  # the images the re-embed encoded; the run after it finds them unchanged
        t.add_row("re-embedded", f"{reembedded.encoded} images with {safe(model or '')} in {reembedded.seconds:.1f} s"
                  + _waiting(reembedded.to_dict()))
    for key in ("scanned", "added", "updated", "moved", "removed", "unchanged", "failed", "not_images"):
        t.add_row(key.replace("_", " "), str(getattr(summary, key)))
    if summary.metadata_read:
        t.add_row("metadata read", f"{summary.metadata_read} files' photo metadata from their headers (not re-encoded)")
    if summary.verified:
        t.add_row("verified", f"{summary.verified} digests re-checked")
    if summary.hashed:
        t.add_row("hashed", f"{summary.hashed} images given perceptual hashes (not re-encoded)")
    if thumbnails:
        t.add_row("thumbnails", f"{summary.thumbnails} made")
    if summary.aliases:
        t.add_row("aliases", f"{summary.aliases} links to files indexed under their real path (skipped)")
    if summary.text_read:
        t.add_row("text read", f"{summary.text_read} images, {summary.text_found} with text "
                               f"({summary.text_seconds:.1f} s of reading, beside encoding)")
    t.add_row("time", f"{summary.seconds:.2f} s")
    if summary.encoded and summary.backend:
        t.add_row("encoder", f"{summary.backend}, {summary.precision} on {summary.device}")
    if summary.encoded:
        after_load = summary.encoded / max(summary.seconds - summary.model_seconds, 1e-9)
        t.add_row("speed", f"{summary.images_per_second:.1f} images/s overall, {after_load:.1f} images/s "
                           f"after {summary.model_seconds:.1f} s of model loading")
    plain.console().print(t)


def _waiting(reembed: dict) -> str:
    """The images of vanished roots a re-embed kept for later, as a sentence (empty when there are none)."""
    if not reembed.get("waiting"):
        return ""
    return (f"; {reembed['waiting']} images of vanished folders kept, re-encoded when their folder is back "
            f"(index it again then)")

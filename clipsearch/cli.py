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

from .errors import ClipsearchError
from .terminal import make_console, path_text, safe, table as new_table, visible

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Search your image collections by text or by example image (CLIP + FAISS).")
out = make_console()
err = make_console(stderr=True)


@app.callback()
def _setup() -> None:
    """Consoles are made per invocation, so width and TTY detection follow the streams of this run."""
    global out, err
    out, err = make_console(), make_console(stderr=True)

IndexOpt = typer.Option(None, "--index", envvar="CLIPSEARCH_INDEX", help="Store folder (default: ./index of the checkout, else ~/.local/share/clipsearch/index).")
JsonOpt = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every failure becomes one line plus a hint, never a traceback (CLIPSEARCH_DEBUG=1 shows it)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ClipsearchError as exc:
            err.print(f"[bold red]error:[/] {safe(exc.message)}")
            if exc.hint:
                err.print(f"[yellow]hint:[/] {safe(exc.hint)}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[bold red]interrupted:[/] committed work is kept; run the same command again to resume")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence for the user
            from .config import settings

            if settings().debug:
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            err.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {safe(first)}")
            err.print("[yellow]hint:[/] run again with CLIPSEARCH_DEBUG=1 for the full traceback and report it")
            raise typer.Exit(1) from None

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
    """Adapter from the library's Progress protocol to rich: a bar with files/s and ETA, a status line for
    work without a count (loading a model), and notes printed the moment they happen."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=False,
        )
        self.task: Any = None
        self._stage: Any = None

    def __enter__(self) -> "RichProgress":
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

    def note(self, message: str) -> None:
        err.print(f"[yellow]note:[/] {safe(message)}")  # notes go to stderr, whatever the bar's console

    def start(self, total: int, description: str) -> None:
        self._end_stage()
        self.task = self.progress.add_task(safe(description), total=total, rate="")

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)
        speed = next(t.speed for t in self.progress.tasks if t.id == self.task)
        self.progress.update(self.task, rate=f"{speed:.1f} files/s" if speed else "")


def _print_problems(summary: Any) -> None:
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


@app.command()
@friendly_errors
def index(
    paths: List[Path] = typer.Argument(..., help="Folders (recursed) and single image files."),
    index_path: Optional[Path] = IndexOpt,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="ARCH:TAG, offline-mini, a model folder, or a shipped config. New stores: ViT-B-32:laion2b_s34b_b79k when its weights can be had, else offline-mini."),
    exclude: List[str] = typer.Option([], "--exclude", help="Glob on the relative path or name; repeatable."),
    include_hidden: bool = typer.Option(False, "--include-hidden", help="Also index dot-files and dot-folders."),
    verify: bool = typer.Option(False, "--verify", help="Also re-hash files whose size and date are unchanged, and re-encode those whose content changed."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Images per encoder batch."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Decoding threads."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when present)."),
    reembed: bool = typer.Option(False, "--reembed", help="Re-encode the whole store with --model (queries keep working until it is done)."),
    int8: bool = typer.Option(False, "--int8", help="CPU, ViT models: int8 dynamic quantisation of the image tower (~1.4x faster encoding, embeddings within 1e-4 cosine)."),
    as_json: bool = JsonOpt,
) -> None:
    """Index folders incrementally: new, changed, moved and deleted files are handled."""
    from .store import open_store

    if reembed and not model:
        raise ClipsearchError("--reembed needs --model NEW_MODEL")
    progress_console = err if as_json else out
    with open_store(index_path, None if reembed else model, create=True, device=device) as store, \
            RichProgress(progress_console) as progress:
        if reembed and store.manifest:
            store.reembed(model, batch_size=batch_size, workers=workers, progress=progress)  # type: ignore[arg-type]
        elif reembed:
            store.choose_model(model)  # type: ignore[arg-type] - a new store: nothing to re-embed
        if int8:
            store.progress = progress
            store.encoder.quantize_int8()
        summary = store.add(paths, exclude=exclude, include_hidden=include_hidden, verify=verify,
                            batch_size=batch_size, workers=workers, progress=progress)
    if as_json:
        emit_json(summary.to_dict())
        return
    _print_problems(summary)
    if not summary.scanned:
        err.print(f"[yellow]no images found[/] in {', '.join(safe(p) for p in paths)}")
        return
    t = new_table(show_header=False, title=f"indexed into {safe(store.path)}")
    t.add_column()
    t.add_column(overflow="fold")
    for key in ("scanned", "added", "updated", "moved", "removed", "unchanged", "failed", "not_images"):
        t.add_row(key.replace("_", " "), str(getattr(summary, key)))
    if summary.verified:
        t.add_row("verified", f"{summary.verified} digests re-checked")
    if summary.aliases:
        t.add_row("aliases", f"{summary.aliases} links to files indexed under their real path (skipped)")
    t.add_row("time", f"{summary.seconds:.2f} s")
    if summary.encoded:
        after_load = summary.encoded / max(summary.seconds - summary.model_seconds, 1e-9)
        t.add_row("speed", f"{summary.images_per_second:.1f} images/s overall, {after_load:.1f} images/s "
                           f"after {summary.model_seconds:.1f} s of model loading")
    out.print(t)


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
    after: Optional[str] = typer.Option(None, "--after", help="Only files modified on/after this date (YYYY-MM-DD)."),
    before: Optional[str] = typer.Option(None, "--before", help="Only files modified before this date (YYYY-MM-DD)."),
    index_path: Optional[Path] = IndexOpt,
    as_json: bool = JsonOpt,
    paths_only: bool = typer.Option(False, "--paths", help="One path per line (for xargs)."),
    paths0: bool = typer.Option(False, "--paths0", "-0", help="Paths separated by NUL bytes (for xargs -0): safe for any file name."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda."),
) -> None:
    """Find images by text, by example image, or both."""
    if not any(t.strip() for t in (text or [])) and not image:
        raise ClipsearchError("empty query", 'give some text, e.g. clipsearch query "a dog on grass", or --image PATH')
    from .store import open_store

    with open_store(index_path, device=device) as store:
        hits = store.search(text or [], image=[str(i) for i in image], minus=minus,
                            minus_image=[str(i) for i in minus_image], k=k,
                            under=[str(u) for u in under] or None, ext=ext or None, after=after, before=before)
    for note in hits.notes:
        err.print(f"[yellow]note:[/] {safe(note)}")
    if as_json:
        emit_json([h.to_dict() for h in hits])
    elif paths_only or paths0:
        sys.stdout.flush()
        end = b"\0" if paths0 else b"\n"
        sys.stdout.buffer.write(b"".join(os.fsencode(h.path) + end for h in hits))  # the real bytes of each name
        sys.stdout.buffer.flush()
    elif not hits:
        out.print("no results")
    else:
        t = new_table("rank", "score", "path", "size", "pixels", right=("rank", "score", "size", "pixels"))
        for h in hits:
            t.add_row(str(h.rank), f"{h.score:.3f}", path_text(h.path, link=True), human_size(h.size),
                      f"{h.width}x{h.height}" if h.width else "-")
        out.print(t)


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
        t = new_table("path", "error", title=f"{len(fails)} files could not be indexed")
        for f in fails:
            t.add_row(path_text(f["path"]), visible(f["error"] or ""))
        out.print(t)
        return
    model = data["model"] or {}
    t = new_table("", "", show_header=False, title=f"store {safe(data['store'])}")
    t.add_row("images", str(data["images"]))
    t.add_row("failed", str(data["failed"]))
    t.add_row("model", f"{safe(model.get('spec'))} ({model.get('embed_dim')}-d, {model.get('image_size')}px)")
    t.add_row("vector index", f"{data['index_type']}, {data['vectors']} vectors")
    t.add_row("size on disk", human_size(data["disk_bytes"]))
    vanished = set(data["vanished_roots"])
    t.add_row("roots", "\n".join(safe(r) + (" [yellow](vanished: hidden from results)[/]" if r in vanished else "")
                                  for r in data["roots"]) or "-")
    last = data["last_run"]
    if last:
        counts = (f"added {last['added']}, updated {last['updated']}, moved {last['moved']}, "
                  f"removed {last['removed']}, failed {last['failed']}")
        if last["status"] == "in progress":
            t.add_row("last run", f"in progress since {last['started_at']}")
        elif last["status"] == "interrupted":
            t.add_row("last run", f"{last['started_at']} interrupted (committed work is kept; index again to resume)")
        else:
            t.add_row("last run", f"{last['started_at']} {last['status']} in {last['seconds']} s: {counts}")
    out.print(t)


@app.command()
@friendly_errors
def forget(
    path: Path = typer.Argument(..., help="An indexed folder (e.g. one that no longer exists) or file."),
    index_path: Optional[Path] = IndexOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Drop a folder or file from the store: its images, embeddings and vectors. Files on disk are not touched."""
    from .store import open_store

    with open_store(index_path) as store:
        result = store.forget(path)
    if as_json:
        emit_json(result)
    else:
        out.print(f"forgot {result['images']} images under {safe(path)}")


@app.command()
@friendly_errors
def models(as_json: bool = JsonOpt) -> None:
    """List the models: shipped configs, open_clip architectures with pretrained tags, weights on disk."""
    from .models import list_models

    rows = list_models()
    if as_json:
        emit_json(rows)
        return
    t = new_table("spec", "kind", "on disk")
    for r in rows:
        t.add_row(safe(r["spec"]), r["kind"], "yes" if r["cached"] else "")
    out.print(t)


@app.command()
@friendly_errors
def reindex(
    index_path: Optional[Path] = IndexOpt,
    vectors_only: bool = typer.Option(False, "--vectors-only", help="Rebuild only the FAISS index from the stored embeddings (no image is decoded)."),
    index_type: Optional[str] = typer.Option(None, "--type", help="flat, ivf or hnsw (default: chosen by collection size)."),
    device: Optional[str] = typer.Option(None, "--device"),
    as_json: bool = JsonOpt,
) -> None:
    """Rebuild the vector index from stored embeddings, or re-encode every image with the store's model."""
    import time

    from .store import open_store
    from .vector_store import why_not
    from .vectors import INDEX_TYPES

    if index_type and index_type not in INDEX_TYPES:
        raise ClipsearchError(f"unknown index type {index_type!r}", f"choose one of {', '.join(INDEX_TYPES)}")
    if index_type and not vectors_only:
        raise ClipsearchError("--type goes with --vectors-only")
    with open_store(index_path, device=device) as store:
        started = time.perf_counter()
        if vectors_only:
            vi = store.rebuild_vectors(index_type)
            result = {"index_type": vi.kind, "vectors": vi.ntotal, "seconds": round(time.perf_counter() - started, 3)}
            if index_type and vi.kind != index_type:
                result["note"] = why_not(index_type, vi.ntotal)
        else:
            with RichProgress(err if as_json else out) as progress:
                result = store.reembed(store.model_spec.text, progress=progress).to_dict()
    if as_json:
        emit_json(result)
    elif vectors_only:
        if result.get("note"):
            err.print(f"[yellow]note:[/] {safe(result['note'])}")
        out.print(f"rebuilt a {result['index_type']} index of {result['vectors']} vectors in {result['seconds']} s")
    else:
        out.print(f"re-encoded {result['encoded']} images in {result['seconds']:.1f} s")


def _print_metrics(rows: list[tuple[str, dict]], title: str) -> None:
    keys = [k for k in rows[0][1] if k != "images"]
    names = [k.replace("_", " ") for k in keys]
    table = new_table("model", *names, right=tuple(names), title=safe(title))
    for name, metrics in rows:
        table.add_row(safe(name), *[f"{metrics.get(k, float('nan')):.3f}" for k in keys])
    out.print(table)


@app.command()
@friendly_errors
def finetune(
    data: Path = typer.Argument(..., help="Folder with one sub-folder per class, or a CSV/JSONL with image + caption/label."),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the model to (usable as --model)."),
    model: str = typer.Option(None, "--model", "-m", help="Base model (default ViT-B-32:laion2b_s34b_b79k)."),
    val: Optional[Path] = typer.Option(None, "--val", help="Held-out set (default: a stratified split of DATA)."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", min=0.05, max=0.5),
    epochs: int = typer.Option(5, "--epochs", min=1),
    batch_size: int = typer.Option(64, "--batch-size", min=2),
    lr: float = typer.Option(1e-5, "--lr"),
    weight_decay: float = typer.Option(0.1, "--weight-decay"),
    warmup: int = typer.Option(10, "--warmup", help="Warm-up steps."),
    accumulate: int = typer.Option(1, "--accumulate", min=1, help="Gradient accumulation steps."),
    lock_image: bool = typer.Option(False, "--lock-image", help="Freeze the image tower."),
    lock_text: bool = typer.Option(False, "--lock-text", help="Freeze the text tower."),
    unlocked_layers: int = typer.Option(0, "--unlocked-layers", min=0, help="With a lock: keep the last N blocks trainable."),
    alpha: float = typer.Option(0.5, "--alpha", min=0.0, max=1.0, help="WiSE-FT blend: 0 = base, 1 = fine-tuned."),
    template: List[str] = typer.Option([], "--template", help="Prompt template with {} (repeatable)."),
    seed: int = typer.Option(0, "--seed"),
    device: Optional[str] = typer.Option(None, "--device"),
    reindex: Optional[Path] = typer.Option(None, "--reindex", help="Then re-encode this store with the new model."),
    as_json: bool = JsonOpt,
) -> None:
    """Fine-tune on a labelled set, report before/after on held-out data, save the (WiSE-FT blended) model."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .finetune import finetune as run_finetune
    from .training import TrainConfig

    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup_steps=warmup,
                         accumulate=accumulate, seed=seed, lock_image=lock_image, lock_text=lock_text,
                         unlocked_layers=unlocked_layers)
    console = err if as_json else out
    with Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeRemainingColumn(), console=console) as progress:
        task = progress.add_task("train", total=None, info="")

        def on_step(step: int, total: int, loss: float, lr_now: float, ips: float) -> None:
            progress.update(task, total=total, completed=step, info=f"loss {loss:.3f} lr {lr_now:.2e} {ips:.0f} img/s")

        report = run_finetune(data, out_dir, base_model=model or _default_model(), val_path=val, val_fraction=val_fraction,
                              templates=template or None, config=config, alpha=alpha, device=device,
                              on_step=on_step, on_stage=lambda msg: progress.console.print(f"[dim]{msg}"))
    reindexed = None
    if reindex:
        from .store import open_store

        with open_store(reindex, device=device) as store, RichProgress(console) as prog:
            reindexed = store.reembed(str(out_dir), progress=prog).to_dict()
    if as_json:
        emit_json({**report.to_dict(), "reindex": reindexed})
        return
    _print_metrics([("base", report.base), ("fine-tuned", report.finetuned), (f"blended a={alpha}", report.blended)],
                   f"held-out: {report.val_images} images, trained on {report.train_images} "
                   f"({report.images_per_second:.1f} img/s, best epoch {report.best_epoch})")
    if report.skipped:
        err.print(f"[yellow]skipped {len(report.skipped)} unreadable images[/] (first: {safe(report.skipped[0][0])})")
    out.print(f"model written to {safe(report.out)}  (use it: --model {safe(_shell_quote(str(report.out)))})")
    if reindexed:
        out.print(f"re-encoded {reindexed['encoded']} images into {safe(reindex)}")


@app.command("eval")
@friendly_errors
def eval_cmd(
    data: Path = typer.Argument(..., help="Labelled set: class folders or CSV/JSONL."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model spec or folder (default ViT-B-32:laion2b_s34b_b79k)."),
    linear_probe: bool = typer.Option(False, "--linear-probe", help="Also fit logistic regression on half the data, test on the other half."),
    template: List[str] = typer.Option([], "--template", help="Prompt template with {} (repeatable)."),
    device: Optional[str] = typer.Option(None, "--device"),
    as_json: bool = JsonOpt,
) -> None:
    """Zero-shot accuracy (class sets) or retrieval recall (caption sets) of a model."""
    from . import datasets
    from .evaluate import evaluate
    from .models import load_encoder

    labelled = datasets.load(data)
    encoder = load_encoder(model or _default_model(), device)
    templates = tuple(template) or _model_templates(encoder)
    probe_train = None
    if linear_probe:
        if not labelled.has_classes:
            raise ClipsearchError("--linear-probe needs a class set")
        probe_train, labelled = datasets.split(labelled, 0.5, 0)
    metrics = evaluate(encoder, labelled, templates, probe_train=probe_train)
    if as_json:
        emit_json({"model": encoder.spec.text, **metrics})
        return
    _print_metrics([(encoder.spec.text if len(encoder.spec.text) < 40 else "..." + encoder.spec.text[-37:], metrics)],
                   f"{int(metrics['images'])} images from {labelled.source}")


def _default_model() -> str:
    from .models import choose_default_model

    name, notice = choose_default_model()
    if notice:
        err.print(f"[yellow]note:[/] {safe(notice)}")
    return name


def _model_templates(encoder) -> tuple[str, ...]:
    from .datasets import DEFAULT_TEMPLATES

    return tuple(encoder.spec.extra.get("templates") or DEFAULT_TEMPLATES)


@app.command()
@friendly_errors
def classify(
    images: List[Path] = typer.Argument(..., help="Image files."),
    labels: str = typer.Option(..., "--labels", help='Comma-separated labels, e.g. "cat,dog,bird".'),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model (default: the store's, else ViT-B-32:laion2b_s34b_b79k)."),
    index_path: Optional[Path] = IndexOpt,
    k: int = typer.Option(3, "-k", min=1),
    template: List[str] = typer.Option([], "--template"),
    device: Optional[str] = typer.Option(None, "--device"),
    as_json: bool = JsonOpt,
) -> None:
    """Zero-shot classification: the top-k labels with probabilities."""
    from .evaluate import classify as run_classify
    from .models import load_encoder
    from .store import default_store_path, read_manifest

    for p in images:
        if not p.is_file():
            raise ClipsearchError(f"image not found: {p}")
    if model is None:
        manifest = read_manifest(Path(index_path) if index_path else default_store_path())
        model = manifest["model"]["spec"] if manifest else _default_model()
    encoder = load_encoder(model, device)
    results = run_classify(encoder, [str(p) for p in images], labels.split(","), tuple(template) or _model_templates(encoder), k)
    if as_json:
        emit_json(results)
        return
    table = new_table("image", "label", "probability", right=("probability",))
    for r in results:
        for i, lab in enumerate(r["labels"]):
            table.add_row(path_text(r["path"]) if i == 0 else "", safe(lab["label"]), f"{lab['probability']:.3f}")
    out.print(table)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

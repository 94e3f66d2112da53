"""Commands over a store: index, query, dupes, info, forget, reindex."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from clipsearch.cli import common as ui
from clipsearch.cli.common import (
    BackendOpt,
    IndexOpt,
    JsonOpt,
    RichProgress,
    app,
    emit_json,
    friendly_errors,
    human_size,
)
from clipsearch.cli.index_run import _waiting, run_index
from clipsearch.cli.query_run import _write_paths, run_query
from clipsearch.errors import ClipsearchError
from clipsearch.terminal import path_text, safe, table as new_table, visible

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.query.dupes import DuplicateImage


def _default_precision() -> str:
    from clipsearch.encoders.base import CPU_DEFAULT_PRECISION

    return CPU_DEFAULT_PRECISION


@app.command()
@friendly_errors
def index(
    paths: list[Path] = typer.Argument(..., help="Folders (recursed) and single image files."),
    index_path: Path | None = IndexOpt,
    model: str | None = typer.Option(
        None, "--model", "-m",
        help="ARCH:TAG, offline-mini, a model folder, or a shipped config. New stores: ViT-B-32:laion2b_s34b_b79k "
             "when its weights can be had, else offline-mini."),
    exclude: list[str] = typer.Option([], "--exclude", help="Glob on the relative path or name; repeatable."),
    include_hidden: bool = typer.Option(False, "--include-hidden", help="Also index dot-files and dot-folders."),
    frame_interval: float | None = typer.Option(
        None, "--frame-interval",
        help="Video files: seconds between sampled frames (default 2)."),
    verify: bool = typer.Option(
        False, "--verify",
        help="Also re-hash files whose size and date are unchanged, and re-encode those whose content changed."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Images per encoder batch."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Decoding threads."),
    device: str | None = typer.Option(
        None, "--device",
        help="cpu, cuda or cuda:N for the encoder; FAISS follows where faiss-gpu is installed (default: cuda when "
             "present)."),
    reembed: bool = typer.Option(
        False, "--reembed",
        help="Re-encode the whole store with --model (queries keep working until it is done)."),
    int8: bool | None = typer.Option(
        None, "--int8/--fp32",
        help="Onnx backend: encode images with the int8 (dynamically quantised) image tower, or in fp32. A store "
             "keeps the precision it was started with. Default: the store's; a new store's on a CPU: "
             + _default_precision() + "."),
    backend: str | None = BackendOpt,
    thumbnails: bool = typer.Option(
        False, "--thumbnails",
        help="Also make the thumbnails that serve and --grid show (256 px WebP, cached in the store)."),
    ray: bool = typer.Option(
        False, "--ray",
        help='Encode on Ray actors (pip install "clipsearch\\[ray]"): Ray on this machine, or the cluster RAY_ADDRESS '
             "names. Files must be at the same paths on every worker (a shared filesystem)."),
    ray_address: str | None = typer.Option(
        None, "--ray-address",
        help="Encode on this Ray cluster (implies --ray): auto (the one started here with ray start), "
             "HOST:PORT or ray://HOST:PORT."),
    ocr: bool = typer.Option(
        False, "--ocr",
        help='Also read the text inside images and video frames (pip install "clipsearch\\[ocr]"), for '
             "query --text-in-image and text queries; the store remembers it. On a store indexed without it, "
             "reads only the text (nothing is encoded again)."),
    db: str | None = typer.Option(
        None, "--db",
        help="New stores: keep the catalog in this database (postgresql+psycopg://USER@HOST/DB; password from "
             "PGPASSWORD or ~/.pgpass), not in SQLite in the store folder; default CLIPSEARCH_DB. The folder "
             "remembers it."),
    as_json: bool = JsonOpt,
) -> None:
    """Index folders incrementally: new, changed, moved and deleted files are handled."""
    run_index(paths, index_path=index_path, model=model, exclude=exclude, include_hidden=include_hidden,
              frame_interval=frame_interval, verify=verify, batch_size=batch_size, workers=workers, device=device,
              reembed=reembed, int8=int8, backend=backend, thumbnails=thumbnails, ray=ray, ray_address=ray_address,
              ocr=ocr, db=db, as_json=as_json)


@app.command()
@friendly_errors
def query(
    text: list[str] = typer.Argument(None, help="Text terms; a term may end in ::WEIGHT, e.g. 'beach::2'."),
    image: list[Path] = typer.Option([], "--image", "-i", help="Query image (repeatable)."),
    minus: list[str] = typer.Option([], "--minus", help="Text to steer away from (repeatable)."),
    minus_image: list[Path] = typer.Option([], "--minus-image", help="Image to steer away from (repeatable)."),
    like: list[int] = typer.Option(
        [], "--like", min=1, help="More like an indexed image, by its id (the id of --json or the page; "
        "repeatable: similar to all of them). It, and a video's other moments, are left out."),
    k: int = typer.Option(10, "-k", "--top", min=1, help="Number of results."),
    under: list[Path] = typer.Option([], "--under", help="Only results inside this folder (repeatable)."),
    ext: list[str] = typer.Option([], "--ext", help="Only these extensions, e.g. --ext jpg (repeatable)."),
    after: str | None = typer.Option(None, "--after", help="Only files modified on/after this date (YYYY-MM-DD)."),
    before: str | None = typer.Option(None, "--before", help="Only files modified before this date (YYYY-MM-DD)."),
    text_in_image: str | None = typer.Option(
        None, "--text-in-image", help="Only images whose text (read by index --ocr) holds every word of this, "
        "e.g. 'invoice 2024'; alone, ranks them by that text."),
    taken_after: str | None = typer.Option(
        None, "--taken-after",
        help="Only photos taken on/after this date (YYYY-MM-DD[THH:MM], the camera's local time; with an offset "
             "such as +09:00, an instant). Files without a capture time are compared by their modification time."),
    taken_before: str | None = typer.Option(
        None, "--taken-before", help="Only photos taken before this date (as --taken-after)."),
    camera: str | None = typer.Option(
        None, "--camera", help="Only photos from a camera whose make or model contains this text (any case)."),
    near: str | None = typer.Option(
        None, "--near", help="Only photos taken within KM (default 10) of a place: LAT,LON[,KM] in decimal degrees."),
    index_path: Path | None = IndexOpt,
    as_json: bool = JsonOpt,
    paths_only: bool = typer.Option(False, "--paths", help="One path per line (for xargs)."),
    all_frames: bool = typer.Option(
        False, "--all-frames",
        help="Videos: every matching frame, not only the best moment of each video."),
    paths0: bool = typer.Option(
        False, "--paths0", "-0",
        help="Paths separated by NUL bytes (for xargs -0): safe for any file name."),
    device: str | None = typer.Option(
        None, "--device", help="cpu, cuda or cuda:N for image queries and FAISS (default: cuda when present)."),
    grid: Path | None = typer.Option(
        None, "--grid",
        help="Also write a contact sheet of the results (.jpg, .png or .webp): thumbnails labelled rank, "
             "score, name."),
    preview: bool = typer.Option(
        False, "--preview",
        help="Show inline thumbnails in terminals with an image protocol (kitty, iTerm2, WezTerm)."),
    backend: str | None = BackendOpt,
    lang: str | None = typer.Option(
        None, "--lang",
        help="NLLB-CLIP models: the text's language code, e.g. fra_Latn (default: detected from its script)."),
) -> None:
    """Find images by text, by example image, or both."""
    run_query(text or [], image=image, minus=minus, minus_image=minus_image, like=like, k=k, under=under, ext=ext,
              after=after, before=before, text_in_image=text_in_image, taken_after=taken_after,
              taken_before=taken_before,
              camera=camera, near=near, index_path=index_path, as_json=as_json, paths_only=paths_only,
              all_frames=all_frames, paths0=paths0, device=device, grid=grid, preview=preview, backend=backend,
              lang=lang)


@app.command()
@friendly_errors
def dupes(
    level: str = typer.Option(
        "same", "--level", "-l",
        help="exact: identical bytes. same (default): the same picture resized, recompressed, converted or lightly "
             "cropped, by perceptual hash (any model). similar: near in the model's embedding space (bursts, "
             "edits), with --threshold."),
    threshold: float | None = typer.Option(
        None, "--threshold", "-t",
        help="--level similar: cosine similarity in (0, 1] above which two images count as alike (default 0.99; "
             "lower values also find edits and crops, then other shots of one scene)."),
    exact: bool = typer.Option(
        False, "--exact",
        help="Byte-identical files only: the same as --level exact."),
    under: list[Path] = typer.Option([], "--under", help="Only images inside this folder (repeatable)."),
    taken_after: str | None = typer.Option(
        None, "--taken-after", help="Only photos taken on/after this date (as in query; file time where none)."),
    taken_before: str | None = typer.Option(None, "--taken-before", help="Only photos taken before this date."),
    camera: str | None = typer.Option(None, "--camera", help="Only photos from a camera whose make or model "
                                      "contains this text."),
    near: str | None = typer.Option(None, "--near", help="Only photos taken within KM (default 10) of "
                                    "LAT,LON[,KM]."),
    index_path: Path | None = IndexOpt,
    as_json: bool = JsonOpt,
    paths_only: bool = typer.Option(
        False, "--paths",
        help="The non-keepers, one path per line (for review or xargs); nothing is deleted."),
    paths0: bool = typer.Option(
        False, "--paths0", "-0",
        help="The non-keepers separated by NUL bytes (for xargs -0): safe for any file name."),
) -> None:
    """Groups of duplicate images, biggest first, each with a suggested keeper and why. Never deletes anything.

    The keeper is the image with the most pixels, then the least compressed (bytes per pixel), then the
    original format over a conversion, then the oldest file.
    """
    from rich.text import Text

    from clipsearch.store.store import open_store

    if exact and level not in ("same", "exact"):
        raise ClipsearchError(f"--exact is --level exact, not --level {level}")
    level = "exact" if exact else level
    if threshold is not None and level != "similar":
        raise ClipsearchError(f"--threshold goes with --level similar, not --level {level}")
    with open_store(index_path) as store:
        groups = store.duplicates(level, threshold=threshold, under=[str(u) for u in under] or None,
                                  taken_after=taken_after, taken_before=taken_before, camera=camera, near=near)
    for note in groups.notes:
        ui.err.print(f"[yellow]note:[/] {safe(note)}")
    if as_json:
        emit_json([g.to_dict() for g in groups])
    elif paths_only or paths0:
        _write_paths([im.path for g in groups for im in g.extra], nul=paths0)
    elif not groups:
        ui.out.print("no duplicates found")
    else:
        extra = sum(len(g.extra) for g in groups)
        alike = "distance" if level == "same" else "similarity"
        t = new_table("group", "keep", alike, "path", "size", "pixels", "format", "modified",
                      right=("group", alike, "size", "pixels"),
                      title=f"{len(groups)} {'group' if len(groups) == 1 else 'groups'} of duplicates: {extra} "
                            f"{'file' if extra == 1 else 'files'} beside the keepers, "
                            f"{human_size(sum(g.reclaimable for g in groups))}",
                      caption="nothing was deleted; list the files beside the keepers with --paths or --paths0")
        for number, g in enumerate(groups, 1):
            for im in g.images:
                t.add_row(str(number) if im.keeper else "", "keep" if im.keeper else "",
                          "" if im.keeper else _alike(im, level), path_text(im.path, link=True),
                          human_size(im.size), f"{im.width}x{im.height}" if im.width else "-",
                          visible(im.format or "-"), im.modified)
            t.add_row("", "", "", Text(f"kept: {visible(g.reason)}", style="dim"), "", "", "", "", end_section=True)
        ui.out.print(t)


def _alike(im: DuplicateImage, level: str) -> str:
    """How close a member is to its keeper: hash bits apart (same), else cosine similarity."""
    if level == "same":
        return f"{im.distance} bits" + (f", {im.similarity:.3f}" if im.similarity is not None else "")
    return f"{im.similarity:.4f}" if im.similarity is not None else "-"


@app.command()
@friendly_errors
def info(
    index_path: Path | None = IndexOpt,
    failures: bool = typer.Option(False, "--failures", help="List the files that could not be indexed."),
    as_json: bool = JsonOpt,
) -> None:
    """What is in the store: images, model, vector index, size on disk, last run, failures."""
    from clipsearch.store.info import count_line
    from clipsearch.store.store import open_store

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
        ui.out.print(t)
        return
    model = data["model"] or {}
    t = new_table("", "", show_header=False, title=f"store {safe(data['store'])}")
    t.add_row("files", count_line(data))
    t.add_row("failed", str(data["failed"]))
    photo = data["photo_metadata"]
    known = (f"{photo['with_capture_time']} with a capture time, {photo['with_camera']} with a camera, "
             f"{photo['with_place']} with a place")
    if photo["metadata_unread"]:
        known += f"; {photo['metadata_unread']} not read yet (index their folders again: headers only)"
    t.add_row("photo metadata", known)
    t.add_row("model", f"{safe(model.get('spec'))} ({model.get('embed_dim')}-d, {model.get('image_size')}px, "
                       f"{model.get('precision', 'fp32')})")
    t.add_row("vector index", f"{data['index_type']}, {data['vectors']} vectors")
    t.add_row("size on disk", human_size(data["disk_bytes"]))
    if data["text"]:
        text = data["text"]
        t.add_row("text in images", f"{text['read']} read, {text['with_text']} with text ({text['index']} index)")
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
    redo = data.get("last_reembed")
    if redo:
        t.add_row("last re-embed", f"{redo['at']} from {safe(redo['from'])} to {safe(redo['to'])}: "
                                   f"{redo['encoded']} images re-encoded in {redo['seconds']} s" + _waiting(redo))
    ui.out.print(t)


@app.command()
@friendly_errors
def forget(
    path: Path = typer.Argument(..., help="An indexed folder (e.g. one that no longer exists) or file."),
    index_path: Path | None = IndexOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Drop a folder or file from the store: its images, embeddings and vectors. Files on disk are not touched."""
    from clipsearch.store.store import open_store

    with open_store(index_path) as store:
        result = store.forget(path)
    if as_json:
        emit_json(result)
    else:
        ui.out.print(f"forgot {result['images']} images under {safe(path)}")


@app.command()
@friendly_errors
def reindex(
    index_path: Path | None = IndexOpt,
    vectors_only: bool = typer.Option(
        False, "--vectors-only",
        help="Rebuild only the FAISS index from the stored embeddings (no image is decoded)."),
    model: str | None = typer.Option(
        None, "--model", "-m",
        help="Re-encode every image with this model instead (e.g. chinese-clip:ViT-B-16 for Chinese queries)."),
    index_type: str | None = typer.Option(
        None, "--type",
        help="flat, ivf, hnsw or ivfpq (default: chosen by collection size)."),
    device: str | None = typer.Option(
        None, "--device",
        help="cpu, cuda or cuda:N: the encoder's device; an IVF/IVF-PQ build runs its k-means on that GPU where "
             "faiss-gpu is installed (default: cuda when present)."),
    backend: str | None = BackendOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Rebuild the vector index from stored embeddings, or re-encode every image (with the store's model or --model)."""
    import time

    from clipsearch.store.store import open_store
    from clipsearch.vectors.kinds import INDEX_TYPES
    from clipsearch.vectors.store import why_not

    if index_type and index_type not in INDEX_TYPES:
        raise ClipsearchError(f"unknown index type {index_type!r}", f"choose one of {', '.join(INDEX_TYPES)}")
    if index_type and not vectors_only:
        raise ClipsearchError("--type goes with --vectors-only")
    if model and vectors_only:
        raise ClipsearchError("--model re-encodes the images; --vectors-only keeps the stored embeddings",
                              "give one of the two")
    with open_store(index_path, device=device, backend=backend) as store:
        started = time.perf_counter()
        if vectors_only:
            vi = store.rebuild_vectors(index_type)
            result = {"index_type": vi.kind, "vectors": vi.ntotal, "seconds": round(time.perf_counter() - started, 3),
                      "faiss_device": vi.faiss_device}
            if index_type and vi.kind != index_type:
                result["note"] = why_not(index_type, vi.ntotal)
        else:
            with RichProgress(ui.err if as_json else ui.out) as progress:
                result = store.reembed(model or store.model_spec.text, progress=progress).to_dict()
    if as_json:
        emit_json(result)
    elif vectors_only:
        if result.get("note"):
            ui.err.print(f"[yellow]note:[/] {safe(result['note'])}")
        ui.out.print(f"rebuilt a {result['index_type']} index of {result['vectors']} vectors in {result['seconds']} s")
    else:
        ui.out.print(f"re-encoded {result['encoded']} images in {result['seconds']:.1f} s" + _waiting(result))

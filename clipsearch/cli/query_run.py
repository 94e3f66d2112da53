"""The query command's work and output, shared by the typer command and the fast path (no typer, and rich only
for what prints through it: tables, notes, errors). `--paths` and `--json` output of a plain query needs neither.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clipsearch.cli import plain
from clipsearch.cli.plain import emit_json, human_size, safe
from clipsearch.errors import ClipsearchError


def run_query(text: Sequence[str], *, image: Sequence[Path] = (), minus: Sequence[str] = (),
              minus_image: Sequence[Path] = (), like: Sequence[int] = (), k: int = 10,
              under: Sequence[Path] = (), ext: Sequence[str] = (),
              after: str | None = None, before: str | None = None,
              text_in_image: str | None = None, taken_after: str | None = None, taken_before: str | None = None,
              camera: str | None = None, near: str | None = None, index_path: Path | None = None,
              as_json: bool = False, paths_only: bool = False, all_frames: bool = False, paths0: bool = False,
              device: str | None = None, grid: Path | None = None, preview: bool = False,
              backend: str | None = None, lang: str | None = None) -> None:
    """`clipsearch query`: search the store and print the hits (a table, --json, --paths or -0)."""
    if not any(t.strip() for t in (text or [])) and not image and not like and not (text_in_image or "").strip():
        raise ClipsearchError("empty query", 'give some text, e.g. clipsearch query "a dog on grass", --image PATH '
                              "or --like ID")
    # One query's matrix products are tiny (a few tokens): OpenBLAS's threads only spin, costing ~1 s of CPU
    # on 2 cores. Set before NumPy loads (nothing has imported it yet in a CLI process); a user's value wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from clipsearch.store.store import open_store

    protocol = None
    if preview:
        from clipsearch.terminal import image_protocol

        protocol = image_protocol()
    pictures: list[bytes | None] = []
    with open_store(index_path, device=device, backend=backend) as store:
        hits = store.search(list(text), image=[str(i) for i in image], minus=list(minus),
                            minus_image=[str(i) for i in minus_image], like=list(like), k=k,
                            under=[str(u) for u in under] or None, ext=list(ext) or None, after=after, before=before,
                            all_frames=all_frames, taken_after=taken_after, taken_before=taken_before,
                            camera=camera, near=near, text_in_image=text_in_image, language=lang)
        sheet = store.contact_sheet(hits, grid) if grid and hits else None
        if protocol:
            pictures = [store.thumbnail_png(h.id) for h in hits]
    for note in hits.notes:
        _err().print(f"[yellow]note:[/] {safe(plain.cli_terms(_with_switch(note)))}")
    if grid and not hits:
        _err().print("[yellow]note:[/] no results: no contact sheet written")
    if sheet is not None:
        _err().print(f"contact sheet: {safe(grid)} ({len(hits)} images, {sheet.columns}x{sheet.rows} grid)")
    if preview and not protocol:
        from clipsearch.terminal import IMAGE_TERMINALS

        _err().print(f"[yellow]note:[/] --preview draws pictures only in {IMAGE_TERMINALS}; this terminal "
                     f"(TERM={safe(os.environ.get('TERM', ''))}) has no image protocol, so here is the table")
    if protocol and not (as_json or paths_only or paths0):
        _print_previews(hits, pictures, protocol)
    elif as_json:
        emit_json([h.to_dict() for h in hits])
    elif paths_only or paths0:
        _write_paths([h.path for h in hits], nul=paths0)
    elif not hits:
        plain.console().print("no results")
    else:
        from clipsearch.terminal import path_text, table as new_table

        reads_text = any(h.text is not None for h in hits)
        columns = ("rank", "score", "path", "size", "pixels", "taken") + (("text matched",) if reads_text else ())
        t = new_table(*columns, right=("rank", "score", "size", "pixels"))
        for h in hits:
            cell = path_text(h.path, link=True)
            if h.timestamp is not None:
                cell.append(f" @ {_clock(h.timestamp)}")
            row: list[Any] = [str(h.rank), f"{h.score:.3f}", cell, human_size(h.size),
                              f"{h.width}x{h.height}" if h.width else "-", safe(h.taken or "-")]
            if reads_text:
                row.append(safe(" | ".join(str(m["text"]) for m in h.text_matches or ())) or "-")
            t.add_row(*row)
        plain.console().print(t)


def _err() -> Any:
    return plain.console(stderr=True)


def _clock(seconds: float) -> str:
    """83.4 → '00:01:23'."""
    from clipsearch.store.media import clock

    return clock(seconds)


def _with_switch(note: Any) -> str:
    """A language note ends with the command that switches the store to a model that reads the query."""
    from clipsearch.encoders.languages import LanguageNote

    if isinstance(note, LanguageNote):
        return f"{note} Switch: clipsearch reindex --model {note.switch_to}"
    return str(note)


def _print_previews(hits: list, pictures: list, protocol: str) -> None:
    """Each hit as a small inline picture with its rank, score and path under it (raw escapes: not via rich)."""
    from clipsearch.terminal import inline_image, visible

    out = sys.stdout
    for h, png in zip(hits, pictures, strict=False):
        if png is not None:
            out.write(inline_image(png, protocol) + "\n")
        else:
            out.write("[picture unavailable: the file is gone or changed]\n")
        moment = f" @ {_clock(h.timestamp)}" if h.timestamp is not None else ""
        out.write(f"{h.rank:>3}  {h.score:.3f}  {visible(h.path)}{moment}\n\n")
    out.flush()


def _write_paths(paths: list[str], nul: bool) -> None:
    """The real bytes of each name, one per line or NUL-terminated (for xargs -0): any file name survives."""
    sys.stdout.flush()
    end = b"\0" if nul else b"\n"
    sys.stdout.buffer.write(b"".join(os.fsencode(p) + end for p in paths))
    sys.stdout.buffer.flush()

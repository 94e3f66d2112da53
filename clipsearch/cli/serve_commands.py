"""Commands with a face: serve (the web page and JSON API) and demo (sample photos → index → queries → serve)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from clipsearch.cli import common as ui
from clipsearch.cli.common import IndexOpt, RichProgress, _print_problems, app, friendly_errors
from clipsearch.errors import ClipsearchError
from clipsearch.terminal import safe

HostOpt = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything but loopback needs --token.")
PortOpt = typer.Option(8765, "--port", "-p", min=0, max=65535, help="Port (0: any free one).")
TokenOpt = typer.Option(None, "--token", envvar="CLIPSEARCH_TOKEN", show_envvar=True,
                        help="Secret every request must carry (Authorization: Bearer, or ?token=). "
                             "Required off loopback.")
OpenOpt = typer.Option(False, "--open", help="Open the page in the default browser.")


def _server_module() -> Any:
    import importlib

    try:
        for needed in ("fastapi", "uvicorn"):  # the [serve] extra: say which one is missing
            importlib.import_module(needed)
        from clipsearch import server
    except ImportError as exc:
        raise ClipsearchError(f"serving needs {exc.name}, which is not installed",
                              'pip install "clipsearch[serve]"') from None
    return server


def run_server(store_path: Path, host: str, port: int, token: str | None, open_browser: bool,
               device: str | None = None) -> None:
    """Serve `store_path` until Ctrl-C, printing the URL once it answers."""
    server = _server_module()
    server.check_token(host, token)
    if not server.is_loopback(host):
        ui.err.print(f"[bold yellow]warning:[/] listening on {safe(host)}: anyone who can reach this machine and "
                     "knows the token can search the store and read its images")

    def ready(url: str) -> None:
        ui.out.print(f"serving {safe(store_path)} at {safe(url)}", soft_wrap=True)
        ui.out.print("[dim]Ctrl-C to stop[/]")
        ui.out.file.flush()
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    server.serve(store_path, host, port, token=token, on_ready=ready, device=device)


@app.command()
@friendly_errors
def serve(
    index_path: Path | None = IndexOpt,
    host: str = HostOpt,
    port: int = PortOpt,
    token: str | None = TokenOpt,
    open_browser: bool = OpenOpt,
    device: str | None = typer.Option(None, "--device",
                                      help="cpu, cuda or cuda:N for image queries and FAISS searches."),
) -> None:
    """Search the store in a web page (thumbnails, filters, more like this) with a JSON API (see /docs)."""
    from clipsearch.store.manifest import MANIFEST
    from clipsearch.store.store import default_store_path

    store_path = Path(index_path).expanduser() if index_path else default_store_path()
    _server_module().check_token(host, token)  # the options first: no token off loopback is refused as such
    if index_path is not None and not store_path.is_dir():  # a typo must not serve an empty page
        raise ClipsearchError(f"no index at {store_path}",
                              "build one first by indexing a folder into it (or point the index option at it)")
    if not (store_path / MANIFEST).is_file():
        ui.err.print(f"[yellow]note:[/] the store {safe(store_path)} is empty: index a folder into it "
                     "(clipsearch index FOLDER); the page picks the images up without a restart")
    run_server(store_path, host, port, token, open_browser, device)


@app.command()
@friendly_errors
def demo(
    index_path: Path | None = IndexOpt,
    photos: Path | None = typer.Option(
        None, "--photos",
        help="Where to write the sample photos (default: demo-photos beside the store)."),
    serve_after: bool = typer.Option(False, "--serve", help="Then serve the store (the web page)."),
    host: str = HostOpt,
    port: int = PortOpt,
    token: str | None = TokenOpt,
    open_browser: bool = OpenOpt,
) -> None:
    """Try clipsearch in one command: sample photos (from scikit-image) → index → example queries (→ serve)."""
    from clipsearch.store.demo import photos_folder, run_demo
    from clipsearch.store.store import default_store_path, open_store

    store_path = Path(index_path).expanduser() if index_path else default_store_path()
    folder = Path(photos).expanduser().absolute() if photos else photos_folder(store_path)
    if serve_after:
        _server_module()  # say now, not after indexing, that the serve extra is missing
    with open_store(store_path, create=True) as store, RichProgress(ui.out) as progress:
        report = run_demo(store, folder, progress)
    _print_problems(report.summary)
    s = report.summary
    ui.out.print(f"sample photos: {safe(report.photos)} ({report.written} written now)")
    ui.out.print(f"indexed into {safe(store_path)}: {s.added} added, {s.unchanged} unchanged, "
                 f"{s.thumbnails} thumbnails made, in {s.seconds:.1f} s")
    for query, hits in report.results:
        ui.out.print(f"\n[bold]{safe(query)}[/]")
        for h in hits:
            ui.out.print(f"  {h.rank}. {h.score:.3f}  {safe(os.path.basename(h.path))}")
    index_arg = f" --index {safe(_quote(store_path))}" if index_path else ""
    ui.out.print(f"\nTry your own: clipsearch query \"a cat\"{index_arg}   ·   clipsearch query \"a rocket\" "
                 f"--grid sheet.jpg{index_arg}   ·   clipsearch serve{index_arg}")
    if serve_after:
        run_server(store_path, host, port, token, open_browser)


def _quote(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))

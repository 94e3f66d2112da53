"""`clipsearch serve`: a web page of thumbnails and a JSON API over one store.

    from clipsearch.server import serve
    serve("index/", port=8765, on_ready=print)          # blocks; Ctrl-C stops it

`app.py` holds the routes (over the `Store` verbs only), `guard.py` the token / Host / body-limit middleware,
`static/` the page (plain HTML, JS and CSS: no build step, no CDN). FastAPI and uvicorn come with the
`serve` extra and are imported only here.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clipsearch.errors import ClipsearchError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,256}")


def loopback_hosts(host: str) -> list[str]:
    """The Host names a loopback server answers: the usual loopback names and the address it listens on (say
    127.0.0.2, whose printed URL must work), never a name another machine's DNS could point here."""
    names = ["127.0.0.1", "localhost", "[::1]", "::1"]
    bare = host.strip("[]")
    for name in (bare, f"[{bare}]" if ":" in bare else bare):
        if name not in names:
            names.append(name)
    return names


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_token(host: str, token: str | None) -> None:
    """Off loopback a token is required; any token must be long and URL-safe (it travels in ?token=)."""
    if token is not None and not _TOKEN.fullmatch(token):
        raise ClipsearchError("token must be 16 to 256 characters of A-Z a-z 0-9 . _ ~ -",
                              "make one with: python -c 'import secrets; print(secrets.token_urlsafe())'",
                              param="token")
    if not is_loopback(host) and not token:
        raise ClipsearchError(f"serving on {host} makes the store readable from other machines: it needs a token",
                              "pass one (or set CLIPSEARCH_TOKEN); make one with: python -c 'import secrets; "
                              "print(secrets.token_urlsafe())'", param="token")


def create_app(store_path: str | Path, **kwargs: Any) -> Any:
    """The ASGI app (see app.create_app); importing FastAPI happens here, not at package import."""
    from clipsearch.server.app import create_app as _create

    return _create(store_path, **kwargs)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or one clear error (port taken, address not on this machine); port 0 picks one."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on connections whose
    # socket says TCP; with proto 0 every keep-alive response waited ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = "pass another port (or 0 for any free one)" if exc.errno == 98 else "check the host address"
        raise ClipsearchError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint,
                              param="port" if exc.errno == 98 else "host") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, host: str, token: str | None) -> str:
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown.strip('[]')}]" if ":" in shown else shown
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def limit_blas_threads() -> None:
    """One BLAS thread per request thread: a text query multiplies a few token rows by each weight matrix,
    where OpenBLAS's thread start-up and spinning cost more than the work (measured: 19 ms with 1 thread,
    ~70-90 ms p50 with 2 on a busy 2-core machine). Requests run in parallel threads instead. Applies to the
    BLAS libraries loaded so far (numpy's, FAISS's, the models'): call it again after loading more."""
    import sys

    if "faiss" in sys.modules:  # FAISS's own OpenMP (not torch's): one thread per request's search, too
        sys.modules["faiss"].omp_set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - part of the serve extra
        return
    threadpool_limits(limits=1, user_api="blas")


def uvicorn_config(app: Any, log_level: str = "warning", header_timeout: float | None = None,
                   body_timeout: float | None = None) -> Any:
    """How uvicorn runs the app: no access log, no lifespan, and deadlines for slow clients (`connections`)."""
    import uvicorn

    from clipsearch.server.connections import BODY_TIMEOUT, HEADER_TIMEOUT, http_protocol

    protocol = http_protocol(header_timeout or HEADER_TIMEOUT, body_timeout or BODY_TIMEOUT)
    return uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off", timeout_graceful_shutdown=3,
                          http=protocol)


def serve(store_path: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, token: str | None = None,
          on_ready: Callable[[str], None] | None = None, device: str | None = None, log_level: str = "warning",
          warm_images: bool = True) -> None:
    """Serve a store until interrupted. `on_ready(url)` is called once the server accepts connections.

    Binds loopback by default; another host needs a token. Loads the text encoder and the vectors before
    accepting requests, so even the first text query is warm; the image model (torch, seconds to load) loads
    in the background meanwhile unless `warm_images` is False.
    """
    import uvicorn

    check_token(host, token)
    loopback_only = is_loopback(host) and not token
    app = create_app(store_path, token=token, device=device,
                     allowed_hosts=loopback_hosts(host) if loopback_only else None)
    app.holder.warm()
    limit_blas_threads()  # after warming: FAISS and the models bring BLAS libraries of their own

    def warm_image_model() -> None:
        app.holder.warm_images()
        limit_blas_threads()

    if warm_images:
        threading.Thread(target=warm_image_model, name="clipsearch-warm-images", daemon=True).start()
    sock = bind(host, port)
    url = url_of(sock, host, token)
    server = uvicorn.Server(uvicorn_config(app, log_level))
    if on_ready is not None:
        def announce() -> None:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.02)
            if server.started:
                on_ready(url)

        threading.Thread(target=announce, name="clipsearch-announce", daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()

"""The server's front door, as plain ASGI middleware: Host check, cross-site check, token, body limits,
security headers.

* Token mode (required off loopback): every request carries the token as ``Authorization: Bearer …``, as
  ``?token=…`` (what the page puts on its image URLs), or as the cookie the page receives when it is first
  opened with ``?token=…`` (so its scripts and styles load). Compared in constant time.
* Host check (loopback without a token): only requests addressed to a loopback name are answered, so a web
  page elsewhere cannot reach this server through DNS rebinding.
* Cross-site check: a request that a browser marks as sent by another site's page (``Sec-Fetch-Site`` other
  than ``same-origin`` / ``none``; ``same-site`` too, since another port of localhost is "same site"), or whose
  ``Origin`` ("null" included) is not this server's own scheme, host and port, gets 403, whatever the method:
  any web page could otherwise post uploads and queries to a local server (an ``<img>``, a form, a fetch).
  One exception: a user's click on a link to the page itself (``/``, ``/docs``, ``/dupes``), a top-level GET navigation,
  whose scripts then talk to the server as its own origin. Clients that send neither header (curl, Python) pass.
* Request bodies are read up to a limit; beyond it the answer is 413 and nothing is parsed: 20 MB for a
  multipart upload, FORM_LIMIT for any other body (a form without files holds a query and filters only).
* Every answer says ``nosniff``, no referrer, no framing; no CORS header is ever sent.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

COOKIE = "clipsearch_token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
FORM_LIMIT = 64 * 1024  # a body that is not multipart: q (at most 4000 characters, urlencoded) and filters
SAME_ORIGIN_SITES = (b"same-origin", b"none")  # Sec-Fetch-Site values of the page's own requests, typed URLs
PAGE_PATHS = ("/", "/docs", "/dupes")  # what a user may open by a link from another site (GET navigations only)
DEFAULT_PORTS = {"http": 80, "https": 443}

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


def _cookie(raw: bytes | None, name: str) -> str | None:
    if not raw:
        return None
    for part in raw.decode("latin-1").split(";"):
        key, _sep, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _host_name(raw: bytes | None) -> str:
    host = (raw or b"").decode("latin-1").strip().lower()
    if host.startswith("["):  # [::1]:8765
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _origin_of(scheme: str, netloc: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) with the scheme's default port filled in; None for what is no origin ("null")."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.path or parts.query or parts.username is not None:
        return None
    return scheme, parts.hostname, port if port is not None else DEFAULT_PORTS.get(scheme)


def _user_opens_page(scope: Scope) -> bool:
    """A top-level GET navigation to the page that a user's click started (Sec-Fetch-User: ?1): it shows the
    page, whose own requests are same-origin; a script cannot start one without the user."""
    return (scope.get("method") in ("GET", "HEAD") and scope.get("path") in PAGE_PATHS
            and _header(scope, b"sec-fetch-mode") == b"navigate" and _header(scope, b"sec-fetch-dest") == b"document"
            and _header(scope, b"sec-fetch-user") == b"?1")


def cross_site(scope: Scope) -> str | None:
    """Why the request comes from another site's page (the header that says so), or None."""
    site = _header(scope, b"sec-fetch-site")
    if site is not None and site.strip().lower() not in SAME_ORIGIN_SITES and not _user_opens_page(scope):
        return f"Sec-Fetch-Site: {site.decode('latin-1')[:40]}"
    origin = _header(scope, b"origin")
    if origin is not None:
        scheme, sep, netloc = origin.decode("latin-1").strip().partition("://")
        own = _origin_of(scope.get("scheme", "http"), (_header(scope, b"host") or b"").decode("latin-1"))
        if not sep or own is None or _origin_of(scheme.lower(), netloc) != own:
            return f"Origin: {origin.decode('latin-1')[:80]}"
    return None


async def _respond(send: Send, status: int, error: str, hint: str | None = None,
                   extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": error, "hint": hint}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *SECURITY_HEADERS, *extra]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: Callable[..., Awaitable[None]], token: str | None = None,
                 allowed_hosts: Iterable[str] | None = None, body_limit: int = 20 * 1024 * 1024,
                 form_limit: int = FORM_LIMIT) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.allowed_hosts = {h.lower() for h in allowed_hosts} if allowed_hosts else None
        self.body_limit = body_limit
        self.form_limit = form_limit

    def _token_of(self, scope: Scope) -> tuple[bytes | None, bool]:
        """(the token the request carries, whether it came in the query string)."""
        auth = _header(scope, b"authorization")
        if auth and auth[:7].lower() == b"bearer ":
            return auth[7:].strip(), False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("token"):
            return query["token"][-1].encode("latin-1"), True
        cookie = _cookie(_header(scope, b"cookie"), COOKIE)
        return (cookie.encode("latin-1") if cookie else None), False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.allowed_hosts is not None and _host_name(_header(scope, b"host")) not in self.allowed_hosts:
            await _respond(send, 400, "this server answers only requests addressed to the local machine",
                           "open the URL that clipsearch serve printed")
            return
        if (foreign := cross_site(scope)) is not None:
            await _respond(send, 403, f"this server answers only its own page, not requests from other sites "
                                      f"({foreign})", "open the URL that clipsearch serve printed and search there")
            return
        set_cookie: list[tuple[bytes, bytes]] = []
        if self.token is not None:
            given, in_query = self._token_of(scope)
            if given is None or not hmac.compare_digest(given, self.token):
                await _respond(send, 401, "this server needs a token" if given is None else "wrong token",
                               "open the URL that clipsearch serve printed (it carries ?token=…), or send the "
                               "header Authorization: Bearer TOKEN",
                               [(b"www-authenticate", b'Bearer realm="clipsearch"')])
                return
            if in_query and scope.get("path") in PAGE_PATHS:
                set_cookie = [(b"set-cookie", f"{COOKIE}={given.decode('latin-1')}; Path=/; HttpOnly; "
                                              "SameSite=Strict".encode("latin-1"))]
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            media_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
            multipart = media_type == b"multipart/form-data"
            body = await self._read_body(receive, scope, self.body_limit if multipart else self.form_limit)
            if body is None:
                if multipart:
                    await _respond(send, 413, f"the request is larger than {self.body_limit // (1024 * 1024)} MB",
                                   "send a smaller image")
                else:
                    await _respond(send, 413, f"the request is larger than {self.form_limit // 1024} KB (a form "
                                              "without files holds only a query and its filters)",
                                   "shorten the query; images go in a multipart/form-data upload")
                return
            receive = _replay(body, receive)

        if scope.get("method") == "OPTIONS":  # no CORS: just what the resource allows
            await _respond(send, 200, "allowed methods: GET, HEAD, POST", None, [(b"allow", b"GET, HEAD, POST")])
            return
        head = scope.get("method") == "HEAD"
        if head:  # answered as the GET it asks about, without the body
            scope = {**scope, "method": "GET"}

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS, *set_cookie]}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    async def _read_body(receive: Receive, scope: Scope, limit: int) -> bytes | None:
        """The whole body, or None once it is over `limit` (the declared length is checked first)."""
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)


def _replay(body: bytes, original: Receive) -> Receive:
    """The body read ahead, in one message; then the connection's own events (a disconnect, when it comes)."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive

"""`clipsearch serve`'s JSON API through an in-process client: every endpoint, filters, errors, thumbnails and
caching, uploads, token and Host checks, and a set of attempts to read files that are not indexed images of the
store (traversal, encoded traversal, absolute paths, symlinks out of the roots, replaced files, FIFOs, deleted
rows, non-numeric ids). Relevance is asserted with the trained tiny model only, on red triangles: it tells colours
and triangles apart by wide margins, but circles from squares only by ~0.005 of cosine ("a red circle" ranks two
red squares first, 0.708 and 0.705, then red circles from 0.703), too thin to assert a top hit on."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient  # the serve extra: these tests run, never skip, in CI
from PIL import Image

import clipsearch
from clipsearch.errors import ClipsearchError
from clipsearch.server import check_token, create_app
from clipsearch.server.app import PAGE_MODULES
from tests.conftest import assert_same_hits, cli_json, label_of

HIT_KEYS = {"rank", "score", "path", "size", "width", "height", "format", "modified", "id", "taken", "camera",
            "lens", "gps", "digest"}
SCRIPT_NAME = "<script>window.__xss=1;<\\script>.png"  # (a file name cannot hold "/")
ONERROR_NAME = "<img src=x onerror=\"window.__xss=2\">.png"
QUOTES_NAME = "it's \"quoted\" & <svg onload=window.__xss=3>.png"
BACKSLASH_NAME = "back\\slash \\u0041.png"
LATIN1_NAME = os.fsdecode(b"caf\xe9.png")
HOSTILE = [SCRIPT_NAME, ONERROR_NAME, QUOTES_NAME, BACKSLASH_NAME, LATIN1_NAME]
TOKEN = "s3cret-token-0123456789"


def _rotated_jpeg(path: Path) -> None:
    """A landscape JPEG whose EXIF says 'rotate 90°': shown (and thumbnailed) as a portrait."""
    im = Image.new("RGB", (120, 60), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(path, "JPEG", exif=exif.tobytes())


def make_collection(root: Path, shapes_source: Path, hostile: bool = True) -> Path:
    col = root / "photos"
    shutil.copytree(shapes_source, col)
    sub = col / "sub"
    sub.mkdir()
    for p in sorted(col.glob("blue_square_00[01].png")):
        p.rename(sub / p.name)
    if hostile:
        odd = col / "odd"
        odd.mkdir()
        sources = sorted(shapes_source.glob("green_triangle_*.png"))
        for i, name in enumerate(HOSTILE):
            shutil.copyfile(sources[i % len(sources)], odd / name)
    _rotated_jpeg(col / "rotated.jpg")
    (col / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return col


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, shapes_source: Path, trained_model: Path) -> tuple[Path, Path]:
    """(collection, store): generated shapes, a subfolder, hostile names, an EXIF-rotated JPEG, a broken file."""
    root = tmp_path_factory.mktemp("served")
    col = make_collection(root, shapes_source)
    idx = root / "index"
    with clipsearch.open(idx, model=str(trained_model)) as store:
        store.add([col])
    return col, idx


@pytest.fixture(scope="module")
def client(served) -> TestClient:
    return TestClient(create_app(served[1]))


def _ids(data: dict) -> list[int]:
    return [h["id"] for h in data["results"]]


def _name(hit: dict) -> str:
    return Path(hit["path"]).name


def raw_get(app, raw_path: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, bytes]:
    """A GET with the path exactly as given (no client-side normalisation of '..' or '//')."""
    path, _sep, query = raw_path.partition(b"?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": unquote(path.decode("latin-1")), "raw_path": path, "query_string": query, "root_path": "",
             "headers": [(b"host", b"testserver"), *(headers or [])], "client": ("127.0.0.1", 5000),
             "server": ("testserver", 80)}
    messages: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        messages.append(message)

    asyncio.run(app(scope, receive, send))
    return messages[0]["status"], b"".join(m.get("body", b"") for m in messages[1:])


# --- endpoints ------------------------------------------------------------------------------------------------
def test_health_info_and_docs(client: TestClient, served) -> None:
    col, _idx = served
    assert client.get("/api/health").json()["status"] == "ok"
    info = client.get("/api/info").json()
    assert info["empty"] is False and info["images"] == 60 + len(HOSTILE) + 1 and info["failed"] == 1
    assert info["roots"] == [str(col)] and info["model"] and info["embed_dim"] == 64
    assert info["extensions"] == {"png": 60 + len(HOSTILE), "jpg": 1}
    docs = client.get("/docs").text
    for endpoint in ("GET /api/search", "POST /api/search", "/api/images/{id}", "/similar", "/thumbnail", "/file",
                     "/api/info", "/api/health"):
        assert endpoint in docs
    assert "cdn" not in docs.lower() and client.get("/openapi.json").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from elsewhere
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    for module in PAGE_MODULES:  # every module of the page writes text, never markup
        js = client.get(f"/static/{module}").text
        assert (".innerHTML" not in js and "outerHTML" not in js and "insertAdjacentHTML" not in js
                and "document.write" not in js), module


def test_search_matches_the_cli_json(client: TestClient, served, runner) -> None:
    _col, idx = served
    data = client.get("/api/search", params={"q": "a red triangle", "k": 8}).json()
    assert all(set(h) == HIT_KEYS for h in data["results"]) and data["k"] == 8 and data["query_ms"] >= 0
    assert label_of(data["results"][0]["path"]) == "red triangle"
    assert_same_hits(data["results"], cli_json(runner, "query", "a red triangle", "-k", "8", "--index", idx))


def test_search_box_syntax_is_the_cli_syntax(client: TestClient, served) -> None:
    _col, idx = served
    plain = _ids(client.get("/api/search", params={"q": "a red circle", "k": 10}).json())
    # subtracting half of the same text leaves the direction, hence the ranking, unchanged
    assert _ids(client.get("/api/search", params={"q": "a red circle -a red circle::0.5", "k": 10}).json()) == plain
    mixed = client.get("/api/search", params={"q": "a blue square::2 -a red circle", "k": 10}).json()
    with clipsearch.open(idx, create=False) as store:
        expected = [h.id for h in store.search(["a blue square::2"], minus=["a red circle"], k=10)]
    assert _ids(mixed) == expected
    assert _ids(client.get("/api/search",
                           params={"q": "a blue square::2", "minus": "a red circle", "k": 10}).json()) == expected


def test_filters(client: TestClient, served) -> None:
    col, _idx = served
    under = client.get("/api/search", params={"q": "a blue square", "k": 50, "under": str(col / "sub")}).json()
    assert sorted(_name(h) for h in under["results"]) == ["blue_square_000.png", "blue_square_001.png"]
    jpg = client.get("/api/search", params={"q": "a red circle", "k": 50, "ext": "jpeg"}).json()
    assert [_name(h) for h in jpg["results"]] == ["rotated.jpg"]
    assert client.get("/api/search", params={"q": "x", "before": "2000-01-01"}).json()["results"] == []
    assert len(client.get("/api/search", params={"q": "x", "k": 500, "after": "2000-01-01"}).json()["results"]) == 66
    nowhere = client.get("/api/search", params={"q": "x", "under": str(col / "nope")}).json()
    assert nowhere["results"] == [] and "no indexed images under" in nowhere["notes"][0]


@pytest.mark.parametrize("params, fragment", [
    ({"q": ""}, "empty query"), ({"q": "   "}, "empty query"), ({"q": "x", "k": 0}, "k must be"),
    ({"q": "x", "k": 501}, "k must be"), ({"q": "x", "k": "ten"}, "k:"),
    ({"q": "x", "after": "last tuesday"}, "not a date"),
    ({"q": "a::1 -a::1"}, "cancel out"),
])
def test_bad_queries_are_400_with_a_message(client: TestClient, params: dict, fragment: str) -> None:
    r = client.get("/api/search", params=params)
    assert r.status_code == 400 and fragment in r.json()["error"] and "Traceback" not in r.text


def test_image_details_and_similar(client: TestClient) -> None:
    first = client.get("/api/search", params={"q": "a red triangle", "k": 1}).json()["results"][0]
    details = client.get(f"/api/images/{first['id']}").json()
    assert details == {k: v for k, v in first.items() if k not in ("rank", "score")}
    similar = client.get(f"/api/images/{first['id']}/similar", params={"k": 4}).json()
    assert first["id"] not in _ids(similar) and len(similar["results"]) == 4
    assert all(set(h) == HIT_KEYS for h in similar["results"])
    assert all(label_of(h["path"]) == "red triangle" for h in similar["results"][:3])  # its own kind first
    via_search = client.get("/api/search", params={"like": first["id"], "k": 4}).json()
    assert _ids(via_search) == _ids(similar)


def test_thumbnails_are_cached_by_digest_with_etag(client: TestClient, served) -> None:
    _col, idx = served
    [hit] = client.get("/api/search", params={"q": "a red circle", "k": 50, "ext": "jpg"}).json()["results"]
    r = client.get(f"/api/images/{hit['id']}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    im = Image.open(io.BytesIO(r.content))
    assert im.format == "WEBP" and im.size == (60, 120)  # EXIF orientation applied; small images are not enlarged
    digest = r.headers["etag"].strip('"')
    assert (idx / "thumbnails" / digest[:2] / f"{digest}.webp").read_bytes() == r.content  # cached in the store
    assert r.headers["cache-control"] == "private, no-cache"  # a bare URL revalidates ...
    assert hit["digest"] == digest  # the content digest the page keys its URLs by
    versioned = client.get(f"/api/images/{hit['id']}/thumbnail", params={"v": digest})
    assert "max-age=31536000" in versioned.headers["cache-control"]  # ... one keyed by its digest lives long
    for stale in ("1", f"{hit['size']}-{hit['modified']}", digest[::-1]):  # another version may name other bytes
        assert client.get(f"/api/images/{hit['id']}/thumbnail", params={"v": stale}).headers["cache-control"] == \
            "private, no-cache"
        assert client.get(f"/api/images/{hit['id']}/file", params={"v": stale}).headers["cache-control"] == \
            "private, no-cache"
    assert "immutable" in client.get(f"/api/images/{hit['id']}/file", params={"v": digest}).headers["cache-control"]
    again = client.get(f"/api/images/{hit['id']}/thumbnail", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == r.headers["etag"]
    big = Image.new("RGB", (1000, 500))
    from clipsearch.media.thumbnails import make_thumbnail

    buf = io.BytesIO()
    big.save(buf, "JPEG")
    assert Image.open(io.BytesIO(make_thumbnail(buf.getvalue()))).size == (256, 128)


def test_file_is_served_exactly_by_id(client: TestClient, served) -> None:
    col, _idx = served
    hit = client.get("/api/search", params={"q": "a red circle", "k": 1}).json()["results"][0]
    r = client.get(f"/api/images/{hit['id']}/file")
    assert r.status_code == 200 and r.content == Path(hit["path"]).read_bytes()
    assert r.headers["content-type"] == "image/png" and r.headers["etag"].strip('"')
    assert "sandbox" in r.headers["content-security-policy"] and r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-disposition"].startswith("inline;")
    assert "access-control-allow-origin" not in r.headers
    again = client.get(f"/api/images/{hit['id']}/file", headers={"If-None-Match": f'W/"x", {r.headers["etag"]}'})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == r.headers["etag"]
    stale = client.get(f"/api/images/{hit['id']}/file", headers={"If-None-Match": '"not-this-one"'})
    assert stale.status_code == 200 and stale.content == r.content


def test_hostile_and_non_utf8_names_round_trip_as_json(client: TestClient, served) -> None:
    col, _idx = served
    data = client.get("/api/search", params={"q": "a green triangle", "k": 50, "under": str(col / "odd")})
    assert data.status_code == 200
    hits = data.json()["results"]
    assert sorted(_name(h) for h in hits) == sorted(HOSTILE)
    latin = next(h for h in hits if _name(h) == LATIN1_NAME)
    assert os.fsencode(latin["path"]).endswith(b"/caf\xe9.png")  # the real bytes, via \udce9 in JSON
    assert client.get(f"/api/images/{latin['id']}/file").content == (col / "odd" / LATIN1_NAME).read_bytes()
    script = next(h for h in hits if _name(h) == SCRIPT_NAME)
    disposition = client.get(f"/api/images/{script['id']}/file").headers["content-disposition"]
    assert "<" not in disposition and "%3Cscript%3E" in disposition


# --- uploads ----------------------------------------------------------------------------------------------------
def _png_bytes(path: Path) -> bytes:
    return path.read_bytes()


def test_upload_query(client: TestClient, served, shapes_source: Path) -> None:
    col, _idx = served
    before = sorted(p for p in col.rglob("*"))
    query = shapes_source / "red_triangle_002.png"
    r = client.post("/api/search", files={"image": ("q.png", _png_bytes(query), "image/png")}, data={"k": "5"})
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert all(set(h) == HIT_KEYS for h in hits) and len(hits) == 5
    assert all(label_of(h["path"]) == "red triangle" for h in hits[:3])
    assert "red_triangle_002.png" not in [_name(h) for h in hits]  # the same content is left out, as in the CLI
    both = client.post("/api/search", files={"image": ("q.png", _png_bytes(query), "image/png")},
                       data={"q": "a red triangle", "k": "3", "ext": "png"})
    assert both.status_code == 200 and len(both.json()["results"]) == 3
    assert sorted(p for p in col.rglob("*")) == before  # nothing written into the collection


def test_upload_errors(client: TestClient) -> None:
    garbage = client.post("/api/search", files={"image": ("x.png", b"not an image at all", "image/png")})
    assert garbage.status_code == 400 and "not a recognised image format" in garbage.json()["error"]
    empty = client.post("/api/search", files={"image": ("x.png", b"", "image/png")})
    assert empty.status_code == 400
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, "PNG")  # 400 megapixels in a few KB
    r = client.post("/api/search", files={"image": ("bomb.png", bomb.getvalue(), "image/png")})
    assert r.status_code == 400 and "decompression bomb" in r.json()["error"]
    huge = client.post("/api/search", files={"image": ("big.jpg", b"\xff" * (20 * 1024 * 1024 + 1), "image/jpeg")})
    assert huge.status_code == 413 and "20 MB" in huge.json()["error"]
    too_many = client.post("/api/search", files=[("image", (f"{i}.png", b"x", "image/png")) for i in range(5)])
    assert too_many.status_code == 400


# --- no file that is not an indexed image of this store ------------------------------------------------------------
@pytest.mark.parametrize("raw", [
    b"/api/images/../../../../etc/passwd/file",
    b"/api/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd/file",
    b"/api/images/..%2F..%2F..%2Fetc%2Fpasswd/file",
    b"/api/images/%252e%252e%252fetc%252fpasswd/file",
    b"/api/images//etc/passwd/file",
    b"/api/images/%2Fetc%2Fpasswd/file",
    b"/api/images/%2Fetc%2Fpasswd/thumbnail",
    b"/api/images/1%2F..%2F..%2Fetc%2Fpasswd/file",
    b"/static/../../../etc/passwd",
    b"/static/..%2F..%2F..%2Fetc%2Fpasswd",
    b"/static/%2e%2e%2fapp.py",
    b"/static/..%2fapp.py",
    b"/etc/passwd",
    b"/../../etc/passwd",
    b"/api/images/abc/file",
    b"/api/images/1.0/file",
    b"/api/images/-1/file",
    b"/api/images/1e3/file",
    b"/api/images/0x1/file",
    b"/api/images/%EF%BC%91/file",  # a fullwidth digit one
    b"/api/images/99999999999999999999999/file",
    b"/api/images/0/file",
    b"/api/images/123456/file",
    b"/api/images/1%00/file",
    b"/api/images/ 1/thumbnail",
])
def test_no_path_reads_other_files(client: TestClient, raw: bytes) -> None:
    status, body = raw_get(client.app, raw)
    assert status in (400, 404), (raw, status)
    assert b"root:" not in body and b"import " not in body and b"def " not in body


def test_failed_rows_have_no_image(client: TestClient) -> None:
    seen = set(_ids(client.get("/api/search", params={"q": "x", "k": 500}).json()))
    failed = [i for i in range(1, max(seen) + 2) if i not in seen]
    assert failed  # the broken file's row
    for image_id in failed:
        for what in ("", "/file", "/thumbnail", "/similar"):
            assert client.get(f"/api/images/{image_id}{what}").status_code == 404


@pytest.fixture()
def mutable(tmp_path: Path, shapes_source: Path, trained_model: Path):
    """A small store of our own that tests may change under the server."""
    col = tmp_path / "col"
    col.mkdir()
    for p in sorted(shapes_source.glob("red_*_00[0-2].png")):
        shutil.copyfile(p, col / p.name)
    idx = tmp_path / "index"
    with clipsearch.open(idx, model=str(trained_model)) as store:
        store.add([col])
    return col, idx, TestClient(create_app(idx))


def _id_of(client: TestClient, name: str) -> int:
    hits = client.get("/api/search", params={"q": "x", "k": 500}).json()["results"]
    return next(h["id"] for h in hits if _name(h) == name)


def test_symlink_swapped_in_replaced_file_and_fifo_are_refused(mutable, tmp_path: Path) -> None:
    col, _idx, client = mutable
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:top secret\n")
    ids = {name: _id_of(client, name) for name in ("red_circle_000.png", "red_circle_001.png", "red_square_000.png")}
    link = col / "red_circle_000.png"
    link.unlink()
    link.symlink_to(secret)  # a symlink out of the roots, under an indexed name
    (col / "red_circle_001.png").write_bytes((col / "red_square_001.png").read_bytes())  # replaced content
    fifo = col / "red_square_000.png"
    fifo.unlink()
    os.mkfifo(fifo)  # opening it without O_NONBLOCK would hang the server
    for image_id in ids.values():
        for what in ("/file", "/thumbnail"):
            r = client.get(f"/api/images/{image_id}{what}")
            assert r.status_code == 404 and b"secret" not in r.content, (image_id, what)
            assert "changed since it was indexed" in r.json()["error"]


def test_deleted_rows_are_gone(mutable) -> None:
    col, idx, client = mutable
    image_id = _id_of(client, "red_triangle_000.png")
    assert client.get(f"/api/images/{image_id}/file").status_code == 200
    with clipsearch.open(idx, create=False) as store:
        store.forget(col / "red_triangle_000.png")
    for what in ("", "/file", "/thumbnail", "/similar"):
        r = client.get(f"/api/images/{image_id}{what}")
        assert r.status_code == 404 and "no image with id" in r.json()["error"]
    assert client.get("/api/search", params={"like": image_id}).status_code == 404


def test_concurrent_thumbnail_requests(mutable) -> None:
    _col, idx, client = mutable
    image_id = _id_of(client, "red_square_002.png")
    results: list[int] = []

    def fetch() -> None:
        results.append(client.get(f"/api/images/{image_id}/thumbnail").status_code)

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 6
    assert not [p for p in (idx / "thumbnails").rglob("*") if p.name.endswith(".tmp")]


# --- token, Host, Origin, CORS --------------------------------------------------------------------------------------
def test_token_mode(served) -> None:
    _col, idx = served
    client = TestClient(create_app(idx, token=TOKEN))
    for path in ("/", "/api/health", "/api/info", "/api/search?q=x", "/static/app.js", "/docs",
                 "/api/images/1/thumbnail", "/api/images/1/file"):
        r = client.get(path)
        assert r.status_code == 401 and "token" in r.json()["error"], path
        assert client.get(path, headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
        assert client.get(path, params={"token": TOKEN[:-1]}).status_code == 401
    assert client.get("/api/search", params={"q": "x"}, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/api/images/1/thumbnail", params={"token": TOKEN}).status_code == 200
    assert client.post("/api/search", data={"q": "x"}).status_code == 401
    page = client.get("/", params={"token": TOKEN})
    assert page.status_code == 200 and "HttpOnly" in page.headers["set-cookie"]
    assert client.get("/static/app.js").status_code == 200  # the page's cookie carries the token for its assets
    anonymous = TestClient(create_app(idx, token=TOKEN))
    assert anonymous.get("/static/app.js", headers={"Cookie": "clipsearch_token=nope"}).status_code == 401


def test_token_required_off_loopback(runner) -> None:
    check_token("127.0.0.1", None)
    check_token("::1", None)
    check_token("0.0.0.0", TOKEN)
    for host, token in (("0.0.0.0", None), ("192.168.1.5", None), ("127.0.0.1", "short"),
                        ("0.0.0.0", "bad token with spaces!")):
        with pytest.raises(ClipsearchError):
            check_token(host, token)
    result = runner.invoke(clipsearch.cli.app, ["serve", "--host", "0.0.0.0", "--index", "/nonexistent"],
                           env={"CLIPSEARCH_TOKEN": ""})
    assert result.exit_code == 1 and "needs a token" in result.stderr


def test_host_check_and_no_cors(served) -> None:
    _col, idx = served
    app = create_app(idx, allowed_hosts=["127.0.0.1", "localhost"])
    ok = TestClient(app, base_url="http://127.0.0.1:8765")
    assert ok.get("/api/health").status_code == 200
    rebound = TestClient(app, base_url="http://attacker.example:8765")  # DNS rebinding: a foreign Host header
    assert rebound.get("/api/health").status_code == 400
    r = ok.get("/api/search", params={"q": "x"}, headers={"Origin": "http://127.0.0.1:8765"})  # its own page
    assert r.status_code == 200 and not any(h.startswith("access-control") for h in r.headers)
    foreign = ok.get("/api/search", params={"q": "x"}, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and not any(h.startswith("access-control") for h in foreign.headers)
    preflight = ok.options("/api/search",
                           headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
    own_preflight = ok.options("/api/search", headers={"Origin": "http://127.0.0.1:8765"})
    assert own_preflight.status_code == 200 and own_preflight.headers["allow"] == "GET, HEAD, POST"
    assert "access-control-allow-origin" not in own_preflight.headers  # what is allowed, never CORS


def test_server_errors_are_json_500(served, monkeypatch) -> None:
    _col, idx = served
    app = create_app(idx)
    client = TestClient(app, raise_server_exceptions=False)
    store = app.holder.get()

    def broken(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr(store, "search", broken)
    r = client.get("/api/search", params={"q": "x"})
    assert r.status_code == 500 and "unexpected RuntimeError" in r.json()["error"] and "boom" not in r.text


def test_empty_store_then_indexed_without_restart(tmp_path: Path, shapes_source: Path, trained_model: Path) -> None:
    idx = tmp_path / "index"
    client = TestClient(create_app(idx))
    info = client.get("/api/info").json()
    assert info["empty"] is True and info["images"] == 0
    r = client.get("/api/search", params={"q": "x"})
    assert r.status_code == 400 and "is empty" in r.json()["error"]
    assert not idx.exists()  # looking did not create the store
    with clipsearch.open(idx, model=str(trained_model)) as store:
        store.add([shapes_source / "red_circle_000.png"])
    assert client.get("/api/info").json()["images"] == 1
    assert len(client.get("/api/search", params={"q": "x"}).json()["results"]) == 1


def test_answers_while_index_runs_and_picks_up_new_images(mutable, shapes_source: Path, trained_model: Path) -> None:
    """An index run (its own Store: its own SQLite connections and writer lock, as another process has) adds to
    the store in many small commits while the server answers; the server sees the new images without a restart."""
    col, idx, client = mutable
    before = len(client.get("/api/search", params={"q": "x", "k": 500}).json()["results"])
    new = col.parent / "more"
    new.mkdir()
    for p in sorted(shapes_source.glob("blue_*.png")):
        shutil.copyfile(p, new / p.name)
    done = threading.Event()
    errors: list[BaseException] = []

    def index() -> None:
        try:
            with clipsearch.open(idx, create=False) as writer:
                writer.add([new], commit_every=2, batch_size=2)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=index)
    thread.start()
    counts = []
    while not done.is_set():
        r = client.get("/api/search", params={"q": "a blue triangle", "k": 500})
        assert r.status_code == 200
        counts.append(len(r.json()["results"]))
    thread.join()
    assert not errors, errors
    after = client.get("/api/search", params={"q": "a blue triangle", "k": 500}).json()["results"]
    assert len(after) == before + 15 and len(counts) > 3
    print("result counts seen while indexing:", counts)  # e.g. [9, 9, ..., 13, 15, 17, 21, 24]: chunk by chunk
    assert counts == sorted(counts) and before <= counts[0] and counts[-1] <= before + 15  # never a torn state
    assert label_of(after[0]["path"]) == "blue triangle"
    new_hit = next(h for h in after if Path(h["path"]).parent == new)
    assert client.get(f"/api/images/{new_hit['id']}/thumbnail").status_code == 200


def test_concurrent_text_queries_share_exact_passes(served) -> None:
    """The server's text path: calls from many threads are answered by fewer packed passes, with the same vectors."""
    import numpy as np

    from clipsearch.encoders.numpy_text import CoalescingTextEncoder

    _col, idx = served
    with clipsearch.open(idx, create=False) as store:
        inner = store.text_encoder()
        passes: list[int] = []

        class Counting:
            def encode_texts(self, texts):
                passes.append(len(texts))
                return inner.encode_texts(texts)

        shared = CoalescingTextEncoder(Counting())  # type: ignore[arg-type]
        results: dict[str, np.ndarray] = {}
        barrier = threading.Barrier(8)

        def worker(n: int) -> None:
            barrier.wait()
            for i in range(5):
                text = f"a {['red', 'blue'][n % 2]} shape {n} {i}"
                results[text] = shared.encode_texts([text, "a circle"])

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 40 and sum(passes) == 80 and len(passes) < 40  # batched
        for text, got in results.items():
            assert np.abs(got - inner.encode_texts([text, "a circle"])).max() < 1e-5
        store.warm_text_queries()
        assert isinstance(store.text_encoder().inner, CoalescingTextEncoder)

    class Failing:
        def encode_texts(self, texts):
            raise RuntimeError("broken tower")

    with pytest.raises(RuntimeError, match="broken tower"):
        CoalescingTextEncoder(Failing()).encode_texts(["x"])  # type: ignore[arg-type]


def test_cli_serve_warns_off_loopback_and_prints_the_url(runner, served, monkeypatch) -> None:
    import clipsearch.server

    _col, idx = served
    calls = []

    def fake_serve(path, host, port, **kwargs):  # the real one blocks: here it only announces its URL
        calls.append((path, host, port))
        kwargs["on_ready"](f"http://127.0.0.1:{port}/" + (f"?token={kwargs['token']}" if kwargs["token"] else ""))

    monkeypatch.setattr(clipsearch.server, "serve", fake_serve)
    result = runner.invoke(clipsearch.cli.app, ["serve", "--host", "0.0.0.0", "--port", "9000", "--index", str(idx)],
                           env={"CLIPSEARCH_TOKEN": TOKEN})
    assert result.exit_code == 0, result.stderr
    assert "warning" in result.stderr and "0.0.0.0" in result.stderr
    assert f"http://127.0.0.1:9000/?token={TOKEN}" in result.stdout and calls == [(idx, "0.0.0.0", 9000)]
    local = runner.invoke(clipsearch.cli.app, ["serve", "--index", str(idx)], env={"CLIPSEARCH_TOKEN": ""})
    assert local.exit_code == 0 and "warning" not in local.stderr and "http://127.0.0.1:8765/" in local.stdout


def test_listening_socket_is_tcp_so_responses_skip_nagle() -> None:
    """asyncio sets TCP_NODELAY only on sockets whose proto says TCP; without it every keep-alive response
    waited ~40 ms for the client's delayed ACK (measured: 48 ms -> 0.6 ms per request)."""
    import socket

    from clipsearch.server import bind

    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        client = socket.create_connection(sock.getsockname())
        conn, _addr = sock.accept()
        assert conn.proto == socket.IPPROTO_TCP
        conn.close()
        client.close()
    finally:
        sock.close()

"""`clipsearch serve` against any web page and against oversized requests: cross-site requests refused (Origin,
Sec-Fetch-Site), query bounds (terms, characters, filters) in the library and as HTTP 400, small form bodies,
and uploads held to a pixel budget counted from their headers, so a small PNG of 132 megapixels is refused
without being decoded. Memory is measured as the process's peak resident size (VmHWM, reset through
/proc/self/clear_refs) around one request, and its resident size after it: the server trims the C heap.

The big images are written as real PNGs without ever holding their pixels (one row, then rows that say "same as
above", compressed once and repeated), so making a 132-megapixel one takes ~0.2 s and a few hundred KB."""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

import clipsearch
from clipsearch.errors import ClipsearchError
from clipsearch.media.images import probe
from clipsearch.query.engine import MAX_FILTERS, MAX_QUERY_CHARS, MAX_TERM_CHARS, MAX_TERMS, split_terms
from clipsearch.server import create_app
from clipsearch.server.app import MAX_UPLOAD_PIXELS, release_memory

MB = 1024 * 1024
FOREIGN = [{"Origin": "https://evil.example"}, {"Origin": "null"}, {"Origin": "http://testserver:8080"},
           {"Origin": "https://testserver"}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
           {"Sec-Fetch-Site": "same-origin", "Origin": "http://attacker.example"}]
OWN = [{}, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}, {"Origin": "http://testserver"},
       {"Origin": "http://testserver:80", "Sec-Fetch-Site": "same-origin"}]


def solid_png(width: int, height: int, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid RGB PNG of one colour, built without its pixels: deflate blocks ended by full flushes do not
    depend on what came before, so one block of "same as above" rows is compressed once and repeated (the
    zlib header and Adler-32 are written by hand, over all the rows)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    first, row = b"\x00" + bytes(colour) * width, b"\x02" + bytes(3 * width)  # filter 2 (Up): zeros repeat row 1
    per = max(1, (4 * MB) // len(row))
    full, rest = divmod(height - 1, per)
    block = row * per
    check = zlib.adler32(first)
    for _ in range(full):
        check = zlib.adler32(block, check)
    check = zlib.adler32(row * rest, check)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = comp.compress(first) + comp.flush(zlib.Z_FULL_FLUSH)
    body = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH) if full else b""
    idat = b"\x78\xda" + head + body * full + comp.compress(row * rest) + comp.flush() + struct.pack(">I", check)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no {key} in /proc/self/status")


def memory_of(call: Callable[[], object]) -> tuple[object, float, float]:
    """(what `call` returned, peak resident growth during it in MB, resident growth after it in MB)."""
    release_memory()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident size
    before = _status_mb("VmRSS")
    result = call()
    return result, _status_mb("VmHWM") - before, _status_mb("VmRSS") - before


@pytest.fixture(scope="module")
def store_copy(tmp_path_factory: pytest.TempPathFactory, indexed: Path) -> Path:
    """A copy of the session store: thumbnails are cached in the store, and the session one stays untouched."""
    path = tmp_path_factory.mktemp("limits") / "index"
    shutil.copytree(indexed, path)
    return path


@pytest.fixture(scope="module")
def client(store_copy: Path) -> TestClient:
    client = TestClient(create_app(store_copy))
    client.post("/api/search", files={"image": ("q.png", _small_png(), "image/png")})  # loads the image model
    return client


@pytest.fixture(scope="module")
def first_id(client: TestClient) -> int:
    return client.get("/api/search", params={"q": "a red triangle", "k": 1}).json()["results"][0]["id"]


def _small_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def _requests(image_id: int) -> dict[str, Callable[[TestClient, dict], object]]:
    return {
        "GET search": lambda c, h: c.get("/api/search", params={"q": "x"}, headers=h),
        "GET thumbnail (<img>)": lambda c, h: c.get(f"/api/images/{image_id}/thumbnail", headers=h),
        "GET file (<img>)": lambda c, h: c.get(f"/api/images/{image_id}/file", headers=h),
        "GET similar": lambda c, h: c.get(f"/api/images/{image_id}/similar", headers=h),
        "multipart POST": lambda c, h: c.post("/api/search", files={"image": ("q.png", _small_png(), "image/png")},
                                              data={"q": "x"}, headers=h),
        "form POST": lambda c, h: c.post("/api/search", data={"q": "a red triangle"}, headers=h),
    }


# --- cross-site requests --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", FOREIGN, ids=lambda h: " ".join(f"{k}={v}" for k, v in h.items()))
def test_cross_site_requests_are_refused(client: TestClient, first_id: int, headers: dict) -> None:
    for what, request in _requests(first_id).items():
        r = request(client, headers)
        assert r.status_code == 403, (what, r.status_code, r.text)
        body = r.json()
        assert "other sites" in body["error"] and body["hint"], what
        assert r.headers["x-content-type-options"] == "nosniff" and "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize("headers", OWN, ids=lambda h: " ".join(f"{k}={v}" for k, v in h.items()) or "no headers")
def test_own_page_and_plain_clients_are_answered(client: TestClient, first_id: int, headers: dict) -> None:
    for what, request in _requests(first_id).items():
        r = request(client, headers)
        assert r.status_code == 200, (what, r.status_code, r.text)


def test_origin_must_be_this_host_and_port(store_copy: Path) -> None:
    app = create_app(store_copy, allowed_hosts=["127.0.0.1", "localhost"])
    local = TestClient(app, base_url="http://127.0.0.1:8765")
    assert local.get("/api/health", headers={"Origin": "http://127.0.0.1:8765"}).status_code == 200
    for origin in ("http://localhost:8765", "http://127.0.0.1:9999", "http://127.0.0.1", "https://127.0.0.1:8765",
                   "http://127.0.0.1:8765.evil.example", "http://user@127.0.0.1:8765", "127.0.0.1:8765"):
        assert local.get("/api/health", headers={"Origin": origin}).status_code == 403, origin
    ipv6 = TestClient(create_app(store_copy, allowed_hosts=["[::1]", "::1"]), base_url="http://[::1]:8765")
    assert ipv6.get("/api/health", headers={"Origin": "http://[::1]:8765"}).status_code == 200
    assert ipv6.get("/api/health", headers={"Origin": "http://[::2]:8765"}).status_code == 403


def test_a_users_click_on_a_link_opens_the_page_only(client: TestClient) -> None:
    click = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
             "Sec-Fetch-User": "?1"}
    assert client.get("/", headers=click).status_code == 200  # a link to the page from elsewhere still works
    assert client.get("/docs", headers=click).status_code == 200
    scripted = {k: v for k, v in click.items() if k != "Sec-Fetch-User"}  # location = … with no user gesture
    assert client.get("/", headers=scripted).status_code == 403
    assert client.get("/api/search", params={"q": "x"}, headers=click).status_code == 403  # the API: never
    assert client.post("/", data={"q": "x"}, headers=click).status_code == 403


def test_token_mode_refuses_cross_site_even_with_the_token(store_copy: Path) -> None:
    token = "s3cret-token-0123456789"
    client = TestClient(create_app(store_copy, token=token))
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/search", params={"q": "x"}, headers=auth).status_code == 200
    assert client.get("/api/search", params={"q": "x", "token": token},
                      headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403


# --- query bounds ------------------------------------------------------------------------------------------------
def test_term_count_and_length_are_bounded_over_http(client: TestClient) -> None:
    assert client.get("/api/search", params={"q": " ".join(["+w"] * MAX_TERMS)}).status_code == 200
    many = client.get("/api/search", params={"q": " ".join(["+w"] * (MAX_TERMS + 1))})
    assert many.status_code == 400 and f"at most {MAX_TERMS}" in many.json()["error"] and many.json()["param"] == "q"
    thousands = client.post("/api/search", data={"q": " ".join(["+w"] * 5000)})  # 10 KB: under the form limit
    assert thousands.status_code == 400 and "characters long" in thousands.json()["error"]
    minus = client.get("/api/search", params={"q": "x", "minus": ["w"] * MAX_TERMS})
    assert minus.status_code == 400 and minus.json()["param"] == "minus"
    long_term = client.get("/api/search", params={"q": "w" * (MAX_TERM_CHARS + 1)})
    assert long_term.status_code == 400 and f"at most {MAX_TERM_CHARS}" in long_term.json()["error"]
    long_query = client.get("/api/search", params={"q": "word " * (MAX_QUERY_CHARS // 5 + 1)})
    assert long_query.status_code == 400 and long_query.json()["param"] == "q"
    likes = client.get("/api/search", params={"like": [str(i) for i in range(1, MAX_TERMS + 2)]})
    assert likes.status_code == 400 and likes.json()["param"] == "like"
    folders = client.get("/api/search", params={"q": "x", "under": [f"/f{i}" for i in range(MAX_FILTERS + 1)]})
    assert folders.status_code == 400 and folders.json()["param"] == "under"


def test_form_fields_are_small(client: TestClient) -> None:
    big_form = client.post("/api/search", data={"q": "w " * (40 * 1024)})  # 80 KB urlencoded: never parsed
    assert big_form.status_code == 413 and "KB" in big_form.json()["error"]
    big_field = client.post("/api/search", files={"image": ("q.png", _small_png(), "image/png")},
                            data={"q": "w" * (MAX_QUERY_CHARS + 1)})
    assert big_field.status_code == 400 and big_field.json()["param"] == "q"
    huge_field = client.post("/api/search", files={"image": ("q.png", _small_png(), "image/png")},
                             data={"q": "w" * (2 * MB)})  # the multipart parser stops at 1 MB a text field
    assert huge_field.status_code == 400


def test_the_library_refuses_the_same_queries(store_copy: Path) -> None:
    with clipsearch.open(store_copy, create=False) as store:
        assert len(store.search(["w"] * MAX_TERMS, k=1)) == 1
        cases = [(dict(text=["w"] * (MAX_TERMS + 1)), "text"), (dict(text="x", minus=["w"] * MAX_TERMS), "minus"),
                 (dict(text="w" * (MAX_TERM_CHARS + 1)), "text"), (dict(text="x", minus=["w" * 2000]), "minus"),
                 (dict(text=["w" * 900] * 5), "text"), (dict(text="x", like=range(1, MAX_TERMS + 1)), "like"),
                 (dict(text="x", ext=["jpg"] * (MAX_FILTERS + 1)), "ext")]
        for kwargs, param in cases:
            with pytest.raises(ClipsearchError) as info:
                store.search(k=1, **kwargs)
            assert info.value.param == param and "at most" in info.value.message, kwargs
    with pytest.raises(ClipsearchError) as info:
        split_terms("+w " * (MAX_QUERY_CHARS // 3 + 1))
    assert info.value.param == "text"


# --- uploads: a pixel budget counted from the headers, one decode at a time, memory given back ---------------
def _upload(client: TestClient, *images: bytes) -> object:
    return client.post("/api/search", files=[("image", (f"{i}.img", data, "application/octet-stream"))
                                             for i, data in enumerate(images)], data={"k": "3"})


@pytest.mark.parametrize("width, height", [(11000, 12000), (1_000_000, 100)])
def test_big_pngs_are_refused_from_the_header(client: TestClient, width: int, height: int) -> None:
    data = solid_png(width, height)
    assert len(data) < 500_000 and probe(data).pixels == width * height > MAX_UPLOAD_PIXELS
    r, peak, after = memory_of(lambda: _upload(client, data))
    assert r.status_code == 413, r.text
    body = r.json()
    assert body["error"] == (f"the image is {width}×{height}; the server decodes at most "
                             f"{MAX_UPLOAD_PIXELS / 1e6:g} megapixels per request") and body["hint"]
    assert peak < 300 and after < 100, (peak, after)  # decoding it would take 1-3 GB
    print(f"{width}x{height} PNG ({len(data)} bytes): 413, peak {peak:+.0f} MB, after {after:+.0f} MB")


def test_the_budget_is_per_request(client: TestClient) -> None:
    side = 4600  # 21 megapixels each: one passes, two together do not
    assert 2 * side * side > MAX_UPLOAD_PIXELS > side * side
    data = solid_png(side, side)
    r = _upload(client, data, data)
    assert r.status_code == 413 and "2 images decode to" in r.json()["error"]


def test_an_image_within_the_budget_is_decoded_and_its_memory_given_back(client: TestClient) -> None:
    data = solid_png(6000, 6000)  # 36 megapixels: ~100 MB decoded
    r, peak, after = memory_of(lambda: _upload(client, data))
    assert r.status_code == 200 and len(r.json()["results"]) == 3, r.text
    assert peak < 600 and after < 60, (peak, after)
    print(f"6000x6000 PNG: 200, peak {peak:+.0f} MB, after {after:+.0f} MB")


def test_a_big_jpeg_is_decoded_at_reduced_size(client: TestClient) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8000, 6000), (30, 30, 200)).save(buf, "JPEG", quality=80)
    data = buf.getvalue()
    facts = probe(data, 224)
    assert (facts.width, facts.height) == (8000, 6000) and (facts.decoded_width, facts.decoded_height) == (1000, 750)
    r, peak, after = memory_of(lambda: _upload(client, data))
    assert r.status_code == 200 and len(r.json()["results"]) == 3, r.text
    assert peak < 100 and after < 60, (peak, after)  # a full decode alone would be 144 MB
    print(f"8000x6000 JPEG: 200, peak {peak:+.0f} MB, after {after:+.0f} MB")
    progressive = io.BytesIO()
    Image.new("RGB", (8000, 6000), (30, 30, 200)).save(progressive, "JPEG", quality=80, progressive=True)
    refused = _upload(client, progressive.getvalue())  # libjpeg holds every coefficient: 48 megapixels' worth
    assert refused.status_code == 413 and "progressive" in refused.json()["error"]


def test_uploads_decode_one_at_a_time(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    import clipsearch.media.images as images  # the engine imports decode from it when an upload arrives

    active, most = [0], [0]
    guard = threading.Lock()
    real = images.decode

    def counting(*args, **kwargs):
        with guard:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            time.sleep(0.05)  # widen the window two decodes would overlap in
            return real(*args, **kwargs)
        finally:
            with guard:
                active[0] -= 1

    monkeypatch.setattr(images, "decode", counting)
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(_upload(client, _small_png()).status_code))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 4 and most[0] == 1


def test_head_and_options_are_answered(client: TestClient, first_id: int) -> None:
    """HEAD is the GET it asks about, without a body; OPTIONS says what is allowed (and sends no CORS header)."""
    get = client.get(f"/api/images/{first_id}/thumbnail")
    head = client.head(f"/api/images/{first_id}/thumbnail")
    assert head.status_code == 200 and head.content == b"" and get.content
    assert head.headers["etag"] == get.headers["etag"] and head.headers["content-type"] == "image/webp"
    assert client.head("/api/info").status_code == 200
    options = client.options("/api/search")
    assert options.status_code == 200 and options.headers["allow"] == "GET, HEAD, POST"
    assert "access-control-allow-origin" not in options.headers
    assert client.head("/api/images/999999/thumbnail").status_code == 404

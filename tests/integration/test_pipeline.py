"""The indexing pipeline and the query engine stage by stage, with fakes: no model, no torch, seconds.

`diff`, `detect_moves` and `decode_stream` are checked on hand-made inputs; `run_index` end to end with a
fake encoder (vectors derived from each image's mean colour) over a real `Catalog` and either the real
FAISS `VectorStore` or a dict-backed fake that shows the pipeline does not need FAISS; `QueryEngine.search`
with a fake text encoder over what those runs built.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsearch.catalog.catalog import Catalog
from clipsearch.catalog.records import Known
from clipsearch.indexing.pipeline import Workbench, decode_stream, detect_moves, diff, run_index
from clipsearch.indexing.scan import FileFacts, ScanResult, canonical, scan
from clipsearch.indexing.writer import IndexOptions, RunSummary
from clipsearch.media.images import DecodeError, file_digest
from clipsearch.query.engine import Query, QueryEngine
from clipsearch.vectors.store import VectorStore, load_index

DIM = 8
COLOURS = {
    "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
    "cyan": (0, 255, 255), "magenta": (255, 0, 255), "orange": (255, 128, 0),
}


# --- fakes ------------------------------------------------------------------------------------------------
def colour_vector(rgb) -> np.ndarray:
    """An L2-normalised 8-d vector of a colour: (r, g, b, 1-r, 1-g, 1-b, .5, .5) in [0, 1]."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    v = np.concatenate([c, 1.0 - c, [0.5, 0.5]])
    return (v / np.linalg.norm(v)).astype(np.float32)


class FakeEncoder:
    """An ImageEncoder: each item's vector comes from its mean colour (deterministic, per item)."""

    image_size = 32
    resize_mode = "shortest"
    embed_dim = DIM
    default_batch_size = 4

    def __init__(self, fail_on_call: int | None = None, error: type[BaseException] = RuntimeError) -> None:
        self.fail_on_call = fail_on_call
        self.error = error
        self.calls = 0
        self.images = 0

    def encode_images(self, batch_uint8: np.ndarray) -> np.ndarray:
        assert batch_uint8.dtype == np.uint8 and batch_uint8.shape[1:] == (32, 32, 3)
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise self.error("injected encoder failure")
        self.images += len(batch_uint8)
        return np.stack([colour_vector(item.reshape(-1, 3).mean(axis=0)) for item in batch_uint8])


class FakeTextEncoder:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.texts.extend(texts)
        return np.stack([colour_vector(COLOURS[t]) for t in texts])


class DictVectorStore:
    """The vector store interface run_index and QueryEngine use, over a dict and NumPy: no FAISS.

    `apply` insists on being handed every committed change in order, as the real store assumes when mirroring.
    """

    def __init__(self, catalog: Catalog, dim: int) -> None:
        self.catalog = catalog
        self.dim = dim
        self.vecs: dict[int, np.ndarray] = {}
        self.version = -1
        self.saved_version: int | None = None
        self.saved_ids: set[int] = set()

    def current(self) -> DictVectorStore:
        version, ids, mat = self.catalog.all_embeddings(self.dim)
        if version != self.version:
            self.vecs, self.version = dict(zip(ids.tolist(), mat, strict=False)), version
        return self

    def apply(self, removed: list[int], added: list[int], vecs: list[np.ndarray], version: int) -> None:
        assert version == self.version + 1, "a committed change was not mirrored"
        for i in removed:
            self.vecs.pop(i, None)
        for i, v in zip(added, vecs, strict=False):
            self.vecs[i] = np.asarray(v, dtype=np.float16).astype(np.float32)
        self.version = version

    def retype_if_needed(self) -> None:
        pass

    def save(self) -> None:
        self.saved_version, self.saved_ids = self.version, set(self.vecs)

    def sync_file(self) -> None:
        self.current()
        self.save()

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        self.current()
        ids = [i for i in self.vecs if allowed is None or i in set(allowed.tolist())]
        scores = np.array([float(self.vecs[i] @ query) for i in ids], dtype=np.float32)
        order = np.argsort(-scores, kind="stable")[:k]
        return scores[order][None], np.asarray(ids, dtype=np.int64)[order][None]


# --- helpers ----------------------------------------------------------------------------------------------
def png(path: Path, colour: str, size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, COLOURS[colour]).save(path)
    return path


def facts(path: Path) -> FileFacts:
    st = os.stat(path)
    return FileFacts(str(path), st.st_size, st.st_mtime_ns)


def known(id_: int, path: Path, ok: bool = True, has_vector: bool = True, digest: str | None = "") -> Known:
    st = os.stat(path)
    return Known(id_, st.st_size, st.st_mtime_ns, ok, file_digest(str(path)) if digest == "" else digest, has_vector)


class Pipeline:
    """A catalog and a vector store in a store folder, and a way to index folders into them."""

    def __init__(self, folder: Path, kind: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.kind = kind
        self.catalog = Catalog(folder / "catalog.sqlite")
        self.vectors = self.new_vectors()
        self.loads = 0  # times run_index asked for the model

    def new_vectors(self):
        """A fresh vector store object, as a new process would make."""
        return (VectorStore(self.folder, self.catalog, DIM) if self.kind == "faiss"
                else DictVectorStore(self.catalog, DIM))

    def index(self, targets, encoder: FakeEncoder, options: IndexOptions | None = None,
              other_roots=()) -> RunSummary:
        def load_encoder() -> FakeEncoder:
            self.loads += 1
            return encoder

        bench = Workbench(encoder=load_encoder, vectors=lambda: self.vectors)
        roots, scanned = scan(targets)
        return run_index(self.catalog, bench, roots, scanned, options or IndexOptions(workers=2), None,
                         other_roots=other_roots)

    def ids(self) -> dict[str, int]:
        return {path: k.id for path, k in self.catalog.known_rows(["/"], []).items()}

    def assert_consistent(self) -> set[int]:
        """Every catalogued image has an embedding, and what was saved mirrors exactly those embeddings."""
        counts = self.catalog.counts()
        assert counts["images"] == counts["vectors"]
        version, ids, _ = self.catalog.all_embeddings(DIM)
        if self.kind == "faiss":
            loaded = load_index(self.vectors.path, DIM)  # what a reader of the store finds on disk
            assert loaded is not None and loaded[1] == version
            vi = loaded[0]
            _s, found = vi.search(np.ones((1, DIM), np.float32), max(vi.ntotal, 1))
            saved = {int(i) for i in found[0] if i >= 0}
        else:
            assert self.vectors.saved_version == version
            saved = self.vectors.saved_ids
        assert saved == set(ids.tolist())
        return saved

    def close(self) -> None:
        self.catalog.close()


@pytest.fixture(params=["faiss", "fake"])
def pipe(request, tmp_path: Path):
    p = Pipeline(tmp_path / "store", request.param)
    yield p
    p.close()


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for i, name in enumerate(("red", "green", "blue", "yellow", "cyan")):
        png(root / f"{name}.png", name, size=(40 + i, 30))
    return root


# --- diff ---------------------------------------------------------------------------------------------------
def test_diff_sorts_files_and_rows(tmp_path: Path) -> None:
    same = png(tmp_path / "same.png", "red")
    grown = png(tmp_path / "grown.png", "green")
    touched = png(tmp_path / "touched.png", "blue")
    lost_vector = png(tmp_path / "lost_vector.png", "cyan")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    fresh = png(tmp_path / "fresh.png", "yellow")
    sniffed = tmp_path / "no_extension"
    shutil.copyfile(fresh, sniffed)  # PNG bytes without an image extension: found by its magic
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    gone = png(tmp_path / "gone.png", "magenta")
    locked_row = png(tmp_path / "locked" / "kept.png", "orange")
    near_miss = png(tmp_path / "locked2" / "gone_too.png", "orange")  # "locked" is a prefix, not a parent

    rows = {str(same): known(1, same), str(grown): known(2, grown),
            str(lost_vector): known(4, lost_vector, has_vector=False),
            str(broken): known(5, broken, ok=False, digest=None), str(gone): known(6, gone),
            str(locked_row): known(7, locked_row), str(near_miss): known(8, near_miss)}
    rows[str(touched)] = Known(3, touched.stat().st_size, 12345, True, file_digest(str(touched)), True)
    with open(grown, "ab") as f:
        f.write(b"\0" * 10)
    gone.unlink()
    near_miss.unlink()

    scanned = ScanResult(files=[facts(p) for p in (same, grown, touched, lost_vector, broken, fresh, sniffed, text)],
                         unreadable=[str(tmp_path / "locked")])
    summary = RunSummary()
    d = diff(scanned, rows, summary)

    assert sorted(Path(f.path).name for f, _k in d.todo) == ["grown.png", "lost_vector.png", "touched.png"]
    assert all(k is rows[f.path] for f, k in d.todo)  # a changed file carries its row, to be updated in place
    assert sorted(Path(f.path).name for f in d.new) == ["fresh.png", "no_extension"]
    assert sorted(k.id for k in d.missing) == [6, 8]  # the row under the unreadable folder is kept
    assert summary.unchanged == 2  # same.png, and broken.jpg: a failure is retried only once its file changes
    assert summary.not_images == 1 and summary.verified == 0


def test_diff_verify_catches_a_changed_digest_behind_the_same_stat(tmp_path: Path) -> None:
    kept = png(tmp_path / "kept.png", "red")
    swapped = png(tmp_path / "swapped.png", "green")
    rows = {str(kept): known(1, kept), str(swapped): known(2, swapped)}
    st = swapped.stat()
    png(swapped, "blue")  # same size (solid colour, same dimensions), other content ...
    os.utime(swapped, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... behind the old mtime
    assert swapped.stat().st_size == st.st_size
    scanned = ScanResult(files=[facts(kept), facts(swapped)])

    plain = RunSummary()
    assert diff(scanned, rows, plain).todo == [] and plain.unchanged == 2  # stat alone cannot tell

    checked = RunSummary()
    d = diff(scanned, rows, checked, verify=True)
    assert [(f.path, k.id) for f, k in d.todo] == [(str(swapped), 2)]
    assert (checked.verified, checked.unchanged) == (2, 1)


# --- detect_moves -------------------------------------------------------------------------------------------
def test_detect_moves_matches_size_then_digest(tmp_path: Path) -> None:
    original = tmp_path / "old" / "a.png"
    original.parent.mkdir()
    original.write_bytes(b"A" * 100)
    row = known(1, original)
    not_a_candidate = known(2, original, has_vector=False)  # no embedding to keep: never a move source
    original.unlink()
    renamed = tmp_path / "new" / "renamed.png"
    renamed.parent.mkdir()
    renamed.write_bytes(b"A" * 100)
    same_size = tmp_path / "new" / "other.png"
    same_size.write_bytes(b"B" * 100)
    second_copy = tmp_path / "new" / "copy.png"
    second_copy.write_bytes(b"A" * 100)

    moves, still_new = detect_moves([facts(same_size), facts(renamed), facts(second_copy)], [row, not_a_candidate])
    assert [(f.path, k.id) for f, k in moves] == [(str(renamed), 1)]  # one row moves once
    assert [f.path for f in still_new] == [str(same_size), str(second_copy)]

    assert detect_moves([facts(same_size)], [row]) == ([], [facts(same_size)])


# --- decode_stream ------------------------------------------------------------------------------------------
def test_decode_stream_keeps_order_bounds_prefetch_and_isolates_errors() -> None:
    items = [(FileFacts(f"/x/{i}.png", i, i), None) for i in range(20)]
    started = Counter()
    lock = threading.Lock()

    def decode(path: str):
        with lock:
            started["n"] += 1
        if path == "/x/7.png":
            raise DecodeError("cannot decode: bad")
        return path, None

    seen = []
    for i, (f, _k, fut) in enumerate(decode_stream(items, decode, workers=3, prefetch=4)):
        assert started["n"] <= i + 4  # never more than `prefetch` ahead of the consumer
        if f.path == "/x/7.png":
            with pytest.raises(DecodeError):
                fut.result()
        else:
            assert fut.result() == (f.path, None)
        seen.append(f.path)
    assert seen == [f.path for f, _k in items]


# --- run_index ----------------------------------------------------------------------------------------------
def test_first_run_adds_and_second_run_encodes_nothing(pipe: Pipeline, photos: Path) -> None:
    (photos / "notes.txt").write_text("not an image")
    enc = FakeEncoder()
    first = pipe.index([photos], enc)
    assert (first.added, first.encoded, first.failed, first.not_images) == (5, 5, 0, 1)
    assert enc.images == 5 and pipe.catalog.last_run()["status"] == "done"
    ids = pipe.assert_consistent()
    assert len(ids) == 5

    loads = pipe.loads
    second = pipe.index([photos], enc)
    assert (second.unchanged, second.added, second.updated, second.encoded) == (5, 0, 0, 0)
    assert enc.images == 5 and pipe.loads == loads  # the model is not even loaded when there is no work
    assert pipe.assert_consistent() == ids
    assert pipe.catalog.last_run()["status"] == "done"


def test_changed_moved_and_deleted_files(pipe: Pipeline, photos: Path) -> None:
    enc = FakeEncoder()
    pipe.index([photos], enc)
    before = pipe.ids()
    root = canonical(photos)

    (photos / "sub").mkdir()
    os.rename(photos / "red.png", photos / "sub" / "crimson.png")
    (photos / "green.png").unlink()
    summary = pipe.index([photos], enc)
    assert (summary.moved, summary.removed, summary.added, summary.encoded) == (1, 1, 0, 0)
    assert enc.images == 5  # the move kept its embedding: nothing encoded
    after = pipe.ids()
    assert after[f"{root}/sub/crimson.png"] == before[f"{root}/red.png"]
    assert f"{root}/red.png" not in after and f"{root}/green.png" not in after
    assert pipe.assert_consistent() == set(after.values()) and len(after) == 4

    png(photos / "blue.png", "magenta", size=(60, 60))  # new content under an old name
    summary = pipe.index([photos], enc)
    assert (summary.updated, summary.added, summary.encoded, enc.images) == (1, 0, 1, 6)
    assert pipe.ids()[f"{root}/blue.png"] == before[f"{root}/blue.png"]  # updated in place
    pipe.assert_consistent()


def test_broken_image_is_recorded_as_a_failure(pipe: Pipeline, photos: Path) -> None:
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff but then nothing a decoder could use")
    enc = FakeEncoder()
    summary = pipe.index([photos], enc)
    broken = f"{canonical(photos)}/broken.jpg"
    assert (summary.added, summary.failed) == (5, 1)
    assert [p for p, _e in summary.failures] == [broken]
    assert [f["path"] for f in pipe.catalog.failures()] == [broken]
    assert pipe.catalog.counts() == {"images": 5, "failed": 1, "vectors": 5, "videos": 0, "frames": 0}
    pipe.assert_consistent()

    again = pipe.index([photos], enc)
    assert (again.unchanged, again.failed, again.encoded) == (6, 0, 0)  # not retried until the file changes


@pytest.mark.parametrize("error, status", [(RuntimeError, "failed"), (KeyboardInterrupt, "interrupted")])
def test_encoder_failure_mid_run_leaves_a_consistent_store_that_resumes(pipe: Pipeline, tmp_path: Path,
                                                                        error, status) -> None:
    root = tmp_path / "many"
    for i, name in enumerate(sorted(COLOURS)):
        png(root / f"{i}_{name}.png", name, size=(40 + i, 30))
    total = len(COLOURS)
    options = IndexOptions(batch_size=2, commit_every=2, workers=2)

    broken = FakeEncoder(fail_on_call=3, error=error)  # two batches of 2 encoded and committed, then it fails
    with pytest.raises(error, match="injected"):
        pipe.index([root], broken, options)
    assert pipe.catalog.last_run()["status"] == status
    committed = pipe.assert_consistent()
    assert len(committed) == broken.images == 4

    pipe.vectors = pipe.new_vectors()  # as a new process: nothing carried over in memory
    enc = FakeEncoder()
    summary = pipe.index([root], enc, options)
    assert (summary.unchanged, summary.added) == (4, total - 4)
    assert enc.images == total - 4  # nothing committed is encoded again
    assert pipe.catalog.last_run()["status"] == "done"
    assert committed < pipe.assert_consistent() and pipe.catalog.counts()["images"] == total


def test_vanished_other_root_is_recorded(pipe: Pipeline, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    png(a / "red.png", "red")
    png(b / "blue.png", "blue")
    pipe.index([a, b], FakeEncoder())
    shutil.rmtree(b)
    summary = pipe.index([a], FakeEncoder(), other_roots=[canonical(a), canonical(b)])
    assert summary.vanished_roots == [canonical(b)] and summary.removed == 0  # hidden, not deleted
    roots = {r["path"]: r["missing_since"] for r in pipe.catalog.roots()}
    assert roots[canonical(a)] is None and roots[canonical(b)] is not None
    assert pipe.catalog.counts()["images"] == 2


# --- QueryEngine --------------------------------------------------------------------------------------------
@pytest.fixture()
def searchable(pipe: Pipeline, tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    for name in ("red", "green", "blue"):
        png(a / f"{name}.png", name)
    for name in ("yellow", "cyan"):
        png(a / "sub" / f"{name}.png", name)
    for name in ("magenta", "orange"):
        png(b / f"{name}.png", name)
    (a / "empty").mkdir()
    pipe.index([a, b], FakeEncoder())  # run_index records both roots through catalog.finish_run
    text = FakeTextEncoder()
    engine = QueryEngine(pipe.catalog, pipe.vectors, lambda: text, lambda: FakeEncoder())
    return engine, a, b


def names(hits) -> list[str]:
    return [Path(h.path).name for h in hits]


def test_search_ranks_by_score(searchable) -> None:
    engine, a, b = searchable
    hits = engine.search(Query.parse(["red"], [], k=10))
    assert len(hits) == 7 and hits.notes == []
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    q = colour_vector(COLOURS["red"])
    expected = {f"{c}.png": float(colour_vector(rgb) @ q) for c, rgb in COLOURS.items()}  # some colours tie
    assert sorted(names(hits)) == sorted(expected)
    assert all(h.score == pytest.approx(expected[Path(h.path).name], abs=2e-3) for h in hits)
    assert hits[0].score == pytest.approx(1.0, abs=2e-3) and names(hits)[0] == "red.png"
    assert [h.rank for h in hits] == list(range(1, 8))
    assert names(engine.search(Query.parse(["red"], [], k=2))) == ["red.png", "orange.png"]


def test_search_under_restricts_and_notes_an_empty_folder(searchable) -> None:
    engine, a, b = searchable
    hits = engine.search(Query.parse(["red"], [], k=10, under=[str(a / "sub")]))
    assert names(hits) == ["yellow.png", "cyan.png"]
    assert all(h.path.startswith(canonical(a / "sub") + "/") for h in hits)

    empty = engine.search(Query.parse(["red"], [], k=10, under=[str(a / "empty")]))
    assert list(empty) == [] and empty.notes == [f"no indexed images under {canonical(a / 'empty')}"]


def test_images_under_a_vanished_root_are_hidden(searchable, pipe: Pipeline) -> None:
    engine, a, b = searchable
    assert names(engine.search(Query.parse(["magenta"], [], k=1))) == ["magenta.png"]
    shutil.rmtree(b)
    hits = engine.search(Query.parse(["magenta"], [], k=10))
    assert len(hits) == 5 and all(h.path.startswith(canonical(a) + "/") for h in hits)
    assert canonical(b) in [r["path"] for r in pipe.catalog.roots()]  # still known, only hidden
    assert pipe.catalog.counts()["images"] == 7

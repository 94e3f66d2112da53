"""The pipeline's pure stages with fakes: diff against the catalog's rows, move detection by digest, and the
single writer's chunking (a fake catalog and vector store stand in for SQL and FAISS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clipsearch.catalog.records import ChunkResult, Known
from clipsearch.errors import ClipsearchError
from clipsearch.indexing.pipeline import detect_moves, diff
from clipsearch.indexing.scan import FileFacts, ScanResult
from clipsearch.indexing.writer import ChunkWriter, IndexOptions, RunSummary
from clipsearch.media.images import file_digest


def _png(path: Path, colour: int) -> FileFacts:
    from PIL import Image

    Image.new("RGB", (8, 8), (colour, 0, 0)).save(path)
    st = path.stat()
    return FileFacts(str(path), st.st_size, st.st_mtime_ns)


def test_diff_sorts_unchanged_changed_new_and_missing(tmp_path: Path) -> None:
    same, changed, new = (_png(tmp_path / f"{n}.png", i * 40) for i, n in enumerate(("same", "changed", "new")))
    known = {same.path: Known(1, same.size, same.mtime_ns, True, "d1", True),
             changed.path: Known(2, changed.size, changed.mtime_ns - 1, True, "d2", True),
             str(tmp_path / "gone.png"): Known(3, 10, 10, True, "d3", True),
             str(tmp_path / "locked" / "kept.png"): Known(4, 10, 10, True, "d4", True)}
    scanned = ScanResult(files=[same, changed, new], unreadable=[str(tmp_path / "locked")])
    summary = RunSummary()
    d = diff(scanned, known, summary)
    assert summary.unchanged == 1
    assert [f.path for f, _k in d.todo] == [changed.path]
    assert [f.path for f in d.new] == [new.path]
    assert [k.id for k in d.missing] == [3]  # the unreadable folder's row is kept, not missing


def test_verify_rehashes_files_whose_stat_is_unchanged(tmp_path: Path) -> None:
    f = _png(tmp_path / "a.png", 10)
    known = {f.path: Known(1, f.size, f.mtime_ns, True, "not-its-digest", True)}
    summary = RunSummary()
    d = diff(ScanResult(files=[f]), known, summary, verify=True)
    assert summary.verified == 1 and [x.path for x, _k in d.todo] == [f.path]
    known = {f.path: Known(1, f.size, f.mtime_ns, True, file_digest(f.path), True)}
    assert not diff(ScanResult(files=[f]), known, RunSummary(), verify=True).todo


def test_a_moved_file_is_matched_by_size_and_digest(tmp_path: Path) -> None:
    moved = _png(tmp_path / "moved.png", 50)
    other = _png(tmp_path / "other.png", 90)
    gone = Known(7, moved.size, 1, True, file_digest(moved.path), True)
    decoy = Known(8, moved.size, 1, True, "another digest", True)
    moves, still_new = detect_moves([moved, other], [decoy, gone])
    assert [(f.path, k.id) for f, k in moves] == [(moved.path, 7)]
    assert [f.path for f in still_new] == [other.path]


class FakeCatalog:
    def __init__(self) -> None:
        self.chunks: list[tuple[int, int, int]] = []
        self.next_id = 1

    def commit_chunk(self, encoded: list, failed: list, touched: list, videos: list, hashed: list = (),
                     metas: list = ()) -> ChunkResult:
        ids = list(range(self.next_id, self.next_id + len(encoded)))
        self.next_id += len(encoded)
        self.chunks.append((len(encoded), len(failed), len(touched)))
        return ChunkResult(added=len(encoded), updated=0, removed_ids=[], vector_ids=ids, version=len(self.chunks))


class FakeVectors:
    dim = 4

    def __init__(self) -> None:
        self.applied: list[tuple[list[int], int]] = []

    def apply(self, removed: Any, ids: list[int], vecs: list[np.ndarray], version: int) -> None:
        assert len(ids) == len(vecs)
        self.applied.append((ids, version))


def test_the_writer_commits_in_chunks_and_mirrors_each_into_the_vectors() -> None:
    catalog, vectors, summary = FakeCatalog(), FakeVectors(), RunSummary()
    writer = ChunkWriter(catalog, vectors, summary, IndexOptions(commit_every=3), None)
    for i in range(7):
        writer.encoded(FileFacts(f"/p/{i}.png", 1, 1), None, f"d{i}", 8, 8, "PNG", np.ones(4, np.float32))
    writer.failed(FileFacts("/p/bad.png", 1, 1), None, "cannot decode")
    writer.commit()
    assert catalog.chunks == [(3, 0, 0), (3, 0, 0), (1, 1, 0)]
    assert [ids for ids, _v in vectors.applied] == [[1, 2, 3], [4, 5, 6], [7]]
    assert (summary.added, summary.failed, summary.encoded) == (7, 1, 7)
    assert summary.failures == [("/p/bad.png", "cannot decode")]


def test_the_writer_refuses_embeddings_of_another_size() -> None:
    writer = ChunkWriter(FakeCatalog(), FakeVectors(), RunSummary(), IndexOptions(), None)
    with pytest.raises(ClipsearchError, match="8-d embeddings but the store holds 4-d"):
        writer.encoded(FileFacts("/p/a.png", 1, 1), None, "d", 8, 8, "PNG", np.ones(8, np.float32))


def test_unchanged_rows_without_hashes_are_listed_for_the_hash_pass(tmp_path: Path) -> None:
    hashed, old = _png(tmp_path / "hashed.png", 10), _png(tmp_path / "old.png", 20)
    known = {hashed.path: Known(1, hashed.size, hashed.mtime_ns, True, "d1", True),
             old.path: Known(2, old.size, old.mtime_ns, True, "d2", True, has_hash=False)}
    d = diff(ScanResult(files=[hashed, old]), known, RunSummary())
    assert [(f.path, k.id) for f, k in d.unhashed] == [(old.path, 2)] and not d.todo


def test_the_hash_pass_fills_hashes_without_encoding(tmp_path: Path) -> None:
    from clipsearch.indexing.pipeline import hash_unhashed
    from clipsearch.media.phash import picture_hashes

    files = [_png(tmp_path / f"{i}.png", 30 * i) for i in range(3)]
    rows = [Known(10 + i, f.size, f.mtime_ns, True, file_digest(f.path), True, has_hash=False)
            for i, f in enumerate(files)]
    rows[2] = Known(12, files[2].size, files[2].mtime_ns, True, "changed since", True, has_hash=False)

    class Hashes:
        def __init__(self) -> None:
            self.calls: list[list[tuple[int, bytes]]] = []

        def set_hashes(self, hashed: list[tuple[int, bytes]]) -> None:
            self.calls.append(list(hashed))

    catalog: Any = Hashes()
    summary = RunSummary()
    hash_unhashed(catalog, list(zip(files, rows, strict=True)), summary, IndexOptions(commit_every=1, workers=2))
    from PIL import Image

    done = [pair for call in catalog.calls for pair in call]
    assert [i for i, _h in done] == [10, 11]  # the file whose bytes changed is left for a verify run
    assert done[0][1] == picture_hashes(Image.open(files[0].path).convert("RGB"))
    assert summary.hashed == 2 and summary.encoded == 0

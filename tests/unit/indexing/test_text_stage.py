"""The text stage with a fake reader over a real SQLite catalog: what it commits, what it refuses, its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsearch.catalog.catalog import Catalog
from clipsearch.catalog.records import Encoded, TextLine, TextTask
from clipsearch.errors import ClipsearchError
from clipsearch.indexing.text_stage import TextStage
from clipsearch.indexing.writer import RunSummary
from clipsearch.media.images import file_digest


class FakeReader:
    """'Reads' the image's width as its text; raises `fail` when given."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail, self.calls = fail, 0

    def read(self, image: Image.Image) -> tuple[TextLine, ...]:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return (TextLine(f"W{image.width}", (0.0, 0.0, 1.0, 0.5)),) if image.width > 20 else ()


def _catalog(tmp_path: Path, widths: list[int]) -> tuple[Catalog, list[TextTask]]:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    encoded = []
    for i, width in enumerate(widths):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (width, 16), (i * 40, 0, 0)).save(path)
        encoded.append(Encoded(str(path), path.stat().st_size, path.stat().st_mtime_ns, file_digest(str(path)),
                               width, 16, "PNG", np.zeros(4, dtype=np.float32), None))
    catalog.commit_chunk(encoded, [], [])
    return catalog, catalog.lacking_text([str(tmp_path)], [])


def test_stage_commits_what_it_read_and_skips_files_changed_meanwhile(tmp_path: Path) -> None:
    catalog, tasks = _catalog(tmp_path, [40, 10, 60])
    Image.new("RGB", (99, 16)).save(tasks[2].path)  # changed after it was committed: not its indexed content
    summary = RunSummary()
    reader = FakeReader()
    stage = TextStage(catalog, lambda: reader, summary)
    stage.put(tasks)
    stage.finish()
    assert (summary.text_read, summary.text_found, reader.calls) == (2, 1, 2)
    assert catalog.texts([t.id for t in tasks]) == {tasks[0].id: (TextLine("W40", (0.0, 0.0, 1.0, 0.5)),),
                                                    tasks[1].id: ()}
    assert [t.id for t in catalog.lacking_text([str(tmp_path)], [])] == [tasks[2].id]  # the next run reads it
    catalog.close()


def test_a_missing_ocr_extra_fails_the_run_and_one_bad_image_is_a_problem(tmp_path: Path) -> None:
    catalog, tasks = _catalog(tmp_path, [40, 50])
    missing = FakeReader(fail=ClipsearchError("reading text needs RapidOCR", "pip install 'clipsearch[ocr]'"))
    stage = TextStage(catalog, lambda: missing, RunSummary())
    stage.put(tasks)
    with pytest.raises(ClipsearchError, match="needs RapidOCR"):
        stage.finish()
    stage.stop()  # after finish: nothing left to stop
    assert catalog.texts([t.id for t in tasks]) == {} and missing.calls == 1

    summary = RunSummary()
    stage = TextStage(catalog, lambda: FakeReader(fail=ValueError("bad shape\nmore")), summary)
    stage.put(tasks)
    stage.finish()
    assert summary.text_read == 2 and catalog.texts([t.id for t in tasks]) == {t.id: () for t in tasks}
    assert summary.problems == [(t.path, "could not read its text: bad shape") for t in tasks]
    catalog.close()


def test_a_reembedded_catalog_adopts_the_text_of_unchanged_files(tmp_path: Path) -> None:
    """What `Store.reembed` does with the text: the new catalog takes it over where path and content match."""
    (tmp_path / "old").mkdir()
    old, tasks = _catalog(tmp_path / "old", [40, 50])
    stage = TextStage(old, FakeReader, RunSummary())
    stage.put(tasks)
    stage.finish()
    rows = old.texts_by_file()
    old.close()
    Image.new("RGB", (77, 16)).save(tasks[1].path)  # changed since: its text is not taken over
    new = Catalog(tmp_path / "new.sqlite")
    p0, p1 = Path(tasks[0].path), Path(tasks[1].path)
    new.commit_chunk([Encoded(str(p), p.stat().st_size, p.stat().st_mtime_ns, file_digest(str(p)), 9, 9, "PNG",
                              np.zeros(4, dtype=np.float32), None) for p in (p0, p1)], [], [])
    assert new.adopt_texts(rows) == 1 and new.reads_text()
    assert new.texts([1]) == {1: (TextLine("W40", (0.0, 0.0, 1.0, 0.5)),)}
    assert [t.path for t in new.lacking_text([], [str(p0), str(p1)])] == [str(p1)]
    new.close()

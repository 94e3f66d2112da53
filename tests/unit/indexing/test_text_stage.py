"""The text stage with a fake reader over a real SQLite catalog: what it commits, what it refuses, its errors."""

from __future__ import annotations

from dataclasses import replace
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


def test_a_reencoded_row_keeps_its_text_while_its_content_is_the_same(tmp_path: Path) -> None:
    """A re-embed re-encodes every row in place over the same content: the text read stays (it does not depend on
    the model). A changed file's row loses its text, to be read again from the new content."""
    catalog, tasks = _catalog(tmp_path, [40, 50])
    stage = TextStage(catalog, FakeReader, RunSummary())
    stage.put(tasks)
    stage.finish()
    known = catalog.known_rows([str(tmp_path)], [])
    Image.new("RGB", (77, 16)).save(tasks[1].path)  # changed since
    again = [Encoded(t.path, Path(t.path).stat().st_size, Path(t.path).stat().st_mtime_ns, file_digest(t.path), 9, 9,
                     "PNG", np.ones(4, dtype=np.float32), known[t.path]) for t in tasks]
    catalog.commit_chunk(again, [], [])
    assert catalog.texts([t.id for t in tasks]) == {tasks[0].id: (TextLine("W40", (0.0, 0.0, 1.0, 0.5)),)}
    assert [t.id for t in catalog.lacking_text([str(tmp_path)], [])] == [tasks[1].id]
    catalog.close()


def test_text_read_where_it_was_encoded_is_committed_without_reading(tmp_path: Path) -> None:
    """A Ray actor reads the text of what it encodes: such rows reach the stage with their lines and are committed
    as they are (the reader never runs); a row whose content changed meanwhile gets none; the others are read."""
    catalog, tasks = _catalog(tmp_path, [40, 50, 60])
    elsewhere = (TextLine("发票 INVOICE", (0.1, 0.2, 0.9, 0.4)),)
    pre_read = [replace(tasks[0], lines=elsewhere), replace(tasks[1], lines=(), digest="0" * 32), tasks[2]]
    summary = RunSummary()
    reader = FakeReader()
    stage = TextStage(catalog, lambda: reader, summary)
    stage.put(pre_read)
    stage.finish()
    assert reader.calls == 1 and (summary.text_read, summary.text_found) == (2, 2)
    assert catalog.texts([t.id for t in tasks]) == {tasks[0].id: elsewhere,
                                                    tasks[2].id: (TextLine("W60", (0.0, 0.0, 1.0, 0.5)),)}
    catalog.close()

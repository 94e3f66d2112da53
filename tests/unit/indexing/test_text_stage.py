"""The text stage with a fake reader over a real SQLite catalog: what it commits, what it refuses, its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsearch.catalog.catalog import Catalog
from clipsearch.catalog.records import Encoded, TextLine, TextTask
from clipsearch.indexing.text_stage import TextStage
from clipsearch.indexing.writer import RunSummary
from clipsearch.media.images import file_digest


class FakeReader:
    """'Reads' the image's width as its text; fails on request."""

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.calls = fail, 0

    def read(self, image: Image.Image) -> tuple[TextLine, ...]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("the model broke")
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


def test_stage_error_reaches_the_run_and_stop_is_safe(tmp_path: Path) -> None:
    catalog, tasks = _catalog(tmp_path, [40])
    stage = TextStage(catalog, lambda: FakeReader(fail=True), RunSummary())
    stage.put(tasks)
    with pytest.raises(RuntimeError, match="the model broke"):
        stage.finish()
    stage.stop()  # after finish: nothing left to stop
    assert catalog.texts([tasks[0].id]) == {}
    catalog.close()

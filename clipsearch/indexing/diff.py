"""What a scan means against the catalog: unchanged, changed, new and missing files, by one stat each.

Apart from the pipeline so that an unchanged re-run (`unchanged.py`) can make the same decision without the
pipeline's imports (the catalog's writer, PIL, the encoders).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from clipsearch.catalog.records import Known
from clipsearch.indexing.scan import FileFacts, ScanResult, is_inside, sniff_file

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.indexing.summary import RunSummary


@dataclass
class Diff:
    """What a scan means against the catalog."""
    todo: list[tuple[FileFacts, Known | None]] = field(default_factory=list)  # changed (or unverified) files
    new: list[FileFacts] = field(default_factory=list)
    missing: list[Known] = field(default_factory=list)
    unread_meta: list[tuple[str, Known]] = field(default_factory=list)  # unchanged rows whose metadata is unread
    unhashed: list[tuple[FileFacts, Known]] = field(default_factory=list)  # unchanged, but without perceptual hashes


def diff(scanned: ScanResult, known: dict[str, Known], summary: RunSummary, verify: bool = False) -> Diff:
    """Sort scanned files into unchanged / changed / new, and catalogued files into missing.

    Unchanged means same size and mtime (one stat, no read); `verify` also re-hashes those and treats a
    changed digest as a change. Rows under a folder that could not be read are kept, never "missing".
    """
    d = Diff()
    seen: set[str] = set()
    for facts in scanned.files:
        seen.add(facts.path)
        row = known.get(facts.path)
        if row is None:
            if facts.has_media_ext or sniff_file(facts.path):
                d.new.append(facts)
            else:
                summary.not_images += 1
        elif row.size == facts.size and row.mtime_ns == facts.mtime_ns and (not row.ok or row.has_vector):
            if verify and row.ok and row.digest:
                summary.verified += 1
                from clipsearch.media.images import file_digest

                try:
                    same = file_digest(facts.path) == row.digest
                except OSError:
                    same = False
                if not same:
                    d.todo.append((facts, row))
                    continue
            summary.unchanged += 1
            if row.ok and not row.has_meta:
                d.unread_meta.append((facts.path, row))
            if row.needs_hash:
                d.unhashed.append((facts, row))
        else:
            d.todo.append((facts, row))
    d.missing = [row for path, row in known.items() if path not in seen and not is_inside(path, scanned.unreadable)]
    return d

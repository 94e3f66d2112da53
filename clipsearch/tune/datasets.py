"""Labelled sets for fine-tuning and evaluation: folder-per-class, or a CSV/JSONL of image + caption/label."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipsearch.errors import ClipsearchError
from clipsearch.indexing.scan import IMAGE_EXTENSIONS, sniff_file

IMAGE_COLUMNS = ("image", "path", "file", "filepath", "filename", "image_path")
CAPTION_COLUMNS = ("caption", "text", "description")
LABEL_COLUMNS = ("label", "class", "category")

DEFAULT_TEMPLATES = (
    "a photo of a {}.",
    "a photo of the {}.",
    "an image of a {}.",
    "a close-up photo of a {}.",
    "a good photo of a {}.",
)
# Chinese labels get Chinese prompts (the course reports this project grew from prompt "一张{}的照片"): an English
# template around a Chinese label is a sentence no Chinese model was trained on.
CHINESE_TEMPLATES = (
    "一张{}的照片。",
    "{}的照片。",
    "一张{}的图片。",
    "一张{}的特写照片。",
    "一张好看的{}的照片。",
)


def templates_for(label: str, templates: Sequence[str] = ()) -> tuple[str, ...]:
    """The prompts for one label: `templates` when given (they override), else by the label's language
    (Chinese for a label written in Han characters, English otherwise)."""
    if templates:
        return tuple(templates)
    from clipsearch.encoders.languages import scripts_of

    return CHINESE_TEMPLATES if "Han" in scripts_of(label) else DEFAULT_TEMPLATES


def read_templates(path: Path) -> list[str]:
    """A templates file: one template with {} a line; blank lines and lines starting with # are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClipsearchError(f"cannot read templates file {path}: {exc}", param="templates") from exc
    templates = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not templates:
        raise ClipsearchError(f"templates file {path} holds no template", 'write one a line, e.g. "一张{}的照片"',
                              param="templates")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ClipsearchError(f"template {bad[0]!r} in {path} has no {{}} where the label goes",
                              'e.g. "a photo of a {}." or "一张{}的照片"', param="templates")
    return templates


@dataclass(frozen=True)
class Item:
    path: str
    label: int | None = None  # index into LabelledSet.classes
    caption: str | None = None


@dataclass
class LabelledSet:
    items: list[Item]
    classes: list[str] = field(default_factory=list)  # empty for a captions set
    source: str = ""

    @property
    def has_classes(self) -> bool:
        return bool(self.classes)

    def subset(self, indices) -> LabelledSet:
        return LabelledSet([self.items[i] for i in indices], self.classes, self.source)

    def labels(self) -> list[int]:
        """Each item's class index (for a class set, whose every item has one)."""
        out = []
        for it in self.items:
            if it.label is None:
                raise ClipsearchError(f"{it.path} has no class label in a set of classes")
            out.append(it.label)
        return out


def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and (
        path.suffix.lower() in IMAGE_EXTENSIONS or sniff_file(str(path)) is not None)


def class_name(folder_name: str) -> str:
    return folder_name.replace("_", " ").strip()


def load_folder(root: Path) -> LabelledSet:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        raise ClipsearchError(f"{root} has {len(folders)} class folder(s); fine-tuning needs at least two",
                              "lay out the data as ROOT/<class name>/<images>, one folder per class")
    classes: list[str] = []
    items: list[Item] = []
    for folder in folders:
        images = sorted(p for p in folder.rglob("*") if _is_image(p))
        if not images:
            raise ClipsearchError(f"class folder {folder} has no images", "add images or remove the folder")
        classes.append(class_name(folder.name))
        items.extend(Item(str(p), len(classes) - 1) for p in images)
    return LabelledSet(items, classes, str(root))


def _rows(path: Path) -> list[dict[str, str]]:
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append({str(k).lower(): v for k, v in json.loads(line).items()})
                except (ValueError, AttributeError) as exc:
                    raise ClipsearchError(f"{path}:{n}: not a JSON object", "one JSON object per line") from exc
        return rows
    with open(path, newline="") as f:
        return [{(k or "").strip().lower(): (v or "") for k, v in row.items()} for row in csv.DictReader(f)]


def load_table(path: Path) -> LabelledSet:
    rows = _rows(path)
    if not rows:
        raise ClipsearchError(f"{path} has no rows")
    keys = set(rows[0])
    image_col = next((c for c in IMAGE_COLUMNS if c in keys), None)
    caption_col = next((c for c in CAPTION_COLUMNS if c in keys), None)
    label_col = next((c for c in LABEL_COLUMNS if c in keys), None)
    if image_col is None or (caption_col is None and label_col is None):
        raise ClipsearchError(f"{path} needs an image column ({'/'.join(IMAGE_COLUMNS)}) and a caption "
                              f"({'/'.join(CAPTION_COLUMNS)}) or label ({'/'.join(LABEL_COLUMNS)}) column",
                              f"found columns: {', '.join(sorted(keys))}")
    base = path.parent
    items: list[Item] = []
    classes: list[str] = []
    class_index: dict[str, int] = {}
    for n, row in enumerate(rows, 2 if path.suffix.lower() == ".csv" else 1):
        image = Path(os.path.expanduser(str(row.get(image_col, "")).strip()))
        image = image if image.is_absolute() else base / image
        if not image.is_file():
            raise ClipsearchError(f"{path}:{n}: image file not found: {image}",
                                  "fix the path (relative paths are resolved against the file's folder)")
        if caption_col is not None:
            items.append(Item(str(image), caption=str(row[caption_col]).strip()))
        elif label_col is not None:
            label = str(row[label_col]).strip()
            if label not in class_index:
                class_index[label] = len(classes)
                classes.append(label)
            items.append(Item(str(image), class_index[label]))
    if classes and len(classes) < 2:
        raise ClipsearchError(f"{path} has one class only ({classes[0]!r}); fine-tuning needs at least two")
    return LabelledSet(items, classes, str(path))


def load(path: str | Path) -> LabelledSet:
    path = Path(path).expanduser()
    if path.is_dir():
        return load_folder(path)
    if path.is_file() and path.suffix.lower() in (".csv", ".jsonl", ".json"):
        return load_table(path)
    raise ClipsearchError(f"no labelled set at {path}",
                          "pass a folder with one sub-folder per class, or a .csv/.jsonl file")


def class_groups(data: LabelledSet) -> dict[int | None, list[int]]:
    """Row indices per class (one group, key None, for a caption set): what stratified splits deal from."""
    groups: dict[int | None, list[int]] = {}
    for i, item in enumerate(data.items):
        groups.setdefault(item.label if data.has_classes else None, []).append(i)
    return groups


def split(data: LabelledSet, val_fraction: float, seed: int) -> tuple[LabelledSet, LabelledSet]:
    """Stratified (per class) seeded split; every class keeps at least one training image."""
    rng = np.random.default_rng(seed)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for members in class_groups(data).values():
        members = list(rng.permutation(members))
        n_val = int(round(len(members) * val_fraction))
        n_val = min(n_val, len(members) - 1)
        val_idx.extend(members[:n_val])
        train_idx.extend(members[n_val:])
    if not val_idx:
        raise ClipsearchError("too few images for a held-out split", "add images or give a separate validation set",
                              param="val")
    return data.subset(sorted(train_idx)), data.subset(sorted(val_idx))


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0 or not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 0.9:
        raise ClipsearchError(f"validation and test fractions {val_fraction} + {test_fraction} leave too little to "
                              "train on", "keep their sum below 0.9", param="val_fraction")


def split_off_test(data: LabelledSet, val_fraction: float, test_fraction: float,
                   seed: int) -> tuple[LabelledSet, LabelledSet | None, float]:
    """The test split (None when `test_fraction` is 0), the rest, and the share of the rest that makes
    `val_fraction` of the whole: (rest, test, share)."""
    check_fractions(val_fraction, test_fraction)
    if test_fraction == 0:
        return data, None, val_fraction
    rest, test = split(data, test_fraction, seed)
    return rest, test, val_fraction / (1.0 - test_fraction)


def split_three(data: LabelledSet, val_fraction: float, test_fraction: float,
                seed: int) -> tuple[LabelledSet, LabelledSet, LabelledSet | None]:
    """Stratified train / validation / test: validation picks the epoch and the blend, test only reports.
    `test_fraction` 0 gives no test split (the caller must then say its numbers are validation numbers)."""
    rest, test, share = split_off_test(data, val_fraction, test_fraction, seed)
    train, val = split(rest, share, seed)
    return train, val, test

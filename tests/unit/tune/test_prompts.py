"""Prompts in the label's language: Chinese labels get Chinese templates, given templates override, a templates
file is read one template a line; fine-tune captions and class embeddings follow the same rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipsearch.errors import ClipsearchError
from clipsearch.tune.datasets import (
    CHINESE_TEMPLATES,
    DEFAULT_TEMPLATES,
    Item,
    LabelledSet,
    read_templates,
    templates_for,
)
from clipsearch.tune.evaluate import class_embeddings
from clipsearch.tune.runs import captions_of


def test_templates_follow_the_labels_language() -> None:
    assert templates_for("红色的圆形") == CHINESE_TEMPLATES
    assert "一张{}的照片。" in CHINESE_TEMPLATES
    assert templates_for("red circle") == DEFAULT_TEMPLATES
    assert templates_for("红色的圆形", ["{}"]) == ("{}",)  # given templates override


def test_templates_file(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("# Chinese prompts\n一张{}的照片\n\n{}的图片\n", encoding="utf-8")
    assert read_templates(f) == ["一张{}的照片", "{}的图片"]
    f.write_text("no placeholder\n", encoding="utf-8")
    with pytest.raises(ClipsearchError, match="has no"):
        read_templates(f)
    f.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(ClipsearchError, match="holds no template"):
        read_templates(f)


def test_captions_use_each_labels_language() -> None:
    data = LabelledSet([Item("a", 0), Item("b", 1), Item("c", 0)], ["红色的圆形", "blue square"])
    caps, ids = captions_of(data, (), seed=0)
    assert ids == [0, 1, 0]
    assert caps[0] in [t.format("红色的圆形") for t in CHINESE_TEMPLATES]
    assert caps[1] in [t.format("blue square") for t in DEFAULT_TEMPLATES]


class _Recorder:
    """Records the prompts it embeds (one-hot by prompt), to see which templates a class got."""
    embed_dim = 64

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.seen += list(texts)
        out = np.zeros((len(texts), self.embed_dim), np.float32)
        out[np.arange(len(texts)), [len(self.seen) - len(texts) + i for i in range(len(texts))]] = 1.0
        return out


def test_class_embeddings_mix_languages_with_their_own_template_counts() -> None:
    enc = _Recorder()
    emb = class_embeddings(enc, ["猫", "dog"], ["{}", "一张{}的照片"])  # type: ignore[arg-type]
    assert enc.seen == ["猫", "一张猫的照片", "dog", "一张dog的照片"] and emb.shape == (2, 64)
    enc = _Recorder()
    class_embeddings(enc, ["猫", "dog"])  # type: ignore[arg-type]
    assert enc.seen[:len(CHINESE_TEMPLATES)] == [t.format("猫") for t in CHINESE_TEMPLATES]
    assert enc.seen[len(CHINESE_TEMPLATES):] == [t.format("dog") for t in DEFAULT_TEMPLATES]

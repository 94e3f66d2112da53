"""Model specs parse without torch, and settings follow the environment (cached per distinct environment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipsearch.config import settings
from clipsearch.encoders.spec import parse_spec, shipped_configs
from clipsearch.errors import ClipsearchError, ModelUnavailableError


def test_specs() -> None:
    assert "clipsearch-tiny" in shipped_configs()
    tiny = parse_spec("clipsearch-tiny")
    assert tiny.key == "clipsearch-tiny:random" and tiny.kind != "folder"
    vit = parse_spec("ViT-B-32:laion2b_s34b_b79k")
    assert (vit.arch, vit.key) == ("ViT-B-32", "ViT-B-32:laion2b_s34b_b79k")
    assert parse_spec("ViT-B-32:openai").key != vit.key  # other weights, another model identity
    with pytest.raises(ModelUnavailableError, match="model folder not found"):
        parse_spec("./no/such/folder")
    with pytest.raises(ModelUnavailableError, match="bad model spec"):
        parse_spec(":tag-only")


def test_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLIPSEARCH_INDEX", str(tmp_path / "idx"))
    monkeypatch.setenv("CLIPSEARCH_COMMIT_EVERY", "7")
    monkeypatch.setenv("CLIPSEARCH_PQ_MIN", "5000")
    s = settings()
    assert (s.store_path, s.commit_every, s.pq_min) == (tmp_path / "idx", 7, 5000)
    assert settings() is s  # cached while the environment stays the same
    monkeypatch.delenv("CLIPSEARCH_PQ_MIN")
    assert settings().pq_min is None and settings().commit_every == 7
    monkeypatch.setenv("CLIPSEARCH_COMMIT_EVERY", "zero")
    with pytest.raises(ClipsearchError, match="not a positive whole number"):
        settings()

"""The multilingual open_clip models are known with their languages, and loading one offline says exactly which
files are missing from the Hugging Face cache: its weights, or its text tower's config and tokenizer (XLM-R's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipsearch.encoders import weights
from clipsearch.encoders.spec import parse_spec
from clipsearch.errors import ModelUnavailableError
from tests.chinese_hub import use_cache

XLMR = "xlm-roberta-base-ViT-B-32:laion5b_s13b_b90k"


def _cached_file(cache: Path, repo: str, name: str) -> None:
    snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / name).write_bytes(b"{}")
    (cache / f"models--{repo.replace('/', '--')}" / "refs").mkdir(exist_ok=True)
    (cache / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("a" * 40)


def test_text_tower_repos_of_the_multilingual_models() -> None:
    from clipsearch.encoders.torch_encoder import model_config

    assert weights.hf_text_repos(model_config("xlm-roberta-base-ViT-B-32")) == ["xlm-roberta-base"]
    assert weights.hf_text_repos(model_config("nllb-clip-base-siglip")) == ["facebook/nllb-200-distilled-600M"]
    assert weights.hf_text_repos(model_config("ViT-B-32")) == []


def test_offline_loading_names_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clipsearch.encoders.torch_encoder import load_encoder

    use_cache(monkeypatch, tmp_path)
    monkeypatch.setattr(weights, "hub_reachable", lambda timeout=0: False)
    with pytest.raises(ModelUnavailableError, match="they are not cached here"):
        load_encoder(parse_spec(XLMR), "cpu")
    _cached_file(tmp_path, "laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k", "open_clip_pytorch_model.bin")
    with pytest.raises(ModelUnavailableError, match=r"text tower's files \(xlm-roberta-base\)"):
        load_encoder(parse_spec(XLMR), "cpu")

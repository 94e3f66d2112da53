"""Published ONNX exports as specs: `immich:NAME` and `rclip:ViT-B-32-256` are pinned to a revision (a pinned text
parses without the hub cache, so a cold query never looks there), bad names and revisions are clear errors, a folder
in either layout is keyed by its files, a download asks only for the files used, and the languages follow the name."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipsearch.encoders import published
from clipsearch.encoders.languages import model_languages
from clipsearch.encoders.spec import parse_spec
from clipsearch.errors import ModelUnavailableError

REV = "0123456789abcdef" * 2 + "01234567"


def test_a_pinned_spec_parses_without_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(published, "resolve_revision", lambda *a: pytest.fail("looked up the cache"))
    spec = parse_spec(f"immich:ViT-B-32__openai@{REV}")
    assert (spec.kind, spec.arch, spec.pretrained) == ("published", "ViT-B-32__openai", "immich-app/ViT-B-32__openai")
    assert spec.text == spec.key == f"immich:ViT-B-32__openai@{REV}"
    assert parse_spec(f"immich:ViT-B-16__openai@{REV}").key != spec.key
    rclip = parse_spec(f"rclip:ViT-B-32-256@{REV}")
    assert (rclip.pretrained, rclip.extra["subdir"]) == (published.RCLIP_REPO, "ViT-B-32-256-datacomp_s34b_b86k")


@pytest.mark.parametrize(("text", "message"), [
    ("immich:../evil", "bad model name"),
    ("immich:", "bad model name"),
    ("rclip:ViT-L-14", "rclip publishes no model"),
    ("immich:ViT-B-32__openai@main", "is not a commit hash"),
])
def test_bad_published_specs_are_clear(text: str, message: str) -> None:
    with pytest.raises(ModelUnavailableError, match=message):
        parse_spec(text)


def test_an_unpinned_spec_takes_the_cached_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--yurijmikhalevich--rclip-models"
    snapshot = repo / "snapshots" / REV
    (snapshot / "ViT-B-32-256-datacomp_s34b_b86k").mkdir(parents=True)
    for name in ("visual.onnx", "textual.onnx"):
        (snapshot / "ViT-B-32-256-datacomp_s34b_b86k" / name).write_bytes(b"onnx")
    (snapshot / "tokenizer").mkdir()
    (snapshot / "tokenizer" / published.BPE_VOCAB).write_bytes(b"bpe")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    assert parse_spec("rclip:ViT-B-32-256").text == f"rclip:ViT-B-32-256@{REV}"
    assert published.cached(published.SOURCES["rclip"], "ViT-B-32-256")

    folder = parse_spec(str(snapshot / "ViT-B-32-256-datacomp_s34b_b86k"))  # the vocabulary found above it
    assert folder.kind == "published" and folder.key.startswith("rclip-folder:")
    (snapshot / "ViT-B-32-256-datacomp_s34b_b86k" / "textual.onnx").unlink()
    (snapshot / "ViT-B-32-256-datacomp_s34b_b86k" / "textual.onnx").write_bytes(b"other")
    assert parse_spec(str(snapshot / "ViT-B-32-256-datacomp_s34b_b86k")).key != folder.key  # other files


def test_downloads_skip_other_runtimes_variants() -> None:
    from fnmatch import fnmatch

    patterns = published.SOURCES["immich"].patterns("ViT-B-32__openai")
    wanted = ["config.json", "visual/model.onnx", "visual/preprocess_cfg.json", "textual/model.onnx",
              "textual/tokenizer.json", "textual/tokenizer_config.json"]
    assert all(any(fnmatch(f, p) for p in patterns) for f in wanted)
    assert not any(fnmatch("visual/fp16/model.armnn", p) or fnmatch("rknpu/rk3588/visual/model.rknn", p)
                   for p in patterns)


@pytest.mark.parametrize(("name", "languages"), [
    ("ViT-B-32__openai", ("en",)), ("XLM-Roberta-Large-Vit-B-32", ("multilingual",)),
    ("nllb-clip-base-siglip__v1", ("multilingual",)), ("LABSE-Vit-L-14", ("multilingual",)),
    ("ViT-B-16-SigLIP-i18n-256__webli", ("multilingual",)),
])
def test_languages_follow_the_published_name(name: str, languages: tuple[str, ...]) -> None:
    assert model_languages(parse_spec(f"immich:{name}@{REV}")) == languages
    assert {r["spec"] for r in published.list_rows()} >= {f"immich:{name}", "rclip:ViT-B-32-256"}

"""The torch-free text encoder used for cold queries matches open_clip exactly, and avoids importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clipsearch.encoders.numpy_text import NumpyTextEncoder
from clipsearch.encoders.text_export import export_text_tower
from clipsearch.encoders.torch_encoder import load_encoder

TEXTS = ["a red circle", "A Dog on GRASS!!  &amp; friends", "ünïcödé café 123", "x " * 100,
         "<end_of_text> typed by a user", "", "it's 4:30 o'clock"]


@pytest.mark.parametrize("spec", ["trained", "ViT-B-32", "offline-mini"])
def test_numpy_text_tower_matches_torch(spec: str, trained_model: Path, tmp_path: Path) -> None:
    enc = load_encoder(str(trained_model) if spec == "trained" else spec, device="cpu")
    assert export_text_tower(enc, tmp_path / "text")
    fast = NumpyTextEncoder.load(tmp_path / "text", enc.spec.key)
    assert fast is not None
    if fast.family == "clip":
        for text in TEXTS:
            expected = [t for t in enc.tokenizer([text])[0].tolist() if t]
            assert fast.tokenizer(text) == expected, text
    diff = np.abs(enc.encode_texts(TEXTS) - fast.encode_texts(TEXTS)).max()
    assert diff < 1e-5, diff
    assert NumpyTextEncoder.load(tmp_path / "text", "another-model-key") is None  # never mixes models


def test_cold_text_query_does_not_import_torch(indexed: Path) -> None:
    code = (
        "import sys, json; from typer.testing import CliRunner; from clipsearch.cli import app;"
        "r = CliRunner().invoke(app, ['query', 'a red circle', '--json', '--index', sys.argv[1]]);"
        "print(json.dumps({'exit': r.exit_code, 'torch': 'torch' in sys.modules, 'hits': json.loads(r.stdout)}))"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", code, str(indexed)], capture_output=True, text=True,
                                    check=True).stdout)
    assert out["exit"] == 0 and out["torch"] is False
    assert len(out["hits"]) == 10


def test_fast_and_torch_paths_rank_the_same(indexed: Path) -> None:
    import clipsearch

    with clipsearch.open(indexed, create=False) as fast_store:
        fast = [h.path for h in fast_store.search("a yellow square", k=10)]
    with clipsearch.open(indexed, create=False, backend="torch") as torch_store:
        torch_store.encoder  # noqa: B018 - a loaded torch model makes the store use the torch text path
        slow = [h.path for h in torch_store.search("a yellow square", k=10)]
        assert type(torch_store.text_encoder()).__name__ == "Encoder"
    assert fast == slow

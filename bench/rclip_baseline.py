"""rclip 3.3.0 as a baseline, answering offline with the same seeded weights clipsearch benches use.

rclip is not a dependency and nothing of it is kept in this repository: it runs from its own virtual
environment, made once with

    python -m venv /tmp/rclip-venv && /tmp/rclip-venv/bin/pip install rclip==3.3.0

(another place: RCLIP_VENV=/path/to/venv). rclip downloads one model, ViT-B-32-256 (datacomp_s34b_b86k) as ONNX,
from a Hugging Face repository into its data folder (RCLIP_DATADIR, else ~/.local/share/rclip) and skips the
download when the files are already there:

    $RCLIP_DATADIR/ViT-B-32-256-datacomp_s34b_b86k/visual.onnx    float32 (N, 3, 256, 256) "input" -> "output"
    $RCLIP_DATADIR/ViT-B-32-256-datacomp_s34b_b86k/textual.onnx   int64 (N, 77) tokens "input" -> "output"
    $RCLIP_DATADIR/tokenizer/bpe_simple_vocab_16e6.txt.gz          the CLIP BPE vocabulary
    $RCLIP_DATADIR/db.sqlite3                                     its index (path, mtime, size, float32 vector)

`export_models` writes open_clip's ViT-B-32-256 at clipsearch's random-init seed (the `ViT-B-32-256` model spec)
in that layout, made with torch in a subprocess, so both tools run the same weights and neither reaches a hub
(HF_HUB_OFFLINE=1 as well). The export is cached under --work between runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL_SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"  # rclip 3.3.0's model_download.MODEL_SUBDIR
VOCAB = "tokenizer/bpe_simple_vocab_16e6.txt.gz"
VERSION = "3.3.0"
HOW_TO_INSTALL = "python -m venv /tmp/rclip-venv && /tmp/rclip-venv/bin/pip install rclip==3.3.0"


def venv() -> Path:
    return Path(os.environ.get("RCLIP_VENV", "/tmp/rclip-venv"))


def rclip_command() -> list[str] | None:
    """How to run rclip (its venv's interpreter, so its own console script is not needed), or None when its
    venv is absent or holds another version."""
    python = venv() / "bin" / "python"
    if not python.exists():
        return None
    found = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('rclip'))"],
                           capture_output=True, text=True)
    if found.returncode != 0 or found.stdout.strip() != VERSION:
        return None
    return [str(python), "-m", "rclip"]


def missing_message() -> str:
    return (f"rclip {VERSION} was not found in {venv()} (set RCLIP_VENV to its venv); make it once with: "
            f"{HOW_TO_INSTALL}")


def environment(datadir: Path) -> dict[str, str]:
    """rclip's environment: its data folder, no hub, and the same thread settings as clipsearch's runs."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RCLIP_MODEL_CACHE_DIR")}
    env.update(RCLIP_DATADIR=str(datadir), HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    return env


def export_models(cache: Path) -> Path:
    """The seeded ViT-B-32-256 in rclip's layout under `cache` (exported once, with torch, in a subprocess)."""
    done = cache / ".complete"
    if not done.exists():
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        subprocess.run([sys.executable, __file__, "--export", str(cache)], check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        done.touch()
    return cache


def install_models(cache: Path, datadir: Path) -> None:
    """Place the exported files where rclip's download would have left them (hard links where possible)."""
    for rel in (f"{MODEL_SUBDIR}/visual.onnx", f"{MODEL_SUBDIR}/textual.onnx", VOCAB):
        target = datadir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            continue
        try:
            os.link(cache / rel, target)
        except OSError:
            shutil.copy2(cache / rel, target)


def add_synthetic_rows(datadir: Path, folder: Path, n: int, dim: int = 512, seed: int = 0) -> None:
    """`n` rows of random unit vectors under `folder` in rclip's own table (files need not exist: a query with
    --no-indexing reads the table only), the same way bench rows grow clipsearch's catalog."""
    rng = np.random.default_rng(seed)
    con = sqlite3.connect(datadir / "db.sqlite3")
    with con:
        for start in range(0, n, 10_000):
            vecs = rng.standard_normal((min(10_000, n - start), dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            con.executemany("INSERT INTO images (deleted, filepath, modified_at, size, vector, hash) "
                            "VALUES (NULL, ?, 1000.0, 1, ?, NULL)",
                            [(str(folder / "synthetic" / f"{start + i:07d}.jpg"), v.tobytes())
                             for i, v in enumerate(vecs)])
    con.close()


def _export(out: Path) -> None:
    """(subprocess) Both towers of clipsearch's seeded `ViT-B-32-256` as rclip's ONNX files, checked in ORT."""
    import onnxruntime as ort
    import open_clip
    import torch

    from clipsearch.encoders.torch_encoder import load_encoder

    model = load_encoder("ViT-B-32-256", device="cpu").model.eval()

    class Visual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.m.encode_image(x)

    class Textual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.m.encode_text(t)

    (out / MODEL_SUBDIR).mkdir(parents=True, exist_ok=True)
    pixels = torch.randn(2, 3, 256, 256)
    tokens = open_clip.get_tokenizer("ViT-B-32-256")(["a dog on grass", "a photo"])
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel has no ONNX form
    with torch.no_grad():
        for graph, dummy, name in ((Visual(), pixels, "visual.onnx"), (Textual(), tokens, "textual.onnx")):
            path = out / MODEL_SUBDIR / name
            torch.onnx.export(graph, (dummy,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                              do_constant_folding=True)
            got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
                None, {"input": dummy.numpy()})[0]
            ref = graph(dummy).numpy()
            assert np.allclose(got, ref, atol=1e-4), f"{name}: ONNX Runtime disagrees with torch"
    vocab = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    (out / VOCAB).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(vocab, out / VOCAB)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", type=Path, required=True)
    _export(ap.parse_args().export)

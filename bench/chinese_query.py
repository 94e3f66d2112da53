"""Cold and warm text-query time for a Chinese query beside an English one, against baselines in the same run.

Three stores over the same generated images: Chinese-CLIP ViT-B/16 (`chinese-clip:ViT-B-16`, the published
architecture at full size with seeded random weights, put in a temporary Hugging Face cache as a download
would leave it, with the real Chinese vocabulary from the cn_clip wheel), the multilingual
`xlm-roberta-base-ViT-B-32:laion5b_s13b_b90k` (open_clip's config at full size: XLM-R base's 12 layers 768 wide
and 250,002-row token table, ViT-B/32; seeded weights in the tag's hub repository, the text tower's config and a
small SentencePiece tokenizer of the real format in `xlm-roberta-base`'s) and open_clip ViT-B-32 (random init).
Random weights cost what trained ones cost: the timings are the towers' and the tokenizers', not the ranking.

Cold: `clipsearch query TEXT --json` from process start to output (the NumPy text tower, no torch), beside
`python -c "import torch"`, the floor of anything that loads torch. Warm: p50 of `Store.search` in one process.

    python bench/chinese_query.py            # ~4 min on 2 cores (building and indexing three ViT-B models)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clipsearch.media import synthetic  # noqa: E402

CHINESE = "红色的圆形在草地上"
ENGLISH = "a red circle on the grass"


def _full_size_chinese_clip(cache: Path) -> None:
    """ViT-B/16 Chinese-CLIP (transformers' default ChineseCLIPConfig is that model's shape) into `cache`."""
    import torch
    from transformers import ChineseCLIPConfig, ChineseCLIPModel

    from tests import chinese_hub as ch

    torch.manual_seed(0)
    config = ChineseCLIPConfig(text_config={"vocab_size": 21128}, projection_dim=512)
    model = ChineseCLIPModel(config).eval()
    ch.IMAGE_SIZE = config.vision_config.image_size  # the processor config follows the model's input size
    ch.write_repo(cache, model, "0" * 40)


XLMR = "xlm-roberta-base-ViT-B-32:laion5b_s13b_b90k"


def _full_size_xlmr(cache: Path) -> None:
    """xlm-roberta-base-ViT-B-32 at open_clip's full size, seeded, where a download would leave it."""
    import tempfile as tf

    import open_clip
    import torch
    from transformers import XLMRobertaConfig

    from tests import multilingual_hub as mh

    with tf.TemporaryDirectory() as tmp:  # XLM-R base's config (transformers' defaults are BERT base's sizes)
        files = Path(tmp)
        mh.xlmr_tokenizer_files(files)
        XLMRobertaConfig(vocab_size=250002, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                         bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5).save_pretrained(str(files))
        mh._write(cache, "xlm-roberta-base", files, "0" * 40)
    torch.manual_seed(0)
    model = open_clip.create_model(XLMR.split(":")[0], pretrained=None, pretrained_text=False)
    mh.write_checkpoint(cache, mh.ARCHS[XLMR.split(":")[0]][1], model.state_dict(), "0" * 40)


def _cold(cmd: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _warm(store: Path, text: str, env: dict[str, str], runs: int) -> float:
    code = ("import sys, time, statistics, clipsearch\n"
            "with clipsearch.open(sys.argv[1], create=False) as s:\n"
            "    s.search(sys.argv[2], k=10)\n"
            "    ts = []\n"
            f"    for _ in range({runs}):\n"
            "        t = time.perf_counter(); s.search(sys.argv[2], k=10); ts.append(time.perf_counter() - t)\n"
            "print(statistics.median(ts))\n")
    out = subprocess.run([sys.executable, "-c", code, str(store), text], env=env, check=True, capture_output=True,
                         text=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="cold runs per row (median)")
    parser.add_argument("--warm-runs", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="clipsearch-bench-zh-"))
    try:
        cache = root / "hub"
        env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(root / "xdg"),
               "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OPENBLAS_NUM_THREADS": "1"}
        os.environ.update({k: env[k] for k in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "XDG_CACHE_HOME")})
        _full_size_chinese_clip(cache)
        _full_size_xlmr(cache)
        photos = root / "photos"
        synthetic.make_dataset(photos, per_class=2, seed=0)
        stores = {"chinese-clip:ViT-B-16": root / "zh", XLMR: root / "xlmr", "ViT-B-32": root / "en"}
        clip = [sys.executable, "-m", "clipsearch"]
        for model, store in stores.items():  # torch backend: no ONNX export needed for a text-query bench
            subprocess.run(clip + ["index", str(photos), "--index", str(store), "--model", model, "--backend",
                                   "torch"], env=env, check=True, stdout=subprocess.DEVNULL)
        floor = _cold([sys.executable, "-c", "import torch"], env, args.runs)
        rows = [("python -c 'import torch' (floor of a torch query)", "", floor, None)]
        for model, store in stores.items():
            for label, text in (("Chinese", CHINESE), ("English", ENGLISH)):
                cold = _cold(clip + ["query", text, "--index", str(store), "--json"], env, args.runs)
                rows.append((f"{model}: {label} query", text, cold, _warm(store, text, env, args.warm_runs)))
        print(f"{'query':70} {'cold s':>8} {'/torch':>7} {'warm ms':>8}")
        for name, _text, cold, warm in rows:
            print(f"{name:70} {cold:8.2f} {cold / floor:7.2f} {'' if warm is None else f'{warm * 1e3:8.1f}'}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

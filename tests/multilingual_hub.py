"""Tiny multilingual open_clip models where a download would leave the real ones: a Hugging Face hub cache.

open_clip builds `xlm-roberta-base-ViT-B-32`, `xlm-roberta-large-ViT-H-14` and the NLLB-CLIP family with a
Hugging Face text tower: transformers' AutoConfig / AutoModel / AutoTokenizer read `xlm-roberta-base` (or
`facebook/nllb-200-distilled-600M`) from the hub's cache, and the CLIP checkpoint comes from the pretrained tag's
hub repository (`laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k`, `visheratin/nllb-clip-base-oc`, ...).
Here every one of those repositories is written as the hub client writes it (blobs named by their SHA-256,
snapshots/<revision>/<file> linking to them, refs/main naming the revision), at toy sizes:

* the text towers' configs are the real model types (`xlm-roberta`, `m2m_100`) with 2 layers of width 32;
* the tokenizers are built with the `tokenizers` library in the real files' formats: XLM-R's SentencePiece
  Unigram `tokenizer.json` (<s> <pad> </s> <unk> first, <mask> last, the template '<s> $A </s>'), NLLB's
  SentencePiece BPE with the 202 FLORES-200 language codes as special tokens (the code before the text);
* open_clip's config of each architecture is swapped, in this process only, for one of the same family shape
  (the same text_cfg, a ViT of 2 layers at 32 pixels, 32-d embeddings) — `use_tiny_configs`;
* the checkpoint is `open_clip_pytorch_model.bin` in the tag's repository.

Loading goes through the real code: clipsearch's spec → open_clip's pretrained table → hf_hub_download and
transformers' from_pretrained with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from tests import hub_cache
from tests.chinese_hub import COLORS_ZH, SHAPES_ZH, caption_zh, hub_env, use_cache

__all__ = ["COLORS_ZH", "SHAPES_ZH", "caption_zh", "hub_env", "use_cache"]

XLMR = "xlm-roberta-base-ViT-B-32:laion5b_s13b_b90k"
XLMR_LARGE = "xlm-roberta-large-ViT-H-14:frozen_laion5b_s13b_b90k"
NLLB = "nllb-clip-base:v1"
NLLB_SIGLIP = "nllb-clip-base-siglip:v1"
IMAGE_SIZE = 32
EMBED_DIM = 32

# arch → (text tower repository, checkpoint repository of its tag)
ARCHS = {
    "xlm-roberta-base-ViT-B-32": ("xlm-roberta-base", "laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k"),
    "xlm-roberta-large-ViT-H-14": ("xlm-roberta-large",
                                   "laion/CLIP-ViT-H-14-frozen-xlm-roberta-large-laion5B-s13B-b90k"),
    "nllb-clip-base": ("facebook/nllb-200-distilled-600M", "visheratin/nllb-clip-base-oc"),
    "nllb-clip-base-siglip": ("facebook/nllb-200-distilled-600M", "visheratin/nllb-clip-base-siglip"),
}
SPECS = {"xlm-roberta-base-ViT-B-32": XLMR, "xlm-roberta-large-ViT-H-14": XLMR_LARGE, "nllb-clip-base": NLLB,
         "nllb-clip-base-siglip": NLLB_SIGLIP}

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def corpus() -> list[str]:
    """What the toy tokenizers learn their pieces from: the shapes' captions in English and Chinese, and a few
    everyday words in both (so other queries are read as pieces, not as <unk>)."""
    lines = []
    for color, zh_color in COLORS_ZH.items():
        for shape, zh_shape in SHAPES_ZH.items():
            lines += [f"a {color} {shape}", f"a photo of a {color} {shape}", f"{zh_color}的{zh_shape}",
                      f"一张{zh_color}的{zh_shape}的照片", f"{color} {zh_shape}"]
    lines += ["a photo of a cat on the grass", "一张猫的照片", "a dog in the park", "狗在公园里", "iPhone 手机",
              "北京 Beijing 2024年", "le chat noir", "красный круг", "빨간 원", "赤い丸"]
    return lines


def _train(model_kind: str, vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if model_kind == "unigram":
        tok = Tokenizer(models.Unigram())
        trainer: Any = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, unk_token="<unk>",
                                               shrinking_factor=0.75)
    else:
        tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS)
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" {2,}", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(corpus() * 4, trainer)
    return tok


def xlmr_tokenizer_files(folder: Path) -> None:
    """XLM-R's tokenizer files: a SentencePiece Unigram tokenizer.json (<s>=0 <pad>=1 </s>=2 <unk>=3 ... <mask>
    last; '<s> text </s>' by the template '<s> $A </s>') and its tokenizer_config.json."""
    from tokenizers import AddedToken, processors

    tok = _train("unigram", 300)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                       special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512, "bos_token": "<s>", "eos_token": "</s>",
        "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}))


def nllb_codes() -> list[str]:
    from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES

    return list(FAIRSEQ_LANGUAGE_CODES)


def nllb_tokenizer_files(folder: Path) -> None:
    """NLLB's tokenizer files: a SentencePiece BPE tokenizer.json whose 202 language codes follow the pieces as
    special tokens (then <mask>), and a tokenizer_config.json naming NllbTokenizer and eng_Latn."""
    from tokenizers import AddedToken

    tok = _train("bpe", 400)
    tok.add_special_tokens([AddedToken(code, special=True) for code in nllb_codes()])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "NllbTokenizer", "model_max_length": 1024, "src_lang": "eng_Latn", "tgt_lang": None,
        "legacy_behaviour": False, "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
        "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
        "additional_special_tokens": nllb_codes()}))


def vocab_size(folder: Path) -> int:
    """One past the largest id of the tokenizer (its pieces and added tokens)."""
    data = json.loads((folder / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    pieces = max(vocab.values()) if isinstance(vocab, dict) else len(vocab) - 1  # BPE: a map; Unigram: a list
    return 1 + max(pieces, *(t["id"] for t in data["added_tokens"]))


def text_config(repo: str, vocab: int) -> Any:
    """The text tower's transformers config at toy sizes (the real model type)."""
    from transformers import M2M100Config, XLMRobertaConfig

    if repo.startswith("facebook/nllb"):
        return M2M100Config(vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=1,
                            encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                            decoder_ffn_dim=64, max_position_embeddings=128, scale_embedding=True,
                            activation_function="relu", pad_token_id=1, bos_token_id=0, eos_token_id=2,
                            decoder_start_token_id=2)
    return XLMRobertaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=130, type_vocab_size=1, pad_token_id=1,
                            bos_token_id=0, eos_token_id=2)


def tiny_config(arch: str) -> dict:
    """open_clip's config of `arch` at toy sizes: the same text_cfg (the Hugging Face tower and pooler), a ViT
    of 2 layers at 32 pixels, 32-d embeddings."""
    import open_clip

    real = ORIGINAL_CONFIGS.get(arch) or open_clip.get_model_config(arch)
    assert real is not None, arch
    cfg = {"embed_dim": EMBED_DIM, "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 2, "width": 32,
                                                   "head_width": 16, "patch_size": 8},
           "text_cfg": dict(real["text_cfg"])}
    for key in ("custom_text", "init_logit_bias"):
        if key in real:
            cfg[key] = real[key]
    return cfg


ORIGINAL_CONFIGS: dict[str, dict] = {}


def use_tiny_configs(monkeypatch: Any) -> None:
    """open_clip's configs of the architectures in ARCHS at toy sizes, for this process (undone by monkeypatch)."""
    import copy

    import open_clip.factory as factory

    from clipsearch.encoders.torch_encoder import _register_shipped_configs

    _register_shipped_configs()  # it rescans open_clip's config folder once: before the swap, not after
    for arch in ARCHS:
        if arch not in ORIGINAL_CONFIGS:
            ORIGINAL_CONFIGS[arch] = copy.deepcopy(factory._MODEL_CONFIGS[arch])
        monkeypatch.setitem(factory._MODEL_CONFIGS, arch, tiny_config(arch))


def write_text_repo(cache: Path, repo: str, revision: str = "0" * 40) -> None:
    """The text tower's repository: config.json and the tokenizer files (no weights: open_clip builds the tower
    from the config when a CLIP checkpoint follows)."""
    with tempfile.TemporaryDirectory() as tmp:
        files = Path(tmp)
        (nllb_tokenizer_files if repo.startswith("facebook/nllb") else xlmr_tokenizer_files)(files)
        text_config(repo, vocab_size(files)).save_pretrained(str(files))
        hub_cache.write_repo(cache, repo, files, revision)


def write_checkpoint(cache: Path, repo: str, state: dict, revision: str) -> None:
    """The pretrained tag's repository with `state` as open_clip_pytorch_model.bin."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, Path(tmp) / "open_clip_pytorch_model.bin")
        hub_cache.write_repo(cache, repo, Path(tmp), revision)


def seeded_state(arch: str, seed: int = 0) -> dict:
    """A seeded random model of `arch` (tiny config in place) built from the cached text config."""
    import open_clip
    import torch

    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None, pretrained_text=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def write_hub(cache: Path, archs: tuple[str, ...] = tuple(ARCHS), seed: int = 0) -> None:
    """Every repository the given architectures load from, seeded random weights (revision 0…0)."""
    for arch in archs:
        text_repo, ckpt_repo = ARCHS[arch]
        if not (cache / f"models--{text_repo.replace('/', '--')}").is_dir():
            write_text_repo(cache, text_repo)
        write_checkpoint(cache, ckpt_repo, seeded_state(arch, seed), "0" * 40)


def index_with(store: Path, source: Path, model: str, cache: Path) -> Path:
    """`source` indexed into `store` through the CLI with `model` from the hub cache `cache` (tiny configs)."""
    import pytest
    from typer.testing import CliRunner

    from tests.conftest import cli

    with pytest.MonkeyPatch.context() as mp:
        use_cache(mp, cache)
        use_tiny_configs(mp)
        cli(CliRunner(), "index", source, "--index", store, "--model", model)
    return store


def bilingual_captions(table: Path, source: Path) -> Path:
    """A captions table (image, caption) over `source`'s colour_shape_*.png, every other caption in Chinese."""
    import csv

    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, ["image", "caption"])
        writer.writeheader()
        for i, src in enumerate(sorted(source.glob("*.png"))):
            color, shape = src.stem.split("_")[:2]
            writer.writerow({"image": str(src),
                             "caption": f"a {color} {shape}" if i % 2 else caption_zh(color, shape)})
    return table

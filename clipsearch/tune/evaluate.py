"""Measure a model on a labelled set: zero-shot accuracy, linear probe, retrieval recall; and classify.

`load_scorer` gives `eval` and `classify` the model the fast way: ONNX Runtime's image tower and the NumPy text
tower from the export cache, so neither imports torch or open_clip once the model has been exported (torch
stays for the first export, `backend="torch"`, fine-tuning and the linear probe).

Zero-shot uses a prompt ensemble (the mean of the normalised text embeddings of every template), as in the
CLIP paper; the linear probe is multinomial logistic regression on frozen image embeddings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from clipsearch.errors import ClipsearchError
from clipsearch.media.images import decode_paths
from clipsearch.tune.datasets import LabelledSet, templates_for

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from clipsearch.encoders.base import DualEncoder


def embed_images(encoder: DualEncoder, pixels: np.ndarray, batch: int = 64) -> np.ndarray:
    if len(pixels) == 0:
        return np.zeros((0, encoder.embed_dim), np.float32)
    return np.concatenate([encoder.encode_images(pixels[i:i + batch]) for i in range(0, len(pixels), batch)])


def embed_texts(encoder: DualEncoder, texts: Sequence[str], batch: int = 256) -> np.ndarray:
    if not texts:
        return np.zeros((0, encoder.embed_dim), np.float32)
    return np.concatenate([encoder.encode_texts(texts[i:i + batch]) for i in range(0, len(texts), batch)])


def class_embeddings(encoder: DualEncoder, classes: Sequence[str], templates: Sequence[str] = ()) -> np.ndarray:
    """One embedding per class: the mean of its prompts' embeddings, normalised (prompts encoded in batches of
    256, not a call per class: fine-tuning scores every epoch). Without `templates`, each class gets the
    templates of its label's language (`templates_for`)."""
    per_class = [templates_for(name, templates) for name in classes]
    prompts = [t.format(name) for name, ts in zip(classes, per_class, strict=True) for t in ts]
    flat = embed_texts(encoder, prompts)
    bounds = np.cumsum([0] + [len(ts) for ts in per_class])
    e = np.stack([flat[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


def zero_shot_accuracy(image_emb: np.ndarray, labels: np.ndarray, class_emb: np.ndarray) -> dict[str, float]:
    scores = image_emb @ class_emb.T
    ranked = np.argsort(-scores, axis=1)
    k5 = min(5, class_emb.shape[0])
    return {"top1": float((ranked[:, 0] == labels).mean()),
            "top5": float((ranked[:, :k5] == labels[:, None]).any(axis=1).mean())}


def linear_probe_accuracy(train_emb: np.ndarray, train_labels: np.ndarray, test_emb: np.ndarray,
                          test_labels: np.ndarray, n_classes: int, weight_decay: float = 1e-3, seed: int = 0) -> float:
    """Logistic regression (L-BFGS, L2) on frozen embeddings (torch's L-BFGS: the one step of `eval` that
    needs PyTorch once the model is exported)."""
    from clipsearch.encoders.torch_needed import require_torch

    require_torch("the linear probe")
    import torch

    torch.manual_seed(seed)
    x = torch.as_tensor(train_emb, dtype=torch.float32)
    y = torch.as_tensor(train_labels, dtype=torch.long)
    w = torch.zeros(x.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (torch.as_tensor(test_emb, dtype=torch.float32) @ w + b).argmax(dim=1).numpy()
    return float((pred == test_labels).mean())


def retrieval_recall(image_emb: np.ndarray, text_emb: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Pair i is (image i, caption i). Recall@k both ways."""
    sims = image_emb @ text_emb.T
    n = len(sims)
    truth = np.arange(n)
    out = {}
    for name, s in (("image_to_text", sims), ("text_to_image", sims.T)):
        ranks = (s > s[truth, truth][:, None]).sum(axis=1)  # how many candidates beat the true one
        for k in ks:
            out[f"{name}_r{k}"] = float((ranks < k).mean()) if n else 0.0
    return out


LOSS_SCALES = tuple(float(s) for s in np.geomspace(1.0, 300.0, 25))


def _cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    m = logits.max(axis=1, keepdims=True)
    logp = logits - (np.log(np.exp(logits - m).sum(axis=1, keepdims=True)) + m)
    return float(-(targets * logp).sum(axis=1).mean())


def embedding_metrics(img: np.ndarray, data: LabelledSet, text_emb: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """Metrics, a smooth loss and per-item hits from embeddings. `text_emb` holds one row per class (class
    sets: zero-shot top-1 is the hit) or per item (caption sets: text→image recall@5 is the hit).

    The loss is calibrated: cross-entropy at the temperature that suits this model best (of LOSS_SCALES), so it
    measures how well images and texts are ordered, not how confident a model has become — at a fixed
    temperature a fine-tune that sharpens its similarities looks worse while its accuracy climbs."""
    metrics: dict[str, float] = {"images": float(len(data.items))}
    sims = (img @ text_emb.T).astype(np.float64)
    if data.has_classes:
        labels = np.asarray([it.label for it in data.items])
        metrics.update(zero_shot_accuracy(img, labels, text_emb))
        metrics["chance_top1"] = 1.0 / len(data.classes)
        targets = np.eye(len(data.classes))[labels]
        metrics["loss"] = min(_cross_entropy(s * sims, targets) for s in LOSS_SCALES)
        hits = (np.argmax(sims, axis=1) == labels).astype(np.float64)
        return metrics, hits
    metrics.update(retrieval_recall(img, text_emb))
    caps = [it.caption for it in data.items]
    same = np.asarray([[a == b for b in caps] for a in caps], dtype=np.float64)
    targets = same / same.sum(axis=1, keepdims=True)
    metrics["loss"] = min((_cross_entropy(s * sims, targets) + _cross_entropy(s * sims.T, targets.T)) / 2
                          for s in LOSS_SCALES)
    truth = np.arange(len(caps))
    ranks = (sims.T > sims.T[truth, truth][:, None]).sum(axis=1)
    return metrics, (ranks < 5).astype(np.float64)


def evaluate(encoder: DualEncoder, data: LabelledSet, templates: Sequence[str] = (),
             probe_train: LabelledSet | None = None, pixels: np.ndarray | None = None) -> dict[str, float]:
    """Metrics on `data`; `pixels` may be passed pre-decoded (fine-tuning evaluates the same set often)."""
    if pixels is None:
        pixels, kept, _failed = decode_paths(encoder, [it.path for it in data.items])
        data = data.subset(kept)
    if not data.items:
        raise ClipsearchError("no readable images to evaluate on")
    img = embed_images(encoder, pixels)
    metrics: dict[str, float] = {"images": float(len(data.items))}
    if data.has_classes:
        labels = np.asarray([it.label for it in data.items])
        metrics.update(zero_shot_accuracy(img, labels, class_embeddings(encoder, data.classes, templates)))
        metrics["chance_top1"] = 1.0 / len(data.classes)
        if probe_train is not None:
            tr_pixels, kept, _ = decode_paths(encoder, [it.path for it in probe_train.items])
            tr = probe_train.subset(kept)
            metrics["linear_probe"] = linear_probe_accuracy(
                embed_images(encoder, tr_pixels), np.asarray([it.label for it in tr.items]), img, labels,
                len(data.classes))
    else:
        txt = embed_texts(encoder, [it.caption or "" for it in data.items])
        metrics.update(retrieval_recall(img, txt))
    return metrics


def classify(encoder: DualEncoder, paths: Sequence[str], labels: Sequence[str],
             templates: Sequence[str] = (), k: int = 5) -> list[dict]:
    """Zero-shot classification: top-k labels with softmax probabilities (temperature = the model's logit scale)."""
    labels = [lab.strip() for lab in labels if lab.strip()]
    if len(labels) < 2:
        raise ClipsearchError("give at least two labels", 'e.g. "cat,dog,bird"', param="labels")
    for path in paths:
        if not os.path.isfile(path):
            raise ClipsearchError(f"image not found: {path}", "pass image files")
    pixels, kept, failed = decode_paths(encoder, list(paths))
    if failed:
        path, why = failed[0]
        raise ClipsearchError(f"cannot classify {path}: {why}", "pass readable image files")
    img = embed_images(encoder, pixels)
    cls = class_embeddings(encoder, labels, templates)
    logits = encoder.logit_scale * img @ cls.T
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    out = []
    for path, p in zip(paths, probs, strict=False):
        order = np.argsort(-p)[: min(k, len(labels))]
        out.append({"path": str(path), "labels": [{"label": labels[j], "probability": float(p[j])} for j in order]})
    return out


def model_templates(encoder: DualEncoder, templates: Sequence[str] = ()) -> tuple[str, ...]:
    """The prompts to use: those given, else the ones a fine-tuned model was trained with, else none (each
    label then gets its language's defaults, `templates_for`)."""
    return tuple(templates) or tuple(encoder.spec.extra.get("templates") or ())


def _quiet(_message: object) -> None:
    pass


def load_scorer(model: str, *, backend: str | None = None, device: str | None = None,
                notice: Callable[[str], None] = _quiet, stage: Callable[[str], None] = _quiet) -> DualEncoder:
    """Both towers of `model` for scoring, in fp32 (the predictions torch would make, within the export's
    check: image cosine >= 0.99999, text within 1e-5). By default ONNX Runtime with the NumPy text tower from
    the export cache (a model with no export yet is exported once, with torch); `backend="torch"` loads PyTorch.
    `notice` gets what the user should know (a fallback to torch), `stage` what is happening (an export)."""
    from clipsearch.encoders.factory import load_image_encoder
    from clipsearch.encoders.spec import parse_spec

    return load_image_encoder(parse_spec(model), backend=backend, precision="fp32", device=device, stored=False,
                              notice=notice, stage=stage)


def resolve_model(model: str | None, store_path: Path | None = None) -> tuple[str, object | None]:
    """The model to use and a notice: the one given, else the store's (when a store is named), else the default
    (CLIP, or the offline model when CLIP's weights cannot be had — then with a notice)."""
    from clipsearch.encoders.spec import choose_default_model
    from clipsearch.store.manifest import read_manifest

    if model:
        return model, None
    if store_path is not None:
        manifest = read_manifest(store_path)
        if manifest:
            return manifest["model"]["spec"], None
    return choose_default_model()


def evaluate_set(encoder: DualEncoder, data: LabelledSet, templates: Sequence[str] = (),
                 linear_probe: bool = False) -> dict[str, float]:
    """Zero-shot metrics of `encoder` on a labelled set; with `linear_probe`, also a logistic regression fitted
    on a seeded half of the set and scored on the other half (the zero-shot numbers use that half too)."""
    from clipsearch.tune import datasets

    probe_train = None
    if linear_probe:
        if not data.has_classes:
            raise ClipsearchError("a linear probe needs a class set, not captions", param="linear_probe")
        probe_train, data = datasets.split(data, 0.5, 0)
    return evaluate(encoder, data, model_templates(encoder, templates), probe_train=probe_train)

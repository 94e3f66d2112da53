"""One training run of a fine-tune and what every run shares: the base weights, the scorer, the checkpoint.

A fine-tune is one or more phases (one run on a split, or the folds of a cross-validation and a final run),
each trained from the base weights. `FinetuneRun.train_phase` trains a phase, saving a checkpoint after its
epochs, and resumes it from the checkpoint when that is where an interrupted run stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.errors import ClipsearchError
from clipsearch.tune.checkpoint import Checkpoint, trained_keys
from clipsearch.tune.config import TrainConfig
from clipsearch.tune.datasets import LabelledSet, templates_for
from clipsearch.tune.evaluate import class_embeddings, embed_texts, embedding_metrics
from clipsearch.tune.image_side import ImageSide, image_side_for
from clipsearch.tune.locks import apply_locks, text_is_frozen
from clipsearch.tune.training import OnStep, TrainHistory, TrainState, train_contrastive

if TYPE_CHECKING:  # pragma: no cover
    import torch

ALPHA_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
SMALL_SPLIT = 30  # a validation split below this many images is too small: cross-validate instead


def blend_states(base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
                 alpha: float) -> dict[str, torch.Tensor]:
    """WiSE-FT: θ = (1−α)·θ_base + α·θ_tuned for float tensors (counters are taken from the tuned model)."""
    if not 0.0 <= alpha <= 1.0:
        raise ClipsearchError(f"alpha must be within [0, 1], got {alpha}", param="alpha")
    if base.keys() != tuned.keys():
        raise ClipsearchError("cannot blend models of different architectures")
    out = {}
    for name, t in tuned.items():
        b = base[name]
        out[name] = ((1.0 - alpha) * b + alpha * t).to(t.dtype) if t.is_floating_point() else t.clone()
    return out


def choose(candidates: Sequence[dict[str, float]], key_metric: str) -> dict[str, float]:
    """The best candidate on validation: highest `key_metric`, then lowest calibrated loss; on a full tie the
    first (list the base first and it wins ties, so a fine-tune must beat it to ship)."""
    return min(enumerate(candidates), key=lambda ic: (-ic[1][key_metric], round(ic[1]["loss"], 9), ic[0]))[1]


def captions_of(data: LabelledSet, templates: Sequence[str], seed: int) -> tuple[list[str], list[int]]:
    """Captions and the ids that decide which pairs are positives (same class, or identical caption)."""
    if data.has_classes:
        rng = np.random.default_rng(seed)
        labels = data.labels()
        per_class = [templates_for(name, templates) for name in data.classes]
        caps = [per_class[label][int(rng.integers(len(per_class[label])))].format(data.classes[label])
                for label in labels]
        return caps, labels
    caps = [it.caption or "" for it in data.items]
    ids: dict[str, int] = {}
    return caps, [ids.setdefault(c, len(ids)) for c in caps]


class Scorer:
    """Scores the encoder's current weights on a split; frozen parts (trunk features, text) are computed once."""

    def __init__(self, encoder: Any, side: ImageSide, templates: Sequence[str], text_frozen: bool) -> None:
        self.encoder, self.side, self.templates, self.text_frozen = encoder, side, templates, text_frozen
        self._text: dict[int, tuple[LabelledSet, np.ndarray]] = {}  # the set is kept alive: its id is the key

    def _text_emb(self, data: LabelledSet) -> np.ndarray:
        if self.text_frozen and id(data) in self._text:
            return self._text[id(data)][1]
        if data.has_classes:
            emb = class_embeddings(self.encoder, data.classes, self.templates)
        else:
            emb = embed_texts(self.encoder, [it.caption or "" for it in data.items])
        if self.text_frozen:
            self._text[id(data)] = (data, emb)
        return emb

    def __call__(self, data: LabelledSet, pixels: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        return embedding_metrics(self.side.embed(pixels), data, self._text_emb(data))


class FinetuneRun:
    """The shared state of a fine-tune's phases: the model, the base values of the keys that train, how images
    are embedded (trunk features cached when only the light heads train) and how a split is scored."""

    def __init__(self, encoder: Any, cfg: TrainConfig, templates: Sequence[str], checkpoint: Checkpoint,
                 resumed: dict[str, Any] | None, on_step: OnStep | None) -> None:
        self.encoder, self.templates = encoder, templates
        self.checkpoint, self.resumed, self.on_step = checkpoint, resumed, on_step
        model = encoder.model
        apply_locks(model, cfg)
        self.keys = trained_keys(model)
        self._live = dict(model.state_dict(keep_vars=True))  # the model's own tensors, for in-place loads
        self.base_partial = {k: self._live[k].detach().cpu().clone() for k in self.keys}
        self.side = image_side_for(encoder, cfg)
        self.scorer = Scorer(encoder, self.side, templates, text_is_frozen(model))
        self.seconds = 0.0

    def weights(self) -> dict[str, torch.Tensor]:
        """The current values of the keys that train (what a phase's result and a checkpoint hold)."""
        return {k: self._live[k].detach().cpu().clone() for k in self.keys}

    def load(self, partial: dict[str, torch.Tensor]) -> None:
        """Set the keys that train, in place. Nothing else ever leaves its base value (frozen parameters get no
        gradient), so this is the whole model's state — without copying the frozen rest each time: cross-
        validation loads a blend several times an epoch."""
        import torch

        if partial.keys() != set(self.keys):
            raise ClipsearchError("these weights are not this run's", param="resume")
        with torch.no_grad():
            for k, v in partial.items():
                self._live[k].copy_(v)

    def load_blend(self, tuned: dict[str, torch.Tensor], alpha: float) -> None:
        self.load(blend_states(self.base_partial, tuned, alpha))

    def train_phase(self, name: str, data: LabelledSet, pixels: np.ndarray, cfg: TrainConfig,
                    on_epoch: Callable[[int], bool], record: dict[str, Any]) -> TrainHistory:
        """Train phase `name` from the base weights (or from its checkpoint); `on_epoch` may fill `record`,
        which is saved with the checkpoint and restored on resume."""
        resume = None
        if self.resumed is not None and self.resumed.get("phase") == name:
            self.load(self.resumed["weights"])
            record.update(self.resumed["record"])
            resume = TrainState(**self.resumed["train"])
            self.resumed = None
        else:
            self.load(self.base_partial)

        def on_checkpoint(state: TrainState) -> None:
            if self.checkpoint.due(final=state.stopped or state.epoch >= int(cfg.epochs or 0)):
                self.checkpoint.save(name, state, self.weights(), record)

        captions, pair_ids = captions_of(data, self.templates, cfg.seed)
        history = train_contrastive(self.encoder, pixels, captions, pair_ids, cfg, on_step=self.on_step,
                                    on_epoch=on_epoch, image_side=self.side, resume=resume,
                                    on_checkpoint=on_checkpoint)
        self.seconds += history.seconds
        return history

"""The training loop: epochs of contrastive steps on (image, caption) pairs, as in pre-training (FLYP).

`train_contrastive` trains a model in place for a resolved `TrainConfig` (`config.py`). The loop is kept
apart from what a step computes (`step.py`), as open_clip_train separates `train_one_epoch` from its loss,
scaler and scheduler: here a `Trainer` shuffles each epoch, groups its batches into optimizer steps, reports
progress, asks the caller after every epoch whether to stop (early stopping), and hands out a `TrainState` —
everything besides the weights that an interrupted run needs to continue bit for bit, since the optimizer's
moments, the random streams and the step count are restored and consumed in the same order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from clipsearch.errors import ClipsearchError
from clipsearch.tune.config import TrainConfig, epoch_batches, steps_per_epoch
from clipsearch.tune.image_side import ImageSide, image_side_for
from clipsearch.tune.locks import apply_locks, set_train_mode
from clipsearch.tune.step import ContrastiveStep, Precision, Updater

if TYPE_CHECKING:  # pragma: no cover
    from clipsearch.encoders.torch_encoder import Encoder

OnStep = Callable[[int, int, float, float, float], None]  # (step, total steps, loss, lr, images per second)


@dataclass
class TrainState:
    """Everything besides the weights that an interrupted run needs to continue exactly where it stopped:
    the optimizer's moments, the random streams, the step count and the losses so far."""

    epoch: int  # epochs completed
    step: int
    seen: int
    losses: list[float]
    optimizer: dict[str, Any]
    scaler: dict[str, Any]
    numpy_rng: dict[str, Any]
    torch_rng: Any
    seconds: float
    stopped: bool = False  # early stopping ended the run after `epoch` epochs


@dataclass
class TrainHistory:
    losses: list[float] = field(default_factory=list)
    images_per_second: float = 0.0
    seconds: float = 0.0
    steps: int = 0
    epochs_run: int = 0
    stopped_early: bool = False
    cached_image_features: bool = False
    cached_text: bool = False
    checkpointed_towers: list[str] = field(default_factory=list)


class Trainer:
    """One run of `train_contrastive`: the step, the updater, the random streams and the counters."""

    def __init__(self, encoder: Encoder, images: np.ndarray, captions: Sequence[str],
                 class_ids: Sequence[int] | None, cfg: TrainConfig, image_side: ImageSide | None) -> None:
        import torch

        from clipsearch.tune.grad_checkpoint import set_grad_checkpointing

        if cfg.epochs is None or cfg.lr is None:
            raise ClipsearchError("train_contrastive needs a resolved config (see resolve_config)", param="config")
        self.cfg, self.epochs = cfg, cfg.epochs
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.model = model = encoder.model
        apply_locks(model, cfg)
        set_train_mode(model, cfg)
        side = image_side or image_side_for(encoder, cfg)
        if side.cached and cfg.augmenting:
            side = ImageSide(encoder, False)  # a cache handed in: crops and colour change the trunk's input
        self.n = len(images)
        self.total_steps = max(1, self.steps_per_epoch * cfg.epochs)
        precision = Precision.for_device(encoder.device)
        self.updater = Updater(model, cfg, cfg.lr, self.total_steps, precision)
        self.step_fn = ContrastiveStep(encoder, images, captions, class_ids, cfg, side, self.rng, precision,
                                       self.updater.scaler)
        self.history = TrainHistory(cached_image_features=side.cached,
                                    cached_text=self.step_fn.frozen_text is not None)
        if cfg.grad_checkpointing:
            self.history.checkpointed_towers = set_grad_checkpointing(model, True)
            if not self.history.checkpointed_towers:
                raise ClipsearchError("gradient checkpointing is not supported for this model's towers",
                                      "train without `grad_checkpointing`", param="grad_checkpointing")
        self.step, self.seen, self.start_epoch, self.spent, self.resumed_stopped = 0, 0, 0, 0.0, False
        self.start = 0.0

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps an epoch makes (a partial group of micro-batches is stepped at the epoch's end)."""
        return math.ceil(steps_per_epoch(self.n, self.cfg.batch_size) / self.cfg.accumulate)

    def restore(self, state: TrainState) -> None:
        """Continue from `state` (the weights are the caller's to load)."""
        import torch

        self.updater.load_state_dict(state.optimizer, state.scaler)
        self.rng.bit_generator.state = state.numpy_rng
        torch.set_rng_state(state.torch_rng)
        self.step, self.seen, self.start_epoch, self.spent = state.step, state.seen, state.epoch, state.seconds
        self.resumed_stopped = state.stopped
        self.history.losses = list(state.losses)
        self.history.epochs_run = state.epoch
        self.history.stopped_early = state.stopped and state.epoch < self.epochs

    def state(self, epochs_done: int, stopped: bool) -> TrainState:
        """What `restore` needs to continue after `epochs_done` epochs."""
        import torch

        optimizer, scaler = self.updater.state_dict()
        return TrainState(epoch=epochs_done, step=self.step, seen=self.seen,
                          losses=list(self.history.losses), optimizer=optimizer, scaler=scaler,
                          numpy_rng=dict(self.rng.bit_generator.state), torch_rng=torch.get_rng_state(),
                          seconds=time.perf_counter() - self.start, stopped=stopped)

    def train_one_epoch(self, on_step: OnStep | None) -> None:
        """Shuffle, then one optimizer step per `accumulate` batches."""
        cfg = self.cfg
        batches = epoch_batches(self.rng.permutation(self.n), cfg.batch_size)
        for g in range(0, len(batches), cfg.accumulate):
            group = batches[g:g + cfg.accumulate]
            self.history.losses.append(self.step_fn.backward(group))
            self.updater.step(self.step)
            self.step += 1
            self.seen += sum(len(idx) for idx in group)
            if on_step:
                elapsed = time.perf_counter() - self.start
                on_step(self.step, self.total_steps, self.history.losses[-1], self.updater.lr_at(self.step - 1),
                        self.seen / max(elapsed, 1e-9))

    def end_epoch(self, epoch: int, on_epoch: Callable[[int], bool | None] | None) -> bool:
        """Record epoch `epoch` as done and ask `on_epoch` (in eval mode) whether to stop."""
        self.history.epochs_run = epoch + 1
        stop = False
        if on_epoch:
            self.model.eval()
            stop = bool(on_epoch(epoch))
            set_train_mode(self.model, self.cfg)
        self.history.stopped_early = stop and epoch + 1 < self.epochs
        return stop

    def run(self, on_step: OnStep | None, on_epoch: Callable[[int], bool | None] | None,
            on_checkpoint: Callable[[TrainState], None] | None) -> TrainHistory:
        from clipsearch.tune.grad_checkpoint import set_grad_checkpointing

        self.start = time.perf_counter() - self.spent
        self.updater.zero_grad()
        try:
            last_epoch = self.start_epoch if self.resumed_stopped else self.epochs
            for epoch in range(self.start_epoch, last_epoch):
                self.train_one_epoch(on_step)
                stop = self.end_epoch(epoch, on_epoch)
                if on_checkpoint:
                    on_checkpoint(self.state(epoch + 1, stop))
                if stop:
                    break
        finally:
            if self.cfg.grad_checkpointing:
                set_grad_checkpointing(self.model, False)
            self.model.eval()
            for p in self.model.parameters():
                p.requires_grad_(True)
        history = self.history
        history.seconds = time.perf_counter() - self.start
        history.images_per_second = self.seen / max(history.seconds, 1e-9)
        history.steps = self.step
        return history


def train_contrastive(encoder: Encoder, images: np.ndarray, captions: Sequence[str],
                      class_ids: Sequence[int] | None, cfg: TrainConfig, on_step: OnStep | None = None,
                      on_epoch: Callable[[int], bool | None] | None = None,
                      image_side: ImageSide | None = None, resume: TrainState | None = None,
                      on_checkpoint: Callable[[TrainState], None] | None = None) -> TrainHistory:
    """Train `encoder.model` in place. `images` are NHWC uint8 at the model's input size; `cfg` is resolved.

    AdamW + cosine schedule with linear warm-up, gradient clipping, fp32 master weights with autocast on
    CUDA. `accumulate` > 1 makes each optimizer step see `accumulate` micro-batches as one contrastive batch
    (cached-feature accumulation, as GradCache: see `step.ContrastiveStep`); its gradient equals the large
    batch's. A pending partial group is stepped at an epoch's end.

    `on_step(step, total, loss, lr, img_per_s)` reports progress; `on_epoch(epoch)` returning True stops
    training (early stopping); `on_checkpoint(state)` runs after every epoch with what `resume` needs to
    continue exactly (the caller saves the weights beside it).
    """
    trainer = Trainer(encoder, images, captions, class_ids, cfg, image_side)
    if resume is not None:
        trainer.restore(resume)
    return trainer.run(on_step, on_epoch, on_checkpoint)

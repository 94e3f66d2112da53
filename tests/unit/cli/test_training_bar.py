"""The fine-tune's bar does not sit at 24/80 with a frozen ETA once a training stops early: a new stage completes
it, and the next training starts its own count and ETA (task state, not terminal text)."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from clipsearch.cli.model_commands import TrainingBar


def test_a_stage_resets_the_bar_and_a_new_training_starts_its_own_count() -> None:
    progress = Progress(console=Console(file=io.StringIO()))
    bar = TrainingBar(progress)
    for step in range(1, 25):
        bar.step(step, 80, 0.5, 1e-3, 100.0)
    task = progress.tasks[0]
    assert (task.completed, task.total) == (24, 80)  # stopped early at 24 of 80
    bar.stage()
    assert task.finished and task.time_remaining == 0  # over: no frozen 24/80 with an ETA
    bar.step(1, 40, 0.4, 1e-3, 100.0)
    assert (task.completed, task.total) == (1, 40) and len(task._progress) <= 1  # its own ETA samples

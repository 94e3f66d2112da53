"""Commands about models: models, finetune, eval, classify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from clipsearch.cli import common as ui
from clipsearch.cli.common import (
    BackendOpt,
    IndexOpt,
    JsonOpt,
    RichProgress,
    _print_note,
    _shell_quote,
    app,
    cli_terms,
    emit_json,
    friendly_errors,
)
from clipsearch.terminal import path_text, safe, table as new_table


@app.command()
@friendly_errors
def models(as_json: bool = JsonOpt) -> None:
    """List the models: shipped configs, open_clip architectures with pretrained tags, the languages each reads,
    weights on disk."""
    from clipsearch.encoders.torch_encoder import list_models

    rows = list_models()
    if as_json:
        emit_json(rows)
        return
    from clipsearch.encoders.languages import describe_languages

    t = new_table("spec", "kind", "languages", "works offline", title="models (--model); * new stores' default")
    for r in rows:
        offline = "untrained" if r.get("untrained") else "yes (on disk)" if r["cached"] else ""
        t.add_row(safe(r["spec"]) + (" *" if r["default"] else ""), r["kind"], describe_languages(r["languages"]),
                  offline)
    ui.out.print(t)


class TrainingBar:
    """The fine-tune's bar: one training's steps. When a stage begins (a training stopped early, evaluation, the
    next fold) the last training's bar is completed, so it never sits at 24/80 with a frozen ETA; the next
    training starts its own count and ETA."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.task = progress.add_task("train", total=None, info="")

    def step(self, step: int, total: int, loss: float, lr_now: float, ips: float) -> None:
        info = f"loss {loss:.3f} lr {lr_now:.2e} {ips:.0f} img/s"
        if step <= 1:  # a new training: its own count and its own ETA, not the last one's
            self.progress.reset(self.task, total=total, completed=step, info=info)
        else:
            self.progress.update(self.task, total=total, completed=step, info=info)

    def stage(self) -> None:
        """A new stage began: the training before it is over, whatever step it stopped at."""
        total = next((t.total for t in self.progress.tasks if t.id == self.task), None)
        if total is not None:
            self.progress.update(self.task, completed=total)


def _print_metrics(rows: list[tuple[str, dict]], title: str) -> None:
    keys = [k for k in rows[0][1] if k != "images"]
    names = [k.replace("_", " ") for k in keys]
    table = new_table("model", *names, right=tuple(names), title=safe(title))
    for name, metrics in rows:
        table.add_row(safe(name), *[f"{metrics.get(k, float('nan')):.3f}" for k in keys])
    ui.out.print(table)


@app.command()
@friendly_errors
def finetune(
    data: Path = typer.Argument(
        ..., help="Folder with one sub-folder per class, or a CSV/JSONL with image + caption/label."),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the model to (usable as --model)."),
    model: str = typer.Option(None, "--model", "-m", help="Base model (default ViT-B-32:laion2b_s34b_b79k)."),
    val: Path | None = typer.Option(
        None, "--val", help="Validation set: picks the epoch and the blend (default: a split of DATA)."),
    test: Path | None = typer.Option(None, "--test", help="Test set: only reports (default: a split of DATA)."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", min=0.05, max=0.5),
    test_fraction: float = typer.Option(
        0.2, "--test-fraction", min=0.0, max=0.5, help="0: no test split (numbers then flatter)."),
    epochs: int | None = typer.Option(
        None, "--epochs", min=1, help="Default: enough for --min-steps optimizer steps."),
    min_steps: int | None = typer.Option(None, "--min-steps", min=1),
    batch_size: int | None = typer.Option(None, "--batch-size", min=2),
    lr: float | None = typer.Option(
        None, "--lr", help="Default by model family (CLIP 1e-5, offline-mini and random init 1e-3)."),
    weight_decay: float | None = typer.Option(None, "--weight-decay"),
    warmup: float | None = typer.Option(
        None, "--warmup", help="Warm-up as a fraction of the steps (default 0.1)."),
    patience: int | None = typer.Option(
        None, "--patience", help="Early stopping after N epochs without a better validation loss (-1: off)."),
    accumulate: int | None = typer.Option(
        None, "--accumulate", min=1,
        help="Make N batches one contrastive batch: every pair among the N x batch images is a negative "
             "(GradCache), for one more forward pass."),
    lock_image: bool | None = typer.Option(
        None, "--lock-image/--no-lock-image", help="Freeze the image tower (default by family)."),
    lock_text: bool | None = typer.Option(
        None, "--lock-text/--no-lock-text", help="Freeze the text tower (default by family)."),
    unlocked_layers: int | None = typer.Option(
        None, "--unlocked-layers", min=0, help="With --lock-image: the image tower's last N layer groups still train."),
    unlocked_text_layers: int | None = typer.Option(
        None, "--unlocked-text-layers", min=0, help="With --lock-text: the text tower's last N layers still train."),
    freeze_bn: bool | None = typer.Option(
        None, "--freeze-bn/--update-bn", help="Keep BatchNorm statistics (default for pretrained models)."),
    hflip: bool | None = typer.Option(None, "--hflip/--no-hflip", help="Random horizontal flips (default on)."),
    random_crop: float | None = typer.Option(
        None, "--random-crop", min=0.0, max=1.0, help="Random resized crop keeping at least this area, e.g. 0.6."),
    color_jitter: float | None = typer.Option(
        None, "--color-jitter", min=0.0, max=1.0, help="Brightness/contrast/saturation jitter, e.g. 0.3."),
    grad_checkpointing: bool | None = typer.Option(
        None, "--grad-checkpointing",
        help="Recompute activations in the backward pass: less memory for larger batches, ~15% slower "
             "(ViT-B-32 on CPU: 0.61x the memory, 1.14x the time)."),
    alpha: float | None = typer.Option(
        None, "--alpha", min=0.0, max=1.0,
        help="WiSE-FT blend (default: chosen on validation; 0 = base, 1 = fine-tuned)."),
    folds: int | None = typer.Option(
        None, "--folds", min=1,
        help="Choose epoch and blend by k-fold cross-validation (default: 5 folds when the validation split "
             "would hold under 30 images; 1: one split)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the interrupted fine-tune whose checkpoint is in --out."),
    restart: bool = typer.Option(
        False, "--restart", help="Discard an interrupted fine-tune's checkpoint in --out and start over."),
    template: list[str] = typer.Option([], "--template", help="Prompt template with {} (repeatable)."),
    templates_file: Path | None = typer.Option(
        None, "--templates", help="File of prompt templates, one with {} a line (default: by the label's "
                                  "language, e.g. 一张{}的照片。 for Chinese labels)."),
    seed: int | None = typer.Option(None, "--seed"),
    device: str | None = typer.Option(None, "--device"),
    reindex: Path | None = typer.Option(None, "--reindex", help="Then re-encode this store with the new model."),
    as_json: bool = JsonOpt,
) -> None:
    """Fine-tune on a labelled set; report base, fine-tuned and shipped blend on a held-out test split."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from clipsearch.tune.config import TrainConfig
    from clipsearch.tune.finetune import finetune as run_finetune

    given: dict[str, Any] = {
        "epochs": epochs, "min_steps": min_steps, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "warmup_fraction": warmup, "patience": patience, "accumulate": accumulate, "lock_image": lock_image,
        "lock_text": lock_text, "unlocked_layers": unlocked_layers, "unlocked_text_layers": unlocked_text_layers,
        "freeze_bn": freeze_bn, "hflip": hflip, "random_crop": random_crop, "color_jitter": color_jitter,
        "grad_checkpointing": grad_checkpointing, "seed": seed}
    config = TrainConfig(**{k: v for k, v in given.items() if v is not None})  # the library chooses the rest
    console = ui.err if as_json else ui.out
    with Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeRemainingColumn(), console=console) as progress:
        bar = TrainingBar(progress)
        on_step = bar.step

        def on_stage(msg: str) -> None:
            bar.stage()
            progress.console.print(f"[dim]{safe(msg)}")

        try:
            report = run_finetune(data, out_dir, base_model=_model_or_default(model), val_path=val, test_path=test,
                                  val_fraction=val_fraction, test_fraction=test_fraction,
                                  templates=_templates(template, templates_file) or None,
                                  config=config, alpha=alpha, device=device, folds=folds, resume=resume,
                                  restart=restart, on_step=on_step, on_stage=on_stage)
        except KeyboardInterrupt:
            from clipsearch.tune.checkpoint import CHECKPOINT_NAME

            progress.stop()
            if (out_dir / CHECKPOINT_NAME).exists():
                ui.err.print("[bold red]interrupted:[/] the last saved epoch's checkpoint is in "
                             f"{safe(str(out_dir))}; add --resume to the same command to continue")
            else:
                ui.err.print("[bold red]interrupted:[/] before the first checkpoint; nothing to resume")
            raise typer.Exit(130) from None
    reindexed = None
    if reindex:
        from clipsearch.store.store import open_store

        with open_store(reindex, device=device) as store, RichProgress(console) as prog:
            reindexed = store.reembed(str(out_dir), progress=prog).to_dict()
    if as_json:
        emit_json({**report.to_dict(), "reindex": reindexed})
        return
    _print_finetune_report(report)
    if reindexed:
        ui.out.print(f"re-encoded {reindexed['encoded']} images into {safe(reindex)}")


def _print_finetune_report(report: Any) -> None:
    s = report.settings
    key = report.key_metric
    ui.out.print(f"settings ({report.family}): lr {s['lr']:.0e}, batch {s['batch_size']}, {s['epochs_run']} of "
                 f"{s['epochs']} epochs x {s['steps_per_epoch']} steps, warm-up {s['warmup_steps']}, "
                 f"image lock {s['lock_image']}, text lock {s['lock_text']}, "
                 f"unlocked image groups {s['unlocked_layers']}, "
                 f"text layers {s['unlocked_text_layers']}, flips {s['hflip']}, "
                 f"BatchNorm stats {'frozen' if s['freeze_bn'] else 'updated'}"
                 + (f", gradient checkpointing {'+'.join(s['grad_checkpointing_towers'])}"
                    if s.get("grad_checkpointing_towers") else ""))
    if report.resumed:
        ui.out.print(f"resumed from the checkpoint: {safe(report.resumed)}")
    curve = ", ".join(f"{row['alpha']:g}: {row[key]:.3f}/{row['loss']:.3f}" for row in report.alpha_curve)
    chosen_by = (f"{report.folds}-fold cross-validation over {report.val_images} images" if report.folds > 1
                 else f"validation ({report.val_images} images)")
    ui.out.print(f"{chosen_by}: {key}/loss by alpha at epoch {report.best_epoch}: {curve}")
    rows = [("base", report.base), ("fine-tuned", report.finetuned), (f"shipped a={report.alpha:g}", report.blended)]
    _print_metrics(rows, f"{report.split}: {int(report.base.get('images', 0))} images, "
                         f"trained on {report.train_images} ({report.images_per_second:.1f} img/s)")
    lo, hi = report.intervals["blended"]
    g = report.gain
    ui.out.print(f"shipped: {report.shipped} (alpha {report.alpha:g}); {key} {report.blended[key]:.3f} "
                 f"(95% CI {lo:.3f}-{hi:.3f}), gain over base {g['difference']:+.3f} "
                 f"(95% CI {g['low']:+.3f}..{g['high']:+.3f})")
    for warning in report.warnings:
        ui.err.print(f"[yellow]warning:[/] {safe(cli_terms(warning))}")
    if report.skipped:
        ui.err.print(f"[yellow]skipped {len(report.skipped)} unreadable images[/] "
                     f"(first: {safe(report.skipped[0][0])})")
    ui.out.print(f"model written to {safe(report.out)}  (use it: --model {safe(_shell_quote(str(report.out)))}); "
                 f"log: metrics.json")


@app.command("eval")
@friendly_errors
def eval_cmd(
    data: Path = typer.Argument(..., help="Labelled set: class folders or CSV/JSONL."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Model spec or folder (default ViT-B-32:laion2b_s34b_b79k)."),
    linear_probe: bool = typer.Option(
        False, "--linear-probe", help="Also fit logistic regression on half the data, test on the other half."),
    template: list[str] = typer.Option([], "--template", help="Prompt template with {} (repeatable)."),
    templates_file: Path | None = typer.Option(
        None, "--templates", help="File of prompt templates, one with {} a line (default: by the label's language)."),
    device: str | None = typer.Option(None, "--device"),
    backend: str | None = BackendOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Zero-shot accuracy (class sets) or retrieval recall (caption sets) of a model."""
    from clipsearch.tune import datasets
    from clipsearch.tune.evaluate import evaluate_set

    labelled = datasets.load(data)
    encoder = _load_encoder(model, None, device, backend)
    from clipsearch.encoders.spec import is_untrained

    metrics = evaluate_set(encoder, labelled, _templates(template, templates_file), linear_probe=linear_probe)
    untrained = is_untrained(encoder.spec)
    if untrained:
        ui.err.print(f"[yellow]warning:[/] {safe(encoder.spec.text)} is untrained (random weights): "
                     "expect chance-level scores; fine-tune it first (clipsearch finetune)")
    if as_json:
        emit_json({"model": encoder.spec.text, "untrained": untrained, **metrics})
        return
    _print_metrics([(encoder.spec.text if len(encoder.spec.text) < 40 else "..." + encoder.spec.text[-37:], metrics)],
                   f"{int(metrics['images'])} images from {labelled.source}")


def _templates(template: list[str], templates_file: Path | None) -> list[str]:
    """--template values, then the --templates file's lines."""
    from clipsearch.tune.datasets import read_templates

    return list(template) + (read_templates(templates_file) if templates_file else [])


def _model_or_default(model: str | None, store_path: Path | None = None) -> str:
    """The model given, else the store's, else the default (saying so when that is the offline model)."""
    from clipsearch.tune.evaluate import resolve_model

    name, notice = resolve_model(model, store_path)
    if notice:
        _print_note(notice)
    return name


def _load_encoder(model: str | None, store_path: Path | None, device: str | None, backend: str | None) -> Any:
    """Both towers for eval and classify: ONNX Runtime and the NumPy text tower once the model is exported."""
    from clipsearch.tune.evaluate import load_scorer

    return load_scorer(_model_or_default(model, store_path), backend=backend, device=device, notice=_print_note,
                       stage=lambda message: ui.err.print(safe(message)))


@app.command()
@friendly_errors
def classify(
    images: list[Path] = typer.Argument(..., help="Image files."),
    labels: str = typer.Option(..., "--labels", help='Comma-separated labels, e.g. "cat,dog,bird".'),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Model (default: the store's, else ViT-B-32:laion2b_s34b_b79k)."),
    index_path: Path | None = IndexOpt,
    k: int = typer.Option(3, "-k", min=1),
    template: list[str] = typer.Option([], "--template", help="Prompt template with {} (repeatable)."),
    templates_file: Path | None = typer.Option(
        None, "--templates", help="File of prompt templates, one with {} a line (default: by the label's language)."),
    device: str | None = typer.Option(None, "--device"),
    backend: str | None = BackendOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Zero-shot classification: the top-k labels with probabilities."""
    from clipsearch.store.store import default_store_path
    from clipsearch.tune.evaluate import classify as run_classify, model_templates

    encoder = _load_encoder(model, Path(index_path) if index_path else default_store_path(), device, backend)
    names = [name.strip() for name in labels.replace("，", ",").split(",") if name.strip()]  # a Chinese comma too
    results = run_classify(encoder, [str(p) for p in images], names,
                           model_templates(encoder, _templates(template, templates_file)), k)
    if as_json:
        emit_json(results)
        return
    table = new_table("image", "label", "probability", right=("probability",))
    for r in results:
        for i, lab in enumerate(r["labels"]):
            table.add_row(path_text(r["path"]) if i == 0 else "", safe(lab["label"]), f"{lab['probability']:.3f}")
    ui.out.print(table)

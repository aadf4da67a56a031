"""report.md: the demo's results as a page a person reads, with the figures embedded."""

from __future__ import annotations

from pathlib import Path

import numpy

from .data import CLASS_NAMES

__all__ = ["write_report", "results_table"]

# (metric key, what it is, the target from the project's quality bars, higher is better?)
ROWS = [
    ("ref_ae_test_bce", "reference AE (ReLU code), test BCE", "<= 0.2880 (PyTorch 0.2878)", False),
    ("ref_ae_test_mse", "reference AE, test MSE per pixel", "(PyTorch ref.: 0.0148)", False),
    ("ref_ae_dead_code_units", "reference AE, dead code units (of 32)", "(PyTorch: 6-7)", False),
    ("ae_test_bce", "default AE, test BCE", "< reference", False),
    ("ae_test_mse", "default AE, test MSE per pixel", "", False),
    ("ae_dead_code_units", "default AE, dead code units", "0", False),
    ("clf_frozen_test_accuracy", "head on frozen codes, test accuracy", ">= 88.0 %", True),
    ("clf_frozen_test_accuracy_single_view", "... the same, single view (no mirror image)", "", True),
    ("clf_frozen_test_loss", "head on frozen codes, test cross-entropy", "", False),
    ("clf_finetune_test_accuracy", "encoder + head fine-tuned, test accuracy", ">= 90.0 %", True),
    ("clf_finetune_test_accuracy_single_view", "... the same, single view (no mirror image)", "", True),
    ("clf_finetune_test_loss", "encoder + head fine-tuned, test cross-entropy", "", False),
    ("tsne_trustworthiness", "t-SNE trustworthiness (k=5)", ">= 0.998", True),
    ("tsne_knn_accuracy", "5-NN accuracy on the t-SNE map (5-fold)", ">= 80 %", True),
    ("codes_knn_accuracy", "5-NN accuracy on the codes themselves", "(PyTorch ref.: 79.1 %)", True),
    ("ae_seconds_per_epoch", "autoencoder seconds per epoch (median)", "", False),
]


def _fmt(key, value):
    if value is None:
        return "-"
    if "accuracy" in key:
        return f"{100 * value:.2f} %"
    if isinstance(value, float):
        return f"{value:.4f}" if value < 100 else f"{value:.0f}"
    return str(value)


def results_table(metrics: dict) -> str:
    """A Markdown table of the headline metrics (rows whose metric was not computed are left out)."""
    lines = ["| result | value | target |", "| --- | ---: | --- |"]
    for key, label, target, _ in ROWS:
        if key in metrics:
            lines.append(f"| {label} | {_fmt(key, metrics[key])} | {target} |")
    return "\n".join(lines)


def _mirror_note(metrics: dict) -> str:
    if not metrics["settings"].get("test_mirror"):
        return ""
    lines = []
    for key, name in (("clf_frozen", "head on frozen codes"), ("clf_finetune", "fine-tuned classifier")):
        if f"{key}_val_accuracy_mirrored" not in metrics:
            continue
        single = metrics[f"{key}_val_accuracy_single_view"]
        mirrored = metrics[f"{key}_val_accuracy_mirrored"]
        used = "so its answer is the mean over the two" if metrics[f"{key}_mirror"] else \
            "so it answers from the image alone"
        lines.append(f"- {name}: validation accuracy {100 * single:.2f} % on the image alone, "
                     f"{100 * mirrored:.2f} % averaged with its mirror image; {used}.")
    return ("Each classifier may answer with the mean of its class probabilities on the image\n"
            "and on its mirror image (both views were in its training data), where that is more\n"
            "accurate on the validation split:\n\n" + "\n".join(lines) + "\n")


def _mirrored_widths(settings: dict) -> list:
    """The whole autoencoder's widths, encoder then decoder (784-256-128-32-128-256-784)."""
    widths = list(settings["ae_widths"])
    return widths + widths[-2::-1]


def write_report(out: Path, metrics: dict, confusion) -> Path:
    s = metrics["settings"]
    cm = numpy.asarray(confusion)
    per_class = cm.diagonal() / numpy.maximum(cm.sum(axis=1), 1)
    worst = numpy.argsort(per_class)[:3]
    text = f"""# nanoae demo report

Backend **{metrics['backend']}**, seed {metrics['seed']}, batch {s['batch_size']};
autoencoder {'-'.join(map(str, _mirrored_widths(s)))} ({s['code_activation']} code),
{s['ae_epochs']} epochs, lr {s['ae_lr']:g} cosine, {s.get('ae_mask', 0):g} of the input pixels masked;
head {'-'.join(map(str, s['head_hidden']))} for {s['head_epochs']} epochs; fine-tuning
{s['finetune_epochs']} epochs at lr {s['finetune_lr']:g}; total {metrics['total_seconds']:.0f} s.
Versions: {', '.join(f'{k} {v}' for k, v in metrics['versions'].items())}.

## Results on the Fashion-MNIST test set (10,000 images)

{results_table(metrics)}

Each classifier keeps the epoch with the best {s.get('select_on', 'val_loss').replace('_', ' ')}
(on a split held out of the training set); the test set was scored once.
{_mirror_note(metrics)}
## Reconstructions

![reconstructions](reconstructions.png)

One test image per class (top) and the autoencoder's output (bottom).

## Learning curves

![curves](curves.png)

Loss per epoch (left axis) and, for the classifiers, accuracy (right axis).

## The codes

![codes](codes.png)

How often each code unit is non-zero, and its spread: a unit that is zero on
every image is dead and carries nothing.

## t-SNE map of the test codes

![t-SNE](tsne.png)

Each point is one test image, placed so that images with similar codes lie
close together; colours are the true classes, which the autoencoder never saw.

## Confusion matrix of the fine-tuned classifier

![confusion](confusion.png)

The hardest classes: {', '.join(f'{CLASS_NAMES[i]} ({100 * per_class[i]:.1f} %)' for i in worst)}.
"""
    path = Path(out) / "report.md"
    path.write_text(text)
    return path

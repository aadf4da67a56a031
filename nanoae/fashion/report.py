"""report.md: the demo's results as a page a person reads, with the figures embedded.

``python -m nanoae.fashion.report runs/demo/metrics.json`` prints the README's results
table from a run's metrics (``readme_table``), so the README cannot drift from
the run it reports.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy

from nanoae.fashion.data import CLASS_NAMES

__all__ = ["write_report", "results_table", "readme_table", "baseline_table", "baseline_sentence"]

FULL_TSNE_POINTS = 10000  # the full run's map: every test image

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
    """A Markdown table of the headline metrics (rows whose metric was not computed are left out).

    The targets are the full run's (``nanoae demo``); a ``--quick`` run's header says so.
    """
    target = "target of the full run" if metrics["settings"].get("quick_run") else "target"
    lines = [f"| result | value | {target} |", "| --- | ---: | --- |"]
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


def _run_note(metrics: dict) -> str:
    """What makes this run's figures differ from the full run's, if anything."""
    s, notes = metrics["settings"], []
    if s.get("quick_run"):
        notes.append("This is a `--quick` run: the targets are those of the full run "
                     "(`nanoae demo`), which a quick run is not expected to meet.")
    points = metrics.get("tsne_points")
    if points is not None and points != FULL_TSNE_POINTS:
        notes.append(f"The t-SNE rows are on {points} test codes (the full run maps "
                     f"{FULL_TSNE_POINTS:,}).")
    return "\n".join(notes) + "\n" if notes else ""


# The codes against the baselines (pca.py): (what, autoencoder's key, PCA's key, the raw
# pixels' key or None, higher is better?). The autoencoder's figures are the ones of the rows above.
BASELINE_ROWS = [
    ("test BCE", "ae_test_bce", "pca_test_bce", None, False),
    ("test MSE per pixel", "ae_test_mse", "pca_test_mse", None, False),
    ("5-NN accuracy (5-fold, on the t-SNE's test images)", "codes_knn_accuracy", "pca_knn_accuracy",
     "pixels_knn_accuracy", True),
    ("the same head on the frozen features, test accuracy", "clf_frozen_test_accuracy",
     "clf_pca_test_accuracy", None, True),
]


def baseline_table(metrics: dict) -> str:
    """The autoencoder's codes, PCA's components and the raw pixels side by side (Markdown)."""
    k = metrics.get("pca_components", "k")
    lines = [f"| | autoencoder codes ({k}) | PCA ({k} components) | raw pixels (784) |",
             "| --- | ---: | ---: | ---: |"]
    for label, ae, pca, pixels, _ in BASELINE_ROWS:
        if ae in metrics and pca in metrics:
            cells = [_fmt(key, metrics.get(key)) for key in (ae, pca, pixels)]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _margin(key: str, ae: float, pca: float) -> str:
    """How far the autoencoder's figure is from PCA's: points for accuracies, % for losses."""
    if "accuracy" in key:
        points = 100 * abs(ae - pca)
        return f"{points:.2f} point{'' if round(points, 2) == 1 else 's'} {'higher' if ae > pca else 'lower'}"
    return f"{100 * abs(ae - pca) / pca:.1f} % {'lower' if ae < pca else 'higher'}"


def baseline_sentence(metrics: dict) -> str:
    """One sentence, computed from the figures: where the autoencoder beats PCA, by how much, and
    where it does not (a tie is not a win)."""
    wins, losses = [], []
    for label, ae_key, pca_key, _, higher in BASELINE_ROWS:
        if ae_key not in metrics or pca_key not in metrics:
            continue
        ae, pca = metrics[ae_key], metrics[pca_key]
        name = label.split(" (")[0].replace("the same head on the frozen features, ", "the head's ")
        figure = f"{name} ({_fmt(ae_key, ae)} against {_fmt(pca_key, pca)}, {_margin(ae_key, ae, pca)})"
        (wins if (ae > pca if higher else ae < pca) else losses).append(figure)
    subject = f"The autoencoder's {metrics.get('pca_components', '')} numbers".replace("  ", " ")
    if not losses:
        return f"{subject} beat PCA's on every figure: {_listed(wins)}."
    if not wins:
        return f"{subject} beat PCA's on no figure: {_listed(losses)}."
    return f"{subject} beat PCA's on {_listed(wins)}, but not on {_listed(losses, 'or')}."


def _listed(items: list, conjunction: str = "and") -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {conjunction} " + items[-1]


def _baseline_section(metrics: dict) -> str:
    """The codes against PCA and the raw pixels: the table, its sentence, the figure, the cost."""
    if "pca_test_bce" not in metrics:
        return ""
    k = metrics["pca_components"]
    cost = ""
    if "baseline_seconds" in metrics and metrics.get("total_seconds"):
        cost = (f" Computing them took {metrics['baseline_seconds']:.0f} s of this run's "
                f"{metrics['total_seconds']:.0f} s ({100 * metrics['baseline_seconds'] / metrics['total_seconds']:.0f} %).")
    return f"""## Against PCA and the raw pixels

{baseline_table(metrics)}

{baseline_sentence(metrics)}

PCA with {k} components, as many as the code, fit on the same training split; its BCE is on
its reconstruction clipped to one grey level from black and white (BCE needs probabilities),
its MSE on the plain one. The head on its components is the frozen-code head's recipe
(standardized inputs, the same widths, epochs and schedule, mirrored training images too,
the epoch kept on validation). The 5-NN figures use the same test images and folds.{cost}

![PCA against the autoencoder](pca_reconstructions.png)

The same test images (top), reconstructed from {k} numbers each by the autoencoder and by PCA.

"""


def _mirrored_widths(settings: dict) -> list:
    """The whole autoencoder's widths, encoder then decoder (784-256-128-32-128-256-784)."""
    widths = list(settings["ae_widths"])
    return widths + widths[-2::-1]


def _diagnostics_section(metrics: dict) -> str:
    """The reference autoencoder's diagnostics figure, and the sentences computed from its records."""
    sentences = metrics.get("ref_ae_diagnostics")
    if not sentences:
        return ""
    return ("## Inside the reference autoencoder\n\n![diagnostics](diagnostics.png)\n\n"
            "Recorded while it trained (`nanoae.train.watch.Watch`): per Dense layer the update-to-data "
            "ratio and the weight-gradient spread over the steps, per ReLU its dead units per "
            "epoch, and each activation's outputs at the first and the last epoch. "
            + " ".join(sentences) + "\n\n")


def _smoothing(settings: dict, stage: str) -> str:
    """``" (label smoothing 0.1)"`` when the stage's loss smoothed its labels, else nothing."""
    eps = settings.get(f"{stage}_label_smoothing", 0)
    dropout = settings.get(f"{stage}_dropout", 0)
    parts = ([f"label smoothing {eps:g}"] if eps else []) + ([f"dropout {dropout:g}"] if dropout else [])
    return f" ({', '.join(parts)})" if parts else ""


def write_report(out: Path, metrics: dict, confusion) -> Path:
    s = metrics["settings"]
    cm = numpy.asarray(confusion)
    per_class = cm.diagonal() / numpy.maximum(cm.sum(axis=1), 1)
    worst = numpy.argsort(per_class)[:3]
    text = f"""# nanoae demo report

Backend **{metrics['backend']}**, seed {metrics['seed']}, batch {s['batch_size']};
autoencoder {'-'.join(map(str, _mirrored_widths(s)))} ({s['code_activation']} code),
{s['ae_epochs']} epochs, lr {s['ae_lr']:g} cosine, {s.get('ae_mask', 0):g} of the input pixels masked;
head {'-'.join(map(str, s['head_hidden']))} for {s['head_epochs']} epochs{_smoothing(s, 'head')}; fine-tuning
{s['finetune_epochs']} epochs at lr {s['finetune_lr']:g}{_smoothing(s, 'finetune')}; total {metrics['total_seconds']:.0f} s.
Versions: {', '.join(f'{k} {v}' for k, v in metrics['versions'].items())}.

## Results on the Fashion-MNIST test set (10,000 images)

{results_table(metrics)}

{_run_note(metrics)}
Each classifier keeps the epoch with the best {s.get('select_on', 'val_loss').replace('_', ' ')}
(on a split held out of the training set); the test set was scored once.
{_mirror_note(metrics)}
## Reconstructions

![reconstructions](reconstructions.png)

One test image per class (top) and the default autoencoder's output (bottom).

## Learning curves

![curves](curves.png)

Loss per epoch (left axis) and, for the classifiers, accuracy (right axis). The
autoencoders' validation loss is on the clean images of the held-out split; a
denoising autoencoder's training loss is on its masked inputs.
A dotted line marks the epoch each classifier kept.

## The codes

![codes](codes.png)

The spread of each code unit's values over the test images, for each
autoencoder of the run; a unit that is zero on every image is dead, carries
nothing, and is marked with a red x.

{_baseline_section(metrics)}{_diagnostics_section(metrics)}## t-SNE map of the test codes

![t-SNE](tsne.png)

Each point is one of the first {metrics.get('tsne_points', 0):,} test images, placed so that
images with similar codes lie close together; colours are the true classes, which
the autoencoder never saw, and each class is named where most of its points lie.

## Confusion matrix of the fine-tuned classifier

![confusion](confusion.png)

The hardest classes: {', '.join(f'{CLASS_NAMES[i]} ({100 * per_class[i]:.1f} %)' for i in worst)}.
"""
    path = Path(out) / "report.md"
    path.write_text(text)
    return path


# The README's results table: (label, metric keys, target). Keys joined by " / " share a row.
README_ROWS = [
    ("reference autoencoder 784-128-64-32 (ReLU code, Glorot-uniform init), 20 epochs at lr 1e-3, test BCE",
     ["ref_ae_test_bce"], "<= 0.2880 (PyTorch 0.2878 / 0.2884)"),
    ("... test MSE per pixel / dead code units of 32", ["ref_ae_test_mse", "ref_ae_dead_code_units"],
     "(PyTorch 0.0148 / 6-7)"),
    ("default autoencoder {widths} ({code} code, denoising), test BCE", ["ae_test_bce"],
     "lower than the reference"),
    ("... test MSE per pixel / dead code units", ["ae_test_mse", "ae_dead_code_units"], "0"),
    ("classifier on the frozen 32-d codes, test accuracy", ["clf_frozen_test_accuracy"],
     ">= 88.0 % (PyTorch best head 86.9 %)"),
    ("encoder + head fine-tuned end to end, test accuracy", ["clf_finetune_test_accuracy"],
     ">= 90.0 % (PyTorch best 88.9 %)"),
    ("t-SNE of the {points:,} test codes (perplexity {perplexity:g}): trustworthiness (k=5)",
     ["tsne_trustworthiness"], ">= 0.998 (PyTorch codes 0.9989)"),
    ("... 5-NN accuracy on the 2-D map (5-fold)", ["tsne_knn_accuracy"], ">= 80 % (PyTorch codes 77.1 %)"),
    ("... 5-NN accuracy on the 32-d codes themselves", ["codes_knn_accuracy"], "(PyTorch codes 79.1 %)"),
    ("baseline: PCA with {components} components (fit on the training split), test BCE / MSE per pixel",
     ["pca_test_bce", "pca_test_mse"], "above the default autoencoder's"),
    ("... 5-NN accuracy on its components / on the raw pixels (784), the map's test images",
     ["pca_knn_accuracy", "pixels_knn_accuracy"], "below the codes'"),
    ("... the frozen-code head on its standardized components, test accuracy", ["clf_pca_test_accuracy"],
     "below the codes' head"),
]


def readme_table(metrics: dict) -> str:
    """The README's results table, every figure read from ``metrics`` (a run's metrics.json)."""
    s = metrics["settings"]
    names = {"widths": "-".join(map(str, s["ae_widths"])), "code": s["code_activation"],
             "points": metrics.get("tsne_points", 0),
             "perplexity": metrics.get("tsne_perplexity", 0),
             "components": metrics.get("pca_components", 0)}
    lines = ["| result | nanoae | target (PyTorch reference, same work) |", "| --- | ---: | --- |"]
    for label, keys, target in README_ROWS:
        if all(k in metrics for k in keys):
            value = " / ".join(_fmt(k, metrics[k]) for k in keys)
            lines.append(f"| {label.format(**names)} | {value} | {target} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover  (python -m nanoae.fashion.report runs/demo/metrics.json)
    if len(sys.argv) != 2:
        sys.exit("usage: python -m nanoae.fashion.report METRICS_JSON   (prints the README's results table)")
    print(readme_table(json.loads(Path(sys.argv[1]).read_text())))

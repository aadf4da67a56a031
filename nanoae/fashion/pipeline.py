"""The whole Fashion-MNIST story, one step per function; ``nanoae demo`` runs them in order.

1. ``load_splits``: train (with a held-out validation split) and test, as uint8.
2. ``train_autoencoder``: the autoencoder, trained to reproduce its input (BCE, Adam)
   on the training split, its loss on the clean validation images recorded each epoch;
   by default 784-512-128-32 with codes of length 1 (``layers.Normalize``: only
   their direction counts, so near codes are those at a small angle), and a
   denoising one (it sees 10 % of the pixels zeroed, and must reproduce the
   clean image), whose codes place images of a class closer. The reference
   784-128-64-32 with a ReLU code (``REFERENCE_AE``) is trained too: its figures
   sit beside the default's in the report, and its code units (dead ones marked)
   in ``codes.png``.
3. ``train_frozen_classifier`` (``encode_splits``, ``head_training_set``,
   ``train_head``): a dense softmax head on the frozen codes.
4. ``fine_tune``: encoder and head trained together on the labels.
5. ``tsne_map``: a 2-D t-SNE map of the test codes, with trustworthiness and 5-NN
   accuracy (the scores are in ``metrics.py``).
6. ``baseline_stage``: what the codes are compared with (``pca.py``): PCA with
   as many components as the code, fit on the training split, scored as the
   autoencoder is (test BCE and MSE, 5-NN accuracy of its codes, the same head
   trained on them), and the 5-NN accuracy of the raw pixels.
7. ``run_demo``: all of the above, then figures, ``metrics.json`` and ``report.md``.

Model selection (the epoch whose weights are kept) uses the validation split
only (the autoencoders keep their last epoch: their validation loss is only
drawn); the test set is scored once, at the end of each step. A classifier's
answer may be the mean of its probabilities on the image and its mirror image
(``test_mirror``), where that is more accurate on the validation split; the
single-view figures are reported beside it.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy

from nanoae import __version__, backend
from nanoae.fashion.pca import (
    fit_pca,
    knn_baselines,
    pca_reconstruction_metrics,
    reconstruct_clipped,
)
from nanoae.fashion.data import CLASS_NAMES, load_fashion_mnist
from nanoae.fashion.metrics import (
    autoencoder_metrics,
    confusion_matrix,
    knn_accuracy,
    knn_folds,
    score_classifier,
    trustworthiness,
)
from nanoae.fashion.models import (
    Autoencoder,
    Classifier,
    FineTuned,
    ImageClassifier,
    Standardize,
    encoder_fingerprint,
)
from nanoae.losses import BinaryCrossEntropy, CrossEntropy
from nanoae.optim import Adam, AdamW
from nanoae.parallel.communicator import world
from nanoae.sequential import Sequential
from nanoae.train.augment import Augmentation
from nanoae.train.callbacks import Checkpoint, KeepBest, LearningRateSchedule, Progress
from nanoae.train.loop import (
    as_batch,
    cosine_schedule,
    fit,
    mirror_images,
    predict,
    split_validation,
)
from nanoae.train.watch import Watch, summarize

__all__ = ["Settings", "REFERENCE_AE", "load_splits", "train_autoencoder", "encode_splits", "head_training_set",
           "train_head", "train_frozen_classifier", "fine_tune", "tsne_map", "TSNE_DURATION", "baseline_stage",
           "run_demo"]


# The reference recipe, fixed so that its figures compare with those of the same model in PyTorch:
# 784-128-64-32-64-128-784, ReLU code, Keras's Glorot-uniform initialisation (the reference is a
# Keras model), 20 epochs at a constant learning rate of 1e-3, clean inputs.
REFERENCE_AE = {"widths": (784, 128, 64, 32), "code_activation": "relu", "init": "glorot_uniform",
                "epochs": 20, "lr": 1e-3,
                "cosine": False, "mask": 0.0}


@dataclass
class Settings:
    """Every knob of a demo run, with the defaults of ``nanoae demo``."""

    seed: int = 0
    batch_size: int = 256
    val_fraction: float = 0.1
    data_dir: str | None = None
    verify: bool = True  # compare data files with the official checksums (off: your own subset)
    # the autoencoder whose codes the rest of the story uses: the encoder's widths,
    # input first (the reference is 784-128-64-32; 512 wide after the pixels, with a
    # unit-length code, lifts the 5-NN accuracy of the validation codes from 81.9 to
    # 83.7 % and the frozen-code head from 90.0 to 90.5 %: docs/recipe.md)
    ae_widths: tuple = (784, 512, 128, 32)
    ae_epochs: int = 40
    ae_lr: float = 2e-3  # peak of a cosine schedule
    ae_mask: float = 0.1  # denoising: drop this fraction of input pixels, reconstruct them all
    code_activation: str = "unit"  # "unit": codes scaled to length 1 (layers.Normalize)
    # also train the reference autoencoder (REFERENCE_AE), reported beside the default one
    reference: bool = True
    # the head on frozen codes (and, with the same recipe, on PCA's components: the baselines);
    # 12 epochs with label smoothing 0.1 match 30 without on validation (docs/recipe.md), in
    # 40 % of the time
    head_hidden: tuple = (512, 512)
    head_epochs: int = 12
    head_lr: float = 1e-3
    head_weight_decay: float = 5e-2
    head_dropout: float = 0.0  # Dropout after each hidden layer of the head (fine-tuned with it too)
    head_label_smoothing: float = 0.1  # CrossEntropy(label_smoothing=) of the head's training
    head_mirror: bool = True  # also train on the codes of mirrored training images
    # encoder + head, end to end (20 epochs with label smoothing 0.1: more accurate on
    # validation than 30 without, and than 30 with)
    finetune_epochs: int = 20
    finetune_lr: float = 1e-3
    finetune_weight_decay: float = 0.1
    finetune_flip: bool = True  # mirror a random half of each batch
    finetune_mask: float = 0.1  # zero this fraction of the input pixels (input masking)
    finetune_label_smoothing: float = 0.1
    # which epoch's weights the classifiers keep: "val_accuracy" or "val_loss"
    select_on: str = "val_accuracy"
    # classifiers may answer with the mean probabilities of each image and its
    # mirror image, where validation says it helps; single-view figures are reported too
    test_mirror: bool = True
    # the map
    tsne_points: int = 10000
    tsne_perplexity: float = 10.0  # chosen on the validation codes (see tsne_map)
    # PCA with as many components as the code, and the raw pixels, scored beside the codes
    baselines: bool = True
    backend: str = "numpy"
    progress: bool | None = None
    quick_run: bool = False  # set by quick(): the report says the targets are the full run's

    @classmethod
    def quick(cls, **overrides) -> "Settings":
        """A run that shows every step in under two minutes on two CPU cores."""
        base = dict(ae_epochs=3, reference=False, head_epochs=8, finetune_epochs=2, tsne_points=2000,
                    quick_run=True)
        return cls(**{**base, **overrides})

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["head_hidden"] = list(self.head_hidden)
        d["ae_widths"] = list(self.ae_widths)
        return d


@dataclass
class Splits:
    """uint8 images (N, 784) and uint8 labels of each split, on the host."""

    x_train: numpy.ndarray
    y_train: numpy.ndarray
    x_val: numpy.ndarray
    y_val: numpy.ndarray
    x_test: numpy.ndarray
    y_test: numpy.ndarray
    x_all: numpy.ndarray = field(repr=False)  # train + val: the autoencoder needs no labels


def load_splits(settings: Settings) -> Splits:
    """Fashion-MNIST, with ``val_fraction`` of the training set held out for model selection."""
    x, y = load_fashion_mnist("train", data_dir=settings.data_dir, verify=settings.verify,
                              progress=settings.progress)
    xt, yt = load_fashion_mnist("test", data_dir=settings.data_dir, verify=settings.verify,
                                progress=settings.progress)
    x, xt = x.reshape(len(x), -1), xt.reshape(len(xt), -1)
    tr, va = split_validation(len(x), settings.val_fraction, settings.seed)
    return Splits(x[tr], y[tr].astype(numpy.int64), x[va], y[va].astype(numpy.int64),
                  xt, yt.astype(numpy.int64), x)


def _cosine(lr: float, examples: int, epochs: int, settings: Settings):
    """A cosine schedule from ``lr`` to 0 over ``epochs`` epochs of ``examples`` examples."""
    return cosine_schedule(lr, -(-examples // settings.batch_size) * epochs)


def train_autoencoder(x, settings: Settings, *, validation=None, reference: bool = False,
                      checkpoint=None, resume=False, desc="autoencoder", watch: bool = False,
                      callbacks=()):
    """Train an autoencoder on uint8 images x; returns (model, history).

    The recipe is the settings' (``ae_*``, ``code_activation``), or with
    ``reference=True`` the fixed ``REFERENCE_AE``. ``validation``: uint8 images
    held out of x; their loss, on the clean images (never masked), is recorded
    each epoch as ``history["val_loss"]`` for the learning curves. Nothing is
    chosen on it: the epochs and the schedule are fixed, the last epoch is kept.
    watch: record per-layer diagnostics (``watch.Watch``) into ``history["watch"]``.
    callbacks: more callbacks for ``fit`` (e.g. a ``liveplot.LivePlot``).
    """
    recipe = dict(REFERENCE_AE) if reference else {
        "widths": tuple(settings.ae_widths), "code_activation": settings.code_activation,
        "epochs": settings.ae_epochs, "lr": settings.ae_lr, "cosine": True, "mask": settings.ae_mask}
    model = Autoencoder(recipe["widths"], code_activation=recipe["code_activation"],
                        init=recipe.get("init", "he"), seed=settings.seed)
    opt = Adam(model.parameters(), lr=recipe["lr"])
    callbacks = ([Progress(desc, bar=settings.progress)] + ([Watch(model)] if watch else [])
                 + list(callbacks))
    if recipe["cosine"]:
        callbacks.append(LearningRateSchedule(_cosine(recipe["lr"], len(x), recipe["epochs"], settings)))
    if checkpoint is not None:
        callbacks.append(Checkpoint(checkpoint, resume=resume, meta={
            "model": model.config, "recipe": recipe, "settings": settings.as_dict()}))
    history = fit(model, BinaryCrossEntropy(), opt, x, epochs=recipe["epochs"],
                  batch_size=settings.batch_size, seed=settings.seed,
                  validation=None if validation is None else (validation, None),
                  augment=Augmentation(mask=recipe["mask"]), callbacks=callbacks)
    return model, history


def encode_splits(model, splits: Splits):
    """Float32 codes of train, validation and test (on the device)."""
    return tuple(predict(model.encoder, backend.to_device(x))
                 for x in (splits.x_train, splits.x_val, splits.x_test))


def head_training_set(model, splits: Splits, codes_train, settings: Settings):
    """The codes the head trains on: the training codes, plus (``head_mirror``) those of
    the mirrored training images (a T-shirt is still a T-shirt), which the frozen encoder
    maps elsewhere."""
    if not settings.head_mirror:
        return codes_train, splits.y_train
    xp = backend.get_array_module(codes_train)
    extra = predict(model.encoder, backend.to_device(mirror_images(splits.x_train)))
    return xp.concatenate([codes_train, extra]), numpy.concatenate([splits.y_train, splits.y_train])


def train_head(codes_train, y_train, codes_val, y_val, settings: Settings, *, autoencoder=None,
               checkpoint=None, watch: bool = False, desc: str = "head on codes", callbacks=()):
    """A softmax head on standardised frozen codes; keeps the epoch best on validation.

    autoencoder: the one whose encoder made the codes; its ``encoder_fingerprint``
    goes into the checkpoint, so that the head is never put behind another encoder.
    desc: the name its progress lines carry. callbacks: more for ``fit`` (e.g. a ``LivePlot``).
    """
    scaler = Standardize.fit(codes_train)
    head = Classifier(codes_train.shape[1], settings.head_hidden, 10, seed=settings.seed + 1,
                      dropout=settings.head_dropout)
    model = Sequential(scaler, head)
    opt = AdamW(head.parameters(), lr=settings.head_lr, weight_decay=settings.head_weight_decay)
    meta = {"model": head.config, "scaler": scaler.config, "settings": settings.as_dict()}
    if autoencoder is not None:
        meta["autoencoder"] = encoder_fingerprint(autoencoder)
    schedule = _cosine(settings.head_lr, len(codes_train), settings.head_epochs, settings)
    history = fit(model, CrossEntropy(label_smoothing=settings.head_label_smoothing), opt, codes_train,
                  y_train, epochs=settings.head_epochs,
                  batch_size=settings.batch_size, validation=(codes_val, y_val),
                  seed=settings.seed,
                  callbacks=_classifier_callbacks(schedule, settings, checkpoint, meta, desc)
                  + ([Watch(head)] if watch else []) + list(callbacks))
    return scaler, head, history


def train_frozen_classifier(ae, splits: Splits, settings: Settings, *, checkpoint=None,
                            watch: bool = False, desc: str = "head on codes", callbacks=()):
    """Stage 3: the head on ``ae``'s frozen codes; returns (classifier of images, history, test codes).

    The classifier is an ``ImageClassifier`` (encoder, scaler, head; only the
    head was trained), so it is scored on images like the fine-tuned one.
    ae: anything with an ``encoder`` (``pca.PCAAutoencoder`` too).
    """
    c_train, c_val, c_test = encode_splits(ae, splits)
    codes, labels = head_training_set(ae, splits, c_train, settings)
    scaler, head, history = train_head(codes, labels, c_val, splits.y_val, settings,
                                       autoencoder=ae, checkpoint=checkpoint, watch=watch, desc=desc,
                                       callbacks=callbacks)
    return ImageClassifier(ae, scaler, head), history, c_test


def fine_tune(frozen: ImageClassifier, splits: Splits, settings: Settings, *, checkpoint=None,
              watch: bool = False, callbacks=()):
    """Encoder, scaler and head of ``frozen`` trained together on the labels; best epoch on
    validation. The layers are shared: ``frozen`` and its autoencoder change too."""
    model = FineTuned(frozen.autoencoder, frozen.scaler, frozen.head)
    opt = AdamW(model.parameters(), lr=settings.finetune_lr, weight_decay=settings.finetune_weight_decay)
    schedule = _cosine(settings.finetune_lr, len(splits.x_train), settings.finetune_epochs, settings)
    meta = {"model": model.config, "settings": settings.as_dict()}
    history = fit(model, CrossEntropy(label_smoothing=settings.finetune_label_smoothing), opt,
                  splits.x_train, splits.y_train,
                  epochs=settings.finetune_epochs, batch_size=settings.batch_size,
                  validation=(splits.x_val, splits.y_val), seed=settings.seed,
                  augment=Augmentation(flip=settings.finetune_flip, mask=settings.finetune_mask),
                  callbacks=_classifier_callbacks(schedule, settings, checkpoint, meta, "fine-tune")
                  + ([Watch(model)] if watch else []) + list(callbacks))
    return model, history


def _classifier_callbacks(schedule, settings: Settings, checkpoint, meta: dict, desc: str) -> list:
    """A classifier's stage: its schedule, the epoch best on validation kept, an optional checkpoint."""
    callbacks = [LearningRateSchedule(schedule), KeepBest(monitor=settings.select_on),
                 Progress(desc, bar=settings.progress)]
    if checkpoint is not None:
        callbacks.append(Checkpoint(checkpoint, meta=meta))
    return callbacks


# What the t-SNE step says before it starts: it shows no progress of its own.
TSNE_DURATION = "no progress shown; 10,000 codes took 38-50 s on 2-core CPUs"


def tsne_map(codes, labels, *, seed: int = 0, points: int = 10000, perplexity: float = 10.0):
    """t-SNE (scikit-learn) of the first ``points`` codes, and how good the map is.

    perplexity: about how many neighbours each point's neighbourhood holds.
    scikit-learn's default is 30; 10 was chosen on the 6,000 validation codes of
    the default autoencoder, for its trustworthiness: 0.99681 against 0.99654 at
    20 and 0.99541 at 50 (5-NN 82.9 % against 83.1 % at 20, a tie within the
    noise of 6,000 points). Otherwise scikit-learn's defaults. t-SNE needs
    3 x perplexity + 1 neighbours per point, so on fewer than 3 x perplexity + 2
    points the perplexity is lowered to (points - 1) / 3; ``tsne_perplexity`` in
    the result is the one used (callers say so when it differs).

    trustworthiness (k=5): how well the map's 5 nearest neighbours were
    neighbours in the codes too (1.0 = none is a stranger). 5-NN accuracy: the
    k-fold (k = 5, fewer if a class has fewer points) cross-validated accuracy
    of a 5-nearest-neighbour classifier on the 2-D map, and on the codes
    themselves for comparison.

    Raises ValueError, before any work, when ``points`` exceeds the codes given,
    is 10 or fewer (trustworthiness with k=5 needs more), or leaves a class
    with a single point (cross-validation needs two of each class present).
    """
    from sklearn.manifold import TSNE  # noqa: PLC0415  (heavy, optional step)

    if not 10 < points <= len(codes):
        raise ValueError(f"the t-SNE map needs more than 10 points and at most the {len(codes)} "
                         f"codes given; got {points} points")
    codes = backend.to_numpy(codes)[:points].astype(numpy.float32)
    labels = backend.to_numpy(labels)[:points]
    counts = numpy.bincount(labels)
    if (counts == 1).any():
        raise ValueError(f"class {int(numpy.flatnonzero(counts == 1)[0])} has a single point among "
                         f"the first {points}; the cross-validated 5-NN accuracy needs two of each "
                         "class: map more points")
    perplexity = min(float(perplexity), (points - 1) / 3)
    t0 = time.perf_counter()
    embedding = TSNE(n_components=2, perplexity=perplexity, random_state=seed).fit_transform(codes)
    seconds = time.perf_counter() - t0
    folds = knn_folds(labels)
    return embedding, {
        "tsne_points": points,
        "tsne_perplexity": perplexity,
        "tsne_trustworthiness": trustworthiness(codes, embedding, n_neighbors=5),
        "tsne_knn_accuracy": knn_accuracy(embedding, labels, folds=folds),
        "codes_knn_accuracy": knn_accuracy(codes, labels, folds=folds),
        "tsne_seconds": seconds,
    }


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Stages:
    """Numbered stage lines, "2/4 ...", counted from the stages this run has."""

    def __init__(self, total: int, log):
        self.total, self.done, self.log = total, 0, log

    def start(self, what: str) -> None:
        self.done += 1
        self.log(f"{self.done}/{self.total} {what}")


def _autoencoder_stages(out, settings, splits, stages, metrics, histories, root=True):
    """The reference autoencoder (if asked) and the default one; returns (default, reference or None).

    root: this process scores and writes (under MPI, rank 0; every rank trains).
    """
    ref = None
    if settings.reference:
        stages.start("reference autoencoder (784-128-64-32, ReLU code)")
        ref, h = train_autoencoder(splits.x_train, settings, validation=splits.x_val, reference=True,
                                   checkpoint=out / "autoencoder_reference.npz", desc="reference AE",
                                   watch=True)  # its units die: the diagnostics show when
        histories["reference autoencoder (ReLU code)"] = h
        if root:
            metrics.update(autoencoder_metrics(ref, splits.x_test, prefix="ref_ae"))
            write_diagnostics(h["watch"], out, metrics)
    stages.start(f"autoencoder ({settings.code_activation} code, "
                 f"{settings.ae_mask:g} of the pixels masked)")
    ae, h = train_autoencoder(splits.x_train, settings, validation=splits.x_val,
                              checkpoint=out / "autoencoder.npz")
    histories[f"autoencoder ({settings.code_activation} code)"] = h
    if root:
        metrics.update(autoencoder_metrics(ae, splits.x_test),
                       ae_seconds_per_epoch=float(numpy.median(h["seconds"])))
    return ae, ref


def _describe_ae(ae, reference: bool = False) -> str:
    """``autoencoder 784-256-128-32 (linear code)``: which one made a figure, in its title."""
    widths = "-".join(map(str, ae.config["widths"]))
    which = "reference autoencoder" if reference else "autoencoder"
    return f"{which} {widths} ({ae.config['code_activation']} code)"


def _loss_names(histories: dict) -> dict:
    """The loss on each stage's axis: BCE for the autoencoders, cross-entropy for the classifiers."""
    return {stage: "BCE per pixel" if stage.startswith(("autoencoder", "reference autoencoder"))
            else "cross-entropy" for stage in histories}


def write_diagnostics(records: dict, out: Path, metrics: dict) -> None:
    """``diagnostics.png`` of the reference autoencoder, and what it shows in words (for the report)."""
    from nanoae.fashion.plots import plot_diagnostics  # noqa: PLC0415  (matplotlib only for the demo)

    plot_diagnostics(records, out / "diagnostics.png",
                     title="Inside the reference autoencoder while it trained (nanoae.train.watch)")
    metrics["ref_ae_diagnostics"] = summarize(records)


def _train_loss_labels(settings: Settings) -> dict:
    """What each stage's training loss was measured on, where that is not the plain input."""
    labels = {"encoder + head fine-tuned": "train loss (flipped and masked inputs)"
              if settings.finetune_flip or settings.finetune_mask else "train loss"}
    if settings.ae_mask:
        labels[f"autoencoder ({settings.code_activation} code)"] = \
            f"train loss (on inputs with {settings.ae_mask:.0%} of pixels masked)"
    return labels


def run_demo(out: str | Path, settings: Settings, *, log=_log) -> dict:
    """Every step of the story; writes checkpoints, figures, metrics.json and report.md into ``out``.

    Under ``mpiexec -n N`` (``communicator.world()``) every rank runs the
    training stages, data parallel, and rank 0 alone does everything else:
    scores, the t-SNE map, figures, metrics.json and the report. The other
    ranks return the metrics they share (the settings, the histories).
    """
    from nanoae.fashion import plots  # noqa: PLC0415  (matplotlib only for the demo)
    from nanoae.fashion.report import write_report  # noqa: PLC0415

    root = world().is_root
    log = log if root else (lambda message: None)
    out = Path(out)
    backend.set_backend(settings.backend)
    started = time.perf_counter()
    metrics: dict = {"backend": backend.get_backend(), "seed": settings.seed,
                     "settings": settings.as_dict(), "versions": versions()}
    splits = load_splits(settings)  # before the folder exists: a data error leaves none behind
    if root:
        out.mkdir(parents=True, exist_ok=True)
    log(f"data: {len(splits.x_all)} training images ({len(splits.x_train)} train + "
        f"{len(splits.x_val)} validation, held out for model selection and the learning "
        f"curves), {len(splits.x_test)} test")
    histories: dict = {}
    stages = _Stages(4 + int(settings.reference) + int(settings.baselines), log)
    ae, ref = _autoencoder_stages(out, settings, splits, stages, metrics, histories, root=root)
    if root:
        _plot_reconstructions(ae, splits, metrics, out)

    stages.start("classifier on the frozen codes")
    frozen, h, c_test = train_frozen_classifier(ae, splits, settings, checkpoint=out / "classifier.npz")
    histories["classifier on frozen codes"] = h
    if root:
        codes = {_describe_ae(ae): backend.to_numpy(c_test)}
        if ref is not None:
            codes[_describe_ae(ref, reference=True)] = backend.to_numpy(
                predict(ref.encoder, backend.to_device(splits.x_test)))
        plots.plot_codes_activity(codes, out / "codes.png", title="Code units over the test images")
        metrics.update(score_classifier(frozen, splits, "clf_frozen", test_mirror=settings.test_mirror),
                       clf_frozen_best_epoch=h.get("best_epoch"))
        points = min(settings.tsne_points, len(splits.x_test))
        stages.start(f"t-SNE map of {points} test codes (scikit-learn; {TSNE_DURATION})")
        _tsne_stage(ae, c_test, splits, settings, metrics, out, log)
    if settings.baselines:  # before fine-tuning, which changes the autoencoder's encoder
        stages.start(f"baselines: PCA with {ae.code_size} components, and the raw pixels")
        baseline_stage(ae, splits, settings, metrics, out, root=root)
        if root:
            log(f"    baselines done in {metrics['baseline_seconds']:.0f} s")

    stages.start("encoder + head fine-tuned end to end")
    tuned, h = fine_tune(frozen, splits, settings, checkpoint=out / "finetuned.npz")
    histories["encoder + head fine-tuned"] = h
    metrics["histories"] = histories
    if not root:
        return metrics
    metrics.update(score_classifier(tuned, splits, "clf_finetune", test_mirror=settings.test_mirror),
                   clf_finetune_best_epoch=h.get("best_epoch"))
    probs = predict(tuned, backend.to_device(splits.x_test), mirror=metrics["clf_finetune_mirror"])
    cm = confusion_matrix(splits.y_test, backend.to_numpy(probs.argmax(axis=1)))
    plots.plot_confusion(cm, CLASS_NAMES, out / "confusion.png",
                         title="Fine-tuned classifier on the test set")
    plots.plot_curves(histories, out / "curves.png", train_labels=_train_loss_labels(settings),
                      loss_names=_loss_names(histories))

    metrics["total_seconds"] = time.perf_counter() - started
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_report(out, metrics, cm)
    log(f"done in {metrics['total_seconds']:.0f} s: see {out / 'report.md'}")
    return metrics


def baseline_stage(ae, splits: Splits, settings: Settings, metrics: dict, out: Path, *,
                   root: bool = True) -> None:
    """PCA with ``ae.code_size`` components and the raw pixels, scored as the codes are, into metrics.

    PCA is fit on the training split (as the autoencoder was trained on it);
    its head is the frozen-code head's very recipe (``train_frozen_classifier``:
    width, epochs, schedule, mirrored training images, epoch kept on
    validation), so only the features differ. The 5-NN figures use the
    images and folds of ``codes_knn_accuracy``. Every rank fits PCA and trains
    the head (data parallel, as for the codes); the root scores, draws
    ``pca_reconstructions.png`` (the same test images through both) and
    records ``baseline_seconds``, the whole stage's wall time.
    """
    started = time.perf_counter()
    pca = fit_pca(splits.x_train, ae.code_size, seed=settings.seed)
    classifier, history, _ = train_frozen_classifier(pca, splits, settings, desc="head on PCA")
    if not root:
        return
    points = min(settings.tsne_points, len(splits.x_test))
    metrics.update(pca_components=pca.code_size, **pca_reconstruction_metrics(pca, splits.x_test),
                   **knn_baselines(pca, splits.x_test, splits.y_test, points),
                   **score_classifier(classifier, splits, "clf_pca", test_mirror=settings.test_mirror),
                   clf_pca_best_epoch=history.get("best_epoch"))
    _plot_pca_reconstructions(ae, pca, splits, metrics, out)
    metrics["baseline_seconds"] = time.perf_counter() - started


def _one_per_class(labels) -> numpy.ndarray:
    """The index of the first image of each class: the images every reconstruction figure shows."""
    return numpy.concatenate([numpy.flatnonzero(labels == c)[:1] for c in range(10)])


def _plot_pca_reconstructions(ae, pca, splits, metrics, out) -> None:
    from nanoae.fashion import plots  # noqa: PLC0415

    sample = _one_per_class(splits.y_test)
    images = splits.x_test[sample]
    rows = {"autoencoder": backend.to_numpy(ae.reconstruct(as_batch(backend.to_device(images)))),
            f"PCA ({pca.code_size})": reconstruct_clipped(pca, images)}
    plots.plot_reconstruction_rows(images, rows, splits.y_test[sample], CLASS_NAMES,
                                   out / "pca_reconstructions.png",
                                   title=f"Test images, then {ae.code_size} numbers each: the "
                                   f"autoencoder (MSE {metrics['ae_test_mse']:.4f}) against PCA "
                                   f"(MSE {metrics['pca_test_mse']:.4f})")


def _plot_reconstructions(ae, splits, metrics, out) -> None:
    from nanoae.fashion import plots  # noqa: PLC0415

    sample = _one_per_class(splits.y_test)
    recon = backend.to_numpy(ae.reconstruct(as_batch(backend.to_device(splits.x_test[sample]))))
    plots.plot_reconstructions(splits.x_test[sample], recon, splits.y_test[sample], CLASS_NAMES,
                               out / "reconstructions.png", title="Test images (top) and their "
                               f"reconstructions by the {_describe_ae(ae)}, "
                               f"test BCE {metrics['ae_test_bce']:.4f}")


def _tsne_stage(ae, c_test, splits, settings, metrics, out, log) -> None:
    from nanoae.fashion import plots  # noqa: PLC0415

    points = min(settings.tsne_points, len(splits.x_test))
    embedding, tsne_metrics = tsne_map(c_test, splits.y_test, seed=settings.seed, points=points,
                                       perplexity=settings.tsne_perplexity)
    metrics.update(tsne_metrics)
    log(f"    t-SNE done in {tsne_metrics['tsne_seconds']:.0f} s")
    plots.plot_tsne(embedding, splits.y_test[:points], CLASS_NAMES, out / "tsne.png",
                    title=f"t-SNE of {points} test codes ({ae.code_size}-d)",
                    subtitle=f"trustworthiness (k=5) {tsne_metrics['tsne_trustworthiness']:.4f}, "
                             f"5-NN accuracy on the map {100 * tsne_metrics['tsne_knn_accuracy']:.1f} %")


def versions() -> dict:
    import sklearn  # noqa: PLC0415

    return {"nanoae": __version__, "numpy": numpy.__version__, "scikit-learn": sklearn.__version__,
            "python": platform.python_version(), "machine": platform.machine()}

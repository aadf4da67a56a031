"""Training and evaluation loops: mini-batches, history, schedules, checkpoints.

``fit`` runs the data flow of DESIGN.md once per mini-batch:

    x -> model.forward -> loss.forward -> model.backward_from_loss -> optimizer.step

and around it does what a user expects of a trainer:

* the data is placed on the device once; uint8 images stay uint8 there (4x less
  memory) and each batch is scaled to float32 in [0, 1] as it is drawn;
* the order of the examples is a seeded permutation per epoch, derived from
  ``(seed, epoch)`` alone, so a resumed run sees exactly the batches an
  uninterrupted one would;
* per-step losses stay on the device and are read once per epoch (one
  host/device sync per epoch, not per batch);
* a history of train/validation loss and accuracy, learning rate and seconds
  per epoch; a tqdm progress bar that hides itself when output is not a
  terminal; an optional learning-rate schedule; early stopping that restores
  the best weights;
* checkpoints (``checkpoint.py``) at the end of each epoch and on Ctrl-C, from
  which ``resume=True`` continues exactly;
* a loss that turns NaN or infinite stops the run with a ``TrainingError``
  naming the epoch and step, keeping the last good checkpoint.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from pathlib import Path

import numpy

from . import backend
from .errors import TrainingError
from .losses import CrossEntropy

__all__ = ["fit", "evaluate", "predict", "cosine_schedule", "as_batch", "split_validation"]


def as_batch(xb, dtype=numpy.float32):
    """A float batch from stored data: uint8 pixels are scaled to [0, 1]; (N, 28, 28) is flattened.

    Doing this per batch, rather than once for the whole dataset, keeps the
    dataset as uint8 on the device: 47 MB for Fashion-MNIST instead of 188 MB.
    """
    xp = backend.get_array_module(xb)
    if xb.ndim > 2:
        xb = xb.reshape(len(xb), -1)
    if xb.dtype == numpy.uint8:
        return xp.multiply(xb, numpy.dtype(dtype).type(1 / 255), dtype=dtype)  # one pass
    return xb


def cosine_schedule(lr: float, total_steps: int, warmup_steps: int = 0, final: float = 0.0):
    """lr(step): a linear warm-up, then half a cosine from ``lr`` down to ``final * lr``."""
    def schedule(step: int) -> float:
        if step < warmup_steps:
            return lr * (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return lr * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
    return schedule


def split_validation(n: int, fraction: float, seed: int):
    """Index arrays (train, validation): a seeded, stratification-free random split of range(n)."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    perm = numpy.random.default_rng([seed, 7919]).permutation(n)
    n_val = max(1, int(round(n * fraction)))
    return numpy.sort(perm[n_val:]), numpy.sort(perm[:n_val])


def predict(model, x, *, batch_size: int = 2048, mirror: bool = False):
    """model(x) in batches, concatenated (stays on the device).

    mirror: test-time augmentation for square images: the mean of the model's
    outputs on each image and on its mirror image (for a classifier trained
    with ``flip``, both are pictures of the same class).
    """
    xp = backend.get_array_module(x)
    return xp.concatenate([_forward(model, as_batch(x[i:i + batch_size]), mirror)
                           for i in range(0, len(x), batch_size)])


def evaluate(model, loss, x, y=None, *, batch_size: int = 2048, mirror: bool = False) -> dict:
    """Mean loss (and accuracy, for labels) of ``model`` on (x, y); y=None means y = x.

    Returns host floats: ``{"loss": ..., "accuracy": ...}`` (accuracy only for
    class labels). Batches are weighted by their size, so the result is the
    mean over all examples. mirror: score the mean of the class probabilities
    of each image and its mirror image (see ``predict``); needs labels.
    """
    n = len(x)
    if n == 0:
        raise ValueError("evaluate: got no examples")
    if mirror and y is None:
        raise ValueError("evaluate: mirror averages class probabilities and needs labels y")
    loss_sum = correct = 0
    for i in range(0, n, batch_size):
        xb = as_batch(x[i:i + batch_size])
        target = xb if y is None else y[i:i + batch_size]
        pred = _forward(model, xb, mirror)
        # an average of two softmax outputs has no logits: the loss reads the probabilities
        value = loss(pred, target) if mirror else _loss_value(model, loss, pred, target)
        loss_sum = loss_sum + value * len(xb)
        if isinstance(loss, CrossEntropy):
            correct = correct + (pred.argmax(axis=1) == target).sum()
    result = {"loss": float(loss_sum) / n}  # the one sync of the evaluation
    if isinstance(loss, CrossEntropy):
        result["accuracy"] = float(correct) / n
    return result


def _forward(model, xb, mirror: bool):
    if not mirror:
        return model(xb)
    return 0.5 * (model(xb) + model(mirror_images(xb)))


def _loss_value(model, loss, pred, target):
    """loss(pred, target), from the last activation's logits when the pair fuses."""
    last = model.last_layer() if hasattr(model, "last_layer") else model
    logits = getattr(last, "logits", None) if loss.fuses_with(last) else None
    return loss(pred, target, logits=logits)


class _StopFlag:
    """Turns Ctrl-C into a flag checked between steps, so a step is never cut in half.

    An exception raised inside optimizer.step() could leave the weights half
    updated; with the flag, the loop finishes the step, saves a consistent
    checkpoint and only then stops. A second Ctrl-C interrupts at once.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def fit(model, loss, optimizer, x, y=None, *, epochs: int, batch_size: int = 256,
        validation=None, seed: int = 0, schedule=None, patience: int | None = None,
        restore_best: bool = False, monitor: str = "val_loss", flip: bool = False, shift: int = 0,
        mask: float = 0.0,
        checkpoint: str | Path | None = None, resume: bool = False, meta: dict | None = None,
        progress: bool | None = None, verbose: bool = True, desc: str = "train") -> dict:
    """Train ``model`` on (x, y) with mini-batches; returns the history (a dict of lists).

    x: the inputs, a host or device array (uint8 pixels are scaled per batch).
    y: integer labels, or None to train an autoencoder (the target is the input).
    validation: (x_val, y_val) (y_val None for an autoencoder), evaluated each epoch.
    schedule: a function step -> learning rate (e.g. ``cosine_schedule``), or None.
    patience: stop after this many epochs without a lower validation loss, and
        restore the weights of the best epoch (needs ``validation``).
    restore_best: at the end, restore the weights of the best epoch on
        validation (implied by ``patience``; needs ``validation``).
    monitor: what "best" means: "val_loss" (lowest) or "val_accuracy" (highest;
        a tie goes to the later epoch, which a decaying schedule has refined).
    checkpoint: a path; the model, optimizer and history are saved there
        (atomically) after every epoch and when Ctrl-C stops the run.
    resume: continue from ``checkpoint`` (same optimizer state, same data order).
    flip: data augmentation for square images: mirror a random half of each
        batch left to right (chosen from ``(seed, epoch)``, like the order).
    shift: data augmentation for square images: move each image by a random
        whole number of pixels in -shift..shift along each axis, filling with 0
        (also drawn from ``(seed, epoch)``).
    mask: masking noise: zero each input value with this probability and scale
        the others by 1 / (1 - mask), so the expected input is unchanged. An
        autoencoder still reconstructs the clean batch (a denoising
        autoencoder). Drawn on the device from ``(seed, epoch, step)``.
    progress: show a progress bar (None: only on a terminal).

    Raises KeyboardInterrupt after saving when stopped with Ctrl-C, and
    TrainingError when the loss stops being finite.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415  (keeps the numerical core free of tqdm)

    from .checkpoint import load_checkpoint, save_checkpoint  # noqa: PLC0415

    if int(epochs) < 1:
        raise ValueError(f"fit: epochs must be >= 1, got {epochs}")
    if int(batch_size) < 1:
        raise ValueError(f"fit: batch_size must be >= 1, got {batch_size}")
    restore_best = restore_best or patience is not None
    if restore_best and validation is None:
        raise ValueError("fit: early stopping and restore_best need validation data")
    if monitor not in ("val_loss", "val_accuracy"):
        raise ValueError(f"fit: monitor must be 'val_loss' or 'val_accuracy', got {monitor!r}")
    if monitor == "val_accuracy" and y is None:
        raise ValueError("fit: monitor='val_accuracy' needs labels")
    if resume and checkpoint is None:
        raise ValueError("fit: resume=True needs a checkpoint path")
    if int(shift) < 0:
        raise ValueError(f"fit: shift must be >= 0 pixels, got {shift}")
    if not 0 <= mask < 1:
        raise ValueError(f"fit: mask must be a probability in [0, 1), got {mask}")

    xp = backend.xp()
    x = backend.to_device(x)
    y = None if y is None else backend.to_device(y)
    if validation is not None:  # placed on the device once, like the training data
        validation = tuple(None if v is None else backend.to_device(v) for v in validation)
    _validate_data(model, loss, x, y)
    n = len(x)
    steps = math.ceil(n / batch_size)
    history = {"epoch": [], "train_loss": [], "val_loss": [], "lr": [], "seconds": []}
    if y is not None:
        history.update(train_accuracy=[], val_accuracy=[])
    start_epoch, start_step, carried = 0, 0, (0.0, 0)
    if resume:
        saved = load_checkpoint(checkpoint, model, optimizer)["user"]
        history = saved["history"]
        start_epoch, start_step = saved["epoch"], saved["step"]
        carried = (saved["partial_loss_sum"], saved["partial_correct"])
    meta = dict(meta or {})
    best = {"score": -math.inf, "weights": None, "epoch": None}
    sign = -1.0 if monitor == "val_loss" else 1.0  # higher score is better
    check_before, loss.check = loss.check, False  # validated above; per-step checks cost syncs
    losses = xp.zeros(steps, dtype=numpy.float32)  # per-step losses, read once per epoch

    def save(epoch, step, loss_sum=0.0, correct=0):
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, meta={
                **meta, "epoch": epoch, "step": step, "history": history, "seed": seed,
                "partial_loss_sum": loss_sum, "partial_correct": correct})

    # Progress and epoch lines go to stderr: stdout stays free for results (the CLI's JSON).
    bar = tqdm(file=sys.stderr, total=epochs * steps, initial=start_epoch * steps + start_step, desc=desc,
               unit="step", disable=(None if progress is None else not progress), leave=False)
    try:
        with _StopFlag() as stop, bar:
            for epoch in range(start_epoch, epochs):
                t0 = time.perf_counter()
                epoch_rng = numpy.random.default_rng([seed, epoch])
                perm = xp.asarray(epoch_rng.permutation(n))
                mirrored = xp.asarray(epoch_rng.random(n) < 0.5) if flip else None
                offsets = xp.asarray(epoch_rng.integers(-shift, shift + 1, (n, 2))) if shift else None
                correct = xp.zeros((), dtype=numpy.int64)
                first = start_step if epoch == start_epoch else 0
                if first:
                    losses[:first] = 0
                    losses[0] = carried[0]  # the loss sum of the steps done before the interruption
                    correct += int(carried[1])
                for step in range(first, steps):
                    if schedule is not None:
                        optimizer.lr = schedule(epoch * steps + step)
                    idx = perm[step * batch_size:(step + 1) * batch_size]
                    xb = as_batch(x[idx])
                    if flip:
                        xb = _mirror(xb, mirrored[idx])
                    if shift:
                        xb = shift_images(xb, offsets[idx], shift)
                    target = xb if y is None else y[idx]
                    if mask:
                        xb = mask_inputs(xb, mask, xp.random.default_rng([seed, epoch, step]))
                    pred = model(xb)
                    losses[step] = _loss_value(model, loss, pred, target) * len(idx)
                    model.backward_from_loss(loss, input_grad=False)
                    optimizer.step()
                    if y is not None:
                        correct += (pred.argmax(axis=1) == target).sum()
                    bar.update(1)
                    if stop.requested:
                        save(epoch, step + 1, float(losses[:step + 1].sum()), int(correct))
                        where = f"to {checkpoint}" if checkpoint else "nowhere (no checkpoint path given)"
                        raise KeyboardInterrupt(f"stopped at epoch {epoch + 1}, step {step + 1}; "
                                                f"saved {where}")
                host_losses = backend.to_numpy(losses)  # the one sync of the epoch
                if not numpy.isfinite(host_losses).all():
                    bad = int(numpy.flatnonzero(~numpy.isfinite(host_losses))[0])
                    kept = (f"the last good checkpoint (end of epoch {epoch}) is {checkpoint}"
                            if checkpoint and epoch > 0 else "no checkpoint was written")
                    raise TrainingError(
                        f"the loss became {host_losses[bad]} at epoch {epoch + 1}, step {bad + 1} of "
                        f"{steps}; {kept}. Try a lower learning rate (now {optimizer.lr:g}).")
                history["epoch"].append(epoch + 1)
                history["train_loss"].append(float(host_losses.sum()) / n)
                history["lr"].append(optimizer.lr)
                if y is not None:
                    history["train_accuracy"].append(int(correct) / n)
                if validation is not None:
                    result = evaluate(model, loss, *validation)
                    history["val_loss"].append(result["loss"])
                    if "accuracy" in result:
                        history["val_accuracy"].append(result["accuracy"])
                history["seconds"].append(time.perf_counter() - t0)
                if verbose:
                    bar.write(_epoch_line(desc, history, epochs), file=sys.stderr)
                score = sign * history[monitor][-1] if validation is not None else None
                if score is not None and (score > best["score"] or
                                          (monitor == "val_accuracy" and score == best["score"])):
                    best.update(score=score, epoch=epoch + 1, weights=optimizer.flat.data.copy())
                save(epoch + 1, 0)
                if patience is not None and epoch + 1 - best["epoch"] >= patience:
                    if verbose:
                        bar.write(f"{desc}: no better validation loss for {patience} epochs; stopping",
                                  file=sys.stderr)
                    break
    finally:
        loss.check = check_before
    if restore_best and best["weights"] is not None:
        optimizer.flat.data[...] = best["weights"]  # restore the best epoch's weights
        history["best_epoch"] = best["epoch"]
        save(len(history["epoch"]), 0)
    return history


def _square_side(x, what: str) -> int:
    """The side of the flattened square images in the rows of ``x``."""
    side = math.isqrt(x.shape[1])
    if side * side != x.shape[1]:
        raise ValueError(f"{what} needs flattened square images, got {x.shape[1]} features")
    return side


def mirror_images(x):
    """Flattened square images (N, side * side) mirrored left to right, as a new array."""
    side = _square_side(x, "mirror")
    return x.reshape(len(x), side, side)[:, :, ::-1].reshape(len(x), -1)  # the reshape copies


def _mirror(xb, which):
    """Flip the rows of ``xb`` (flattened square images) selected by the boolean mask ``which``."""
    side = _square_side(xb, "fit: flip")
    if not xb.flags.owndata:
        xb = xb.copy()  # a view of the caller's data: never mirror that in place
    images = xb.reshape(len(xb), side, side)
    images[which] = images[which][:, :, ::-1]  # the right side is a copy: no overlap
    return xb


def mask_inputs(xb, p: float, rng):
    """``xb`` with each value zeroed with probability p and the rest scaled by 1 / (1 - p)."""
    out = xb * (rng.random(xb.shape, dtype=numpy.float32) >= p)  # a new array, never xb
    out *= xb.dtype.type(1 / (1 - p))
    return out


def shift_images(xb, offsets, pad: int):
    """Move each flattened square image of ``xb`` by its (rows, columns) in ``offsets``.

    ``offsets`` is an integer array (N, 2) with entries in -pad..pad; pixels
    moved in from outside the image are 0. One gather for the whole batch:
    output pixel (i, j) of image b is input pixel (i - dy_b, j - dx_b) of the
    image zero-padded by ``pad`` on every side.
    """
    xp = backend.get_array_module(xb)
    side = _square_side(xb, "shift")
    padded = xp.pad(xb.reshape(len(xb), side, side), ((0, 0), (pad, pad), (pad, pad)))
    grid = xp.arange(side)
    rows = (grid + pad)[None, :, None] - offsets[:, 0, None, None]  # (N, side, 1)
    cols = (grid + pad)[None, None, :] - offsets[:, 1, None, None]  # (N, 1, side)
    batch = xp.arange(len(xb))[:, None, None]
    return padded[batch, rows, cols].reshape(len(xb), -1)


def _validate_data(model, loss, x, y):
    """Check the whole dataset once, so the per-step loss needs no checks (and no syncs)."""
    if len(x) == 0:
        raise ValueError("fit: got no training examples")
    if y is not None and len(y) != len(x):
        raise ValueError(f"fit: x has {len(x)} examples but y has {len(y)} labels")
    if x.dtype.kind == "f" and not bool(backend.get_array_module(x).isfinite(x).all()):
        raise ValueError("fit: the inputs contain NaN or infinite values")
    out = model(as_batch(x[:1]))  # also reports a shape or dtype mismatch before any training
    if y is not None and isinstance(loss, CrossEntropy):
        if y.dtype.kind not in "iu":
            raise TypeError(f"fit: labels must be integers, got {y.dtype}")
        lo, hi, classes = int(y.min()), int(y.max()), out.shape[-1]
        if lo < 0 or hi >= classes:
            raise ValueError(f"fit: labels must lie in 0..{classes - 1} (the model has {classes} "
                             f"outputs), got values in {lo}..{hi}")
    elif y is None and x.dtype.kind == "f" and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ValueError("fit: autoencoder inputs are BCE targets and must lie in [0, 1], got "
                         f"[{float(x.min()):g}, {float(x.max()):g}]; scale them (uint8 pixels are "
                         "scaled automatically)")


def _epoch_line(desc, history, epochs) -> str:
    parts = [f"{desc} epoch {history['epoch'][-1]}/{epochs}",
             f"loss {history['train_loss'][-1]:.4f}"]
    if history.get("train_accuracy"):
        parts.append(f"acc {100 * history['train_accuracy'][-1]:.2f}%")
    if history["val_loss"]:
        parts.append(f"val_loss {history['val_loss'][-1]:.4f}")
    if history.get("val_accuracy"):
        parts.append(f"val_acc {100 * history['val_accuracy'][-1]:.2f}%")
    parts.append(f"{history['seconds'][-1]:.2f}s")
    return "  ".join(parts)

"""Training and evaluation loops: mini-batches, history, schedules, checkpoints.

One training step (``train_step``) is the data flow of the whole package:

    x -> model.forward -> loss.forward -> model.backward_from_loss -> optimizer.step

``fit`` runs it once per mini-batch and does around it what a user expects of a trainer:

* the data is placed on the device once; uint8 images stay uint8 there (4x less
  memory) and each batch is scaled to float32 in [0, 1] as it is drawn;
* the order of the examples is a seeded permutation per epoch, derived from
  ``(seed, epoch)`` alone, so a resumed run sees exactly the batches an
  uninterrupted one would (augmentation likewise: ``augment.py``);
* per-step losses stay on the device and are read once per epoch (one
  host/device sync per epoch, not per batch);
* a history of train/validation loss and accuracy, learning rate and seconds
  per epoch; a tqdm progress bar that hides itself when output is not a
  terminal; an optional learning-rate schedule; early stopping that restores
  the best weights;
* checkpoints (``checkpoint.py``) at the end of each epoch and on Ctrl-C, from
  which ``resume=True`` continues exactly (``trainstate.py`` says what is kept);
* a loss that turns NaN or infinite stops the run with a ``TrainingError``
  naming the epoch and step, keeping the last good checkpoint;
* data parallel over the ranks of an MPI job (``distributed.py``): every rank
  calls ``fit`` with the same model, data and settings (checked once, at the
  start); ``batch_size`` is the global batch and must divide by the ranks; each
  rank computes on its slice of every batch, the gradients are averaged between
  backward and step, and the run equals one process's with the same batch, up
  to rounding. Rank 0 alone shows progress, prints and writes the checkpoint.
  Ctrl-C under MPI ends the job at once (``distributed.abort_on_error``), with
  no mid-epoch save: the ranks could not agree on the step to stop at.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import dataclass

import numpy

from . import backend
from .augment import Augmentation, mask_inputs, mirror_images, shift_images
from .distributed import fingerprint, world
from .errors import TrainingError
from .losses import CrossEntropy
from .trainstate import TrainState

__all__ = ["fit", "train_step", "evaluate", "predict", "cosine_schedule", "as_batch",
           "split_validation", "mirror_images", "shift_images", "mask_inputs"]


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


def _on_model_device(model, x):
    """``x`` on the device of ``model``'s parameters (the active backend if it has none)."""
    params = model.parameters() if hasattr(model, "parameters") else []
    xp = backend.get_array_module(params[0].data) if params else backend.xp()
    return backend.to_numpy(x) if xp is numpy else xp.asarray(x)


def predict(model, x, *, batch_size: int = 2048, mirror: bool = False):
    """model(x) in batches, concatenated, on the model's device.

    x may live on the host or the device; it is moved to the model's device.
    mirror: test-time augmentation for square images: the mean of the model's
    outputs on each image and on its mirror image (for a classifier trained
    with ``flip``, both are pictures of the same class).
    """
    x = _on_model_device(model, x)
    xp = backend.get_array_module(x)
    return xp.concatenate([_forward(model, as_batch(x[i:i + batch_size]), mirror)
                           for i in range(0, len(x), batch_size)])


def evaluate(model, loss, x, y=None, *, batch_size: int = 2048, mirror: bool = False,
             comm=None) -> dict:
    """Mean loss (and accuracy, for a classifier) of ``model`` on (x, y); y=None means y = x.

    Returns host floats: ``{"loss": ..., "accuracy": ...}`` (accuracy only for
    ``CrossEntropy``). Batches are weighted by their size, so the result is the
    mean over all examples. mirror: score the mean of the class probabilities
    of each image and its mirror image (see ``predict``); needs labels.
    comm: the ranks of a data-parallel job (``distributed.py``), every one of
    them calling this with the same data: each scores its shard and the sums of
    losses and correct answers are added up across ranks, giving every rank the
    figures of the whole set. None: this process alone.
    """
    n = len(x)
    if n == 0:
        raise ValueError("evaluate: got no examples")
    if mirror and y is None:
        raise ValueError("evaluate: mirror averages class probabilities and needs labels y")
    if comm is not None and comm.size > 1:
        part = comm.shard(n)
        x, y = x[part], None if y is None else y[part]
    x = _on_model_device(model, x)
    y = None if y is None else _on_model_device(model, y)
    classify = isinstance(loss, CrossEntropy)
    loss_sum = correct = 0
    for i in range(0, len(x), batch_size):
        xb = as_batch(x[i:i + batch_size])
        target = xb if y is None else y[i:i + batch_size]
        pred = _forward(model, xb, mirror)
        # an average of two softmax outputs has no logits: the loss reads the probabilities
        value = loss(pred, target) if mirror else loss_value(model, loss, pred, target)
        loss_sum = loss_sum + value * len(xb)
        if classify:
            correct = correct + (pred.argmax(axis=1) == target).sum()
    sums = [float(loss_sum), float(correct)]  # the one sync of the evaluation
    if comm is not None and comm.size > 1:
        sums = comm.allreduce_sum(sums)
    result = {"loss": float(sums[0]) / n}
    if classify:
        result["accuracy"] = float(sums[1]) / n
    return result


def _forward(model, xb, mirror: bool):
    if not mirror:
        return model(xb)
    return 0.5 * (model(xb) + model(mirror_images(xb)))


def loss_value(model, loss, pred, target):
    """loss(pred, target), from the last activation's logits when the pair fuses (BCE)."""
    last = model.last_layer() if hasattr(model, "last_layer") else model
    logits = getattr(last, "logits", None) if loss.fuses_with(last) else None
    return loss(pred, target) if logits is None else loss(pred, target, logits=logits)


def train_step(model, loss, optimizer, xb, target, *, comm=None, weight: float = 1.0):
    """One step of gradient descent on the batch ``xb``; returns (loss value, prediction).

    The loss value stays on the device (reading it would make the host wait for
    the GPU). ``input_grad=False``: nobody needs the gradient with respect to the data.

    Data parallel (``distributed.py``): ``xb`` is this rank's shard of the global
    batch and ``weight`` its share of it (shard size / batch size); between
    backward and step the gradients become the weighted sum over the ranks, the
    gradient of the global batch's mean loss. An empty shard (weight 0) only
    joins that sum, and (None, None) is returned.
    """
    parallel = comm is not None and comm.size > 1
    value = pred = None
    if len(xb) or not parallel:  # (one process's empty batch is an error the model reports)
        pred = model(xb)
        value = loss_value(model, loss, pred, target)
        model.backward_from_loss(loss, input_grad=False)
    if parallel:
        comm.average_gradients(optimizer.params, weight=weight)
    optimizer.step()
    return value, pred


class _StopFlag:
    """Turns Ctrl-C into a flag checked between steps, so a step is never cut in half.

    An exception raised inside optimizer.step() could leave the weights half
    updated; with the flag, the loop finishes the step, saves a consistent
    checkpoint and only then stops. A second Ctrl-C interrupts at once.
    """

    def __init__(self, active: bool = True):
        self.requested = False
        self._previous = None
        self.active = active  # off under MPI: the ranks could not agree on the step to stop at

    def __enter__(self):
        if self.active and threading.current_thread() is threading.main_thread():
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
        mask: float = 0.0, checkpoint=None, resume: bool = False, meta: dict | None = None,
        progress: bool | None = None, verbose: bool = True, desc: str = "train", comm=None) -> dict:
    """Train ``model`` on (x, y) with mini-batches; returns the history (a dict of lists).

    x: the inputs, a host or device array (uint8 pixels are scaled per batch).
    y: integer labels, or None to train an autoencoder (the target is the input).
    validation: (x_val, y_val) (y_val None for an autoencoder), evaluated each epoch.
    schedule: a function step -> learning rate (e.g. ``cosine_schedule``), or None.
    patience: stop after this many epochs without a better validation figure
        (``monitor``), and restore the weights of the best epoch.
    restore_best: at the end, restore the weights of the best epoch on
        validation (implied by ``patience``; needs ``validation``).
    monitor: what "best" means: "val_loss" (lowest) or "val_accuracy" (highest;
        a tie goes to the later epoch, which a decaying schedule has refined).
    flip, shift, mask: data augmentation, see ``augment.Augmentation``.
    checkpoint: a path; the model, optimizer and run state are saved there
        (atomically) after every epoch and when Ctrl-C stops the run.
    resume: continue from ``checkpoint`` (same optimizer state, same data order,
        same best epoch).
    progress: show a progress bar (None: only on a terminal).
    comm: the ranks to train on, data parallel (see the module docstring). None:
        ``distributed.world()``, this process alone unless mpiexec started
        several; ``distributed.Communicator()``: this process alone, always.

    Raises KeyboardInterrupt after saving when stopped with Ctrl-C, and
    TrainingError when the loss stops being finite.
    """
    augmentation = Augmentation(flip=flip, shift=shift, mask=mask)  # checks its arguments
    restore_best = restore_best or patience is not None
    _check_options(epochs, batch_size, validation, restore_best, monitor, y, resume, checkpoint)
    comm = world() if comm is None else comm
    _check_ranks_agree(comm, model, x, y, validation, batch_size=int(batch_size), epochs=int(epochs),
                       seed=seed, augmentation=repr(augmentation), resume=resume)
    x, y = backend.to_device(x), None if y is None else backend.to_device(y)
    if validation is not None:  # placed on the device once, like the training data
        validation = tuple(None if v is None else backend.to_device(v) for v in validation)
    _validate_data(model, loss, x, y)
    state = TrainState(monitor, classify=isinstance(loss, CrossEntropy))
    meta = {**(meta or {}), "seed": seed}
    if resume:
        state.resume(checkpoint, model, optimizer)  # every rank reads the same checkpoint
    comm.broadcast_parameters(model.parameters())  # every rank starts from rank 0's weights
    writes = checkpoint is not None and comm.is_root
    save = (lambda: state.save(checkpoint, model, optimizer, meta)) if writes else (lambda: None)
    verbose, progress = verbose and comm.is_root, progress if comm.is_root else False
    job = _Job(model, loss, optimizer, x, y, int(batch_size), seed, schedule, augmentation,
               checkpoint, comm)
    check_before, loss.check = loss.check, False  # validated above; per-step checks cost syncs
    try:
        with _StopFlag(active=comm.size == 1) as stop, \
                _progress_bar(progress, desc, epochs, x, batch_size, state) as bar:
            for epoch in range(state.epoch, epochs):
                t0 = time.perf_counter()
                loss_sum, correct = _train_epoch(job, epoch, state, stop, bar, save)
                _end_epoch(job, validation, state, loss_sum, correct, t0)
                state.keep_if_best(model)
                save()
                if verbose:
                    bar.write(_epoch_line(desc, state.history, epochs), file=sys.stderr)
                if patience is not None and state.epochs_since_best() >= patience:
                    if verbose:
                        bar.write(f"{desc}: no better {monitor} for {patience} epochs; stopping",
                                  file=sys.stderr)
                    break
    finally:
        loss.check = check_before
    if restore_best:
        state.restore_best(model)
        save()
    return state.history


@dataclass
class _Job:
    """What every epoch of a ``fit`` call works with (its arguments, on the device)."""

    model: object
    loss: object
    optimizer: object
    x: object
    y: object
    batch_size: int
    seed: int
    schedule: object
    augmentation: Augmentation
    checkpoint: object
    comm: object  # distributed.Communicator: the ranks sharing each batch


def _train_epoch(job: _Job, epoch: int, state: TrainState, stop, bar, save):
    """The steps of one epoch; returns its (loss sum, correct count), read once at the end."""
    x, y, batch_size, optimizer, checkpoint = job.x, job.y, job.batch_size, job.optimizer, job.checkpoint
    comm, xp, n = job.comm, backend.get_array_module(x), len(x)
    steps = math.ceil(n / batch_size)
    perm = xp.asarray(numpy.random.default_rng([job.seed, epoch]).permutation(n))
    first = state.step  # 0 unless resumed mid-epoch
    # masks keyed by (seed, epoch, position): this rank draws its own examples, from step `first`
    draws = job.augmentation.for_epoch(xp, job.seed, epoch, n, features=math.prod(x.shape[1:]),
                                       batch_size=batch_size, shard=comm.shard, first_step=first)
    losses = []  # per-step loss sums, left on the device until the end of the epoch
    correct = xp.zeros((), dtype=numpy.int64)
    carried_losses, carried_correct = state.partial if first else ([], 0)
    for step in range(first, steps):
        if job.schedule is not None:
            optimizer.lr = job.schedule(epoch * steps + step)
        batch = perm[step * batch_size:(step + 1) * batch_size]
        rows = comm.shard(len(batch))
        idx = batch[rows]  # this rank's part of the global batch (all of it in one process)
        inputs, clean = draws.apply(as_batch(x[idx]), idx)
        target = clean if y is None else y[idx]
        value, pred = train_step(job.model, job.loss, optimizer, inputs, target, comm=comm,
                                 weight=len(idx) / len(batch))
        losses.append(value * len(idx) if len(idx) else xp.zeros((), dtype=numpy.float32))
        if len(idx) and "train_accuracy" in state.history:
            correct += (pred.argmax(axis=1) == target).sum()
        bar.update(1)
        if stop.requested:
            state.step, state.epoch = step + 1, epoch
            state.partial = (carried_losses + backend.to_numpy(xp.stack(losses)).tolist(),
                             carried_correct + int(correct))
            save()
            where = f"to {checkpoint}" if checkpoint else "nowhere (no checkpoint path given)"
            raise KeyboardInterrupt(f"stopped at epoch {epoch + 1}, step {step + 1}; saved {where}")
    host_losses = backend.to_numpy(xp.stack(losses))  # the one sync of the epoch
    correct = int(correct)
    if comm.size > 1:  # every rank's step sums and count, added up: those of the global batches
        reduced = comm.allreduce_sum(numpy.append(host_losses, correct))
        host_losses, correct = reduced[:-1].astype(numpy.float32), int(round(reduced[-1]))
    if not numpy.isfinite(host_losses).all():
        bad = int(numpy.flatnonzero(~numpy.isfinite(host_losses))[0])
        kept = (f"the last good checkpoint (end of epoch {epoch}) is {checkpoint}"
                if checkpoint and epoch > 0 else "no checkpoint was written")
        raise TrainingError(f"the loss became {host_losses[bad]} at epoch {epoch + 1}, step "
                            f"{first + bad + 1} of {steps}; {kept}. "
                            f"Try a lower learning rate (now {optimizer.lr:g}).")
    every_step = numpy.concatenate([numpy.asarray(carried_losses, dtype=numpy.float32), host_losses])
    return float(every_step.sum()), carried_correct + correct


def _end_epoch(job: _Job, validation, state: TrainState, loss_sum, correct, t0):
    """Record the epoch's figures in ``state``: train loss/accuracy, validation, lr, time."""
    n, figures = len(job.x), {}
    if "train_accuracy" in state.history:
        figures["train_accuracy"] = correct / n
    if validation is not None:
        result = evaluate(job.model, job.loss, *validation, comm=job.comm)
        figures["val_loss"] = result["loss"]
        if "accuracy" in result:
            figures["val_accuracy"] = result["accuracy"]
    state.record(epoch=state.epoch + 1,
                 train_loss=loss_sum / n, lr=job.optimizer.lr, seconds=time.perf_counter() - t0,
                 **figures)


def _progress_bar(progress, desc, epochs, x, batch_size, state):
    """A tqdm bar over all steps of the run, on stderr (stdout stays free for results)."""
    from tqdm.auto import tqdm  # noqa: PLC0415  (keeps the numerical core free of tqdm)

    steps = math.ceil(len(x) / batch_size)
    return tqdm(file=sys.stderr, total=epochs * steps, initial=state.epoch * steps + state.step,
                desc=desc, unit="step", disable=(None if progress is None else not progress),
                leave=False)


def _check_options(epochs, batch_size, validation, restore_best, monitor, y, resume, checkpoint):
    if int(epochs) < 1:
        raise ValueError(f"fit: epochs must be >= 1, got {epochs}")
    if int(batch_size) < 1:
        raise ValueError(f"fit: batch_size must be >= 1, got {batch_size}")
    if restore_best and validation is None:
        raise ValueError("fit: early stopping and restore_best need validation data")
    if monitor not in ("val_loss", "val_accuracy"):
        raise ValueError(f"fit: monitor must be 'val_loss' or 'val_accuracy', got {monitor!r}")
    if monitor == "val_accuracy" and y is None:
        raise ValueError("fit: monitor='val_accuracy' needs labels")
    if resume and checkpoint is None:
        raise ValueError("fit: resume=True needs a checkpoint path")


def _check_ranks_agree(comm, model, x, y, validation, **settings):
    """Data parallel: a global batch that splits evenly, and ranks that agree (checked once).

    Ranks that trained different models, on different data or with different
    settings would still exchange gradients without a complaint: a silently wrong run.
    """
    if comm.size == 1:
        return
    batch_size = settings["batch_size"]
    if batch_size % comm.size:
        nearest = comm.size * max(1, round(batch_size / comm.size))
        raise ValueError(f"fit: the global batch_size {batch_size} does not divide by the "
                         f"{comm.size} ranks; use a multiple of {comm.size} (e.g. {nearest}): "
                         "each rank takes batch_size / ranks examples of every batch")
    if backend.get_array_module(*[p.data for p in model.parameters()]) is not numpy:
        comm.check_device(model.parameters())  # one GPU per rank, each holding its own model
    comm.check_agree("the model", (repr(model), [(tuple(p.data.shape), str(p.data.dtype))
                                                 for p in model.parameters()]))
    comm.check_agree("the training and validation data", fingerprint(x, y, *(validation or ())))
    comm.check_agree("the settings of fit", settings)


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

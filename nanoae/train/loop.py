"""Training and evaluation loops: mini-batches, history, and the callbacks around them.

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
  per epoch (``state.TrainState``);
* everything optional around the steps is a callback (``callbacks.py``): a
  learning-rate schedule, the best epoch kept and restored (with early
  stopping), checkpoints after each epoch and on Ctrl-C from which a run
  resumes exactly, the progress bar, diagnostics (``watch.py``); data
  augmentation is the ``augment`` argument (``augment.py``);
* a loss that turns NaN or infinite stops the run with a ``TrainingError``
  naming the epoch and step, keeping the last good checkpoint;
* data parallel over the ranks of an MPI job (``parallel/communicator.py``): every rank
  calls ``fit`` with the same model, data and settings (checked once, at the
  start); ``batch_size`` is the global batch and must divide by the ranks; each
  rank computes on its slice of every batch, the gradients are summed between
  backward and step, each rank updates its 1/N range of the weights with its
  1/N of the optimizer's state (``zero.ShardedOptimizer``, ZeRO-1), and the
  run equals one process's with the same batch, up to rounding. Rank 0 alone shows progress, prints and writes the checkpoint.
  Ctrl-C under MPI, reaching any rank, stops every rank after the same step
  (the ranks all-reduce the stop flag after each step); rank 0 saves the whole
  run mid-epoch as a single process does, and it resumes on any number of ranks.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
import time
from dataclasses import dataclass

import numpy

from nanoae import backend
from nanoae.errors import Interrupted, TrainingError
from nanoae.layers import seek_draws, set_training
from nanoae.losses import CrossEntropy
from nanoae.parallel.communicator import fingerprint, world
from nanoae.parallel.zero import ShardedOptimizer
from nanoae.train.augment import Augmentation, mask_inputs, mirror_images, shift_images
from nanoae.train.callbacks import Checkpoint, in_run_order
from nanoae.train.state import TrainState

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
    The model is put in evaluation mode (``set_training(model, False)``: no dropout).
    """
    set_training(model, False)
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
    comm: the ranks of a data-parallel job (``parallel/communicator.py``), every one of
    them calling this with the same data: each scores its shard and the sums of
    losses and correct answers are added up across ranks, giving every rank the
    figures of the whole set. None: this process alone.
    The model is put in evaluation mode (``set_training(model, False)``: no dropout).
    """
    set_training(model, False)
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
    """loss(pred, target) for pred = model's latest output (``Sequential.loss_value``);
    a single layer as the model is its own last layer."""
    if hasattr(model, "loss_value"):
        return model.loss_value(loss, pred, target)
    return loss.after(model, pred, target)


def train_step(model, loss, optimizer, xb, target):
    """One step of gradient descent on the batch ``xb``; returns (loss value, prediction).

        pred = model(xb); value = loss(pred, target); backward; optimizer.step()

    The loss value stays on the device (reading it would make the host wait for
    the GPU). ``input_grad=False``: nobody needs the gradient with respect to the data.

    Data parallel is the optimizer's business: ``xb`` is then this rank's shard
    of the global batch, and a ``ShardedOptimizer`` (``nanoae.parallel.zero``)
    sums the ranks' gradients, weighted by their shares, inside its ``step()``.
    An empty shard computes nothing but still takes that step with the other
    ranks, and (None, None) is returned.
    """
    value = pred = None
    if len(xb) or not isinstance(optimizer, ShardedOptimizer):  # one process: an empty batch
        pred = model(xb)                                       # is an error the model reports
        value = loss_value(model, loss, pred, target)
        model.backward_from_loss(loss, input_grad=False)
    optimizer.step()
    return value, pred


class _StopFlag:
    """Turns Ctrl-C into a flag checked between steps, so a step is never cut in half.

    An exception raised inside optimizer.step() could leave the weights half
    updated; with the flag, the loop finishes the step, saves a consistent
    checkpoint and only then stops. A second Ctrl-C interrupts at once.

    Under MPI the ranks agree on the step: after every step they all-reduce the
    flag (one host integer; ``Communicator.any``), so a Ctrl-C that reaches any
    rank stops every rank after the same step. (Why per step: docs/distributed.md.)
    """

    def __init__(self, active: bool = True):
        self.requested = False
        self._previous = None
        self.active = active

    def __enter__(self):
        # An ignored SIGINT stays ignored: whoever started us (``... &``, nohup) asked that
        # Ctrl-C not reach this job, and fit has no business undoing it.
        if (self.active and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN):
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
        validation=None, seed: int = 0, augment: Augmentation | None = None, callbacks=(),
        comm=None) -> dict:
    """Train ``model`` on (x, y) with mini-batches; returns the history (a dict of lists).

    x: the inputs, a host or device array (uint8 pixels are scaled per batch).
    y: integer labels, or None to train an autoencoder (the target is the input).
    epochs, batch_size: passes over x, and examples per step (the last step of
        an epoch takes what is left).
    validation: (x_val, y_val) (y_val None for an autoencoder), evaluated each epoch.
    seed: the data order (a permutation per epoch) and the augmentation's draws.
    augment: ``augment.Augmentation(flip=, shift=, mask=)`` applied to each batch.
    callbacks: what happens around the steps (``callbacks.py``):
        ``LearningRateSchedule``, ``KeepBest`` (best epoch, early stopping),
        ``Checkpoint`` (save, resume), ``Progress`` (bar and epoch lines; one
        is added when none is given), ``watch.Watch`` (diagnostics).
    comm: the ranks to train on, data parallel (see the module docstring). None:
        ``communicator.world()``, this process alone unless mpiexec started
        several; ``communicator.Communicator()``: this process alone, always.

    Dropout: the model is in training mode (``set_training(model, True)``) for
    each epoch's steps, in evaluation mode for the validation, and left in
    evaluation mode when fit returns; before every step ``seek_draws`` tells the
    model where this rank's rows lie in the epoch, so its masks are those of an
    uninterrupted single-process run.

    Raises KeyboardInterrupt after the callbacks' ``on_interrupt`` (a
    ``Checkpoint`` saves there) when stopped with Ctrl-C, and TrainingError
    when the loss stops being finite.
    """
    augment = Augmentation() if augment is None else augment
    callbacks = in_run_order(callbacks)
    _check_options(epochs, batch_size, augment)
    comm = world() if comm is None else comm
    resume = any(isinstance(cb, Checkpoint) and cb.resume for cb in callbacks)
    _check_ranks_agree(comm, model, x, y, validation, batch_size=int(batch_size), epochs=int(epochs),
                       seed=seed, augmentation=repr(augment), resume=resume)
    x, y = backend.to_device(x), None if y is None else backend.to_device(y)
    if validation is not None:  # placed on the device once, like the training data
        validation = tuple(None if v is None else backend.to_device(v) for v in validation)
    _validate_data(model, loss, x, y)
    # fit's own copy of the loss, with the per-step value checks off (the data was checked
    # once, above, and each check would cost a device sync): the caller's loss is left as it is
    run_loss = copy.copy(loss)
    run_loss.check = False
    run = Run(model, run_loss, optimizer, x, y, validation, int(epochs), int(batch_size), seed,
              augment, comm, TrainState(classify=isinstance(loss, CrossEntropy)))
    try:
        with _StopFlag() as stop:
            _call(callbacks, "on_train_begin", run)  # a Checkpoint may resume here
            comm.broadcast_parameters(model.parameters())  # every rank starts from rank 0's weights
            if comm.size > 1:  # each rank updates its 1/N of the weights (ZeRO-1, parallel/zero.py)
                run.sharded = ShardedOptimizer(optimizer, comm)
            for epoch in range(run.state.epoch, run.epochs):
                run.epoch = epoch
                t0 = time.perf_counter()
                _call(callbacks, "on_epoch_begin", run)
                loss_sum, correct = _train_epoch(run, callbacks, stop)
                _end_epoch(run, loss_sum, correct, t0)
                _call(callbacks, "on_epoch_end", run)
                if run.stop_reason:
                    break
            run.end_sharding()
            _call(callbacks, "on_train_end", run)
    finally:
        set_training(model, False)  # a trained model is used to evaluate and predict
        _call(callbacks, "close", run)
    return run.state.history


def _call(callbacks, hook: str, run) -> None:
    for cb in callbacks:
        getattr(cb, hook)(run)


@dataclass
class Run:
    """One call of ``fit``: its arguments (the data on the device) and where it is.

    Callbacks receive it (``callbacks.py``). ``state`` is what a checkpoint
    keeps (``state.TrainState``); ``epoch`` and ``step`` count from 0.
    """

    model: object
    loss: object
    optimizer: object
    x: object
    y: object
    validation: object
    epochs: int
    batch_size: int
    seed: int
    augment: Augmentation
    comm: object  # communicator.Communicator: the ranks sharing each batch
    state: TrainState
    epoch: int = 0
    step: int = 0
    stop_reason: str = ""  # set by a callback (e.g. KeepBest's patience) to end after this epoch
    sharded: ShardedOptimizer | None = None  # data parallel: steps this rank's range of `optimizer`

    @property
    def stepper(self):
        """What takes the steps: the sharded optimizer under data parallel, else ``optimizer``."""
        return self.optimizer if self.sharded is None else self.sharded

    def whole_optimizer_state(self):
        """A context inside which ``optimizer`` holds the whole, current state (to save it).

        Data parallel: gathered from every rank's range (every rank must enter),
        and let go of again on leaving (``ShardedOptimizer.whole_state``).
        """
        return contextlib.nullcontext() if self.sharded is None else self.sharded.whole_state()

    def end_sharding(self) -> None:
        """Training is over (done or interrupted; every rank calls this at the same step):
        ``optimizer`` gets the whole state back for good, and takes the steps again."""
        if self.sharded is not None:
            self.sharded.gather_state()
            self.sharded = None

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    @property
    def global_step(self) -> int:
        """Steps since the start of the run (of epoch 0), resumed runs included."""
        return self.epoch * self.steps_per_epoch + self.step


def _train_epoch(run: Run, callbacks, stop):
    """The steps of one epoch; returns its (loss sum, correct count), read once at the end."""
    batches = _EpochBatches(run)
    sums = _EpochSums(run)
    set_training(run.model, True)  # Dropout drops during the steps (the validation turns it off)
    for step in range(run.state.step, run.steps_per_epoch):  # from 0 unless resumed mid-epoch
        run.step = step
        _call(callbacks, "on_step_begin", run)
        inputs, target, shard_size, first_row = batches.get(step)
        seek_draws(run.model, run.seed, run.epoch, first_row)  # Dropout's masks: those of these rows
        value, pred = train_step(run.model, run.loss, run.stepper, inputs, target)
        sums.add(value, pred, target, shard_size)
        _call(callbacks, "on_step_end", run)
        if run.comm.any(stop.requested):  # every rank, the same answer (one tiny host all-reduce)
            _interrupt(run, callbacks, *sums.read())
    step_losses, correct = sums.read()  # the one sync of the epoch
    _check_finite(run, callbacks, step_losses)
    return float(step_losses.sum()), correct


class _EpochBatches:
    """This rank's part of each batch of an epoch: the seeded order, the shard, the augmentation.

    The order is a permutation drawn from ``(seed, epoch)`` alone and the masks are
    keyed by (seed, epoch, position), so a resumed run sees exactly the batches an
    uninterrupted one would; each rank draws for its own examples only.
    """

    def __init__(self, run: Run):
        x, n = run.x, len(run.x)
        self.run, self.xp = run, backend.get_array_module(x)
        self.order = self.xp.asarray(numpy.random.default_rng([run.seed, run.epoch]).permutation(n))
        self.draws = run.augment.for_epoch(self.xp, run.seed, run.epoch, n,
                                           features=math.prod(x.shape[1:]), batch_size=run.batch_size,
                                           shard=run.comm.shard, first_step=run.state.step)

    def get(self, step: int):
        """(inputs, target, examples on this rank, the position of the first of them in the
        epoch's order) of batch ``step``."""
        run, size = self.run, self.run.batch_size
        batch = self.order[step * size:(step + 1) * size]
        rows = run.comm.shard(len(batch))  # this rank's part (all of it in one process)
        idx = batch[rows]
        inputs, clean = self.draws.apply(as_batch(run.x[idx]), idx)
        return inputs, clean if run.y is None else run.y[idx], len(idx), step * size + rows.start


class _EpochSums:
    """Each step's loss sum and the correct count, kept on the device until ``read``.

    A run resumed mid-epoch starts from the sums its checkpoint kept of the steps already done.
    """

    def __init__(self, run: Run):
        self.run, self.xp = run, backend.get_array_module(run.x)
        self.losses = []  # per-step loss sums, on the device
        self.correct = self.xp.zeros((), dtype=numpy.int64)
        self.carried_losses, self.carried_correct = run.state.partial if run.state.step else ([], 0)

    def add(self, value, pred, target, shard_size: int) -> None:
        """Note a step: its mean loss times the examples of this rank, and, for a classifier,
        how many it got right (an empty shard adds nothing)."""
        self.losses.append(value * shard_size if shard_size else self.xp.zeros((), dtype=numpy.float32))
        if shard_size and "train_accuracy" in self.run.state.history:
            self.correct += (pred.argmax(axis=1) == target).sum()

    def read(self):
        """(every step's loss sum as a float32 host array, correct count): those of the global
        batches, summed over the ranks, after the steps carried from before a resume."""
        losses = backend.to_numpy(self.xp.stack(self.losses))  # a device sync
        correct = int(self.correct)
        if self.run.comm.size > 1:
            reduced = self.run.comm.allreduce_sum(numpy.append(losses, correct))
            losses, correct = reduced[:-1].astype(numpy.float32), int(round(reduced[-1]))
        carried = numpy.asarray(self.carried_losses, dtype=numpy.float32)
        return numpy.concatenate([carried, losses]), self.carried_correct + correct


def _check_finite(run: Run, callbacks, step_losses) -> None:
    """Stop with a TrainingError naming the first step whose loss is NaN or infinite."""
    bad = numpy.flatnonzero(~numpy.isfinite(step_losses))
    if not len(bad):
        return
    epoch, step = run.epoch, int(bad[0])
    saved = _checkpoint_paths(callbacks)
    kept = (f"the last good checkpoint (end of epoch {epoch}) is {saved[0]}"
            if saved and epoch > 0 else "no checkpoint was written")
    raise TrainingError(f"the loss became {step_losses[step]} at epoch {epoch + 1}, step "
                        f"{step + 1} of {run.steps_per_epoch}; {kept}. "
                        f"Try a lower learning rate (now {run.optimizer.lr:g}).")


def _interrupt(run: Run, callbacks, step_losses, correct):
    """Ctrl-C between two steps: note where the run stands, let callbacks save, and stop."""
    state = run.state
    state.step, state.epoch, state.partial = run.step + 1, run.epoch, (step_losses.tolist(), correct)
    run.end_sharding()
    _call(callbacks, "on_interrupt", run)
    run.comm.barrier()  # no rank ends the job before rank 0 has written the checkpoint
    saved = _checkpoint_paths(callbacks)
    where = f"to {saved[0]}" if saved else "nowhere (no Checkpoint callback given)"
    raise Interrupted(f"stopped at epoch {run.epoch + 1}, step {run.step + 1}; saved {where}")


def _checkpoint_paths(callbacks) -> list:
    return [cb.path for cb in callbacks if isinstance(cb, Checkpoint)]


def _end_epoch(run: Run, loss_sum, correct, t0):
    """Record the epoch's figures in ``run.state``: train loss/accuracy, validation, lr, time."""
    n, figures = len(run.x), {}
    if "train_accuracy" in run.state.history:
        figures["train_accuracy"] = correct / n
    if run.validation is not None:
        result = evaluate(run.model, run.loss, *run.validation, comm=run.comm)
        figures["val_loss"] = result["loss"]
        if "accuracy" in result:
            figures["val_accuracy"] = result["accuracy"]
    run.state.record(epoch=run.epoch + 1, train_loss=loss_sum / n, lr=run.optimizer.lr,
                     seconds=time.perf_counter() - t0, **figures)


def _check_options(epochs, batch_size, augment):
    if int(epochs) < 1:
        raise ValueError(f"fit: epochs must be >= 1, got {epochs}")
    if int(batch_size) < 1:
        raise ValueError(f"fit: batch_size must be >= 1, got {batch_size}")
    if not isinstance(augment, Augmentation):
        raise TypeError(f"fit: augment must be an augment.Augmentation, got {type(augment).__name__}")


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

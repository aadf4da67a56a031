"""What ``fit`` does around its training steps, one small object per concern.

``fit`` itself only runs the steps (``train/loop.py``). Everything optional is a
callback passed in ``fit(..., callbacks=[...])``, as in Keras:

* ``LearningRateSchedule(schedule)``: sets ``optimizer.lr = schedule(step)`` before each step;
* ``KeepBest(monitor, patience)``: remembers the epoch best on validation,
  restores its weights at the end, and with ``patience`` stops early;
* ``Checkpoint(path, resume, meta)``: saves model, optimizer and run state after
  every epoch and on Ctrl-C; ``resume=True`` continues a saved run exactly;
* ``Progress(desc, bar, verbose)``: the progress bar and one line per epoch
  (added by ``fit`` when you give none);
* ``watch.Watch(model)``: per-layer diagnostics (its own module).

The hooks, in the order ``fit`` calls them::

    on_train_begin(run)
    for each epoch:
        on_epoch_begin(run)
        for each step:  on_step_begin(run); <forward, backward, optimizer.step>; on_step_end(run)
        on_epoch_end(run)            # may set run.stop_reason to end training early
    on_train_end(run)                # only when training finished (not on an error)
    on_interrupt(run)                # instead, when Ctrl-C stopped the run between two steps
    close(run)                       # always, last (also after an error)

``run`` is ``loop.Run``: the model, loss, optimizer and data of the call,
``run.state`` (``state.TrainState``: history, position, best epoch),
``run.epoch``, ``run.step`` and ``run.global_step`` of the current step,
``run.steps_per_epoch`` and ``run.epochs``.

Callbacks run in a fixed order, by their class's ``order``, whatever order the
list gives them in; the numbers are decided in one table, ``ORDER``, below, which
says why. A callback of your own gets ``ORDER["yours"]`` (50) unless it sets another.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["Callback", "LearningRateSchedule", "KeepBest", "Checkpoint", "Progress", "ORDER"]

# When each kind of callback runs in every hook, lower first: decided here, in one place.
# * the schedule sets the learning rate before anything else reads it;
# * KeepBest runs before Checkpoint (in_run_order refuses the other way): KeepBest tells the
#   run state what it monitors before a Checkpoint resumes it at the start, and notes the
#   epoch's score before the Checkpoint saves it at an epoch's end, so that a resumed run
#   goes on with the same best epoch, patience and weights to restore;
# * Watch records after KeepBest and before the save, so a checkpoint carries its records;
# * Progress prints the epoch line once the others are done with the epoch;
# * LivePlot draws the epoch once Watch has recorded it and Progress has printed it.
ORDER = {"LearningRateSchedule": 0, "KeepBest": 10, "Watch": 20, "Checkpoint": 30, "Progress": 40,
         "LivePlot": 45, "yours": 50}


class Callback:
    """Base class: every hook does nothing. Override the ones you need (see the module docstring)."""

    order = ORDER["yours"]

    def on_train_begin(self, run): pass
    def on_epoch_begin(self, run): pass
    def on_step_begin(self, run): pass
    def on_step_end(self, run): pass
    def on_epoch_end(self, run): pass
    def on_train_end(self, run): pass
    def on_interrupt(self, run): pass
    def close(self, run): pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LearningRateSchedule(Callback):
    """``optimizer.lr = schedule(step)`` before every step; ``step`` counts from 0 over the
    whole run (epoch * steps_per_epoch + step in the epoch), so a resumed run gets the same rates.

    schedule: a function step -> learning rate, e.g. ``loop.cosine_schedule(lr, total_steps)``.
    """

    order = ORDER["LearningRateSchedule"]

    def __init__(self, schedule):
        if not callable(schedule):
            raise TypeError(f"LearningRateSchedule: schedule must be a function step -> lr, "
                            f"got {type(schedule).__name__}")
        self.schedule = schedule

    def on_step_begin(self, run):
        run.optimizer.lr = self.schedule(run.global_step)


class KeepBest(Callback):
    """Keep the weights of the epoch best on validation, and restore them when training ends.

    monitor: "val_loss" (lowest is best) or "val_accuracy" (highest; a tie goes
        to the later epoch, which a decaying schedule has refined).
    patience: stop after this many epochs without a better one (None: train
        every epoch). The history then records ``best_epoch``.

    The best weights are host copies, kept in ``run.state`` so that a
    checkpoint carries them and a resumed run restores the same epoch.
    """

    order = ORDER["KeepBest"]

    def __init__(self, monitor: str = "val_loss", patience: int | None = None):
        if monitor not in ("val_loss", "val_accuracy"):
            raise ValueError(f"KeepBest: monitor must be 'val_loss' or 'val_accuracy', got {monitor!r}")
        if patience is not None and int(patience) < 1:
            raise ValueError(f"KeepBest: patience must be >= 1 (or None), got {patience}")
        self.monitor, self.patience = monitor, None if patience is None else int(patience)

    def __repr__(self) -> str:
        return f"KeepBest(monitor={self.monitor!r}, patience={self.patience})"

    def on_train_begin(self, run):
        if run.validation is None:
            raise ValueError("fit: KeepBest (best epoch, early stopping) needs validation data")
        if self.monitor == "val_accuracy" and run.y is None:
            raise ValueError("fit: KeepBest(monitor='val_accuracy') needs labels")
        run.state.monitor = self.monitor  # before a Checkpoint resumes: it reads the saved best

    def on_epoch_end(self, run):
        run.state.keep_if_best(run.model)
        if self.patience is not None and run.state.epochs_since_best() >= self.patience:
            run.stop_reason = f"no better {self.monitor} for {self.patience} epochs; stopping"

    def on_train_end(self, run):
        run.state.restore_best(run.model)


class Checkpoint(Callback):
    """Save the run to ``path`` (atomically) after every epoch, on Ctrl-C and at the end.

    What is saved: the model, the optimizer's state and the run state (history,
    position in the epoch, best epoch; see ``train/state.py``), plus ``meta``
    (any JSON-friendly dict, e.g. the model's config) and the seed.
    resume: first load ``path`` and continue from where it stopped: the same
        data order, masks, learning rates and best epoch as an uninterrupted run.
    Under MPI only rank 0 writes, the whole optimizer state gathered from every
    rank's range, in a single process's format; every rank reads the same file to
    resume, on any number of ranks.
    """

    order = ORDER["Checkpoint"]

    def __init__(self, path, *, resume: bool = False, meta: dict | None = None):
        self.path, self.resume, self.meta = Path(path), bool(resume), dict(meta or {})

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, resume={self.resume})"

    def on_train_begin(self, run):
        if self.resume:
            run.state.resume(self.path, run.model, run.optimizer)

    def save(self, run):
        with run.whole_optimizer_state():  # data parallel: every rank's range, gathered
            if run.comm.is_root:
                run.state.save(self.path, run.model, run.optimizer, {**self.meta, "seed": run.seed})

    on_epoch_end = on_train_end = on_interrupt = save


class Progress(Callback):
    """A tqdm bar over every step of the run, and one line per epoch, both on stderr.

    desc: the name the bar and the lines start with.
    bar: show the bar (None: only when stderr is a terminal).
    verbose: print a line per epoch (loss, accuracy, validation, seconds).
    Only rank 0 of a data-parallel job shows anything.
    """

    order = ORDER["Progress"]

    def __init__(self, desc: str = "train", *, bar: bool | None = None, verbose: bool = True):
        self.desc, self.bar, self.verbose = desc, bar, verbose
        self._tqdm = None

    def __repr__(self) -> str:
        return f"Progress({self.desc!r})"

    def on_train_begin(self, run):
        from tqdm.auto import tqdm  # noqa: PLC0415  (keeps the numerical core free of tqdm)

        root = run.comm.is_root
        steps = run.steps_per_epoch
        self._tqdm = tqdm(file=sys.stderr, total=run.epochs * steps,
                          initial=run.state.epoch * steps + run.state.step, desc=self.desc,
                          unit="step", leave=False,
                          disable=not root or (None if self.bar is None else not self.bar))
        self._verbose = self.verbose and root

    def on_step_end(self, run):
        self._tqdm.update(1)

    def on_epoch_end(self, run):
        if self._verbose:
            self._tqdm.write(epoch_line(self.desc, run.state.history, run.epochs), file=sys.stderr)
            if run.stop_reason:
                self._tqdm.write(f"{self.desc}: {run.stop_reason}", file=sys.stderr)

    def close(self, run):
        if self._tqdm is not None:
            self._tqdm.close()


def epoch_line(desc, history, epochs) -> str:
    """``desc epoch 3/20  loss 0.2871  acc 89.10%  val_loss ...  1.84s``: the last epoch's figures."""
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


def in_run_order(callbacks) -> list:
    """The callbacks sorted by ``order`` (stable), a default ``Progress`` added if none is given."""
    callbacks = list(callbacks or ())
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"fit: callbacks must be nanoae.train.callbacks.Callback objects, got "
                            f"{type(cb).__name__}")
    if not any(isinstance(cb, Progress) for cb in callbacks):
        callbacks.append(Progress())
    ordered = sorted(callbacks, key=lambda cb: cb.order)
    kinds = [type(cb) for cb in ordered]
    if any(issubclass(k, Checkpoint) for k in kinds) and any(issubclass(k, KeepBest) for k in kinds):
        last_keep = max(i for i, k in enumerate(kinds) if issubclass(k, KeepBest))
        first_save = min(i for i, k in enumerate(kinds) if issubclass(k, Checkpoint))
        if first_save < last_keep:
            raise ValueError("fit: KeepBest must run before Checkpoint (ORDER in "
                             "nanoae/train/callbacks.py says why); give KeepBest the lower order")
    return ordered


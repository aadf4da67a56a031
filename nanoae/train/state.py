"""What a training run must remember to be stopped and resumed exactly.

``TrainState`` holds, for ``fit``:

* the history: per epoch, train/validation loss (and accuracy), learning rate, seconds;
* where the run is: the next epoch and step, and the losses and correct
  count of the steps of an epoch already done (when Ctrl-C stopped it midway);
* the best epoch on validation, its score, and a host copy of its weights
  (for ``restore_best`` and ``patience``).

All of it goes into the checkpoint: the numbers into its JSON metadata, the
best weights as ``extra`` arrays. A resumed run therefore continues with the
same best epoch, the same patience count and the same weights to restore as
an uninterrupted one.
"""

from __future__ import annotations

import math

from nanoae.train.checkpoint import (
    load_checkpoint,
    read_checkpoint_extra,
    save_checkpoint,
)

__all__ = ["TrainState"]


class TrainState:
    """History, position and best epoch of a ``fit`` run (see the module docstring).

    monitor: "val_loss" (lower is better) or "val_accuracy" (higher is better;
    a tie goes to the later epoch, which a decaying schedule has refined).
    """

    def __init__(self, monitor: str = "val_loss", classify: bool = False):
        if monitor not in ("val_loss", "val_accuracy"):
            raise ValueError(f"fit: monitor must be 'val_loss' or 'val_accuracy', got {monitor!r}")
        self.monitor = monitor
        self.history = {"epoch": [], "train_loss": [], "val_loss": [], "lr": [], "seconds": []}
        if classify:
            self.history.update(train_accuracy=[], val_accuracy=[])
        self.epoch, self.step = 0, 0  # where the next step starts
        self.partial = ([], 0)  # per-step losses and correct count of the steps done in that epoch
        self.best_score, self.best_epoch, self.best_weights = -math.inf, None, None

    # -- the end of an epoch ----------------------------------------------------
    def record(self, **values) -> None:
        """Append one epoch's figures (keys of ``history``) and move to the next epoch."""
        for key, value in values.items():
            self.history[key].append(value)
        self.epoch, self.step, self.partial = self.history["epoch"][-1], 0, ([], 0)

    def keep_if_best(self, model) -> bool:
        """If the epoch just recorded is the best on validation so far, remember its weights."""
        values = self.history[self.monitor]
        if not values:
            return False
        score = values[-1] if self.monitor == "val_accuracy" else -values[-1]
        better = score > self.best_score or (self.monitor == "val_accuracy" and score == self.best_score)
        if better:
            self.best_score, self.best_epoch = score, self.epoch
            self.best_weights = model.state_dict()  # host copies
        return better

    def epochs_since_best(self) -> int:
        return self.epoch - (self.best_epoch or 0)

    def restore_best(self, model) -> None:
        """Load the best epoch's weights into ``model`` and note that epoch in the history."""
        if self.best_weights is not None:
            model.load_state_dict(self.best_weights)
            self.history["best_epoch"] = self.best_epoch

    # -- checkpoints ------------------------------------------------------------
    def save(self, path, model, optimizer, meta: dict) -> None:
        """Write model, optimizer and this state to the checkpoint at ``path`` (atomically)."""
        extra = {f"best/{k}": v for k, v in (self.best_weights or {}).items()}
        state = {"epoch": self.epoch, "step": self.step, "partial_losses": self.partial[0],
                 "partial_correct": self.partial[1], "history": self.history,
                 "monitor": self.monitor, "best_score": _finite_or_none(self.best_score),
                 "best_epoch": self.best_epoch}
        save_checkpoint(path, model, optimizer, meta={**meta, **state}, extra=extra)

    def resume(self, path, model, optimizer) -> dict:
        """Load model, optimizer and this state from ``path``; returns the saved user metadata."""
        saved = load_checkpoint(path, model, optimizer)["user"]
        self.history = saved["history"]
        self.epoch, self.step = saved["epoch"], saved["step"]
        # checkpoints written before per-step losses were kept hold only their sum
        losses = saved.get("partial_losses", [saved.get("partial_loss_sum", 0.0)] if self.step else [])
        self.partial = (losses, saved["partial_correct"])
        if saved.get("best_epoch") is not None and saved.get("monitor") == self.monitor:
            self.best_score, self.best_epoch = saved["best_score"], saved["best_epoch"]
            best = read_checkpoint_extra(path)
            self.best_weights = {k[len("best/"):]: v for k, v in best.items() if k.startswith("best/")}
        return saved


def _finite_or_none(value: float):
    """JSON has no infinity: -inf (no best epoch yet) is stored as null."""
    return value if math.isfinite(value) else None

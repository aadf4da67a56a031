"""A learner's code, as a PyTorch user writes it, trained on one process, thread ranks or MPI.

``Tanh`` is issue 25's layer word for word: no ``super().__init__()``, its output
under a name of its own, ``backward(grad)`` without any keyword. ``ChangeSettings``
is a callback that changes the optimizer's hyper-parameters from the second epoch
on. ``settings_run`` trains a classifier with both and returns its weights and
the Watch's records, so a test can compare one process with N ranks.
"""

from __future__ import annotations

import numpy as np

import nanoae as nn


class Tanh(nn.Layer):
    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def backward(self, grad):
        return grad * (1 - self.out ** 2)


class ChangeSettings(nn.Callback):
    """From epoch 2 on: new betas and eps (Adam, AdamW), weight_decay (AdamW), momentum (SGD)."""

    CHANGES = {"betas": (0.8, 0.99), "eps": 1e-3, "weight_decay": 0.5, "momentum": 0.5}

    def on_epoch_begin(self, run):
        if run.epoch == 1:
            for name, value in self.CHANGES.items():
                if hasattr(run.optimizer, name):
                    setattr(run.optimizer, name, value)


def data(n=32, features=6, classes=3, seed=0):
    """n examples of ``features`` normal numbers, with labels in 0..classes-1."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, features)).astype(np.float32),
            rng.integers(0, classes, size=n).astype(np.int64))


def tanh_classifier():
    """6 -> 5 (Tanh) -> 3 (softmax): a learner's layer between two of nanoae's."""
    return nn.Sequential(nn.Dense(6, 5, rng=0), Tanh(), nn.Dense(5, 3, rng=1), nn.Softmax())


OPTIMIZERS = {
    "adam": lambda params: nn.Adam(params, lr=1e-2),
    "adamw": lambda params: nn.AdamW(params, lr=1e-2, weight_decay=0.0),
    "sgd": lambda params: nn.SGD(params, lr=0.1, momentum=0.0),
}


def settings_run(comm, kind: str, *, epochs: int = 3, change: bool = True):
    """fit a 12-8-5 classifier with a Tanh inside on ``comm``'s ranks; (weights, Watch records)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12)).astype(np.float32)
    y = rng.integers(0, 5, size=64).astype(np.int64)
    model = nn.Sequential(nn.Dense(12, 8, rng=1), Tanh(), nn.Dense(8, 5, rng=2), nn.Softmax())
    optimizer = OPTIMIZERS[kind](model.parameters())
    watch = nn.Watch(model, every=2)
    callbacks = [watch, nn.Progress(bar=False, verbose=False)] + ([ChangeSettings()] if change else [])
    nn.fit(model, nn.CrossEntropy(), optimizer, x, y, epochs=epochs, batch_size=8, seed=3,
           callbacks=callbacks, comm=comm)
    return [p.data.copy() for p in model.parameters()], watch.records

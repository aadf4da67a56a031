"""Training around the core: the loop, its callbacks, and watching a run from the inside.

    loop.py         fit, train_step, evaluate, predict (one step: forward, loss, backward, step)
    state.py        TrainState: the history and position a run needs to stop and resume exactly
    callbacks.py    Callback and the built-ins: LearningRateSchedule, KeepBest, Checkpoint, Progress
    watch.py        Watch: per-layer diagnostics recorded while a model trains
    liveplot.py     LivePlot: the run's curves (and a Watch's), redrawn after every epoch
    augment.py      Augmentation: input masks, shifts and mirrors, seeded per (epoch, step)
    checkpoint.py   save and load a run atomically, as .npz without pickle

Imports the core and ``nanoae.parallel`` only.
"""

from nanoae.train.callbacks import (
           Callback,
           Checkpoint,
           KeepBest,
           LearningRateSchedule,
           Progress,
)
from nanoae.train.liveplot import LivePlot
from nanoae.train.loop import evaluate, fit, predict, train_step
from nanoae.train.watch import Watch

__all__ = ["fit", "train_step", "evaluate", "predict", "Callback", "LearningRateSchedule",
           "KeepBest", "Checkpoint", "Progress", "Watch", "LivePlot"]

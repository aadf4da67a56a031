"""nanoae: a dense autoencoder and classifier written from scratch on NumPy or CuPy.

The core sits flat in this folder, the files to read first:

    backend.py     NumPy or CuPy: choose one, find the module of an array, move arrays
    parameter.py   Parameter: data and grad
    layers.py      the Layer protocol, Dense, ReLU, Sigmoid, Softmax, Normalize, Dropout
    losses.py      BinaryCrossEntropy, CrossEntropy, and their fused pairs
    optim.py       Adam, AdamW, SGD
    sequential.py  Sequential: forward, backward, parameters
    gradcheck.py   analytic gradients against central finite differences
    errors.py      every exception nanoae raises on purpose

Around it, one subpackage per wing; arrows point one way (tests/test_layering.py):

    train/      fit, evaluate, predict, callbacks, Watch, augment, checkpoint  (core, parallel)
    parallel/   data parallel over MPI ranks: communicator, engines, ZeRO-1    (core)
    fashion/    Fashion-MNIST: data, the composed models, metrics, the demo     (core, train)
    workbook/   the learner's copy of the core, generated, and its checker     (core, train, fashion)
    sklearn/    scikit-learn estimators around the composed models             (core, train, fashion)
    cli/        the ``nanoae`` command                                         (everything but sklearn)

Re-exported here: the core, the backend switch ``nanoae.backend``
(``set_backend("numpy" | "cupy" | "auto")``), and what a training script
types: ``fit``, ``evaluate``, ``predict``, ``train_step``, ``Watch``, ``LivePlot`` and the callbacks.
"""

__version__ = "0.1.0"  # first: modules imported below may read it

from nanoae import backend
from nanoae.errors import CheckpointError, DatasetError, NanoaeError, TrainingError
from nanoae.gradcheck import GradcheckError, GradcheckResult, gradcheck
from nanoae.layers import Dense, Dropout, Layer, Normalize, ReLU, Sigmoid, Softmax, seek_draws, set_training
from nanoae.losses import BinaryCrossEntropy, CrossEntropy, Loss
from nanoae.optim import SGD, Adam, AdamW, Optimizer
from nanoae.parameter import Parameter
from nanoae.sequential import Sequential
from nanoae.train import (
                          Callback,
                          Checkpoint,
                          KeepBest,
                          LivePlot,
                          LearningRateSchedule,
                          Progress,
                          Watch,
                          evaluate,
                          fit,
                          predict,
                          train_step,
)

__all__ = [
    "backend",
    "Parameter",
    "Layer",
    "Dense",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Normalize",
    "Dropout",
    "set_training",
    "seek_draws",
    "Sequential",
    "Loss",
    "BinaryCrossEntropy",
    "CrossEntropy",
    "Optimizer",
    "Adam",
    "AdamW",
    "SGD",
    "gradcheck",
    "fit",
    "train_step",
    "evaluate",
    "predict",
    "Watch",
    "Callback",
    "LearningRateSchedule",
    "KeepBest",
    "Checkpoint",
    "Progress",
    "LivePlot",
    "GradcheckResult",
    "GradcheckError",
    "NanoaeError",
    "DatasetError",
    "CheckpointError",
    "TrainingError",
    "__version__",
]

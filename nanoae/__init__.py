"""nanoae: a dense autoencoder and classifier written from scratch on NumPy or CuPy.

The numerical core, re-exported here:

    Parameter, Dense, ReLU, Sigmoid, Softmax, Sequential,
    BinaryCrossEntropy, CrossEntropy, Adam, AdamW, SGD, gradcheck

and the backend switch, ``nanoae.backend`` (``set_backend("numpy" | "cupy" | "auto")``).
Fashion-MNIST, models, training and plots live in ``nanoae.data``,
``nanoae.models``, ``nanoae.training`` and ``nanoae.plots``.
"""

from . import backend
from .errors import CheckpointError, DatasetError, NanoaeError, TrainingError
from .gradcheck import GradcheckError, GradcheckResult, gradcheck
from .layers import Dense, Layer, ReLU, Sigmoid, Softmax
from .losses import BinaryCrossEntropy, CrossEntropy, Loss
from .model import Sequential
from .optim import SGD, Adam, AdamW, Optimizer
from .parameter import Parameter

__version__ = "0.1.0"

__all__ = [
    "backend",
    "Parameter",
    "Layer",
    "Dense",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Sequential",
    "Loss",
    "BinaryCrossEntropy",
    "CrossEntropy",
    "Optimizer",
    "Adam",
    "AdamW",
    "SGD",
    "gradcheck",
    "GradcheckResult",
    "GradcheckError",
    "NanoaeError",
    "DatasetError",
    "CheckpointError",
    "TrainingError",
    "__version__",
]

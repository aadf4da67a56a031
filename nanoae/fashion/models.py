"""The models of the Fashion-MNIST story, built from the core's layers.

* ``Autoencoder``: an encoder 784 -> 128 -> 64 -> 32 and a mirrored decoder
  32 -> 64 -> 128 -> 784 with ReLU between layers and a sigmoid on the output,
  trained with binary cross-entropy to reproduce its input.
  ``code_activation="relu"`` is the reference architecture (ReLU on the 32-unit
  code as well); ``"linear"`` leaves the code unrectified, so no code unit can
  die (a ReLU unit that is negative on every image passes nothing, and the
  code is then effectively narrower).
* ``Classifier``: a dense head (hidden ReLU layers, softmax over 10 classes).
* ``Standardize``: a fixed affine layer ``(x - mean) / std`` that puts codes on
  a common scale before a head; no parameters, so fine-tuning passes through it.
* ``ImageClassifier``: encoder, then standardisation, then head: a classifier
  of images; ``FineTuned`` is one trained end to end.

(``Sequential``, the container these are built from, is in ``sequential.py``; the
networks of the story are here, in ``models.py``.)

Each model reports a JSON-friendly ``config`` from which ``build_model``
recreates it, so a checkpoint can be loaded by a command that never saw the code
that made it.
"""

from __future__ import annotations

import hashlib

import numpy

from nanoae.backend import to_device, to_numpy
from nanoae.layers import Dense, Dropout, Layer, Normalize, ReLU, Sigmoid, Softmax
from nanoae.sequential import Sequential

__all__ = ["Autoencoder", "Classifier", "Standardize", "ImageClassifier", "FineTuned", "build_model",
           "encoder_fingerprint"]


def _mlp(widths, dtype, rng, last_activation=None, init="he"):
    """Dense layers with ReLU between them; ``last_activation`` after the final one."""
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(Dense(a, b, dtype=dtype, rng=rng, init=init))
        if i < len(widths) - 2:
            layers.append(ReLU())
    if last_activation is not None:
        layers.append(last_activation)
    return layers


# what may follow the encoder's last Dense, by name: a ReLU, nothing, or ``Normalize`` (codes of length 1)
CODE_ACTIVATIONS = {"relu": ReLU, "linear": None, "unit": Normalize}


class Autoencoder(Sequential):
    """``Sequential(encoder, decoder)`` with ``encode`` and ``reconstruct``.

    widths: the encoder's sizes, input first: (784, 128, 64, 32) gives the
    reference 784-128-64-32-64-128-784. The decoder mirrors them.
    init: how the Dense weights are drawn ("he", "glorot", "glorot_uniform";
    see ``layers.init_weights``).
    """

    def __init__(self, widths=(784, 128, 64, 32), *, code_activation: str = "relu",
                 dtype=numpy.float32, seed: int | None = 0, init: str = "he"):
        if code_activation not in CODE_ACTIVATIONS:
            raise ValueError(f"code_activation must be one of {', '.join(map(repr, CODE_ACTIVATIONS))}, "
                             f"got {code_activation!r}")
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2:
            raise ValueError(f"Autoencoder: need at least (input, code) widths, got {widths}")
        rng = numpy.random.default_rng(seed)
        code_layer = CODE_ACTIVATIONS[code_activation]
        code = [] if code_layer is None else [code_layer()]
        # labelled, so that errors and diagnostics say where: "encoder layer 0 Dense(784, 128)"
        self.encoder = Sequential(*_mlp(widths, dtype, rng, init=init), *code, label="encoder")
        self.decoder = Sequential(*_mlp(widths[::-1], dtype, rng, Sigmoid(), init=init), label="decoder")
        super().__init__(self.encoder, self.decoder)
        self.config = {"kind": "autoencoder", "widths": list(widths),
                       "code_activation": code_activation, "dtype": numpy.dtype(dtype).name,
                       "init": init}

    @property
    def code_size(self) -> int:
        return self.config["widths"][-1]

    def encode(self, x):
        """The codes of a float batch x (N, 784): (N, code_size)."""
        return self.encoder(x)

    def reconstruct(self, x):
        """Encode then decode: pixel probabilities (N, 784) in [0, 1]."""
        return self(x)


class Classifier(Sequential):
    """Dense head: in_features -> hidden... -> classes, ReLU between, softmax out.

    dropout: p > 0 puts a ``Dropout(p)`` after each hidden ReLU, numbered
    streams 1, 2, ... (their masks are drawn apart); the weights are those of
    the same head without dropout.
    """

    def __init__(self, in_features: int = 32, hidden=(64,), classes: int = 10, *,
                 dtype=numpy.float32, seed: int | None = 0, dropout: float = 0.0):
        widths = (int(in_features), *(int(h) for h in hidden), int(classes))
        layers = []
        for layer in _mlp(widths, dtype, numpy.random.default_rng(seed), Softmax()):
            layers.append(layer)
            if dropout and isinstance(layer, ReLU):
                layers.append(Dropout(dropout, stream=1 + sum(isinstance(a, Dropout) for a in layers)))
        super().__init__(*layers)
        self.config = {"kind": "classifier", "in_features": widths[0], "hidden": list(widths[1:-1]),
                       "classes": widths[-1], "dtype": numpy.dtype(dtype).name}
        if dropout:
            self.config["dropout"] = float(dropout)

    def predict(self, x):
        """Class indices (N,)."""
        return self(x).argmax(axis=1)


class Standardize(Layer):
    """``y = (x - mean) / std``, per feature, with fixed (not trained) mean and std.

    Backward: ``dL/dx = g / std``. Units with std 0 (dead codes) are left
    unscaled (std taken as 1), so they stay 0 instead of dividing by zero.
    """

    def __init__(self, mean, std):
        mean = numpy.asarray(to_numpy(mean))
        std = numpy.asarray(to_numpy(std), dtype=mean.dtype)
        self.mean = to_device(mean)
        self.inv_std = to_device((1 / numpy.where(std > 0, std, 1)).astype(mean.dtype))
        super().__init__()

    @classmethod
    def from_config(cls, config: dict, dtype=numpy.float32) -> "Standardize":
        """The layer whose ``config`` (mean and std lists, as in a checkpoint) is given."""
        return cls(numpy.asarray(config["mean"], dtype=dtype), config["std"])

    @classmethod
    def fit(cls, x) -> "Standardize":
        """Mean and std of the columns of x (computed on the host in float64, stored in x's dtype)."""
        host = to_numpy(x).astype(numpy.float64)
        return cls(host.mean(axis=0).astype(x.dtype), host.std(axis=0).astype(x.dtype))

    def __repr__(self) -> str:
        return f"Standardize({self.mean.shape[0]})" if hasattr(self, "mean") else "Standardize()"

    def forward(self, x):
        if x.shape[-1] != self.mean.shape[0] or x.dtype != self.mean.dtype:
            raise ValueError(f"{self.name}: expected (N, {self.mean.shape[0]}) {self.mean.dtype}, "
                             f"got {tuple(x.shape)} {x.dtype}")
        y = x - self.mean
        y *= self.inv_std
        return y

    def backward(self, grad_out):
        return grad_out * self.inv_std

    @property
    def config(self) -> dict:
        """mean and std as lists (JSON), enough to rebuild the layer."""
        return {"mean": to_numpy(self.mean).tolist(), "std": (1 / to_numpy(self.inv_std)).tolist()}


class ImageClassifier(Sequential):
    """``Sequential(ae.encoder, scaler, head)``: a classifier of images built on an encoder.

    The one place where encoder, standardisation and head are put together. The
    demo makes two: the head trained on the frozen codes (only the head learned;
    this class, to score it on images) and ``FineTuned`` (all of it trained end
    to end). The encoder's layers are shared with ``ae``: fine-tuning changes the
    autoencoder's encoder too (train a fresh ``Autoencoder`` if you need both).
    """

    def __init__(self, ae: Autoencoder, scaler: Standardize, head: Classifier):
        super().__init__(ae.encoder, scaler, head)
        self.autoencoder, self.encoder, self.scaler, self.head = ae, ae.encoder, scaler, head

    predict = Classifier.predict  # the same answer: the most probable class


class FineTuned(ImageClassifier):
    """An ``ImageClassifier`` trained end to end; its ``config`` rebuilds it from a checkpoint."""

    def __init__(self, ae: Autoencoder, scaler: Standardize, head: Classifier):
        super().__init__(ae, scaler, head)
        self.config = {"kind": "finetuned", "autoencoder": ae.config, "scaler": scaler.config,
                       "head": head.config, "dtype": numpy.dtype(scaler.mean.dtype).name}


def build_model(config: dict):
    """Recreate an (untrained) model from its ``config`` (as stored in a checkpoint)."""
    kind = config.get("kind")
    dtype = numpy.dtype(config.get("dtype", "float32"))
    if kind == "autoencoder":
        return Autoencoder(config["widths"], code_activation=config["code_activation"], dtype=dtype,
                           init=config.get("init", "he"))
    if kind == "classifier":
        return Classifier(config["in_features"], config["hidden"], config["classes"], dtype=dtype,
                          dropout=config.get("dropout", 0.0))
    if kind == "finetuned":  # the scaler in its own dtype: configs saved before it was recorded, the encoder's
        ae = build_model(config["autoencoder"])
        scaler = Standardize.from_config(config["scaler"], config.get("dtype", ae.config["dtype"]))
        return FineTuned(ae, scaler, build_model(config["head"]))
    raise ValueError(f"build_model: unknown model kind {kind!r}")


def encoder_fingerprint(ae: Autoencoder) -> dict:
    """Which autoencoder made a set of codes: its architecture and a hash of its encoder.

    ``sha256`` is taken over the encoder's parameters (``state_dict`` order,
    each array's name, dtype, shape and bytes), so two encoders agree only if
    every weight agrees bit for bit. A classifier checkpoint stores this, and a
    command refuses to put the head behind any other encoder: on another
    autoencoder's codes it would be scored silently at chance level.
    """
    digest = hashlib.sha256()
    for name, value in ae.encoder.state_dict().items():
        array = numpy.ascontiguousarray(to_numpy(value))
        digest.update(f"{name} {array.dtype.str} {array.shape}".encode())
        digest.update(array.tobytes())
    return {"widths": list(ae.config["widths"]), "code_activation": ae.config["code_activation"],
            "sha256": digest.hexdigest()}

"""Layers: Dense, ReLU, Sigmoid, Softmax, Normalize, Dropout, each with a forward and a backward pass.

The protocol every layer follows (the whole of it; a learner's layer needs nothing more):

* ``forward(x)`` computes the output and keeps what the backward pass will
  need, under any name it likes. It never modifies ``x``. Call a layer as
  ``layer(x)``: that runs ``forward`` and then the layer's forward hooks
  (``register_forward_hook``: how ``Watch`` sees what each layer returned).
* ``backward(grad)`` takes dL/dy, the gradient of the loss with respect to the
  layer's output (same shape as y), and returns dL/dx, the gradient with
  respect to its input. Layers with parameters also *set* (replace, never
  accumulate) each ``Parameter.grad``.
* ``parameters()`` lists the layer's Parameters (an empty list for activations).

One opt-in: a layer whose class sets ``skips_input_grad = True`` accepts
``backward(grad, input_grad=False)``, said of the first layer of a network,
where nobody needs the gradient with respect to the data; it may then skip
computing dL/dx and return None. ``Dense`` does: that product is its largest.
A container passes the keyword only to a layer that declares it.

Training and evaluating. ``Layer.training`` says which a layer is doing; only
``Dropout`` behaves differently (it drops while training, passes everything
while evaluating). ``set_training(model, flag)`` sets it on every layer of a
model: ``fit`` sets it to True before its steps and to False when it is done,
``evaluate`` and ``predict`` to False. Nothing global: the flag lives on the layers.

Shapes: inputs are batches ``(N, features)``; N is the batch size.
All math goes through ``xp``, the array module of the input (NumPy or CuPy),
so one code path serves the CPU and the GPU.
"""

from __future__ import annotations

import numpy

from nanoae.backend import get_array_module, to_device
from nanoae.parameter import Parameter

__all__ = ["Layer", "HookHandle", "Dense", "ReLU", "Sigmoid", "Softmax", "Normalize", "Dropout", "set_training",
           "seek_draws", "keep_mask"]


class Layer:
    """Base class: the protocol above, a ``name`` for messages, and forward hooks.

    Nothing here needs ``super().__init__()``: a layer may set its fields in any order.
    """

    skips_input_grad = False  # True: backward(grad, input_grad=False) may skip dL/dx (see above)
    place = ""  # where the layer sits in a model, e.g. "encoder layer 0"; given by Sequential
    forward_hooks = ()  # functions hook(layer, x, y) called after each layer(x); a tuple, never shared
    training = True  # training or evaluating (``set_training``); only Dropout looks at it

    @property
    def name(self) -> str:
        """How messages call the layer: its place in a model, then what it is,
        e.g. ``"layer 0 Dense(784, 128)"`` (just ``"Dense(784, 128)"`` on its own)."""
        return f"{self.place} {self!r}" if self.place else repr(self)

    def __call__(self, x):
        y = self.forward(x)
        for hook in self.forward_hooks:
            hook(self, x, y)
        return y

    def register_forward_hook(self, hook) -> "HookHandle":
        """Call ``hook(layer, x, y)`` after every ``layer(x)``, with what the layer returned.

        Returns a handle whose ``remove()`` detaches the hook again (as in PyTorch).
        """
        self.forward_hooks = (*self.forward_hooks, hook)  # a new tuple: no list shared by layers
        return HookHandle(self, hook)

    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_out):  # pragma: no cover - abstract
        raise NotImplementedError

    def parameters(self) -> list[Parameter]:
        return []

    def leaves(self) -> list["Layer"]:
        """The layers that do the work, in order: ``[self]``; a container lists its own."""
        return [self]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- shared checks -------------------------------------------------------
    def _check_grad(self, grad_out, cached, shape=None, dtype=None):
        """grad_out must have the shape and dtype of the forward output; a clear error if not.

        ``cached`` is what forward kept (None means forward has not run);
        ``shape`` and ``dtype`` default to those of ``cached``.
        """
        if cached is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        shape = tuple(cached.shape) if shape is None else tuple(shape)
        dtype = cached.dtype if dtype is None else dtype
        if tuple(grad_out.shape) != shape:
            raise ValueError(f"{self.name}: backward expected grad_out of shape {shape} "
                             f"(the forward output), got {tuple(grad_out.shape)}")
        if grad_out.dtype != dtype:
            raise TypeError(f"{self.name}: backward expected grad_out of dtype {dtype}, "
                            f"got {grad_out.dtype}")


class HookHandle:
    """What ``register_forward_hook`` returns: ``remove()`` takes the hook off its layer."""

    def __init__(self, layer: Layer, hook):
        self.layer, self.hook = layer, hook

    def remove(self) -> None:
        self.layer.forward_hooks = tuple(h for h in self.layer.forward_hooks if h is not self.hook)


def _check_float(layer, x):
    """Activations accept any floating array; integers are a mistake worth naming."""
    if not hasattr(x, "dtype") or x.dtype.kind != "f":
        found = getattr(x, "dtype", type(x).__name__)
        raise TypeError(f"{layer.name}: expected a floating-point array, got {found}")


def init_weights(rng, in_features: int, out_features: int, init: str):
    """Initial weights (in, out) as float64 on the host, drawn from ``rng``.

    * ``"he"``: Normal(0, std = sqrt(2 / in)) (He et al., 2015): keeps the
      variance of ReLU activations steady from layer to layer.
    * ``"glorot"``: Normal(0, std = sqrt(2 / (in + out))) (Glorot & Bengio, 2010).
    * ``"glorot_uniform"``: Uniform(-a, a), a = sqrt(6 / (in + out)): the same
      variance as "glorot"; Keras's default for Dense layers.
    """
    size = (in_features, out_features)
    if init == "he":
        return rng.normal(0.0, numpy.sqrt(2.0 / in_features), size=size)
    if init == "glorot":
        return rng.normal(0.0, numpy.sqrt(2.0 / (in_features + out_features)), size=size)
    if init == "glorot_uniform":
        a = numpy.sqrt(6.0 / (in_features + out_features))
        return rng.uniform(-a, a, size=size)
    raise ValueError(f"Dense: init must be 'he', 'glorot' or 'glorot_uniform', got {init!r}")


class Dense(Layer):
    """Fully connected layer: ``y = x @ W + b``.

    Shapes: x ``(N, in)``, W ``(in, out)``, b ``(out,)``, y ``(N, out)``.

    Backward, for g = dL/dy of shape ``(N, out)``::

        dL/dW = x^T @ g         (in, N) @ (N, out) -> (in, out)
        dL/db = sum_n g[n, :]   (out,)
        dL/dx = g @ W^T         (N, out) @ (out, in) -> (N, in)

    Initialisation: ``init`` is "he" (default), "glorot" or "glorot_uniform"
    (see ``init_weights``); b = 0. The weights are drawn on the host from a
    NumPy Generator (``rng``: a Generator or an int seed) and then moved to the
    active backend, so a seeded model starts from the same numbers on the CPU
    and on the GPU.

    The input must have the layer's dtype (float32 by default): a float64 or
    integer batch into a float32 layer is an error rather than a silent cast,
    because a silent cast either costs a copy every step or leaks float64 into
    the whole model.
    """

    def __init__(self, in_features: int, out_features: int, *, dtype=numpy.float32,
                 rng=None, init: str = "he"):
        if int(in_features) < 1 or int(out_features) < 1:
            raise ValueError(f"Dense: sizes must be positive, got ({in_features}, {out_features})")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.dtype = numpy.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"Dense: dtype must be floating point, got {self.dtype}")
        w = init_weights(numpy.random.default_rng(rng), self.in_features, self.out_features, init)
        self.W = Parameter(to_device(w.astype(self.dtype)), name="W")
        self.b = Parameter(to_device(numpy.zeros(out_features, dtype=self.dtype)), name="b")
        self._x = None

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features})"

    def parameters(self) -> list[Parameter]:
        return [self.W, self.b]

    def forward(self, x):
        self._check_input(x)
        self._x = x
        return x @ self.W.data + self.b.data  # (N, in) @ (in, out) -> (N, out)

    skips_input_grad = True  # the first layer of a network need not compute g @ W^T

    def backward(self, grad_out, *, input_grad: bool = True):
        """Set W.grad and b.grad; return dL/dx (None when ``input_grad`` is False).

        ``input_grad=False`` skips ``g @ W^T``: for the first layer of the
        autoencoder, a 784-wide product that is about a sixth of a step's work.
        """
        x = self._x  # the cached input; None until forward has run, which _check_grad reports
        self._check_grad(grad_out, x, shape=(0 if x is None else len(x), self.out_features),
                         dtype=self.dtype)
        self.W.grad = x.T @ grad_out  # (in, N) @ (N, out) -> (in, out)
        self.b.grad = grad_out.sum(axis=0)
        if not input_grad:
            return None
        return grad_out @ self.W.data.T  # (N, out) @ (out, in) -> (N, in)

    def _check_input(self, x):
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) != 2 or shape[1] != self.in_features:
            found = tuple(shape) if shape is not None else type(x).__name__
            hint = ""
            if shape is not None and len(shape) > 2 and numpy.prod(shape[1:]) == self.in_features:
                hint = "; flatten it first: x.reshape(len(x), -1)"
            raise ValueError(
                f"{self.name}: expected input of shape (N, {self.in_features}), got {found}{hint}"
            )
        if x.dtype != self.dtype:
            hint = (f"pixels? scale them: x.astype({self.dtype.name}) / 255" if x.dtype.kind == "u"
                    else f"convert once, outside the training loop: x.astype({self.dtype.name})")
            raise TypeError(f"{self.name}: expected input of dtype {self.dtype}, got {x.dtype}; {hint}")
        if shape[0] == 0:
            raise ValueError(f"{self.name}: got an empty batch, shape {tuple(shape)}")


class ReLU(Layer):
    """Rectified linear unit: ``y = max(x, 0)``, elementwise.

    Backward: ``dL/dx = g * [y > 0]``. At x = 0 exactly the derivative is taken
    to be 0 (a subgradient). Keeps its output, not its input: y > 0 exactly
    where x > 0, and the output is what the next layer holds anyway.
    """

    def __init__(self):
        self._y = None

    def forward(self, x):
        _check_float(self, x)
        xp = get_array_module(x)
        self._y = xp.maximum(x, 0)
        return self._y

    def backward(self, grad_out):
        self._check_grad(grad_out, self._y)
        return grad_out * (self._y > 0)


class Sigmoid(Layer):
    """Logistic function: ``y = 1 / (1 + exp(-x))``, elementwise.

    x is first clipped to +-(log(dtype max) - 1) (about +-87.7 in float32),
    where exp(-x) would overflow: sigmoid is already 0 or 1 to the dtype's
    precision there, and the clip keeps the computation free of overflow warnings.

    Backward: ``dL/dx = g * y * (1 - y)``.

    Followed by ``BinaryCrossEntropy``, prefer the fused gradient with respect
    to x, ``(y - t) / count`` (see ``losses.BinaryCrossEntropy.logits_grad``):
    it is exact where ``y * (1 - y)`` has underflowed to 0. The layer keeps its
    input as ``logits`` so the loss can also compute its value from them.
    """

    def __init__(self):
        self._y = None
        self.logits = None

    def forward(self, x):
        _check_float(self, x)
        xp = get_array_module(x)
        bound = float(numpy.log(numpy.finfo(x.dtype).max)) - 1.0
        self.logits = x
        self._y = 1 / (1 + xp.exp(-xp.clip(x, -bound, bound)))
        return self._y

    def backward(self, grad_out):
        self._check_grad(grad_out, self._y)
        y = self._y
        return grad_out * y * (1 - y)


class Softmax(Layer):
    """Softmax over the last axis: ``y_i = exp(x_i - m) / sum_j exp(x_j - m)``.

    Subtracting the row maximum m changes nothing mathematically and keeps
    every exponent <= 0, so logits of 1e4 cannot overflow.

    Backward is the Jacobian-vector product, with no per-sample Jacobian:
    ``dy_i/dx_k = y_i (delta_ik - y_k)``, so

        dL/dx = y * (g - sum_i g_i y_i)     (the sum over the last axis, per row)

    Followed by ``CrossEntropy``, prefer the fused gradient with respect to x,
    ``(y - onehot(labels)) / N`` (see ``losses.CrossEntropy.logits_grad``).
    """

    def __init__(self):
        self._y = None

    def forward(self, x):
        _check_float(self, x)
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=-1, keepdims=True))
        self._y = e / e.sum(axis=-1, keepdims=True)
        return self._y

    def backward(self, grad_out):
        self._check_grad(grad_out, self._y)
        y = self._y
        return y * (grad_out - (grad_out * y).sum(axis=-1, keepdims=True))


class Normalize(Layer):
    """Each row scaled to unit length: ``y = x / n`` with ``n = sqrt(sum_j x_j^2 + eps)``.

    The row's direction is kept and its length dropped, so the outputs lie on
    the unit sphere and the squared distance of two of them is 2 - 2 cos(angle):
    Euclidean neighbours of y are the cosine neighbours of x. eps (1e-12) only
    keeps a row of zeros finite.

    Backward, per row, with y and n kept from forward: ``dn/dx_j = x_j / n``, so
    ``dy_i/dx_j = (delta_ij - y_i y_j) / n`` and, for g = dL/dy::

        dL/dx = (g - y * sum_i g_i y_i) / n

    (g with its component along y removed: lengthening x changes nothing in y).
    """

    eps = 1e-12

    def __init__(self):
        self._y = self._n = None

    def forward(self, x):
        _check_float(self, x)
        xp = get_array_module(x)
        self._n = xp.sqrt((x * x).sum(axis=-1, keepdims=True) + x.dtype.type(self.eps))
        self._y = x / self._n
        return self._y

    def backward(self, grad_out):
        self._check_grad(grad_out, self._y)
        y = self._y
        return (grad_out - y * (grad_out * y).sum(axis=-1, keepdims=True)) / self._n


def set_training(model, training: bool) -> None:
    """``layer.training = training`` for every layer of ``model`` (its ``leaves()``).

    True: Dropout drops (``fit`` sets it before its steps). False: every layer
    computes its plain function (``evaluate``, ``predict``, and ``fit`` when done).
    """
    for layer in model.leaves():
        layer.training = bool(training)


def seek_draws(model, seed: int, epoch: int, position: int) -> None:
    """The next forward's random draws (Dropout's masks) are those of rows ``position``,
    ``position + 1``, ... of epoch ``epoch``'s order in a run seeded with ``seed``.

    ``fit`` calls it before every step with its seed and this rank's first row of
    the batch, so a mask depends on the example's place in the epoch only: a
    resumed run and a run on any number of ranks draw the same masks as one
    uninterrupted process.
    """
    for layer in model.leaves():
        if isinstance(layer, Dropout):
            layer.seed, layer.epoch, layer.position = int(seed), int(epoch), int(position)


def keep_mask(seed: int, epoch: int, start: int, stop: int, features: int, p: float, stream: int = 0):
    """Keep-bits (bool, ``(stop - start, features)``, on the host) of rows start..stop-1.

    Each is True with probability 1 - p. Row q's bits come from NumPy's Philox,
    a counter-based generator, with key (seed, epoch) and counter
    (q * blocks, stream, 0, 0): one 32-bit draw u per feature (``blocks =
    ceil(features / 8)`` counter steps of 8 draws each per row), kept where
    u >= p * 2^32. So any range of rows is drawn on its own, and equals the same
    rows of a longer range: no state to carry between calls, nothing that
    depends on how the rows are split between ranks. Streams apart draw
    independent bits: stream 0 is the input masking's (``train.augment.mask_bits``
    draws these very bits), each Dropout layer of a model has a stream of its own.
    """
    blocks = -(-features // 8)  # counter steps per row: each gives 4 x 64 = 8 x 32 bits
    generator = numpy.random.Philox(key=numpy.array([seed, epoch], dtype=numpy.uint64),
                                    counter=numpy.array([start * blocks, stream, 0, 0], dtype=numpy.uint64))
    raw = generator.random_raw((stop - start) * blocks * 4).view(numpy.uint32)
    draws = raw.reshape(stop - start, blocks * 8)[:, :features]
    return draws >= numpy.uint32(min(round(p * 2.0 ** 32), 2 ** 32 - 1))


class Dropout(Layer):
    """Inverted dropout: while training, ``y = x * m / (1 - p)``; while evaluating, ``y = x``.

    m is a 0/1 mask shaped like x, each element 1 with probability 1 - p: a
    fraction p of the values is zeroed and the rest scaled up by 1 / (1 - p), so
    every value's expectation is unchanged and evaluating needs no rescaling.

    Backward, for g = dL/dy (the mask drawn in forward is kept for it)::

        training:    dL/dx = g * m / (1 - p)
        evaluating:  dL/dx = g

    The mask. Row i of a batch takes row ``position + i`` of
    ``keep_mask(seed, epoch, ..., stream)``: a pure function of the run's seed,
    of where the row sits in the epoch's order and of the layer's ``stream``.
    ``fit`` sets ``seed``, ``epoch`` and ``position`` before every step
    (``seek_draws``). Nothing is drawn from a generator that moves on by itself,
    so a resumed run and a data-parallel run (each rank draws its own rows) mask
    exactly as one uninterrupted process, and two forwards of the same batch
    give the same mask (which is what a finite-difference gradient check
    needs). A loop of your own must therefore call ``seek_draws`` for each
    batch, as ``fit`` does; otherwise every batch gets the same masks.

    stream: 1, 2, ...: two Dropout layers of a model need different streams, or
    they draw the same masks (``Classifier`` numbers them); 0 is the input
    masking's. The masks are drawn on the host and moved to the batch's device
    (one copy per step).
    """

    def __init__(self, p: float = 0.5, *, stream: int = 1):
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be a probability in [0, 1), got {p}")
        if int(stream) < 1:
            raise ValueError(f"Dropout: stream must be >= 1 (0 is the input masking's), got {stream}")
        self.p, self.stream = float(p), int(stream)
        self.seed, self.epoch, self.position = 0, 0, 0  # whose rows the next batch is (``seek_draws``)
        self._y = self._keep = None

    def __repr__(self) -> str:
        return f"Dropout({self.p:g})"

    def forward(self, x):
        _check_float(self, x)
        if not self.training or self.p == 0:
            self._keep = None  # evaluating: the identity, and so is the backward pass
            self._y = x
            return x
        xp = get_array_module(x)
        n, features = len(x), int(numpy.prod(x.shape[1:]))
        keep = keep_mask(self.seed, self.epoch, self.position, self.position + n, features, self.p,
                         self.stream)
        self._keep = xp.asarray(keep.reshape(x.shape))  # host -> device once per step
        self._y = x * self._keep * x.dtype.type(1 / (1 - self.p))
        return self._y

    def backward(self, grad_out):
        self._check_grad(grad_out, self._y)
        if self._keep is None:
            return grad_out
        return grad_out * self._keep * grad_out.dtype.type(1 / (1 - self.p))

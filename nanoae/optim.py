"""Optimizers: Adam, AdamW, and plain SGD (with momentum) to compare them with.

An optimizer holds a list of Parameters and, per parameter, the arrays of its
state (Adam's moments ``m`` and ``v``, SGD's velocity). Each ``step()`` reads
every ``p.grad`` and updates every ``p.data`` in a plain loop over the
parameters, one update rule written as in its paper. Nothing is shared between
optimizers: any number of them over any, possibly overlapping, sets of
parameters each update the live parameters (as ``torch.optim`` does).

No ``zero_grad()`` is needed before a step: the layers *set* their gradients
in backward. ``zero_grad()`` exists for code that wants it.

Subnormal numbers. Where a gradient is exactly 0 for good (a dead ReLU unit),
``m <- b1 m + (1 - b1) g`` decays towards 0 but, rounded to float32, never
reaches it: it ends a few units of the smallest *subnormal* number (|x| <
1.2e-38) and stays there. Intel cores compute with subnormals in microcode,
many times slower, so a long run slows down as they pile up (AMD cores hide
it). Every ``flush_every`` steps (default 100) the optimizer therefore sets
to 0 every state value below its dtype's smallest normal number
(``flush_subnormals()``); a dead unit's state then stays exactly 0.
``flush_every=None`` switches this off.
"""

from __future__ import annotations

import math

import numpy

from nanoae import backend
from nanoae.backend import get_array_module, to_numpy

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "adam_step", "adam_step_in_place"]


class Optimizer:
    """Common part: the parameters, per-parameter state, ``zero_grad`` and the state dict.

    Subclasses declare their per-parameter state in ``state_names`` (Adam:
    ``("m", "v")``) and create each in their ``__init__`` with ``zeros_like_params()``:
    a list of arrays aligned with ``self.params`` (``self.m[i]`` belongs to
    ``self.params[i]``). Checkpoints and the data-parallel optimizer
    (``nanoae.parallel.zero``) find the state by those names.
    """

    state_names: tuple[str, ...] = ()  # the attributes that hold per-parameter state

    def __init__(self, params, lr: float, *, flush_every: int | None = 100):
        name = type(self).__name__
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{name}: got no parameters")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError(f"{name}: a parameter appears twice in the list")
        if not lr > 0:
            raise ValueError(f"{name}: lr must be > 0, got {lr}")
        if flush_every is not None and int(flush_every) < 1:
            raise ValueError(f"{name}: flush_every must be >= 1 or None, got {flush_every}")
        self.lr = float(lr)
        self.flush_every = None if flush_every is None else int(flush_every)
        self.t = 0  # steps taken

    def zeros_like_params(self) -> list:
        """One array of zeros per parameter, of its shape and dtype, on its device."""
        return [get_array_module(p.data).zeros_like(p.data) for p in self.params]

    def step(self) -> None:
        """One update of every parameter from its current ``grad``."""
        self.t += 1
        self.update()
        if self.flush_every is not None and self.t % self.flush_every == 0:
            self.flush_subnormals()

    def update(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad[...] = 0

    def flush_subnormals(self) -> None:
        """Set to 0 every state value with magnitude below its dtype's smallest normal number."""
        for state in self.state_names:
            for a in getattr(self, state):
                xp = get_array_module(a)
                a *= xp.abs(a) >= numpy.finfo(a.dtype).tiny  # multiply by a bool mask: no host sync

    # -- saving and loading ---------------------------------------------------
    def state_dict(self) -> dict:
        """Step count, hyper-parameters and state, as host values.

        Each state is saved as one vector: the arrays of all parameters,
        flattened and concatenated in parameter order.
        """
        state = {"t": self.t, "lr": self.lr, **self.settings()}
        for name in self.state_names:
            arrays = [to_numpy(a).ravel() for a in getattr(self, name)]
            state[name] = numpy.concatenate(arrays)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()`` output; everything is checked before anything is written."""
        name = type(self).__name__
        missing = [k for k in ("t", "lr", *self.state_names) if k not in state]
        if missing:
            raise ValueError(f"{name}.load_state_dict: missing {missing}")
        total = sum(int(p.data.size) for p in self.params)
        # One vector per state for all parameters (see state_dict) has one dtype: the
        # parameters'. nanoae's models build every layer with one dtype; over parameters of
        # mixed dtypes, state_dict would promote them to one and this check would refuse it.
        dtype = self.params[0].data.dtype
        for key in self.state_names:
            value = state[key]
            if tuple(value.shape) != (total,) or value.dtype != dtype:
                raise ValueError(f"{name}.load_state_dict: {key} expected shape ({total},) dtype "
                                 f"{dtype}, got {tuple(value.shape)} {value.dtype}")
        for key in self.state_names:
            offset = 0
            for a in getattr(self, key):
                a[...] = backend.as_array_like(state[key][offset:offset + a.size].reshape(a.shape), a)
                offset += a.size
        self.t, self.lr = int(state["t"]), float(state["lr"])
        self.load_settings({k: float(v) for k, v in state.items() if k in self.settings()})

    def settings(self) -> dict:
        """The hyper-parameters besides lr, as numbers (saved in checkpoints)."""
        return {}

    def load_settings(self, settings: dict) -> None:
        """Set the hyper-parameters from ``settings()`` output (keys it lacks are left alone)."""


class SGD(Optimizer):
    """Stochastic gradient descent with optional (heavy-ball) momentum:

        v <- momentum * v + g
        w <- w - lr * v

    With momentum 0 this is ``w <- w - lr * g``. (The convention of torch.optim.SGD.)
    """

    state_names = ("velocity",)

    def __init__(self, params, lr: float, momentum: float = 0.0, *, flush_every: int | None = 100):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum}")
        super().__init__(params, lr, flush_every=flush_every)
        self.momentum = float(momentum)
        self.velocity = self.zeros_like_params()

    def settings(self) -> dict:
        return {"momentum": self.momentum}

    def load_settings(self, settings: dict) -> None:
        self.momentum = settings.get("momentum", self.momentum)

    def update(self) -> None:
        for p, v in zip(self.params, self.velocity):
            v[...] = self.momentum * v + p.grad
            p.data -= self.lr * v


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), Algorithm 1, as ``torch.optim.Adam`` computes it.

    For step t = 1, 2, ... and each parameter w with gradient g:

        m <- b1 * m + (1 - b1) * g          first moment (mean of g)
        v <- b2 * v + (1 - b2) * g^2        second moment (uncentred variance)
        m_hat = m / (1 - b1^t)              bias correction: m and v start at 0
        v_hat = v / (1 - b2^t)
        w <- w - lr * m_hat / (sqrt(v_hat) + eps)

    eps is added *after* the square root of the bias-corrected v. (scikit-learn,
    Chainer and DeZero use the paper's "efficient" reordering, which amounts to
    a different eps; this form matches PyTorch's trajectory.)

    ``adam_step`` below is this update written as the formula reads. Each of
    its operations makes a new array the size of the parameter, and for the
    reference autoencoder that made Adam 1.9 ms of every step on an Intel Xeon;
    ``adam_step_in_place`` computes the same numbers (to float32 rounding; the
    tests compare them) in the state's own memory in 0.6 ms, about 0.3 s of a
    1 s epoch. ``in_place=False`` runs the plain form.
    """

    state_names = ("m", "v")

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, *,
                 flush_every: int | None = 100, in_place: bool = True):
        b1, b2 = (float(b) for b in betas)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        if not eps > 0:
            raise ValueError(f"{type(self).__name__}: eps must be > 0, got {eps}")
        super().__init__(params, lr, flush_every=flush_every)
        self.betas, self.eps, self.in_place = (b1, b2), float(eps), bool(in_place)
        self.m = self.zeros_like_params()  # first moments, one per parameter
        self.v = self.zeros_like_params()  # second moments

    def settings(self) -> dict:
        return {"beta1": self.betas[0], "beta2": self.betas[1], "eps": self.eps}

    def load_settings(self, settings: dict) -> None:
        self.betas = (settings.get("beta1", self.betas[0]), settings.get("beta2", self.betas[1]))
        self.eps = settings.get("eps", self.eps)

    def update(self) -> None:
        step = adam_step_in_place if self.in_place else adam_step
        for p, m, v in zip(self.params, self.m, self.v):
            step(p.data, p.grad, m, v, lr=self.lr, betas=self.betas, eps=self.eps, t=self.t)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019; ``torch.optim.AdamW``).

    Before each Adam step every weight shrinks towards 0 by a fixed fraction:

        w <- w - lr * weight_decay * w
        w <- the Adam step above

    Unlike an L2 penalty added to the loss (which Adam would rescale by
    1 / sqrt(v_hat)), the decay does not depend on the gradient's scale.
    It applies to every parameter given, biases too.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, *, flush_every: int | None = 100, in_place: bool = True):
        if not weight_decay >= 0:
            raise ValueError(f"AdamW: weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, lr, betas, eps, flush_every=flush_every, in_place=in_place)
        self.weight_decay = float(weight_decay)

    def settings(self) -> dict:
        return {**super().settings(), "weight_decay": self.weight_decay}

    def load_settings(self, settings: dict) -> None:
        super().load_settings(settings)
        self.weight_decay = settings.get("weight_decay", self.weight_decay)

    def update(self) -> None:
        for p in self.params:
            p.data -= self.lr * self.weight_decay * p.data
        super().update()


def adam_step(w, g, m, v, *, lr, betas, eps, t) -> None:
    """One Adam update of the array ``w`` with gradient ``g``, as the formula reads.

    Updates the moments ``m`` and ``v`` and the weights ``w`` (all in place, as
    results); every intermediate is a new array.
    """
    xp = get_array_module(w)
    b1, b2 = betas
    m[...] = b1 * m + (1 - b1) * g
    v[...] = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    w -= lr * m_hat / (xp.sqrt(v_hat) + eps)


def adam_step_in_place(w, g, m, v, *, lr, betas, eps, t) -> None:
    """``adam_step`` in the state's own memory, with one temporary instead of nine.

    The bias corrections are scalars, so they move out of the array work:

        lr * m_hat / (sqrt(v_hat) + eps) = c * m / (sqrt(v) + eps * s)
        with s = sqrt(1 - b2^t) and c = lr * s / (1 - b1^t)
    """
    xp = get_array_module(w)
    b1, b2 = betas
    s = math.sqrt(1 - b2 ** t)
    tmp = xp.multiply(g, 1 - b1)  # the one temporary, reused for every term below
    m *= b1
    m += tmp  # m <- b1 m + (1 - b1) g
    xp.multiply(g, g, out=tmp)
    tmp *= 1 - b2
    v *= b2
    v += tmp  # v <- b2 v + (1 - b2) g^2
    xp.sqrt(v, out=tmp)
    tmp += eps * s
    xp.divide(m, tmp, out=tmp)
    tmp *= lr * s / (1 - b1 ** t)
    w -= tmp

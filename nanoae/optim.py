"""Optimizers: Adam, and plain SGD (with momentum) to compare it with.

Both pack the parameters they are given into one flat buffer (see
``parameter.pack``), so a step is a few whole-vector operations on one long
array rather than a Python loop over every weight matrix. The update rules are
written on those vectors exactly as in the papers.

An optimizer does not need ``zero_grad()`` before each step: the layers *set*
their gradients in backward. ``zero_grad()`` exists for code that wants it.
"""

from __future__ import annotations

import math

from .backend import get_array_module, to_device, to_numpy
from .parameter import pack

__all__ = ["Optimizer", "SGD", "Adam"]


class Optimizer:
    """Common part: the packed parameters, ``zero_grad`` and the state dict."""

    #: names of the per-parameter state vectors, saved in checkpoints
    _buffers: tuple[str, ...] = ()

    def __init__(self, params, lr: float):
        if not lr > 0:
            raise ValueError(f"{type(self).__name__}: lr must be > 0, got {lr}")
        self.lr = float(lr)
        self.params = list(params)
        self.flat = pack(self.params)
        self.t = 0  # steps taken

    def zero_grad(self) -> None:
        self.flat.grad[...] = 0

    def state_dict(self) -> dict:
        """Step count, hyper-parameters and state vectors, as host (NumPy) values."""
        state = {"t": self.t, "lr": self.lr}
        for name in self._buffers:
            state[name] = to_numpy(getattr(self, name)).copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()`` output; everything is checked before anything is written."""
        missing = [k for k in ("t", "lr", *self._buffers) if k not in state]
        if missing:
            raise ValueError(f"{type(self).__name__}.load_state_dict: missing {missing}")
        for name in self._buffers:
            value = state[name]
            mine = getattr(self, name)
            if tuple(value.shape) != tuple(mine.shape) or value.dtype != mine.dtype:
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: {name} expected shape "
                    f"{tuple(mine.shape)} dtype {mine.dtype}, got {tuple(value.shape)} {value.dtype}"
                )
        for name in self._buffers:
            getattr(self, name)[...] = to_device(state[name])
        self.t = int(state["t"])
        self.lr = float(state["lr"])


class SGD(Optimizer):
    """Stochastic gradient descent with optional (heavy-ball) momentum:

        v <- momentum * v + g
        w <- w - lr * v

    With momentum 0 this is ``w <- w - lr * g``. (The convention of torch.optim.SGD.)
    """

    _buffers = ("velocity",)

    def __init__(self, params, lr: float, momentum: float = 0.0):
        super().__init__(params, lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        xp = get_array_module(self.flat.data)
        self.velocity = xp.zeros_like(self.flat.data)

    def step(self) -> None:
        self.t += 1
        g = self.flat.grad
        if self.momentum:
            self.velocity *= self.momentum
            self.velocity += g
            g = self.velocity
        self.flat.data -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), Algorithm 1, as ``torch.optim.Adam`` computes it.

    For step t = 1, 2, ... with gradient g:

        m <- b1 * m + (1 - b1) * g          first moment (mean of g)
        v <- b2 * v + (1 - b2) * g^2        second moment (uncentred variance)
        m_hat = m / (1 - b1^t)              bias correction: m and v start at 0
        v_hat = v / (1 - b2^t)
        w <- w - lr * m_hat / (sqrt(v_hat) + eps)

    eps is added *after* the square root of the bias-corrected v. (scikit-learn,
    Chainer and DeZero use the paper's "efficient" reordering, which amounts to
    a different eps; this form matches PyTorch's trajectory.)

    The bias corrections are scalars, so they are folded into two numbers per
    step instead of two passes over the vectors:
    ``w -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.

    ``weight_decay`` (default 0) is *decoupled* weight decay, the rule of AdamW
    (Loshchilov & Hutter, 2019; ``torch.optim.AdamW``): before the step,
    ``w <- w - lr * weight_decay * w``. It shrinks every weight (biases too)
    towards 0 at a rate independent of the gradient's scale.
    """

    _buffers = ("m", "v")

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        if not weight_decay >= 0:
            raise ValueError(f"Adam: weight_decay must be >= 0, got {weight_decay}")
        self.weight_decay = float(weight_decay)
        b1, b2 = (float(b) for b in betas)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"Adam: betas must be in [0, 1), got {betas}")
        if not eps > 0:
            raise ValueError(f"Adam: eps must be > 0, got {eps}")
        self.betas, self.eps = (b1, b2), float(eps)
        xp = get_array_module(self.flat.data)
        self.m = xp.zeros_like(self.flat.data)
        self.v = xp.zeros_like(self.flat.data)
        self._tmp = xp.empty_like(self.flat.data)  # scratch, reused every step

    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        g, m, v, tmp = self.flat.grad, self.m, self.v, self._tmp
        xp = get_array_module(g)
        if self.weight_decay:
            self.flat.data *= 1 - self.lr * self.weight_decay
        # m <- b1 m + (1 - b1) g, written as m += (1 - b1)(g - m): three passes, no allocation
        xp.subtract(g, m, out=tmp)
        tmp *= 1 - b1
        m += tmp
        # v <- b2 v + (1 - b2) g^2
        xp.multiply(g, g, out=tmp)
        tmp *= 1 - b2
        v *= b2
        v += tmp
        # w <- w - step_size * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
        step_size = self.lr / (1 - b1 ** self.t)
        xp.sqrt(v, out=tmp)
        tmp *= 1 / math.sqrt(1 - b2 ** self.t)
        tmp += self.eps
        xp.divide(m, tmp, out=tmp)
        tmp *= -step_size
        self.flat.data += tmp

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(beta1=self.betas[0], beta2=self.betas[1], eps=self.eps,
                     weight_decay=self.weight_decay)
        return state

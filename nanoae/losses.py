"""Losses: binary cross-entropy and cross-entropy, with stable and fused gradients.

A loss follows the layer protocol with two inputs:

* ``forward(pred, target)`` returns the mean loss (a 0-d array, left on the
  device: reading it with ``float()`` waits for the GPU, so do that once per
  epoch, not per batch) and keeps what backward needs;
* ``backward()`` returns dL/dpred, the gradient with respect to the prediction.

Fused gradients. A sigmoid output trained with BCE, or a softmax output trained
with cross-entropy, has a famously simple gradient with respect to the *logits*
z (the input of the last activation):

    Sigmoid + BinaryCrossEntropy:  dL/dz = (sigmoid(z) - t) / count
    Softmax + CrossEntropy:        dL/dz = (softmax(z) - onehot(labels)) / N

``loss.logits_grad()`` returns it, and ``loss.fuses_with(layer)`` says whether
``layer`` is the activation it belongs to; ``Sequential.backward_from_loss``
uses both. Going through dL/dpred instead divides by p (1 - p), which underflows
to 0 for saturated outputs; the fused form is exact there and costs fewer passes.

Stability. log(p) is taken of max(p, e^-100) (a clamp at -100, as
``torch.nn.BCELoss`` applies; at the smallest normal number in float32), so p = 0 or 1 gives a finite loss without
warnings; the unfused backward clips p to [eps, 1 - eps] (eps of the array's own
dtype, not float64's) so it stays finite too. The two bounds differ on purpose:
the floor keeps the reported loss what torch would report, the clip keeps a
gradient of 1 / p from overflowing in the next matrix product. For p between
them the unfused backward is therefore not the derivative of the forward; the
fused gradients, which training uses, have no such gap.

Checks. Shapes and dtypes are always checked (free). Value checks (labels in
range, a non-finite loss explained) need a pass over the data and, on a GPU, a
device sync; ``check=None`` (the default) runs them only for NumPy arrays,
``True`` always, ``False`` never (``fit`` validates the whole dataset once and
then turns them off).
"""

from __future__ import annotations

import numpy

from nanoae.backend import get_array_module
from nanoae.layers import Sigmoid, Softmax

__all__ = ["Loss", "BinaryCrossEntropy", "CrossEntropy"]

_LOG_FLOOR = -100.0  # as torch.nn.BCELoss: log terms are clamped at -100


def _safe_log(xp, p):
    """log(p) for p in [0, 1], never -inf and never a warning: ``log(max(p, floor))``.

    floor = max(e^-100, tiny), the dtype's smallest normal number tiny: in
    float64 the log is clamped at -100 as torch does; in float32, e^-100 is
    below tiny (a subnormal: slow, on Intel) and the log stops at log(tiny) = -87.3.
    """
    floor = max(numpy.exp(_LOG_FLOOR), float(numpy.finfo(p.dtype).tiny))
    return xp.log(xp.maximum(p, floor))


class Loss:
    """Base class of the losses: calling, the fused-pair test, and the check policy."""

    #: The activation whose input gradient this loss can supply directly (or None).
    fused_layer: type | None = None

    def __init__(self, *, check: bool | None = None):
        self.check = check

    def __call__(self, pred, target, **kwargs):
        return self.forward(pred, target, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def fuses_with(self, layer) -> bool:
        """True when ``layer`` is the activation whose fused gradient ``logits_grad`` gives."""
        return self.fused_layer is not None and isinstance(layer, self.fused_layer)

    def after(self, layer, pred, target):
        """The loss of ``pred``, the output ``layer`` has just computed: ``self(pred, target)``.

        A loss that can read more of a fused pair than the probabilities
        overrides this (``BinaryCrossEntropy`` reads the Sigmoid's input, the
        logits). ``Sequential.loss_value`` is the one caller: it passes the
        model's last layer, so no one hands logits over by hand.
        """
        return self(pred, target)

    def _checking(self, xp) -> bool:
        return self.check if self.check is not None else xp is numpy

    def _explain_nonfinite(self, loss, xp, **arrays):
        """Raise a clear error when ``loss`` is not finite (only when checks are on)."""
        if not self._checking(xp) or bool(xp.isfinite(loss)):
            return
        for name, a in arrays.items():
            if a.dtype.kind == "f" and not bool(xp.isfinite(a).all()):
                bad = int((~xp.isfinite(a)).sum())
                raise ValueError(f"{self!r}: {name} contains {bad} non-finite value(s) (NaN or inf)")
        raise ValueError(f"{self!r}: the loss is not finite although its inputs are")

    def _need(self, attr):
        value = getattr(self, attr, None)
        if value is None:
            raise RuntimeError(f"{self!r}: backward() called before forward()")
        return value


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy, the mean over *all* elements (as PyTorch and Keras):

        L = -(1 / count) * sum( t * log(p) + (1 - t) * log(1 - p) )

    pred p and target t: same shape, same floating dtype, t in [0, 1]
    (grey levels are fine: the loss then cannot reach 0, its floor is the
    targets' own entropy). count = p.size.

    Backward:  dL/dp = (p - t) / (p * (1 - p)) / count   (p clipped to [eps, 1 - eps])
    Fused with Sigmoid (``logits_grad``):  dL/dz = (p - t) / count
    """

    fused_layer = Sigmoid

    def forward(self, pred, target, *, logits=None):
        """The mean BCE. ``logits``: the input z of the Sigmoid that made ``pred``, if known.

        Given the logits, the loss is computed from them, which is exact even
        where p has rounded to 0 or 1:

            -(t log p + (1 - t) log(1 - p)) = softplus(z) - t z,   softplus(z) = log(1 + e^z)

        and softplus is evaluated with the p already at hand, one logarithm
        and no exponential: ``softplus(z) = max(z, 0) - log(max(p, 1 - p))``
        (for z >= 0, log(1 + e^z) = z - log p; for z < 0, it is -log(1 - p);
        max(p, 1 - p) >= 1/2, so that logarithm never meets 0).

        The mean is written as sums, ``(sum softplus(z) - sum t z) / count``,
        with ``sum t z`` a dot product: the plain ``mean(softplus(z) - t * z)``
        (``_bce_from_logits_plain``, which the tests compare with it) makes three
        more temporaries the size of the batch and took 0.95 ms instead of
        0.37 ms per 256 x 784 batch on an Intel Xeon, 0.14 s of a 1 s epoch.
        """
        _check_same(self, pred, target)
        xp = get_array_module(pred)
        if self._checking(xp) and (float(target.min()) < 0 or float(target.max()) > 1):
            raise ValueError(f"{self!r}: target values must lie in [0, 1], got "
                             f"[{float(target.min())}, {float(target.max())}]")
        self._p, self._t = pred, target
        if logits is not None:
            if logits.shape != pred.shape or logits.dtype != pred.dtype:
                raise ValueError(f"{self!r}: logits must match pred, got {tuple(logits.shape)} "
                                 f"{logits.dtype} for pred {tuple(pred.shape)} {pred.dtype}")
            softplus_sum = xp.maximum(logits, 0).sum() - xp.log(xp.maximum(pred, 1 - pred)).sum()
            loss = (softplus_sum - xp.dot(target.ravel(), logits.ravel())) / pred.size
        else:
            loss = -xp.mean(target * _safe_log(xp, pred) + (1 - target) * _safe_log(xp, 1 - pred))
        self._explain_nonfinite(loss, xp, pred=pred, target=target)
        return loss

    def after(self, layer, pred, target):
        """From the logits the Sigmoid kept, when ``layer`` is that Sigmoid: exact at p = 0 or 1."""
        if self.fuses_with(layer):
            return self(pred, target, logits=layer.logits)
        return self(pred, target)

    def backward(self):
        p, t = self._need("_p"), self._t
        xp = get_array_module(p)
        # The clip at eps is not the forward's log floor, on purpose: dividing by
        # p (1 - p) at p = 1e-30 would give a gradient of 1e30, which the next
        # matrix product turns into inf. So for p between the log floor and eps
        # this is the derivative of a loss that is linear in p there, not of log p.
        # Training never takes this path (the fused logits_grad has no division).
        eps = numpy.finfo(p.dtype).eps
        p = xp.clip(p, eps, 1 - eps)
        return (p - t) / (p * (1 - p)) * (1.0 / p.size)

    def logits_grad(self):
        """dL/dz for z the input of the preceding Sigmoid: ``(p - t) / count``."""
        p, t = self._need("_p"), self._t
        return (p - t) / p.size


class CrossEntropy(Loss):
    """Cross-entropy of class probabilities against integer labels, mean over the batch:

        L = -(1 / N) * sum_n log(p[n, labels[n]])

    probs p: ``(N, C)`` floating, rows summing to 1; labels: ``(N,)`` integers in 0..C-1.

    Backward:  dL/dp[n, c] = -1 / (N * p[n, c]) where c == labels[n], else 0
               (p clipped below at eps)
    Fused with Softmax (``logits_grad``):  dL/dz = (p - onehot(labels)) / N

    Label smoothing (``label_smoothing=eps`` > 0): the target of each example is
    no longer the one-hot row but q = (1 - eps) * onehot(labels) + eps / C, so a
    model is never pushed towards a probability of exactly 1 (nor its logits to
    infinity):

        L = -(1 / N) * sum_n sum_c q[n, c] * log(p[n, c])

    Backward:  dL/dp[n, c] = -q[n, c] / (N * p[n, c])   (p clipped below at eps)
    Fused with Softmax:  dL/dz = (p - q) / N   (the rows of q sum to 1, as onehot's do)

    eps = 0 (the default) is the plain loss above, computed as before (only the
    true class's probability is read).
    """

    fused_layer = Softmax

    def __init__(self, *, label_smoothing: float = 0.0, check: bool | None = None):
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"CrossEntropy: label_smoothing must lie in [0, 1), got {label_smoothing}")
        super().__init__(check=check)
        self.label_smoothing = float(label_smoothing)

    def __repr__(self) -> str:
        if self.label_smoothing:
            return f"CrossEntropy(label_smoothing={self.label_smoothing:g})"
        return "CrossEntropy()"

    def targets(self, probs, labels):
        """q = (1 - eps) * onehot(labels) + eps / C, shaped and typed like ``probs``."""
        xp = get_array_module(probs)
        n, c = probs.shape
        eps = self.label_smoothing
        q = xp.full_like(probs, eps / c)
        q[xp.arange(n), labels] += 1 - eps
        return q

    def forward(self, probs, labels):
        """The mean cross-entropy; only the N probabilities of the true classes are read."""
        if getattr(probs, "ndim", None) != 2:
            raise ValueError(f"{self!r}: expected probs of shape (N, C), got "
                             f"{tuple(getattr(probs, 'shape', ()))}")
        if probs.dtype.kind != "f":
            raise TypeError(f"{self!r}: expected floating probs, got {probs.dtype}")
        n, c = probs.shape
        if getattr(labels, "shape", None) != (n,):
            raise ValueError(f"{self!r}: expected labels of shape ({n},) for probs of shape "
                             f"{(n, c)}, got {tuple(getattr(labels, 'shape', ()))}")
        if labels.dtype.kind not in "iu":
            raise TypeError(f"{self!r}: labels must be integers (class indices), got {labels.dtype}")
        if n == 0:
            raise ValueError(f"{self!r}: got an empty batch")
        xp = get_array_module(probs)
        if self._checking(xp):
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= c:
                raise ValueError(f"{self!r}: labels must lie in 0..{c - 1}, got values in {lo}..{hi}")
        self._p, self._labels = probs, labels
        if self.label_smoothing:
            # every class's log-probability counts: log(0) is floored as for the true class
            loss = -(self.targets(probs, labels) * _safe_log(xp, probs)).sum() / n
        else:
            picked = probs[xp.arange(n), labels]  # (N,): the probability of the true class
            loss = -_safe_log(xp, picked).mean()
        self._explain_nonfinite(loss, xp, probs=probs)
        return loss

    def backward(self):
        p, labels = self._need("_p"), self._labels
        xp = get_array_module(p)
        n = p.shape[0]
        if self.label_smoothing:
            # clipped at eps, not at the forward's log floor: see BinaryCrossEntropy.backward
            return -self.targets(p, labels) / (n * xp.maximum(p, numpy.finfo(p.dtype).eps))
        rows = xp.arange(n)
        g = xp.zeros_like(p)
        # clipped at eps, not at the forward's log floor: see BinaryCrossEntropy.backward
        picked = xp.maximum(p[rows, labels], numpy.finfo(p.dtype).eps)
        g[rows, labels] = -1.0 / (n * picked)
        return g

    def logits_grad(self):
        """dL/dz for z the input of the preceding Softmax: ``(p - q) / N``, q = onehot
        without label smoothing."""
        p, labels = self._need("_p"), self._labels
        xp = get_array_module(p)
        n = p.shape[0]
        if self.label_smoothing:
            return (p - self.targets(p, labels)) / n
        onehot = xp.zeros_like(p)
        onehot[xp.arange(n), labels] = 1
        return (p - onehot) / n


def _bce_from_logits_plain(xp, pred, target, logits):
    """``mean(softplus(z) - t z)`` written as the formula reads (the reference for the tests)."""
    softplus = xp.maximum(logits, 0) - xp.log(xp.maximum(pred, 1 - pred))
    return xp.mean(softplus - target * logits)


def _check_same(loss, pred, target):
    for name, a in (("pred", pred), ("target", target)):
        if getattr(a, "dtype", None) is None or a.dtype.kind != "f":
            raise TypeError(f"{loss!r}: {name} must be a floating-point array, got "
                            f"{getattr(a, 'dtype', type(a).__name__)}")
    if pred.shape != target.shape:
        raise ValueError(f"{loss!r}: pred and target must have the same shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.dtype != target.dtype:
        raise TypeError(f"{loss!r}: pred and target must have the same dtype, got "
                        f"{pred.dtype} and {target.dtype}")
    if pred.size == 0:
        raise ValueError(f"{loss!r}: got an empty batch")

"""Gradient checking: compare backward() with central finite differences.

For a scalar function f of an array a, the central difference

    df/da[i] ~ (f(a + h e_i) - f(a - h e_i)) / (2 h)

has error O(h^2) from truncation plus O(eps * |f| / h) from rounding. In
float64 (eps ~ 1e-16) with h = 1e-5 both are ~1e-10 relative, so the analytic
gradient must agree to rtol 1e-6; float32 (eps ~ 1e-7) cannot tell a bug from
rounding at any useful h, which is why checks refuse anything but float64.

What f is depends on what is checked:

* a layer or model: ``f(x) = sum(G * layer(x))`` with G a *random* upstream
  gradient. (With G = 1 a softmax check is vacuous: softmax rows always sum to
  1, so the true gradient is 0 and a backward that returns zeros would pass.)
  backward(G) must then return df/dx, and set df/dW for each parameter.
* a loss: ``f(p) = loss(p, target)``; backward() must return df/dp.
* a ``(model, loss)`` pair: ``f(x) = loss(model(x), target)``, with the
  analytic side from ``model.backward_from_loss(loss)``, so fused gradients
  (Sigmoid + BCE, Softmax + CE) are checked exactly as training uses them.

Every coordinate of the input and of every parameter is checked, or a seeded
random sample of ``max_coords`` of them for large arrays.

Kinks. Where f is not differentiable within h of a point (ReLU's input within h
of 0), the central difference averages two slopes and disagrees with any
correct backward. The two one-sided differences tell: with f0 = f(a),

    d+ = (f(a + h e_i) - f0) / h,   d- = (f0 - f(a - h e_i)) / h,
    central = (d+ + d-) / 2,        d+ - d- = h f''(a) + O(h^2) where f is smooth.

At a kink d+ - d- is the jump in slope, O(1), and a backward that returns
either side's slope is off the central difference by exactly |d+ - d-| / 2.
A real bug on a smooth stretch is off by far more than h |f''|. So an element
that is out of tolerance *and* has |d+ - d-| >= |analytic - central| is
counted as a kink (``result.kinks``), not as a failure. (Chainer's
``numerical_grad(detect_nondifferentiable=True)`` fits a quadratic through five
points instead; one extra evaluation of f0 per array suffices here.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy

from nanoae.backend import get_array_module, to_numpy
from nanoae.errors import NanoaeError
from nanoae.layers import Layer
from nanoae.losses import Loss

__all__ = ["gradcheck", "GradcheckResult", "ArrayCheck", "GradcheckError"]


class GradcheckError(NanoaeError, AssertionError):
    """Raised by ``gradcheck`` when analytic and numerical gradients disagree."""


@dataclass
class ArrayCheck:
    """How one array's gradient (the input's, or a parameter's) compared.

    max_abs: the largest |analytic - numerical|; max_rel: the largest
    |analytic - numerical| / max(|analytic|, |numerical|, atol / rtol) (below
    atol / rtol in size the test is absolute, so the floor keeps noise on
    near-zero gradients from reading as a large relative error). Both leave
    out the kinks. worst: the element furthest out of tolerance.
    """

    name: str
    shape: tuple
    checked: int
    max_abs: float = 0.0
    max_rel: float = 0.0
    failed: int = 0  # elements out of tolerance (kinks not counted)
    kinks: int = 0  # elements out of tolerance within h of a kink
    worst: dict = field(default_factory=dict)


@dataclass
class GradcheckResult:
    """The outcome of a check; ``ok`` is True when every checked element agrees.

    ``arrays`` holds one ArrayCheck per array checked (input first).
    """

    ok: bool
    checked: int  # number of elements compared
    h: float
    rtol: float
    atol: float
    worst: dict = field(default_factory=dict)  # where |a - n| - tol is largest
    failures: dict = field(default_factory=dict)  # name -> number of bad elements
    kinks: dict = field(default_factory=dict)  # name -> number of elements at a kink
    arrays: list = field(default_factory=list)

    @property
    def max_abs(self) -> float:
        return max((a.max_abs for a in self.arrays), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((a.max_rel for a in self.arrays), default=0.0)

    def __str__(self) -> str:
        w = self.worst
        head = "passed" if self.ok else "FAILED"
        text = (f"gradcheck {head}: {self.checked} elements, h={self.h:g}, "
                f"rtol={self.rtol:g}, atol={self.atol:g}")
        if w:
            text += f"; worst: {describe_element(w)}"
        if self.failures:
            text += "; out of tolerance: " + ", ".join(f"{k} ({v})" for k, v in self.failures.items())
        if self.kinks:
            text += ("; not counted, within h of a kink: "
                     + ", ".join(f"{k} ({v})" for k, v in self.kinks.items()))
        return text


def describe_element(w: dict) -> str:
    """``input[1, 2] analytic 0 numerical 0.0123 |diff| 0.0123``: one compared element."""
    return (f"{w['name']}{list(w['index'])} analytic {w['analytic']:.10g} "
            f"numerical {w['numerical']:.10g} |diff| {w['diff']:.3g}")


def gradcheck(obj, x, target=None, *, seed: int = 0, h: float = 1e-5, rtol: float = 1e-6,
              atol: float = 1e-8, max_coords: int | None = None, grad_out=None,
              detect_kinks: bool = True, raise_on_failure: bool = True) -> GradcheckResult:
    """Check the gradients of ``obj`` at input ``x`` by central differences.

    obj: a Layer (Dense, ReLU, ..., or a Sequential model), a Loss (then
    ``target`` is required), or a ``(model, loss)`` tuple (``target`` required).
    x: the float64 input. grad_out: the upstream gradient for a layer (default:
    standard normal, seeded). max_coords: check at most this many elements of
    each array (a seeded sample). detect_kinks: count elements within h of a
    kink (see the module docstring) apart instead of failing them. Raises
    GradcheckError on disagreement, naming the worst element, unless
    ``raise_on_failure`` is False.
    """
    rng = numpy.random.default_rng(seed)
    model, loss = _split(obj, target)
    named = _named_parameters(model)
    # the input and target on the parameters' device (a host array against GPU weights)
    params = [p for _, p in named]
    x, target = (None if a is None else _like(params, a) for a in (x, target))
    arrays = [("input", x)] + [(name, p.data) for name, p in named]
    for name, data in arrays:
        if data.dtype != numpy.float64:
            raise TypeError(f"gradcheck: {name} is {data.dtype}; checks need float64 "
                            "(build layers with dtype=numpy.float64 and pass float64 input)")
        # the perturbation goes through data.reshape(-1), a view only of a C-contiguous
        # array: of any other it is a copy, f() would never see the change, and every
        # numerical gradient would read 0
        if not data.flags.c_contiguous:
            raise ValueError(f"gradcheck: {name} is not C-contiguous; pass a contiguous array")
    # The analytic side first, and copied (to_numpy) before any f(): each f() runs forward
    # again and overwrites what backward reads (the layers' caches, the loss's prediction).
    f, analytic_x = _function_and_backward(model, loss, x, target, grad_out, rng)
    analytic = [to_numpy(analytic_x).copy()] + [to_numpy(p.grad).copy() for p in params]
    f0 = f()  # f at the unperturbed point: with f(a +- h) it gives both one-sided differences

    result = GradcheckResult(ok=True, checked=0, h=h, rtol=rtol, atol=atol)
    worst_excess = -numpy.inf
    for (name, data), ana in zip(arrays, analytic):
        coords = numpy.arange(data.size)
        if max_coords is not None and data.size > max_coords:
            coords = numpy.sort(rng.choice(data.size, size=max_coords, replace=False))
        numerical, jump = _central_differences(f, f0, data, coords, h)
        ana = ana.reshape(-1)[coords]
        diff = numpy.abs(ana - numerical)
        excess = diff - (atol + rtol * numpy.abs(numerical))
        kink = (excess > 0) & (numpy.abs(jump) >= diff)
        if not detect_kinks:
            kink[:] = False
        fair = ~kink  # the elements whose comparison means something
        check = ArrayCheck(name=name, shape=tuple(data.shape), checked=len(coords),
                           failed=int((excess[fair] > 0).sum()), kinks=int(kink.sum()))
        result.checked += len(coords)
        if check.failed:
            result.failures[name] = check.failed
        if check.kinks:
            result.kinks[name] = check.kinks
        if fair.any():
            scale = numpy.maximum(numpy.maximum(numpy.abs(ana), numpy.abs(numerical)), atol / rtol)
            check.max_abs = float(diff[fair].max())
            check.max_rel = float((diff / scale)[fair].max())
            k = int(numpy.flatnonzero(fair)[numpy.argmax(excess[fair])])
            check.worst = {"name": name,
                           "index": tuple(int(i) for i in numpy.unravel_index(coords[k], data.shape)),
                           "analytic": float(ana[k]), "numerical": float(numerical[k]),
                           "diff": float(diff[k])}
            if excess[k] > worst_excess:
                worst_excess, result.worst = excess[k], check.worst
        result.arrays.append(check)
    result.ok = not result.failures
    if not result.ok and raise_on_failure:
        raise GradcheckError(f"{_describe(obj)}: {result}")
    return result


def _named_parameters(model):
    """[(name, Parameter)]: ``W`` for a single layer, ``<layer name>.W`` inside a model."""
    if model is None:
        return []
    leaves = model.leaves()
    named = [(p.name if leaf is model else f"{leaf.name}.{p.name}", p)
             for leaf in leaves for p in leaf.parameters()]
    if len(named) != len(model.parameters()):  # a layer that holds others but is not Sequential
        named = [(p.name, p) for p in model.parameters()]
    seen = {}
    for i, (name, p) in enumerate(named):  # unnamed or repeated names get their position
        if not name or name in seen:
            named[i] = (f"{name or 'param'}#{i}", p)
        seen[named[i][0]] = True
    return named


def _like(params, a):
    """``a`` on the device of ``params`` (the array's own when there are none)."""
    if not params:
        return a
    xp = get_array_module(params[0].data)
    return to_numpy(a) if xp is numpy else xp.asarray(a)


def _function_and_backward(model, loss, x, target, grad_out, rng):
    """(f, dL/dx): the scalar function f() checked, and one analytic backward pass.

    The backward pass also sets every parameter's ``grad``. It runs here, right
    after its forward: a call of f() in between would replace the caches it reads.
    """
    xp = get_array_module(x)
    if loss is None:  # f(x) = sum(G * layer(x)), G a random upstream gradient
        y = model.forward(x)
        g = xp.asarray(rng.standard_normal(y.shape)) if grad_out is None else _like([], grad_out)
        return (lambda: float((model.forward(x) * g).sum())), model.backward(g)
    if model is None:  # f(p) = loss(p, target)
        loss.forward(x, target)
        return (lambda: float(loss.forward(x, target))), loss.backward()
    loss.forward(model.forward(x), target)  # f(x) = loss(model(x), target)
    return (lambda: float(loss.forward(model.forward(x), target))), model.backward_from_loss(loss)


def _central_differences(f, f0, data, coords, h):
    """For each flat index i in ``coords``: the central difference and d+ - d-.

    central = (f(a + h e_i) - f(a - h e_i)) / 2h; d+ - d- = (f(a + h e_i) - 2 f0
    + f(a - h e_i)) / h, the disagreement of the one-sided differences (about
    h f'' where f is smooth, O(1) at a kink). ``data`` is perturbed in place,
    through a flat view, and restored each time.
    """
    flat = data.reshape(-1)  # a view: perturbing it perturbs the array f reads
    central, jump = numpy.empty(len(coords)), numpy.empty(len(coords))
    for k, i in enumerate(coords):
        i = int(i)
        old = float(flat[i])
        flat[i] = old + h
        f_plus = f()
        flat[i] = old - h
        f_minus = f()
        flat[i] = old
        central[k] = (f_plus - f_minus) / (2 * h)
        jump[k] = (f_plus - 2 * f0 + f_minus) / h
    return central, jump


def _split(obj, target):
    if isinstance(obj, tuple):
        model, loss = obj
        if not isinstance(model, Layer) or not isinstance(loss, Loss):
            raise TypeError("gradcheck: a tuple must be (layer_or_model, loss)")
    elif isinstance(obj, Loss):
        model, loss = None, obj
    elif isinstance(obj, Layer):
        model, loss = obj, None
    else:
        raise TypeError(f"gradcheck: cannot check a {type(obj).__name__}")
    if loss is not None and target is None:
        raise ValueError("gradcheck: checking a loss needs its target")
    return model, loss


def _describe(obj) -> str:
    if isinstance(obj, tuple):
        return " + ".join(repr(o) for o in obj)
    return repr(obj)

"""What ``nanoae gradcheck`` checks, and the table it prints.

* ``builtin_cases()``: every built-in layer, loss and fused pair (Dropout in
  training mode, CrossEntropy with and without label smoothing), and both
  composed models as same-pattern miniatures (an autoencoder 12-6-4-3-4-6-12
  with a ReLU code, a classifier 3-8-10, also with dropout), all in float64.
* ``load_layer("my_layers.py:LeakyReLU")`` or ``load_layer("mypkg.layers:LeakyReLU")``:
  a learner's Layer class; ``layer_case(cls, ...)`` builds it in float64 and
  first screens it for the mistakes that would make a check meaningless (see
  ``screen``). Each of those, and every loading problem, raises ``NotCheckable``
  with one line saying what was found and what to do.
* ``run_case`` puts a case through ``gradcheck``. When some elements lie within
  h of a kink (see gradcheck.py) it redraws the input, up to ``REDRAWS`` times,
  and reports the kinks that remain instead of failing on them.

Nothing here is numerical: the arithmetic is ``gradcheck``'s.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy

from nanoae.backend import get_array_module, to_device
from nanoae.fashion.models import Autoencoder, Classifier, Standardize
from nanoae.gradcheck import GradcheckResult, describe_element, gradcheck
from nanoae.layers import Dense, Dropout, Layer, Normalize, ReLU, Sigmoid, Softmax
from nanoae.losses import BinaryCrossEntropy, CrossEntropy
from nanoae.sequential import Sequential

__all__ = ["NotCheckable", "Case", "Row", "builtin_cases", "load_layer", "layer_case", "run_case",
           "format_table", "REDRAWS"]

F64 = numpy.float64
REDRAWS = 5  # inputs tried when elements land within h of a kink


class NotCheckable(Exception):
    """The layer cannot be checked as given; the message is one line: what, and what to do."""


@dataclass
class Case:
    """One check: ``build(seed)`` returns ``(obj, x, target)`` for ``gradcheck``."""

    label: str
    build: Callable


@dataclass
class Row:
    """One line of the table: a case, its last result, how many inputs were drawn, seconds."""

    label: str
    result: GradcheckResult
    draws: int
    seconds: float


def _device(*arrays):
    return [None if a is None else to_device(a) for a in arrays]


def _normal(seed, shape, scale=1.0):
    return scale * numpy.random.default_rng(seed).standard_normal(shape)


def _probabilities(seed, n, k):
    p = numpy.random.default_rng(seed).random((n, k)) + 0.1
    return p / p.sum(axis=1, keepdims=True)


def _labels(seed, n, k):
    return numpy.random.default_rng(seed + 1).integers(0, k, size=n)


def _mini_autoencoder(seed, code_activation="relu"):
    """The autoencoder's pattern (ReLU between layers, sigmoid out) at widths 12-6-4-3,
    with the reference's ReLU code, or another ``code_activation``.

    Biases are set small and positive: with b = 0, a sample whose ReLUs are all
    off feeds an exact 0 into the next ReLU, right on its kink.
    """
    model = Autoencoder((12, 6, 4, 3), code_activation=code_activation, dtype=F64, seed=seed)
    rng = numpy.random.default_rng(seed)
    for p in model.parameters():
        if p.name == "b":
            p.data[...] = to_device(rng.uniform(0.05, 0.2, size=p.data.shape))
    x = numpy.random.default_rng(seed + 1).random((5, 12))
    return (model, BinaryCrossEntropy()), *_device(x, x.copy())


def builtin_cases() -> list[Case]:
    """Every built-in layer, loss, fused pair and composed model, small, in float64."""
    def layer(make, shape, scale=1.0):
        return lambda seed: (make(seed), *_device(_normal(seed, shape, scale), None))

    return [
        Case("Dense(5, 3)", layer(lambda s: Dense(5, 3, dtype=F64, rng=s), (4, 5))),
        Case("ReLU()", layer(lambda s: ReLU(), (4, 5))),
        Case("Sigmoid()", layer(lambda s: Sigmoid(), (4, 5), 3.0)),
        Case("Softmax()", layer(lambda s: Softmax(), (4, 6), 2.0)),
        Case("Normalize()", layer(lambda s: Normalize(), (4, 5))),
        # training mode: a forward draws the mask of its rows (the same on every call, so
        # the finite differences see one fixed function), which backward then uses
        Case("Dropout(0.3), training", layer(lambda s: Dropout(0.3), (4, 5))),
        Case("Standardize(5)", layer(lambda s: Standardize(_normal(s, 5), 0.5 + numpy.arange(5.0)),
                                     (4, 5))),
        Case("BinaryCrossEntropy()", lambda s: (BinaryCrossEntropy(), *_device(
            0.05 + 0.9 * numpy.random.default_rng(s).random((4, 5)),
            numpy.random.default_rng(s + 1).random((4, 5))))),
        Case("CrossEntropy()", lambda s: (CrossEntropy(), *_device(_probabilities(s, 5, 4),
                                                                  _labels(s, 5, 4)))),
        Case("CrossEntropy(label_smoothing=0.1)", lambda s: (
            CrossEntropy(label_smoothing=0.1), *_device(_probabilities(s, 5, 4), _labels(s, 5, 4)))),
        Case("Sigmoid + BinaryCrossEntropy (fused)", lambda s: (
            (Sequential(Sigmoid()), BinaryCrossEntropy()),
            *_device(_normal(s, (4, 5), 3.0), numpy.random.default_rng(s + 1).random((4, 5))))),
        Case("Softmax + CrossEntropy (fused)", lambda s: (
            (Sequential(Softmax()), CrossEntropy()), *_device(_normal(s, (5, 4), 2.0),
                                                              _labels(s, 5, 4)))),
        Case("Softmax + CrossEntropy(label_smoothing=0.1), fused", lambda s: (
            (Sequential(Softmax()), CrossEntropy(label_smoothing=0.1)),
            *_device(_normal(s, (5, 4), 2.0), _labels(s, 5, 4)))),
        Case("Autoencoder 12-6-4-3-4-6-12 + BCE", _mini_autoencoder),
        Case("Autoencoder 12-6-4-3-4-6-12, unit code (Normalize) + BCE",
             lambda s: _mini_autoencoder(s, code_activation="unit")),
        Case("Classifier 3-8-10 + CrossEntropy", lambda s: (
            (Classifier(3, (8,), 10, dtype=F64, seed=s), CrossEntropy()),
            *_device(_normal(s, (6, 3)), _labels(s, 6, 10)))),
        Case("Classifier 3-8-10, dropout 0.3 + CrossEntropy(label_smoothing=0.1)",
             lambda s: ((Classifier(3, (8,), 10, dtype=F64, seed=s, dropout=0.3),
                         CrossEntropy(label_smoothing=0.1)),
                        *_device(_normal(s, (6, 3)), _labels(s, 6, 10)))),
    ]


def run_case(case: Case, seed: int = 0) -> Row:
    """``gradcheck`` on the case; inputs with elements at a kink are redrawn (REDRAWS at most)."""
    start = time.perf_counter()
    for draw in range(1, REDRAWS + 1):
        obj, x, target = case.build(seed + draw - 1)
        result = gradcheck(obj, x, target, seed=seed, raise_on_failure=False)
        if not result.kinks:
            break
    return Row(case.label, result, draw, time.perf_counter() - start)


# -- a learner's layer ---------------------------------------------------------

def load_layer(spec: str) -> type:
    """The class named by ``FILE.py:CLASS`` or ``MODULE:CLASS``, checked to be a Layer."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise NotCheckable(f"expected FILE.py:CLASS or MODULE:CLASS (my_layers.py:LeakyReLU), "
                           f"got {spec!r}")
    module = _import_file(where) if where.endswith(".py") or "/" in where else _import_module(where)
    cls = getattr(module, name, None)
    if cls is None:
        mine = sorted(k for k, v in vars(module).items()
                      if inspect.isclass(v) and v.__module__ == module.__name__)
        raise NotCheckable(f"{where} has no {name}; the classes it defines: "
                           f"{', '.join(mine) or 'none'}")
    if not inspect.isclass(cls):
        raise NotCheckable(f"{where}:{name} is a {type(cls).__name__}, not a class; name the "
                           "layer's class")
    if not issubclass(cls, Layer):
        raise NotCheckable(f"{name} is not a nanoae Layer; write it as class {name}(nanoae.Layer) "
                           "with forward(x) and backward(grad_out)")
    for method in ("forward", "backward"):
        if getattr(cls, method) is getattr(Layer, method):
            raise NotCheckable(f"{name} has no {method}(); a layer needs forward(x) and "
                               "backward(grad_out), which returns dL/dx")
    return cls


def _import_file(where: str):
    path = Path(where)
    if not path.is_file():
        raise NotCheckable(f"no such file: {where}")
    spec = importlib.util.spec_from_file_location(f"_nanoae_checked_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))  # as when the file runs: its neighbours import
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the learner's file: whatever it raises, say it in one line
        raise NotCheckable(f"{where} could not be imported: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _import_module(where: str):
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name and where.startswith(exc.name):
            raise NotCheckable(f"no module named {where} (a file? write it as path/to/file.py)"
                               ) from exc
        raise NotCheckable(f"importing {where} failed: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - the learner's module, as above
        raise NotCheckable(f"importing {where} failed: {type(exc).__name__}: {exc}") from exc


def parse_arguments(text: str) -> tuple[list, dict]:
    """``"0.1, slope=0.2"`` -> ([0.1], {"slope": 0.2}): Python literals, as in a call."""
    try:
        call = ast.parse(f"f({text})", mode="eval").body
        return ([ast.literal_eval(a) for a in call.args],
                {k.arg: ast.literal_eval(k.value) for k in call.keywords})
    except (SyntaxError, ValueError, TypeError) as exc:
        raise NotCheckable(f"--args {text!r}: expected constructor arguments written as in Python "
                           "with literal values, e.g. --args '0.1' or --args 'slope=0.1'") from exc


def layer_case(cls: type, args: str = "", shape=None, seed: int = 0) -> Case:
    """A Case for a learner's layer: built in float64, screened, with inputs of ``shape``.

    A constructor that takes ``dtype`` gets float64 and one that takes ``rng``
    gets ``seed``, unless ``args`` gives them; other parameters are converted
    to float64. ``shape`` defaults to (4, in_features) for a layer that has
    ``in_features``, else (4, 5).
    """
    positional, keywords = parse_arguments(args)
    accepts = inspect.signature(cls).parameters
    for key, value in (("dtype", F64), ("rng", seed)):
        if key in accepts and key not in keywords:
            keywords[key] = value
    label = f"{cls.__name__}({args})"
    try:
        layer = cls(*positional, **keywords)
    except Exception as exc:  # noqa: BLE001 - the learner's constructor
        raise NotCheckable(f"{label} raised {type(exc).__name__}: {exc}; give its constructor "
                           "arguments with --args") from exc
    _parameters_to_float64(layer, cls.__name__)
    if shape is None:
        features = getattr(layer, "in_features", None)
        shape = (4, features if isinstance(features, int) else 5)
    screen(layer, to_device(_normal(seed, shape)), cls.__name__)
    return Case(label, lambda s: (layer, to_device(_normal(s, shape)), None))


def _parameters_to_float64(layer, name):
    for p in layer.parameters():
        if p.data.dtype.kind != "f":
            raise NotCheckable(f"parameter {p.name or '?'} of {name} is {p.data.dtype}: only "
                               "floating-point parameters have gradients to check")
        if p.data.dtype != F64:
            p.data = p.data.astype(F64)
            p.grad = get_array_module(p.data).zeros_like(p.data)


def screen(layer, x, name: str) -> None:
    """NotCheckable unless forward and backward can be checked at all, on float64 input x.

    forward must run, return a float64 array (else the parameters, or the
    layer's own constants, are not float64), give the same output twice for
    the same input, and leave the input unchanged; backward must return dL/dx
    shaped like x in float64, and set each parameter's grad like its data.
    """
    xp = get_array_module(x)
    before = x.copy()
    try:
        y = layer.forward(x)
        again = layer.forward(x)
    except Exception as exc:  # noqa: BLE001 - the learner's forward
        raise NotCheckable(f"{name}.forward on a float64 input of shape {tuple(x.shape)} raised "
                           f"{type(exc).__name__}: {exc}; give the input shape with --shape N,F"
                           ) from exc
    if not hasattr(y, "dtype") or not hasattr(y, "shape"):
        raise NotCheckable(f"{name}.forward returned a {type(y).__name__}, not an array")
    if y.dtype != F64:
        held = " and float64 parameters" if layer.parameters() else ""
        raise NotCheckable(f"{name} cannot run in float64: with a float64 input{held}, forward "
                           f"returned {y.dtype}; gradients are checked in float64 only (does "
                           "forward cast, or use float32 constants or parameters of its own?)")
    if not xp.array_equal(before, x, equal_nan=True):
        raise NotCheckable(f"{name}.forward changed its input in place; it must leave x as it was "
                           "(write to a new array)")
    if not xp.array_equal(y, again, equal_nan=True):
        raise NotCheckable(f"{name}.forward is not deterministic: two calls on the same input gave "
                           f"different outputs; gradcheck needs f(x) to be a function of x "
                           "(turn its randomness off, or fix its seed, for the check)")
    grad_out = to_device(_normal(1, tuple(y.shape)))
    try:
        grad_in = layer.backward(grad_out)
    except Exception as exc:  # noqa: BLE001 - the learner's backward
        raise NotCheckable(f"{name}.backward raised {type(exc).__name__}: {exc}") from exc
    _check_array(f"{name}.backward returned", grad_in, x, "dL/dx, shaped like the input x")
    for p in layer.parameters():
        _check_array(f"{name}.backward set {p.name or '?'}.grad to", p.grad, p.data,
                     f"dL/d{p.name or 'param'}, shaped like {p.name or 'the parameter'}")


def _check_array(what, found, like, expected):
    if not hasattr(found, "shape"):
        raise NotCheckable(f"{what} {type(found).__name__}; it must be {expected}")
    if tuple(found.shape) != tuple(like.shape):
        raise NotCheckable(f"{what} shape {tuple(found.shape)} for {tuple(like.shape)}; it must "
                           f"be {expected}")
    if found.dtype != like.dtype:
        raise NotCheckable(f"{what} {found.dtype} for {like.dtype}; it must be {expected}, "
                           f"in {like.dtype}")


# -- the table -------------------------------------------------------------------

def _shapes(result: GradcheckResult) -> str:
    dims = ["x".join(map(str, a.shape)) or "scalar" for a in result.arrays]
    if len(dims) <= 3:
        return ", ".join(f"{a.name.split('.')[-1] if i else 'x'} {d}"
                         for i, (a, d) in enumerate(zip(result.arrays, dims)))
    return f"x {dims[0]}, {len(dims) - 1} parameter arrays"


def format_table(rows: list[Row]) -> str:
    """The table: what was checked, shapes, elements, largest errors, pass/fail, seconds.

    Under a failing row, each array out of tolerance with its worst element;
    after the table, any kinks that remained after the redraws.
    """
    first = rows[0].result
    width = max(37, *(len(row.label) for row in rows))  # the check column fits the longest label
    lines = [f"gradient check in float64: central differences, h={first.h:g}, rtol={first.rtol:g}, "
             f"atol={first.atol:g}, random upstream gradient",
             f"{'check':{width}} {'shapes':28} {'elements':>8} {'max |a-n|':>10} {'max rel':>9} "
             f"{'result':>6} {'seconds':>7}"]
    for row in rows:
        r = row.result
        lines.append(f"{row.label:{width}} {_shapes(r):28} {r.checked:8d} {r.max_abs:10.1e} "
                     f"{r.max_rel:9.1e} {'pass' if r.ok else 'FAIL':>6} {row.seconds:7.2f}")
        for a in r.arrays:
            if a.failed:
                lines.append(f"    {describe_element(a.worst)}  ({a.failed} of {a.checked} "
                             f"elements of {a.name} out of tolerance)")
    for row in rows:
        for name, count in row.result.kinks.items():
            lines.append(f"note: {row.label}: {count} element(s) of {name} within h of a kink "
                         f"after {row.draws} input draw(s); not counted")
    failed = [row.label for row in rows if not row.result.ok]
    if len(rows) == 1:
        lines.append("the check FAILED" if failed else "the check passed")
    else:
        lines.append(f"{len(failed)} of {len(rows)} checks FAILED" if failed
                     else f"all {len(rows)} checks passed")
    return "\n".join(lines)

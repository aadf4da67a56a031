"""Check a learner's workbook: each exercise, then training with the learner's classes.

* ``load_workbook(DIR)`` imports the learner's ``layers.py``, ``losses.py`` and
  ``optim.py`` (DIR first on the path, so ``losses.py`` finds the learner's
  ``layers.py``); a file that cannot be imported is one line, with its line number.
* ``check_exercise`` runs one exercise and returns a ``Row``: ``todo`` while the
  stub is still there, ``fails`` with one line saying what (a wrong shape or dtype,
  an exception with the learner's line, or the worst element from ``nanoae.gradcheck``),
  ``passes`` otherwise. Each backward is checked in float64 against central
  differences with a random upstream gradient (``nanoae.gradcheck``), after a
  float32 run that checks shapes and dtypes; ``adam_step`` against nanoae's
  ``adam_step`` over three steps from zero state (t = 1, 2, 3: the bias correction
  at its largest) and three from a random state at t = 1000, 1001, 1002.
* ``compare_training`` trains the reference autoencoder for one epoch twice from
  the same seed, with the learner's classes and with nanoae's, and compares
  every step's loss and the test losses.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy

from nanoae import losses as core_losses
from nanoae import optim as core_optim
from nanoae.backend import to_device, to_numpy
from nanoae.errors import NanoaeError
from nanoae.gradcheck import describe_element, gradcheck
from nanoae.sequential import Sequential
from nanoae.workbook.generate import EXERCISES, STUB_MARK, Exercise, exercises

__all__ = ["WorkbookError", "Row", "load_workbook", "check_exercise", "check_all", "format_table",
           "compare_training", "describe_raised", "TRAIN_TOLERANCE"]

F64, F32 = numpy.float64, numpy.float32
REDRAWS = 5  # inputs tried when ReLU's input lands within h of its kink
TRAIN_TOLERANCE = 1e-5  # the learner's test loss against nanoae's
ADAM_RTOL, ADAM_ATOL = 1e-10, 1e-14  # float64: the same formula differs only by rounding


class WorkbookError(NanoaeError):
    """The workbook cannot be checked (a file does not import), or an exercise is not done yet."""


@dataclass
class Row:
    """One exercise in the table: its status, what was compared, and why it fails."""

    exercise: Exercise
    status: str  # "todo", "fails" or "passes"
    seconds: float = 0.0
    shapes: str = ""
    elements: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    details: list = field(default_factory=list)  # lines under a failing row


class Mistake(Exception):
    """A learner's mistake found before or instead of the numbers: one line."""


# -- loading the learner's files ------------------------------------------------------

def load_workbook(directory) -> dict:
    """{"layers": module, "losses": module, "optim": module} from the learner's folder.

    The learner's files import each other by plain name (``from layers import
    Sigmoid``), so the folder goes first on ``sys.path`` for the import and any
    earlier module of those names is set aside meanwhile, then put back.
    """
    directory = Path(directory)
    missing = [f"{m}.py" for m in EXERCISES if not (directory / f"{m}.py").is_file()]
    if missing:
        raise WorkbookError(f"{directory} holds no workbook ({', '.join(missing)} missing); write "
                            f"one with: nanoae workbook {directory}")
    saved = {m: sys.modules.pop(m) for m in EXERCISES if m in sys.modules}
    sys.path.insert(0, str(directory.resolve()))
    # no __pycache__ in the learner's folder: a cached file is trusted by its time stamp in
    # whole seconds and its size, so an edit of the same length within a second could go unseen
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        modules = {}
        for name in EXERCISES:
            try:
                modules[name] = importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - the learner's file: say what and where
                raise WorkbookError(f"{_import_problem(directory, name, exc)}; fix it, then check "
                                    "again") from exc
        return modules
    finally:
        sys.dont_write_bytecode = writes_bytecode
        sys.path.remove(str(directory.resolve()))
        for name in EXERCISES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def _import_problem(directory: Path, name: str, exc: Exception) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        return (f"{_short(directory, exc.filename)}:{exc.lineno}: cannot be imported: "
                f"SyntaxError: {exc.msg}")
    where = _learner_frame(exc, directory)
    return f"{where or directory / (name + '.py')}: cannot be imported: {type(exc).__name__}: {exc}"


def _short(directory: Path, filename: str) -> str:
    return str(directory / Path(filename).name)


def _learner_frame(exc: BaseException, directory: Path) -> str | None:
    """``DIR/layers.py:212 (return grad_out * y)``: the deepest line of the learner's files in
    the traceback, or None when the error arose outside them."""
    root = directory.resolve()
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename).resolve()
        if path.parent == root:
            line = f" ({frame.line.strip()})" if frame.line else ""
            return f"{directory / path.name}:{frame.lineno}{line}"
    return None


# -- one exercise -------------------------------------------------------------------------

def _normal(seed, shape, scale=1.0):
    # a stream of its own: gradcheck draws the upstream gradient from default_rng(seed), and
    # an input equal to it would make x^T @ g symmetric, hiding a transposed dL/dW
    return scale * _rng(seed).standard_normal(shape)


def _rng(seed):
    return numpy.random.default_rng((seed, 1))


def _layer_inputs(cls, dtype, seed, square):
    """(layer, x): the learner's layer built in ``dtype`` and a batch for it.

    A Dense is checked square (5 -> 5), where a product with W where W^T belongs
    still fits and gives wrong numbers, and screened 5 -> 3, where shapes tell.
    """
    if "in_features" in inspect.signature(cls).parameters:  # Dense, small, its weights seeded
        layer = cls(5, 5 if square else 3, dtype=dtype, rng=seed)
        x = _normal(seed, (4, 5))
    else:
        layer = cls()
        x = _normal(seed, (4, 6), 2.0)
    return layer, to_device(x.astype(dtype))


def _loss_inputs(exercise, mods, dtype, seed):
    """(obj, x, target) for gradcheck: a loss alone, or (Sequential(activation), loss) when fused."""
    loss = getattr(mods["losses"], exercise.owner)()
    rng = _rng(seed)
    activation = loss.fused_layer
    if activation.__name__ == "Sigmoid":  # values and targets of one shape, targets in [0, 1]
        target = rng.random((4, 5))
        x = 3.0 * rng.standard_normal((4, 5)) if exercise.name == "logits_grad" \
            else 0.05 + 0.9 * rng.random((4, 5))
    else:  # class probabilities (or logits) for 5 samples of 4 classes, integer labels
        target = rng.integers(0, 4, size=5)
        p = rng.random((5, 4)) + 0.1
        x = 2.0 * rng.standard_normal((5, 4)) if exercise.name == "logits_grad" \
            else p / p.sum(axis=1, keepdims=True)
        target = to_device(target)
        obj = (Sequential(activation()), loss) if exercise.name == "logits_grad" else loss
        return obj, to_device(x.astype(dtype)), target
    obj = (Sequential(activation()), loss) if exercise.name == "logits_grad" else loss
    return obj, to_device(x.astype(dtype)), to_device(target.astype(dtype))


def _analytic(obj, x, target):
    """Run forward then the exercise's backward once: (dL/dx, [(name, grad, data)])."""
    if isinstance(obj, tuple):
        model, loss = obj
        loss.forward(model.forward(x), target)
        return loss.logits_grad(), []
    if target is not None:
        obj.forward(x, target)
        return obj.backward(), []
    y = obj.forward(x)
    grad = obj.backward(to_device(_normal(1, tuple(y.shape)).astype(x.dtype)))
    return grad, [(p.name, p.grad, p.data) for p in obj.parameters()]


def _screen(exercise, obj, x, target):
    """Mistake unless the exercise returns arrays of the right shapes and dtypes (x's dtype)."""
    grad, params = _analytic(obj, x, target)
    _same(f"{exercise.label} returned", grad, x, "dL/dx" if exercise.owner in EXERCISES["layers"]
          else "dL/dpred" if exercise.name == "backward" else "dL/dz")
    for name, g, data in params:
        _same(f"{exercise.label} set {name}.grad to", g, data, f"dL/d{name}")


def _same(what, found, like, expected):
    if not hasattr(found, "shape") or not hasattr(found, "dtype"):
        raise Mistake(f"{what} {type(found).__name__}; it must be {expected}, an array shaped "
                      f"{tuple(like.shape)}")
    if tuple(found.shape) != tuple(like.shape):
        raise Mistake(f"{what} shape {tuple(found.shape)}; it must be {expected}, shaped "
                      f"{tuple(like.shape)} like its input")
    if found.dtype != like.dtype:
        raise Mistake(f"{what} {found.dtype} for a {like.dtype} input; it must stay {like.dtype} "
                      "(a float64 constant, or an int mask? use a bool mask or x.dtype.type(c))")


def _gradient_row(exercise, mods, seed):
    """The numbers of a backward exercise: ``gradcheck`` in float64, then a float32 screen.

    The float32 run finds what float64 hides: a dtype that does not follow the
    input (an int mask or a float64 constant turns float32 gradients into float64).
    """
    def build(dtype, s, square=True):
        if exercise.module == "layers":
            layer, x = _layer_inputs(getattr(mods["layers"], exercise.owner), dtype, s, square)
            return layer, x, None
        return _loss_inputs(exercise, mods, dtype, s)

    for draw in range(REDRAWS):  # a ReLU input within h of 0 is redrawn, as nanoae gradcheck does
        obj, x, target = build(F64, seed + draw)
        _screen(exercise, obj, x, target)  # shapes first: gradcheck needs them right
        result = gradcheck(obj, x, target, seed=seed, raise_on_failure=False)
        if not result.kinks:
            break
    if result.ok:
        _screen(exercise, *build(F32, seed, square=False))
    return result


def check_exercise(exercise: Exercise, mods: dict, directory, seed: int = 0) -> Row:
    """One row of the table; never raises for a learner's mistake."""
    start = time.perf_counter()
    row = Row(exercise, "passes")
    try:
        if exercise.owner is None:
            _adam_row(row, mods, seed)
        else:
            result = _gradient_row(exercise, mods, seed)
            row.elements, row.max_abs, row.max_rel = result.checked, result.max_abs, result.max_rel
            row.shapes = ", ".join(f"{'x' if i == 0 else a.name} {'x'.join(map(str, a.shape))}"
                                   for i, a in enumerate(result.arrays))
            if not result.ok:
                row.status = "fails"
                row.details = [f"{describe_element(a.worst)}  ({a.failed} of {a.checked} elements "
                               f"of {a.name} out of tolerance)" for a in result.arrays if a.failed]
    except NotImplementedError as exc:
        if str(exc).startswith(STUB_MARK):
            row.status = "todo"
        else:
            row.status, row.details = "fails", [describe_raised(exc, directory)]
    except Mistake as exc:
        row.status, row.details = "fails", [str(exc)]
    except Exception as exc:  # noqa: BLE001 - the learner's code: report it, do not crash
        row.status, row.details = "fails", [describe_raised(exc, directory)]
    row.seconds = time.perf_counter() - start
    return row


def describe_raised(exc, directory) -> str:
    where = _learner_frame(exc, Path(directory))
    return f"raised {type(exc).__name__}: {str(exc).strip()}" + (f" at {where}" if where else "")


# -- Adam -------------------------------------------------------------------------------------

def _adam_states(seed):
    """Two runs of three steps: from zero state at t = 1, and from a random state at t = 1000."""
    rng = _rng(seed)
    shape = (4, 5)
    grads = [rng.standard_normal(shape) for _ in range(3)]
    zero = {"w": rng.standard_normal(shape), "m": numpy.zeros(shape), "v": numpy.zeros(shape)}
    late = {"w": rng.standard_normal(shape), "m": 0.1 * rng.standard_normal(shape),
            "v": 0.01 * rng.random(shape)}
    return [(1, zero, grads), (1000, late, grads)]


def _adam_row(row, mods, seed):
    """The learner's adam_step against nanoae's, array by array, step by step."""
    settings = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    row.shapes = "w, m, v 4x5; t = 1..3 and 1000..1002"
    compared, worst = 0, (0.0, 0.0)
    for dtype in (F32, F64):  # float32 first: in place, each array keeps its dtype
        for t0, state, grads in _adam_states(seed):
            mine = {k: to_device(v.astype(dtype)) for k, v in state.items()}
            ref = {k: to_device(v.astype(dtype)) for k, v in state.items()}
            for k, g in enumerate(grads):
                t, g = t0 + k, to_device(g.astype(dtype))
                mods["optim"].adam_step(mine["w"], g, mine["m"], mine["v"], t=t, **settings)
                core_optim.adam_step(ref["w"], g, ref["m"], ref["v"], t=t, **settings)
                for name in ("w", "m", "v"):
                    _same(f"adam_step left {name} as", mine[name], ref[name], name)
                    if dtype == F64:
                        compared += mine[name].size
                        worst = _compare(name, t, mine[name], ref[name], worst)
    row.elements, (row.max_abs, row.max_rel) = compared, worst


def _compare(name, t, mine, ref, worst):
    """Mistake at the first element of ``mine`` out of tolerance; else the worst errors so far."""
    a, b = to_numpy(mine), to_numpy(ref)
    diff = numpy.abs(a - b)
    bad = diff > ADAM_ATOL + ADAM_RTOL * numpy.abs(b)
    if bad.any():
        i = numpy.unravel_index(int(numpy.flatnonzero(bad)[0]), a.shape)
        raise Mistake(f"{name}{list(map(int, i))} after the step at t={t}: yours {a[i]:.10g}, "
                      f"nanoae's {b[i]:.10g} |diff| {diff[i]:.3g} ({int(bad.sum())} of {a.size} "
                      f"elements of {name} differ)")
    scale = numpy.maximum(numpy.abs(b), ADAM_ATOL / ADAM_RTOL)
    return max(worst[0], float(diff.max())), max(worst[1], float((diff / scale).max()))


# -- the table -------------------------------------------------------------------------------

def check_all(directory, seed: int = 0):
    """(modules, rows): every exercise of the learner's workbook, checked."""
    mods = load_workbook(directory)
    return mods, [check_exercise(e, mods, directory, seed) for e in exercises()]


def format_table(rows, directory) -> str:
    """The table, as ``nanoae gradcheck`` prints its own, with the exercise's status."""
    lines = [f"workbook {directory}: each backward against central differences in float64 "
             "(h=1e-05, rtol=1e-06, atol=1e-08, random upstream gradient; shapes and dtypes in "
             "float32 too); adam_step against nanoae's update",
             f"{'exercise':30} {'file':10} {'checked':36} {'elements':>8} {'max |a-n|':>10} "
             f"{'max rel':>9} {'result':>6} {'seconds':>7}"]
    for row in rows:
        numbers = (f"{row.elements:8d} {row.max_abs:10.1e} {row.max_rel:9.1e}" if row.elements
                   else f"{'':8} {'':10} {'':9}")
        lines.append(f"{row.exercise.label:30} {row.exercise.file:10} {row.shapes:36} {numbers} "
                     f"{row.status:>6} {row.seconds:7.2f}")
        lines += [f"    {d}" for d in row.details]
    todo = [r for r in rows if r.status == "todo"]
    fails = [r for r in rows if r.status == "fails"]
    if not todo and not fails:
        lines.append(f"all {len(rows)} exercises pass")
    else:
        lines.append(f"{len(rows) - len(todo) - len(fails)} of {len(rows)} exercises pass, "
                     f"{len(fails)} fail, {len(todo)} to do")
    return "\n".join(lines)


# -- training with the learner's classes -----------------------------------------------------

def _learner_model(reference, mods):
    """The learner's copy of ``reference`` (a nanoae model): the same layers, the same weights."""
    leaves = []
    for leaf in reference.leaves():
        cls = getattr(mods["layers"], type(leaf).__name__)
        if leaf.parameters():
            mine = cls(leaf.in_features, leaf.out_features, dtype=leaf.dtype)
            for p, q in zip(mine.parameters(), leaf.parameters()):
                p.data[...] = q.data
        else:
            mine = cls()
        leaves.append(mine)
    return Sequential(*leaves)


def _train(model, loss, optimizer, x, order, batch):
    """One epoch of plain steps; the loss of every step, read on the host each step (a sync
    per step on a GPU: affordable for one epoch, and what lets the check name a step)."""
    values = []
    for start in range(0, len(order), batch):
        xb = x[order[start:start + batch]]
        values.append(float(model.loss_value(loss, model.forward(xb), xb)))
        model.backward_from_loss(loss)
        optimizer.step()
    return values


def _test_loss(model, loss, x, batch=1000):
    """The mean BCE over the test images, batch by batch (equal batches weigh equally)."""
    total = 0.0
    for start in range(0, len(x), batch):
        xb = x[start:start + batch]
        total += float(model.loss_value(loss, model.forward(xb), xb)) * len(xb)
    return total / len(x)


def compare_training(mods, x_train, x_test, *, seed: int = 0, batch: int = 256) -> dict:
    """The reference autoencoder, one epoch, with the learner's classes and with nanoae's.

    Both start from the same weights (nanoae's ``Autoencoder`` with the reference
    recipe, seeded) and see the batches in the same order. nanoae's Adam runs its
    plain form (``in_place=False``), the one the learner writes, so a correct
    workbook gives the same losses to the last bit, not only to 1e-5.
    They agree when the test losses and every step's loss are within TRAIN_TOLERANCE.
    Returns both test losses, the step losses, and the first step where they part
    (off by more than the tolerance, or else the first that differs at all).
    """
    from nanoae.fashion.models import Autoencoder  # noqa: PLC0415
    from nanoae.fashion.pipeline import REFERENCE_AE  # noqa: PLC0415

    order = numpy.random.default_rng(seed).permutation(len(x_train))
    runs = {}
    for who in ("yours", "nanoae"):
        model = Autoencoder(REFERENCE_AE["widths"], code_activation=REFERENCE_AE["code_activation"],
                            init=REFERENCE_AE["init"], seed=seed)
        if who == "yours":
            model = _learner_model(model, mods)
            loss = mods["losses"].BinaryCrossEntropy()
            optimizer = mods["optim"].Adam(model.parameters(), lr=REFERENCE_AE["lr"])
        else:
            loss = core_losses.BinaryCrossEntropy()
            optimizer = core_optim.Adam(model.parameters(), lr=REFERENCE_AE["lr"], in_place=False)
        steps = _train(model, loss, optimizer, x_train, order, batch)
        runs[who] = {"steps": steps, "test": _test_loss(model, loss, x_test)}
    pairs = list(zip(runs["yours"]["steps"], runs["nanoae"]["steps"]))
    far = next((i for i, (a, b) in enumerate(pairs) if abs(a - b) > TRAIN_TOLERANCE), None)
    agree = far is None and abs(runs["yours"]["test"] - runs["nanoae"]["test"]) <= TRAIN_TOLERANCE
    # where they part: the first step off by more than the tolerance, else the first that differs
    parted = None if agree else far if far is not None else next(
        (i for i, (a, b) in enumerate(pairs) if a != b), None)
    return {"yours": runs["yours"]["test"], "nanoae": runs["nanoae"]["test"], "agree": agree,
            "steps": len(pairs), "parted_at": parted,
            "step_losses": (runs["yours"]["steps"], runs["nanoae"]["steps"])}


def training_lines(result: dict, images: int, test_images: int) -> list[str]:
    """What the check prints about the training run."""
    diff = abs(result["yours"] - result["nanoae"])
    lines = [f"reference autoencoder 784-128-64-32-64-128-784, one epoch on {images} training "
             f"images ({result['steps']} steps), same seed, test BCE on {test_images} test images:",
             f"    with your classes   {result['yours']:.8f}",
             f"    with nanoae's       {result['nanoae']:.8f}"]
    if result["agree"]:
        lines.append(f"    |difference| {diff:.2g} <= {TRAIN_TOLERANCE:g}: they agree")
    else:
        k = result["parted_at"]
        yours, ref = result["step_losses"]
        where = (f"; they part at step {k}: your loss {yours[k]:.8f}, nanoae's {ref[k]:.8f}"
                 if k is not None else "")
        lines.append(f"    |difference| {diff:.2g} > {TRAIN_TOLERANCE:g}: they disagree{where}")
    return lines


def flat_images(images) -> numpy.ndarray:
    """uint8 images (N, 28, 28) as float32 rows (N, 784) in [0, 1], on the active device."""
    return to_device((images.reshape(len(images), -1) / numpy.float32(255)).astype(F32))


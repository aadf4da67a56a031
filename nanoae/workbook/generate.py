"""Write the learner's workbook: nanoae's own core, with the backward passes taken out.

The workbook is *generated* from the source of ``nanoae/layers.py``,
``nanoae/losses.py`` and ``nanoae/optim.py`` with ``ast``, never copied by hand,
so it cannot drift from the core. For each module:

* the exercise classes (``EXERCISES``) are copied as they are written:
  docstrings, signatures, ``__init__`` and ``forward`` untouched, comments too;
* in each exercise method (``backward``, ``logits_grad``) and exercise function
  (``adam_step``), only the body is replaced, after the docstring, by a stub:
  a comment with the formula from the docstring and a
  ``raise NotImplementedError("TODO ...")`` that names what to return and its shape;
* every other top-level name of the module (the ``Layer`` base class, helpers,
  constants) is imported from nanoae, so the learner's file holds only what they write;
* imports of an exercise class from another workbook module (``losses.py``
  imports ``Sigmoid``) point at the learner's sibling file, so the fused pairs
  pair the learner's classes.

``solved=True`` keeps nanoae's bodies: the answers, for teachers and the tests.
Nothing here depends on the exact text of the core: only on class, method and
function names, which the table below lists.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EXERCISES", "ALIASES", "Exercise", "exercises", "module_source", "write_workbook",
           "fill_in", "STUB_MARK"]

# module -> {top-level name: the methods to write (None: the name is a function to write;
# an empty tuple: a class copied whole, with nothing to write, e.g. Adam, which calls adam_step)}
EXERCISES = {
    "layers": {"Dense": ("backward",), "ReLU": ("backward",), "Sigmoid": ("backward",),
               "Softmax": ("backward",), "Normalize": ("backward",)},
    "losses": {"BinaryCrossEntropy": ("backward", "logits_grad"),
               "CrossEntropy": ("backward", "logits_grad")},
    "optim": {"adam_step": None, "Adam": ()},
}
# names that the copied code calls but the workbook keeps in one form, the learner's:
# Adam chooses between adam_step and a faster in-place form that computes the same numbers
ALIASES = {"optim": {"adam_step_in_place": "adam_step"}}

STUB_MARK = "TODO"  # how the checker tells a stub still there from the learner's own error


@dataclass
class Exercise:
    """One body to write: ``Dense.backward`` in ``layers.py``, or ``adam_step`` in ``optim.py``."""

    module: str  # "layers"
    owner: str | None  # the class ("Dense"), None for a function
    name: str  # "backward"

    @property
    def label(self) -> str:
        return f"{self.owner}.{self.name}" if self.owner else self.name

    @property
    def file(self) -> str:
        return f"{self.module}.py"


def exercises() -> list[Exercise]:
    """Every exercise, in the order of the table (the order a learner meets them)."""
    found = []
    for module, names in EXERCISES.items():
        for owner, methods in names.items():
            if methods is None:
                found.append(Exercise(module, None, owner))
            else:
                found.extend(Exercise(module, owner, m) for m in methods)
    return found


def module_source(module: str) -> str:
    """The source of ``nanoae.<module>``, as the installed package has it."""
    return inspect.getsource(importlib.import_module(f"nanoae.{module}"))


# -- reading the source ------------------------------------------------------------

def _docstring_lines(node) -> list[str]:
    text = ast.get_docstring(node) or ""
    return text.splitlines()


def formula_lines(owner_doc: list[str], method_doc: list[str], method: str) -> list[str]:
    """The lines of the docstrings that give the formula for ``method``.

    Lines that state a gradient (``dL/d...``) or an update (``<-``), and the
    indented lines of a docstring's formula block. For ``backward``, the lines
    about the fused gradient belong to ``logits_grad`` and are left out; for any
    other method, only class lines that name it are kept; for a function (``method``
    None), every formula line of the class that calls it.
    """
    def formulas(lines):
        return [ln.strip() for ln in lines
                if "dL/d" in ln or "<-" in ln or (ln.startswith("    ") and "=" in ln)]

    picked = formulas(method_doc)
    for line in formulas(owner_doc):
        fused = "logits_grad" in line or "fused" in line.lower()
        if (method is None or (method == "backward" and not fused)
                or (method not in (None, "backward") and method in line)):
            picked.append(line)
    return list(dict.fromkeys(picked))  # each once, in order


def _self_attributes(func, *, only_calls_to=None) -> list[str]:
    """The ``self.X`` assigned in ``func`` (those assigned a call to ``only_calls_to``, if given)."""
    names = []
    for node in ast.walk(func):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                        and target.value.id == "self"):
                    call = node.value
                    if only_calls_to is None or (isinstance(call, ast.Call) and isinstance(
                            call.func, ast.Name) and call.func.id == only_calls_to):
                        names.append(target.attr)
    return list(dict.fromkeys(names))


def what_to_return(kind: str, method: str, params: list[str], args: list[str]) -> str:
    """What the stub says the body must produce, and its shape."""
    if kind == "function":
        return (f"return nothing: update {', '.join(args)} in place (a[...] = ..., a -= ...), each "
                "keeping its shape and dtype")
    if kind == "loss" and method == "logits_grad":
        return ("return dL/dz, shaped like pred (N, ...), in pred's dtype; z is the input of the "
                "activation before the loss")
    if kind == "loss":
        return "return dL/dpred, shaped like pred (the first input of forward), in its dtype"
    sets = "".join(f"set self.{p}.grad (dL/d{p}, shaped like self.{p}.data); " for p in params)
    return f"{sets}return dL/dx, shaped like forward's input x (N, features), in its dtype"


def _stub(label: str, what: str, formulas: list[str], kept: list[str], indent: str) -> str:
    """The body a learner finds: the formula as a comment, then the raise."""
    lines = textwrap.wrap(f"{STUB_MARK}: write {label}. It must {what}.", 88,
                          initial_indent="# ", subsequent_indent="#   ")
    if formulas:
        lines.append("# The formula, from the docstring (g: grad_out, the gradient w.r.t. the output):"
                     if "." in label else "# The formula, from the docstring:")
        lines += [f"#     {f}" for f in formulas]
    if kept:
        lines.append(f"# forward kept: {', '.join('self.' + k for k in kept)}")
    # the message repeats the equations only, each on one line's worth of text
    equations = [" ".join(f.split()) for f in formulas if "=" in f or "<-" in f]
    message = f"{STUB_MARK} {label}: {what}; " + "; ".join(equations)
    wrapped = textwrap.wrap(message, 86, drop_whitespace=False) or [message]
    lines.append("raise NotImplementedError(")
    lines += [f"    {chunk!r}" for chunk in wrapped]
    lines.append(")")
    return "\n".join(indent + ln for ln in lines) + "\n"


def _kind(module: str, name: str) -> str:
    """"layer", "loss", "optimizer" or "function": what a top-level name of the core is."""
    from nanoae.layers import Layer  # noqa: PLC0415
    from nanoae.losses import Loss  # noqa: PLC0415
    from nanoae.optim import Optimizer  # noqa: PLC0415

    obj = getattr(importlib.import_module(f"nanoae.{module}"), name)
    if not inspect.isclass(obj):
        return "function"
    for base, kind in ((Layer, "layer"), (Loss, "loss"), (Optimizer, "optimizer")):
        if issubclass(obj, base):
            return kind
    return "class"


# -- writing a module -----------------------------------------------------------------

def _body_span(func) -> tuple[int, int]:
    """(first, last) line of ``func``'s body after its docstring, 1-based and inclusive."""
    body = func.body
    if ast.get_docstring(func) is not None:
        body = body[1:]
    return body[0].lineno, func.end_lineno


def learner_module(module: str, *, solved: bool = False, source: str | None = None) -> str:
    """The text of the learner's ``<module>.py``, generated from nanoae's source."""
    source = module_source(module) if source is None else source
    lines = source.splitlines(keepends=True)
    tree = ast.parse(source)
    wanted = EXERCISES[module]
    workbook_names = {n for names in EXERCISES.values() for n in names}
    aliases = ALIASES.get(module, {})

    kept, imported, head_imports = [], [], []
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant):
            continue  # the module docstring: written below, with the workbook's note
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            head_imports.append(_import_text(node, lines, workbook_names))
            continue
        names = _defined_names(node)
        if set(names) & set(wanted):
            kept.append(_class_or_function(node, module, lines, solved))
        else:
            imported += [n for n in names if n != "__all__" and n not in aliases]
    doc = ast.get_docstring(tree) or ""
    note = ("Your workbook copy: generated by `nanoae workbook` from nanoae's own source. "
            + ("It holds the answers (--solved)." if solved else
               "Each stub raising NotImplementedError is yours to write; "
               "`nanoae workbook --check DIR` checks them."))
    parts = [f'"""{doc}\n\n{note}\n"""\n\n', "from __future__ import annotations\n\n"]
    parts += [text for text in head_imports if text and "__future__" not in text]
    if imported:
        parts.append(f"# not exercises: used as nanoae has them\nfrom nanoae.{module} import "
                     f"{', '.join(imported)}  # noqa: F401\n")
    defined = _all_defined(tree)
    parts.append(f"\n__all__ = {[name for name in wanted if name in defined]!r}\n")
    for text in kept:
        parts.append("\n\n" + text)
    for alias, target in aliases.items():
        if alias in defined:
            parts.append(f"\n\n# nanoae also has a faster form of {target} that computes the same "
                         f"numbers;\n# in the workbook there is one form: yours\n"
                         f"{alias} = {target}\n")
    return "".join(parts)


def _defined_names(node) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [t.id for t in targets if isinstance(t, ast.Name)]
    return []


def _all_defined(tree) -> set[str]:
    return {n for node in tree.body for n in _defined_names(node)}


def _import_text(node, lines, workbook_names) -> str:
    """An import of the core as written, except exercise classes of another workbook module,
    which come from the learner's sibling file (``from layers import Sigmoid, Softmax``)."""
    text = "".join(lines[node.lineno - 1:node.end_lineno])
    if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nanoae.")):
        return text
    sibling = node.module.split(".", 1)[1]
    if sibling not in EXERCISES:
        return text
    ours = [a.name for a in node.names if a.name in workbook_names]
    theirs = [a.name for a in node.names if a.name not in workbook_names]
    out = ""
    if theirs:
        out += f"from {node.module} import {', '.join(theirs)}\n"
    if ours:
        out += f"from {sibling} import {', '.join(ours)}  # your classes: the workbook's {sibling}.py\n"
    return out


def _class_or_function(node, module, lines, solved) -> str:
    """The source of ``node`` with each exercise body replaced by its stub (kept when solved)."""
    start = node.lineno if not node.decorator_list else node.decorator_list[0].lineno
    text = lines[start - 1:node.end_lineno]
    if solved:
        return "".join(text)
    methods = EXERCISES[module][node.name]
    if methods is None:  # a function to write
        targets, owner_doc = [(node, None)], _host_docstring(node.name, lines)
    else:
        targets = [(f, node) for f in node.body
                   if isinstance(f, ast.FunctionDef) and f.name in methods]
        owner_doc = _docstring_lines(node)
    kept_by_forward, params = [], []
    if isinstance(node, ast.ClassDef):
        for f in node.body:
            if isinstance(f, ast.FunctionDef) and f.name == "forward":
                kept_by_forward = _self_attributes(f)
            if isinstance(f, ast.FunctionDef) and f.name == "__init__":
                params = _self_attributes(f, only_calls_to="Parameter")
    # replace from the last body upwards, so earlier line numbers stay valid
    for func, owner in sorted(targets, key=lambda t: -t[0].lineno):
        first, last = _body_span(func)
        label = f"{owner.name}.{func.name}" if owner else func.name
        kind = _kind(module, node.name)
        what = what_to_return(kind, func.name, params, [] if owner else _in_place_args(func))
        formulas = formula_lines(owner_doc, _docstring_lines(func), func.name if owner else None)
        indent = " " * func.body[-1].col_offset
        stub = _stub(label, what, formulas, kept_by_forward if owner else [], indent)
        text[first - start:last - start + 1] = [stub]
    return "".join(text)


def _in_place_args(func) -> list[str]:
    """The arguments a function updates in place: those its body assigns into (``m[...] =``, ``w -=``)."""
    names = []
    for node in ast.walk(func):
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AugAssign) else [])
        for t in targets:
            base = t.value if isinstance(t, ast.Subscript) else t if isinstance(node, ast.AugAssign) else None
            if isinstance(base, ast.Name) and base.id in {a.arg for a in func.args.args}:
                names.append(base.id)
    order = [a.arg for a in func.args.args]
    return sorted(set(names), key=order.index)


def _host_docstring(function: str, lines) -> list[str]:
    """The docstring of the class that calls ``function`` (Adam's, for adam_step): where its
    formula is written out."""
    tree = ast.parse("".join(lines))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
                isinstance(n, ast.Name) and n.id == function for n in ast.walk(node)):
            return _docstring_lines(node)
    return []


def fill_in(directory, label: str, code: str) -> Path:
    """Write ``code`` as the body of exercise ``label`` ("ReLU.backward") in the workbook in
    ``directory``, as a learner does in an editor; the docstring stays. Returns the file."""
    exercise = next((e for e in exercises() if e.label == label), None)
    if exercise is None:
        raise ValueError(f"no exercise {label!r}; the exercises: "
                         f"{', '.join(e.label for e in exercises())}")
    path = Path(directory) / exercise.file
    source = path.read_text()
    scope = ast.parse(source).body
    if exercise.owner:
        scope = next(n for n in scope if getattr(n, "name", None) == exercise.owner).body
    func = next(n for n in scope if isinstance(n, ast.FunctionDef) and n.name == exercise.name)
    first, last = _body_span(func)
    indent = " " * func.body[-1].col_offset
    body = "".join(indent + line + "\n" for line in textwrap.dedent(code).strip("\n").splitlines())
    lines = source.splitlines(keepends=True)
    path.write_text("".join(lines[:first - 1]) + body + "".join(lines[last:]))
    return path


README = """# Your workbook: write nanoae's core yourself

These files are nanoae's own core, generated from its source by `nanoae workbook`
(docstrings, signatures and forward passes exactly as nanoae has them), with the
bodies you are to write taken out:

| file | what to write |
| --- | --- |
{rows}

Each stub is a `raise NotImplementedError("TODO ...")` that says what to return,
its shape, and the formula from the docstring. Replace the stub (comment and
raise) with your code; everything else in the files is nanoae's and imported
from it (the `Layer` base class, `Parameter`, the backend, the optimizer's
bookkeeping), so your code is the only difference.

Start with `ReLU.backward` in `layers.py`. The forward kept its output `self._y`,
and ReLU passes the gradient where the output is positive, 0 elsewhere:

    def backward(self, grad_out, ...):
        return grad_out * (self._y > 0)   # a bool mask keeps grad_out's dtype

Then check, as often as you like:

    .venv/bin/nanoae workbook --check {dir}

The table says, exercise by exercise, `todo` (the stub is still there), `fails`
(with the array, the element, your number and the finite-difference one), or
`passes`. Each backward is checked in float64 against central differences with
a random upstream gradient (as `nanoae gradcheck` does), and once in float32 for
its shape and dtype; `adam_step` against nanoae's update over a few steps, with
the step count t at 1 (where the bias correction is largest) and at 1,000.

When every exercise passes, the check trains the reference autoencoder
(784-128-64-32-64-128-784) for one epoch on 10,000 training images twice, with
your classes and with nanoae's, from the same seed, and prints both test losses:
they should agree to 1e-5. If they do not, it says at which step they part.

Stuck? `nanoae workbook --solved DIR` writes the answers into another folder.
"""


def readme(directory: str) -> str:
    rows = []
    for module in EXERCISES:
        labels = [e.label for e in exercises() if e.module == module]
        rows.append(f"| `{module}.py` | {', '.join(f'`{lab}`' for lab in labels)} |")
    return README.format(rows="\n".join(rows), dir=directory)


def write_workbook(directory, *, solved: bool = False) -> list[Path]:
    """Write ``layers.py``, ``losses.py``, ``optim.py`` and ``README.md`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for module in EXERCISES:
        path = directory / f"{module}.py"
        path.write_text(learner_module(module, solved=solved))
        written.append(path)
    path = directory / "README.md"
    path.write_text(readme(str(directory)))
    written.append(path)
    return written

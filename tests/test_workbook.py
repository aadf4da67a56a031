"""The workbook: generated from the core's source, and its checker, on fresh, solved and broken copies.

A broken copy is a solved one with one body rewritten (``rewrite``: found with ``ast`` by
class and method name, as the generator finds them, so no test depends on the core's line text).
The training part runs on small fake IDX files.
"""

import ast
import re
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
from helpers.idx_helpers import make_fake_fashion

import nanoae
from nanoae.cli import main
from nanoae.workbook import generate, grade

PACKAGE = Path(nanoae.__file__).resolve().parent
_MODULE_SOURCE = generate.module_source  # the real one: the fixture below replaces it under mutmut


@pytest.fixture(scope="module", autouse=True)
def core_source():
    """The workbook is cut from the core's source text. Under mutmut the imported core is its
    rewritten copy in ``mutants/`` (every function a trampoline), so the text is read from the
    tree it was copied from, ``mutants/..``; elsewhere nothing changes."""
    if PACKAGE.parent.name != "mutants":
        yield
        return
    pristine = PACKAGE.parent.parent / "nanoae"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(generate, "module_source", lambda module: (pristine / f"{module}.py").read_text())
        yield


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fake-fashion")
    make_fake_fashion(directory, n_train=300, n_test=100)
    return directory


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("solved") / "core"
    generate.write_workbook(directory, solved=True)
    return directory


@pytest.fixture
def broken(solved, tmp_path):
    """A copy of the solved workbook, to plant one mistake in."""
    return shutil.copytree(solved, tmp_path / "broken")


def check(directory, capsys, fake_data, *extra):
    code = main(["workbook", "--check", str(directory), "--data-dir", str(fake_data),
                 "--no-verify", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def row(out, label):
    """The table's line of an exercise, and the lines under it."""
    lines = out.splitlines()
    i = next(k for k, line in enumerate(lines) if line.split()[:1] == [label])
    under = []
    for line in lines[i + 1:]:
        if not line.startswith("    "):
            break
        under.append(line.strip())
    return lines[i], under


def rewrite(path, qualname, body):
    """Replace the body (after its docstring) of ``Class.method`` or ``function`` in ``path``."""
    source = path.read_text()
    tree = ast.parse(source)
    owner, _, name = qualname.rpartition(".")
    scope = next(n for n in tree.body if getattr(n, "name", None) == owner).body if owner else tree.body
    func = next(n for n in scope if isinstance(n, ast.FunctionDef) and n.name == name)
    first = func.body[1 if ast.get_docstring(func) is not None else 0].lineno
    lines = source.splitlines(keepends=True)
    indent = " " * func.body[-1].col_offset
    new = "".join(indent + line + "\n" for line in body.strip("\n").splitlines())
    path.write_text("".join(lines[:first - 1]) + new + "".join(lines[func.end_lineno:]))


def test_the_workbook_is_the_core_with_its_bodies_taken_out(tmp_path):
    generate.write_workbook(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "layers.py", "losses.py",
                                                          "optim.py"]
    for module, names in generate.EXERCISES.items():
        core = ast.parse(generate.module_source(module))
        mine = ast.parse((tmp_path / f"{module}.py").read_text())
        for cls_name, methods in names.items():
            theirs = next(n for n in core.body if getattr(n, "name", None) == cls_name)
            ours = next(n for n in mine.body if getattr(n, "name", None) == cls_name)
            assert ast.get_docstring(ours) == ast.get_docstring(theirs)
            if methods is None:  # a function to write: its signature kept, its body a stub
                assert ast.dump(ours.args) == ast.dump(theirs.args)
                continue
            core_methods = {f.name: f for f in theirs.body if isinstance(f, ast.FunctionDef)}
            for f in (f for f in ours.body if isinstance(f, ast.FunctionDef)):
                kept = ast.dump(f) == ast.dump(core_methods[f.name])
                assert kept is (f.name not in methods), f"{cls_name}.{f.name}"
                assert ast.dump(f.args) == ast.dump(core_methods[f.name].args)  # signatures kept
                assert ast.get_docstring(f) == ast.get_docstring(core_methods[f.name])
    text = (tmp_path / "layers.py").read_text()
    # the stub names what to return, its shape and the formula from the docstring
    assert "TODO Dense.backward: set self.W.grad (dL/dW, shaped like self.W.data)" in text
    assert "dL/dx = g @ W^T" in text and "forward kept: self._x" in text
    assert "from nanoae.layers import Layer" in text
    assert "from layers import Sigmoid, Softmax" in (tmp_path / "losses.py").read_text()
    losses = (tmp_path / "losses.py").read_text()
    assert "TODO CrossEntropy.logits_grad: return dL/dz, shaped like pred (N, ...)" in losses
    assert "TODO CrossEntropy.backward: return dL/dpred, shaped like pred" in losses
    assert "v_hat = v / (1 - b2^t)" in (tmp_path / "optim.py").read_text()
    assert "nanoae workbook --check" in (tmp_path / "README.md").read_text()


def test_a_fresh_workbook_is_all_todo(tmp_path, capsys, fake_data):
    assert main(["workbook", str(tmp_path / "core")]) == 0
    assert "nanoae workbook --check" in capsys.readouterr().out
    code, out, err = check(tmp_path / "core", capsys, fake_data)
    assert code == 1
    for exercise in generate.exercises():
        line, under = row(out, exercise.label)
        assert line.split()[-2] == "todo" and under == []
    assert "0 of 10 exercises pass, 0 fail, 10 to do" in out
    assert "training" not in out and err.count("\n") == 1 and "10 of 10 exercises not passing" in err


def test_the_solved_workbook_passes_and_trains_as_nanoae_does(solved, capsys, fake_data):
    code, out, _ = check(solved, capsys, fake_data)
    assert code == 0, out
    for exercise in generate.exercises():
        assert row(out, exercise.label)[0].split()[-2] == "passes"
    yours = re.search(r"with your classes\s+(\S+)", out).group(1)
    theirs = re.search(r"with nanoae's\s+(\S+)", out).group(1)
    assert yours == theirs and "they agree" in out
    assert "one epoch on 300 training images (2 steps)" in out


@pytest.mark.parametrize("qualname, body, label, element", [
    # the forgotten factor (1 - y)
    ("Sigmoid.backward", "return grad_out * self._y", "Sigmoid.backward", r"input\[\d+, \d+\]"),
    # W^T forgotten: (N, out) @ (out, in) needs the transpose; the checked Dense is square
    ("Dense.backward", "self.W.grad = self._x.T @ grad_out\nself.b.grad = grad_out.sum(axis=0)\n"
     "return grad_out @ self.W.data", "Dense.backward", r"input\[\d+, \d+\]"),
    ("Dense.backward", "self.W.grad = grad_out.T @ self._x\nself.b.grad = grad_out.sum(axis=0)\n"
     "return grad_out @ self.W.data.T", "Dense.backward", r"W\[\d+, \d+\]"),
    ("CrossEntropy.logits_grad", "return self._p - 1", "CrossEntropy.logits_grad",
     r"input\[\d+, \d+\]"),
])
def test_a_planted_mistake_fails_naming_the_exercise_and_the_element(
        broken, capsys, fake_data, qualname, body, label, element):
    module = "layers" if qualname.split(".")[0] in generate.EXERCISES["layers"] else "losses"
    rewrite(broken / f"{module}.py", qualname, body)
    code, out, err = check(broken, capsys, fake_data)
    assert code == 1
    line, under = row(out, label)
    assert line.split()[-2] == "fails"
    assert re.match(element + r" analytic \S+ numerical \S+ \|diff\|", under[0]), under
    assert sum(r.split()[-2] == "fails" for r in out.splitlines()[2:11]) == 1  # only that one
    assert label in err


def test_adam_without_bias_correction_fails_at_t_1(broken, capsys, fake_data):
    rewrite(broken / "optim.py", "adam_step", """
b1, b2 = betas
m[...] = b1 * m + (1 - b1) * g
v[...] = b2 * v + (1 - b2) * g * g
w -= lr * m / (get_array_module(w).sqrt(v) + eps)
""")
    code, out, _ = check(broken, capsys, fake_data)
    line, under = row(out, "adam_step")
    assert code == 1 and line.split()[-2] == "fails"
    assert re.match(r"w\[\d+, \d+\] after the step at t=1: yours \S+, nanoae's \S+", under[0]), under


@pytest.mark.parametrize("qualname, body, says", [
    ("ReLU.backward", "return (grad_out * (self._y > 0)).T",
     "ReLU.backward returned shape (6, 4); it must be dL/dx, shaped (4, 6) like its input"),
    ("ReLU.backward", "return grad_out * (self._y > 0).astype(int)",
     "ReLU.backward returned float64 for a float32 input; it must stay float32"),
    ("Softmax.backward", "y = self._y\nreturn y * (grad_out - (grad_out * y).sum(axis=2))",
     "raised AxisError: axis 2 is out of bounds for array of dimension 2 at {dir}/layers.py:"),
    # the component along y not taken out: right shape and dtype, wrong numbers
    ("Normalize.backward", "return grad_out / self._n", "input["),
    ("Normalize.backward", "y = self._y\nreturn (grad_out - y * (grad_out * y).sum(axis=-1)) / self._n",
     "raised ValueError: operands could not be broadcast together with shapes (4,6) (4,) "),
])
def test_a_learners_mistake_is_one_line_not_a_crash(broken, capsys, fake_data, qualname, body,
                                                    says):
    rewrite(broken / "layers.py", qualname, body)
    code, out, err = check(broken, capsys, fake_data)
    assert code == 1 and "Traceback" not in out + err
    line, under = row(out, qualname)
    assert line.split()[-2] == "fails" and len(under) == 1
    assert under[0].startswith(says.format(dir=broken)), under


def test_the_traceback_points_at_the_learners_line(broken, capsys, fake_data):
    rewrite(broken / "layers.py", "Softmax.backward", "return self._y * undefined_name")
    _, out, _ = check(broken, capsys, fake_data)
    number = next(i for i, line in enumerate((broken / "layers.py").read_text().splitlines(), 1)
                  if "undefined_name" in line)
    assert (f"raised NameError: name 'undefined_name' is not defined at {broken}/layers.py:"
            f"{number} (return self._y * undefined_name)") in row(out, "Softmax.backward")[1]


@pytest.mark.parametrize("module, text, says", [
    ("losses", "import no_such_module\n", "losses.py:{line} (import no_such_module): cannot be imported: "
     "ModuleNotFoundError: No module named 'no_such_module'"),
    ("layers", "def broken(:\n", "layers.py:{line}: cannot be imported: SyntaxError"),
])
def test_a_file_that_does_not_import_is_one_line(broken, capsys, fake_data, module, text, says):
    path = broken / f"{module}.py"
    path.write_text(path.read_text() + text)
    line = len(path.read_text().splitlines())
    code, out, err = check(broken, capsys, fake_data)
    assert code == 1 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert f"nanoae: error: {broken}/{says.format(line=line)}" in err


STALE_MASK = """
if getattr(self, "mask", None) is None:  # the mask of the first batch, kept for ever
    self.mask = self._y > 0
return grad_out * self.mask
"""


def test_accumulated_gradients_fail_their_exercise(broken, capsys, fake_data):
    # the layers set their gradients, never add to them: the second backward call tells
    rewrite(broken / "layers.py", "Dense.backward", """
self.W.grad = self.W.grad + self._x.T @ grad_out
self.b.grad = self.b.grad + grad_out.sum(axis=0)
return grad_out @ self.W.data.T
""")
    code, out, _ = check(broken, capsys, fake_data)
    assert code == 1 and row(out, "Dense.backward")[0].split()[-2] == "fails"


def test_training_that_parts_is_reported_with_the_step(broken, capsys, tmp_path):
    # a stale ReLU mask passes every exercise (one batch each) but not training: the update
    # of step 1 uses step 0's mask, so the losses part at step 2
    make_fake_fashion(tmp_path / "data", n_train=768, n_test=50)  # three steps of 256
    rewrite(broken / "layers.py", "ReLU.backward", STALE_MASK)
    code, out, err = check(broken, capsys, tmp_path / "data")
    assert code == 1 and "all 10 exercises pass" in out
    assert re.search(r"they disagree; they part at step 2: your loss \S+, nanoae's \S+", out), out
    assert "training with your classes differs" in err


def test_an_error_while_training_is_one_line(broken, capsys, fake_data):
    # 300 images: steps of 256 and 44 images, and the stale mask no longer fits the batch
    rewrite(broken / "layers.py", "ReLU.backward", STALE_MASK)
    code, out, err = check(broken, capsys, fake_data)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "training the reference autoencoder with your classes raised ValueError" in err
    assert f"at {broken}/layers.py:" in err and "(return grad_out * self.mask)" in err


def test_an_existing_workbook_is_not_overwritten_and_an_unwritable_dir_refused(
        solved, tmp_path, capsys, monkeypatch):
    assert main(["workbook", str(solved)]) == 2
    assert "already holds layers.py, losses.py, optim.py" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["workbook", str(tmp_path / "file" / "core")]) == 2
    assert "is a file" in capsys.readouterr().err
    monkeypatch.setattr("nanoae.workbook.os.access", lambda *a: False)
    assert main(["workbook", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write there" in err
    assert not (tmp_path / "new").exists()


def test_the_check_needs_a_workbook(tmp_path, capsys):
    assert main(["workbook", "--check", str(tmp_path / "none")]) == 2
    assert "nanoae workbook" in capsys.readouterr().err
    assert main(["workbook", "--check", str(tmp_path)]) == 1
    assert "holds no workbook" in capsys.readouterr().err


def test_every_exercise_has_a_row():
    assert [e.label for e in generate.exercises()][:4] == ["Dense.backward", "ReLU.backward",
                                                          "Sigmoid.backward", "Softmax.backward"]
    assert grade.TRAIN_TOLERANCE == 1e-5


def test_the_generator_reads_names_not_lines():
    # the core's text may change (a new line in a body, another signature): the stubs follow
    source = generate.module_source("layers").replace(
        "class ReLU(Layer):", "class ReLU(Layer):\n    note = 'a new line'  # moved everything down")
    text = generate.learner_module("layers", source=source)
    assert "note = 'a new line'" in text and text.count("raise NotImplementedError(") == 5
    tree = ast.parse(text)
    relu = next(n for n in tree.body if getattr(n, "name", None) == "ReLU")
    backward = next(f for f in relu.body if getattr(f, "name", None) == "backward")
    assert isinstance(backward.body[-1], ast.Raise)


def test_the_workbooks_folder_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    import os  # noqa: PLC0415

    from nanoae import workbook  # noqa: PLC0415
    from nanoae.errors import UsageError  # noqa: PLC0415

    (tmp_path / "f").write_text("")
    for directory, message in (
            (tmp_path / "f", f"{tmp_path / 'f'} is a file; give a folder for the workbook (new or existing)"),
            (tmp_path / "f" / "wb", f"{tmp_path / 'f' / 'wb'}: cannot make a folder there ({tmp_path / 'f'} "
                                    "is a file)")):
        with pytest.raises(UsageError) as err:
            workbook.refuse_unwritable(directory)
        assert str(err.value) == message
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK | os.X_OK)
    with pytest.raises(UsageError) as err:
        workbook.refuse_unwritable(tmp_path / "wb")
    assert str(err.value) == (f"{tmp_path / 'wb'}: cannot write there ({tmp_path} is not writable); choose "
                              "a folder of your own")
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    workbook.refuse_unwritable(Path("wb"))  # relative, new: the working folder is checked
    (tmp_path / "wb").mkdir()
    (tmp_path / "wb" / "losses.py").write_text("")
    (tmp_path / "wb" / "layers.py").write_text("")
    with pytest.raises(UsageError) as err:
        workbook.write(tmp_path / "wb")
    assert str(err.value) == (f"{tmp_path / 'wb'} already holds layers.py, losses.py (your work?); check it "
                              f"with --check {tmp_path / 'wb'}, or replace it with --force")
    with pytest.raises(UsageError) as err:
        workbook.check(tmp_path / "none")
    assert str(err.value) == f"no workbook folder {tmp_path / 'none'}; write one with: nanoae workbook {tmp_path / 'none'}"
    capsys.readouterr()
    assert workbook.write(tmp_path / "wb", force=True) is None
    assert capsys.readouterr().out == (
        f"wrote your workbook into {tmp_path / 'wb'}: layers.py, losses.py, optim.py, README.md; read "
        f"{tmp_path / 'wb' / 'README.md'}, then run: nanoae workbook --check {tmp_path / 'wb'}\n")
    workbook.write(tmp_path / "ans", solved=True)
    assert capsys.readouterr().out.startswith(f"wrote the answers into {tmp_path / 'ans'}: ")
    assert "NotImplementedError" not in (tmp_path / "ans" / "layers.py").read_text()  # the answers, no stubs
    assert "NotImplementedError" in (tmp_path / "wb" / "layers.py").read_text()


# -- the generator's pieces, on small inputs written out by hand ---------------------------------

def test_the_formula_lines_picked_for_each_method():
    owner = ["Dense layer.", "dL/dW = x^T @ g", "    y = x @ W + b", "not indented = no",
             "the fused logits_grad: dL/dz = p - t", "Fused gradients: dL/dz = ...",
             "    forward: y = max(0, x)", "    step <- lr * m"]
    method = ["Backward.", "dL/dx = g @ W^T", "dL/dW = x^T @ g", "    indented, no equals"]
    assert generate.formula_lines(owner, method, "backward") == [
        "dL/dx = g @ W^T", "dL/dW = x^T @ g", "y = x @ W + b", "forward: y = max(0, x)", "step <- lr * m"]
    assert generate.formula_lines(owner, [], "logits_grad") == ["the fused logits_grad: dL/dz = p - t"]
    # a class line about logits_grad, or a fused one, is not backward's even when it names backward
    loss_doc = ["logits_grad: dL/dz = p - t", "the fused backward: dL/dz = p - t", "backward: dL/dp = -t / p"]
    assert generate.formula_lines(loss_doc, [], "backward") == ["backward: dL/dp = -t / p"]
    assert generate.formula_lines(loss_doc, [], "logits_grad") == ["logits_grad: dL/dz = p - t"]
    assert generate.formula_lines(owner, [], "forward") == ["forward: y = max(0, x)"]
    assert generate.formula_lines(owner, ["m <- b1 m"], None) == [
        "m <- b1 m", "dL/dW = x^T @ g", "y = x @ W + b", "the fused logits_grad: dL/dz = p - t",
        "Fused gradients: dL/dz = ...", "forward: y = max(0, x)", "step <- lr * m"]


def test_what_each_stub_asks_for():
    assert generate.what_to_return("function", "adam_step", [], ["w", "m"]) == (
        "return nothing: update w, m in place (a[...] = ..., a -= ...), each keeping its shape and dtype")
    assert generate.what_to_return("loss", "logits_grad", [], []) == (
        "return dL/dz, shaped like pred (N, ...), in pred's dtype; z is the input of the activation before "
        "the loss")
    assert generate.what_to_return("loss", "backward", [], []) == (
        "return dL/dpred, shaped like pred (the first input of forward), in its dtype")
    assert generate.what_to_return("layer", "backward", ["W", "b"], []) == (
        "set self.W.grad (dL/dW, shaped like self.W.data); set self.b.grad (dL/db, shaped like self.b.data); "
        "return dL/dx, shaped like forward's input x (N, features), in its dtype")
    assert generate.what_to_return("layer", "backward", [], []) == (
        "return dL/dx, shaped like forward's input x (N, features), in its dtype")


def test_a_stub_is_the_formula_as_comments_then_the_raise():
    assert generate.STUB_MARK == "TODO"
    assert generate._stub("Dense.backward", "return dL/dx", ["dL/dW = x^T @ g", "y = x @ W + b",
                                                              "w <- w - lr * g", "no equation"],
                          ["_x", "_y"], "  ") == (
        "  # TODO: write Dense.backward. It must return dL/dx.\n"
        "  # The formula, from the docstring (g: grad_out, the gradient w.r.t. the output):\n"
        "  #     dL/dW = x^T @ g\n  #     y = x @ W + b\n  #     w <- w - lr * g\n  #     no equation\n"
        "  # forward kept: self._x, self._y\n"
        "  raise NotImplementedError(\n"
        "      'TODO Dense.backward: return dL/dx; dL/dW = x^T @ g; y = x @ W + b; w <- w - lr * g'\n"
        "  )\n")
    assert generate._stub("adam_step", "return nothing", ["m <- b1 m"], [], "") == (
        "# TODO: write adam_step. It must return nothing.\n# The formula, from the docstring:\n"
        "#     m <- b1 m\nraise NotImplementedError(\n    'TODO adam_step: return nothing; m <- b1 m'\n)\n")
    long = generate._stub("X.backward", "do " + "a" * 100, [], [], "")
    comment = [ln for ln in long.splitlines() if ln.startswith("#")]
    assert len(comment) == 2 and all(len(ln) <= 88 for ln in comment)  # wrapped at 88 columns
    assert comment[0].startswith("# TODO: write X.backward. It must do") and comment[1].startswith("#   ")
    raised = long.split("raise NotImplementedError(\n")[1].splitlines()[:-1]
    assert len(raised) == 2 and all(len(eval(r)) <= 86 for r in raised)  # noqa: S307 - our own repr
    assert "".join(eval(r) for r in raised) == "TODO X.backward: do " + "a" * 100 + "; "  # noqa: S307


def test_what_a_name_of_the_core_is_and_which_arguments_a_function_updates():
    assert generate._kind("layers", "Dense") == "layer" and generate._kind("losses", "CrossEntropy") == "loss"
    assert generate._kind("optim", "Adam") == "optimizer" and generate._kind("optim", "adam_step") == "function"
    assert generate._kind("layers", "HookHandle") == "class"  # neither layer, loss nor optimizer
    func = ast.parse("def f(w, m, v, lr, t):\n    m[...] = 1\n    w -= lr\n    x = v\n    v.y = 2\n"
                     "    t += 1\n    q[0] = 3\n    lr = 2 * lr\n").body[0]  # lr rebound, not updated
    assert generate._in_place_args(func) == ["w", "m", "t"]  # in the order of the arguments
    owner = ast.parse('class Adam:\n    """Adam.\n\n    m <- b1 m\n    """\n    def step(self):\n'
                      '        adam_step(1)\nclass Other:\n    """Other."""\n')
    lines = ast.unparse(owner).splitlines(keepends=True)
    assert generate._host_docstring("adam_step", [ln + "\n" for ln in ast.unparse(owner).splitlines()]) == [
        "Adam.", "", "m <- b1 m"]
    assert generate._host_docstring("nothing", lines) == []
    assert generate._docstring_lines(ast.parse("class Bare:\n    x = 1\n").body[0]) == []


def test_fill_in_writes_a_body_as_a_learner_does(tmp_path):
    generate.write_workbook(tmp_path)
    path = generate.fill_in(tmp_path, "ReLU.backward", "\n    mask = self._y > 0\n    return grad_out * mask\n")
    assert path == tmp_path / "layers.py"
    relu = next(n for n in ast.parse(path.read_text()).body if getattr(n, "name", None) == "ReLU")
    backward = next(f for f in relu.body if isinstance(f, ast.FunctionDef) and f.name == "backward")
    assert [ast.unparse(s) for s in backward.body] == ["mask = self._y > 0", "return grad_out * mask"]
    assert "        # forward kept: self._y\n        mask = self._y > 0\n" in path.read_text()  # comments stay
    generate.write_workbook(tmp_path / "answers", solved=True)  # a body of several statements, all replaced
    generate.fill_in(tmp_path / "answers", "Dense.backward", "\nX = grad_out\nreturn X  # mine  \n\n")
    dense = next(n for n in ast.parse((tmp_path / "answers" / "layers.py").read_text()).body
                 if getattr(n, "name", None) == "Dense")
    backward = next(f for f in dense.body if isinstance(f, ast.FunctionDef) and f.name == "backward")
    assert ast.get_docstring(backward) and [ast.unparse(s) for s in backward.body[1:]] == ["X = grad_out", "return X"]
    assert "        X = grad_out\n        return X  # mine  \n" in (tmp_path / "answers" / "layers.py").read_text()
    generate.fill_in(tmp_path, "adam_step", "m[...] = 0")
    step = next(n for n in ast.parse((tmp_path / "optim.py").read_text()).body
                if getattr(n, "name", None) == "adam_step")
    assert ast.unparse(step.body[-1]) == "m[...] = 0" and step.body[-1].col_offset == 4
    with pytest.raises(ValueError) as err:
        generate.fill_in(tmp_path, "Tanh.backward", "pass")
    assert str(err.value) == ("no exercise 'Tanh.backward'; the exercises: Dense.backward, ReLU.backward, "
                              "Sigmoid.backward, Softmax.backward, Normalize.backward, BinaryCrossEntropy.backward, "
                              "BinaryCrossEntropy.logits_grad, CrossEntropy.backward, CrossEntropy.logits_grad, "
                              "adam_step")


# -- the checker's pieces, on small inputs written out by hand -----------------------------------

class _Recorder:
    """A stand-in model: forward is the identity, the loss of a batch is its mean; records calls."""

    def __init__(self):
        self.batches, self.backward = [], 0

    def forward(self, x):
        return x

    def loss_value(self, loss, pred, target):
        assert pred is target
        self.batches.append(pred.copy())
        return pred.mean()

    def backward_from_loss(self, loss):
        self.backward += 1


def test_the_test_loss_is_the_mean_over_every_image_in_batches_of_1000():
    model = _Recorder()
    x = np.arange(2500, dtype=np.float64)
    assert grade._test_loss(model, None, x) == 1249.5
    assert [len(b) for b in model.batches] == [1000, 1000, 500]
    model = _Recorder()
    assert grade._test_loss(model, None, np.array([1.0, 2.0, 3.0, 10.0, 20.0]), batch=2) == 7.2
    assert [b.tolist() for b in model.batches] == [[1.0, 2.0], [3.0, 10.0], [20.0]]


def test_one_epoch_of_training_steps_through_the_order_in_batches():
    model, steps = _Recorder(), []
    optimizer = type("Opt", (), {"step": lambda self: steps.append(model.backward)})()
    x = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
    values = grade._train(model, None, optimizer, x, np.array([4, 0, 3, 1, 2]), 2)
    assert values == [20.0, 20.0, 20.0] and all(type(v) is float for v in values)
    assert [b.tolist() for b in model.batches] == [[40.0, 0.0], [30.0, 10.0], [20.0]]
    assert steps == [1, 2, 3]  # each step after its backward


def test_training_lines_say_whether_the_runs_agree_and_where_they_part():
    result = {"yours": 0.25, "nanoae": 0.250004, "agree": True, "steps": 3, "parted_at": None,
              "step_losses": ([0.5, 0.4, 0.3], [0.5, 0.4, 0.3])}
    head = ["reference autoencoder 784-128-64-32-64-128-784, one epoch on 700 training images (3 steps), "
            "same seed, test BCE on 50 test images:",
            "    with your classes   0.25000000",
            "    with nanoae's       0.25000400"]
    assert grade.training_lines(result, 700, 50) == head + ["    |difference| 4e-06 <= 1e-05: they agree"]
    result.update(agree=False, nanoae=0.5, parted_at=1, step_losses=([0.5, 0.4, 0.3], [0.5, 0.45, 0.3]))
    assert grade.training_lines(result, 700, 50)[1:] == head[1:2] + [
        "    with nanoae's       0.50000000",
        "    |difference| 0.25 > 1e-05: they disagree; they part at step 1: your loss 0.40000000, nanoae's "
        "0.45000000"]
    result["parted_at"] = None  # only the test losses differ
    assert grade.training_lines(result, 700, 50)[-1] == "    |difference| 0.25 > 1e-05: they disagree"


def _learners_modules():
    """nanoae's classes under the learner's module name, as the learner's files hold them."""
    from nanoae import layers, losses, optim  # noqa: PLC0415

    def mine(cls, **namespace):
        return type(cls.__name__, (cls,), {"__module__": "learner", **namespace})

    def dense_init(self, n_in, n_out, dtype=np.float64, **kw):  # other defaults than nanoae's: the check
        layers.Dense.__init__(self, n_in, n_out, dtype=dtype, **kw)  # must not depend on them

    def adam_init(self, params, lr=0.5, **kw):
        optim.Adam.__init__(self, params, lr, **kw)

    return {"layers": types.SimpleNamespace(Dense=mine(layers.Dense, __init__=dense_init), ReLU=mine(layers.ReLU),
                                            Sigmoid=mine(layers.Sigmoid)),
            "losses": types.SimpleNamespace(BinaryCrossEntropy=mine(losses.BinaryCrossEntropy)),
            "optim": types.SimpleNamespace(Adam=mine(optim.Adam, __init__=adam_init))}


def _compared(monkeypatch, yours, theirs, test_losses, seed=3):
    """compare_training with the two runs' step losses and test losses given."""
    steps, tests, seen = [yours, theirs], list(test_losses), []

    def train(model, loss, optimizer, x, order, batch):
        seen.append({"classes": {type(o).__module__ for o in (loss, optimizer, *model.leaves())},
                     "leaves": [type(leaf).__name__ for leaf in model.leaves()],
                     "weights": [p.data.copy() for p in model.parameters()],
                     "same params": [p is q for p, q in zip(optimizer.params, model.parameters())],
                     "adam": (optimizer.lr, optimizer.in_place), "x": x, "order": order.tolist(),
                     "batch": batch})
        return steps.pop(0)

    def test_loss(model, loss, x):
        seen[-1]["test"] = (x, type(loss).__module__)
        return tests.pop(0)

    monkeypatch.setattr(grade, "_train", train)
    monkeypatch.setattr(grade, "_test_loss", test_loss)
    x_train, x_test = np.zeros((5, 784), np.float32), np.zeros((2, 784), np.float32)
    kw = {} if seed is None else {"seed": seed}
    result = grade.compare_training(_learners_modules(), x_train, x_test, batch=2, **kw)
    for run in seen:
        assert run["x"] is x_train and run["test"][0] is x_test
    return result, seen


def test_the_training_runs_agree_within_the_tolerance_at_every_step_and_on_the_test_set(monkeypatch):
    from nanoae.fashion.models import Autoencoder  # noqa: PLC0415

    tol = grade.TRAIN_TOLERANCE
    # off by exactly the tolerance (0.0 and 1e-5: no rounding) is within it
    result, (yours, ours) = _compared(monkeypatch, [1.0, 0.0, 0.25], [1.0, tol, 0.25], [tol, 0.0])
    assert result == {"yours": tol, "nanoae": 0.0, "agree": True, "steps": 3, "parted_at": None,
                      "step_losses": ([1.0, 0.0, 0.25], [1.0, tol, 0.25])}
    # the learner's classes first, then nanoae's (Adam in its plain form), from the same weights
    assert yours["classes"] == {"learner"} and yours["test"][1] == "learner"
    assert "learner" not in ours["classes"] and ours["test"][1] == "nanoae.losses"
    assert yours["adam"] == (1e-3, True) and ours["adam"] == (1e-3, False)  # (lr, in_place): the learner's defaults
    assert yours["same params"] == ours["same params"] == [True] * 12
    reference = Autoencoder((784, 128, 64, 32), code_activation="relu", init="glorot_uniform", seed=3)
    assert yours["leaves"] == ours["leaves"] == [type(leaf).__name__ for leaf in reference.leaves()]
    for mine, theirs, ref in zip(yours["weights"], ours["weights"], reference.parameters()):
        assert mine.dtype == theirs.dtype == np.float32
        np.testing.assert_array_equal(mine, ref.data)
        np.testing.assert_array_equal(theirs, ref.data)
    order = np.random.default_rng(3).permutation(5).tolist()
    assert (yours["order"], yours["batch"]) == (ours["order"], ours["batch"]) == (order, 2)
    # where they part: the first step off by more than the tolerance, else the first that differs at all
    result, _ = _compared(monkeypatch, [1.0, 0.5, 0.25, 0.125], [1.0, 0.5 + tol / 2, 0.5, 0.25], [0.1, 0.1])
    assert (result["agree"], result["parted_at"], result["steps"]) == (False, 2, 4)
    result, _ = _compared(monkeypatch, [1.0, 0.5, 0.25], [1.0, 0.5 + tol / 2, 0.25], [0.1, 0.1 + 2 * tol])
    assert (result["agree"], result["parted_at"]) == (False, 1)
    result, _ = _compared(monkeypatch, [1.0, 0.5], [1.0, 0.5], [0.1, 0.1 + 2 * tol])
    assert (result["agree"], result["parted_at"]) == (False, None)
    result, _ = _compared(monkeypatch, [1.0, 0.5], [1.0, 0.5 + 2 * tol], [0.1, 0.1])
    assert (result["agree"], result["parted_at"]) == (False, 1)
    _, (yours, _) = _compared(monkeypatch, [1.0], [1.0], [0.1, 0.1], seed=None)  # seed 0 by default
    assert yours["order"] == np.random.default_rng(0).permutation(5).tolist()


def test_the_table_lists_each_exercise_with_its_numbers_and_what_failed():
    dense, adam = generate.Exercise("layers", "Dense", "backward"), generate.Exercise("optim", None, "adam_step")
    relu = generate.Exercise("layers", "ReLU", "backward")
    rows = [grade.Row(dense, "passes", 0.5, "x 4x5, W 5x5, b 5", 55, 1.5e-9, 3e-7),
            grade.Row(relu, "fails", 12.345, "x 4x6", 24, 0.5, 2.0, ["input[0, 1] wrong", "second line"]),
            grade.Row(adam, "todo")]
    assert grade.format_table(rows, "wb").splitlines() == [
        "workbook wb: each backward against central differences in float64 (h=1e-05, rtol=1e-06, atol=1e-08, "
        "random upstream gradient; shapes and dtypes in float32 too); adam_step against nanoae's update",
        "exercise                       file       checked                              elements  max |a-n|   max rel "
        "result seconds",
        "Dense.backward                 layers.py  x 4x5, W 5x5, b 5                          55    1.5e-09   3.0e-07 "
        "passes    0.50",
        "ReLU.backward                  layers.py  x 4x6                                      24    5.0e-01   2.0e+00 "
        " fails   12.35",
        "    input[0, 1] wrong",
        "    second line",
        "adam_step                      optim.py   " + " " * 36 + " " * 31 + "  todo    0.00",
        "1 of 3 exercises pass, 1 fail, 1 to do"]
    assert grade.format_table(rows[:1], "wb").splitlines()[-1] == "all 1 exercises pass"
    assert grade.format_table(rows[1:2], "wb").splitlines()[-1] == "0 of 1 exercises pass, 1 fail, 0 to do"
    assert grade.format_table(rows[2:], "wb").splitlines()[-1] == "0 of 1 exercises pass, 0 fail, 1 to do"


def test_adam_is_compared_element_by_element_within_its_tolerance():
    ref = np.array([[1.0, -2.0], [0.0, 4.0]])
    close = ref * (1 + 5e-11) + np.array([[0.0, 0.0], [5e-15, 0.0]])
    worst = grade._compare("m", 7, close, ref, (0.0, 0.0))
    diff = np.abs(close - ref)
    assert worst == (float(diff.max()), float((diff / np.maximum(np.abs(ref), 1e-4)).max()))
    assert grade._compare("m", 7, close, ref, (1.0, 2.0)) == (1.0, 2.0)  # the worst so far stays
    assert grade._compare("m", 7, ref, ref, (0.0, 0.0)) == (0.0, 0.0)
    # at exactly the tolerance (atol 1e-14 where nanoae's value is 0) it still agrees; relative to at least 1e-4
    assert grade._compare("m", 7, np.array([1e-14, 0.0]), np.zeros(2), (0.0, 0.0)) == (1e-14, 1e-10)
    off = ref.copy()
    off[1, 0], off[1, 1] = 2e-14, 4.5
    with pytest.raises(grade.Mistake) as err:
        grade._compare("v", 1001, off, ref, (0.0, 0.0))
    assert str(err.value) == ("v[1, 0] after the step at t=1001: yours 2e-14, nanoae's 0 |diff| 2e-14 "
                              "(2 of 4 elements of v differ)")
    edge = ref.copy()
    edge[0, 1] = -2.0 - (1e-14 + 2e-10) * 1.01  # just over atol + rtol * |ref|
    with pytest.raises(grade.Mistake, match=r"^w\[0, 1\] after the step at t=2: "):
        grade._compare("w", 2, edge, ref, (0.0, 0.0))


def test_where_a_learners_error_arose_is_named_by_file_and_line(tmp_path):
    def raised(code, filename):
        try:
            exec(compile(code, str(filename), "exec"), {})  # noqa: S102 - our own two lines
        except Exception as exc:  # noqa: BLE001
            return exc
        raise AssertionError("no exception")

    (tmp_path / "layers.py").write_text("x = 1\nraise ValueError(' bad value ')\n")
    exc = raised((tmp_path / "layers.py").read_text(), tmp_path / "layers.py")
    assert grade.describe_raised(exc, tmp_path) == (
        f"raised ValueError: bad value at {tmp_path}/layers.py:2 (raise ValueError(' bad value '))")
    gone = raised("raise KeyError('k')\n", tmp_path / "losses.py")  # no file to read the line from
    assert grade._learner_frame(gone, tmp_path) == f"{tmp_path}/losses.py:1"
    elsewhere = raised("raise ValueError('no')\n", tmp_path / "sub" / "layers.py")
    assert grade._learner_frame(elsewhere, tmp_path) is None
    assert grade.describe_raised(elsewhere, tmp_path) == "raised ValueError: no"
    assert grade._import_problem(tmp_path, "optim", ValueError("odd")) == (
        f"{tmp_path}/optim.py: cannot be imported: ValueError: odd")
    assert grade._import_problem(tmp_path, "optim", exc) == (
        f"{tmp_path}/layers.py:2 (raise ValueError(' bad value ')): cannot be imported: ValueError:  bad value ")


def test_each_exercise_is_checked_on_the_inputs_its_row_names(solved):
    mods = grade.load_workbook(solved)
    rows = [grade.check_exercise(e, mods, solved) for e in generate.exercises()]
    assert [(r.exercise.label, r.status, r.shapes, r.elements, r.details) for r in rows] == [
        ("Dense.backward", "passes", "x 4x5, W 5x5, b 5", 50, []),
        ("ReLU.backward", "passes", "x 4x6", 24, []),
        ("Sigmoid.backward", "passes", "x 4x6", 24, []),
        ("Softmax.backward", "passes", "x 4x6", 24, []),
        ("Normalize.backward", "passes", "x 4x6", 24, []),
        ("BinaryCrossEntropy.backward", "passes", "x 4x5", 20, []),
        ("BinaryCrossEntropy.logits_grad", "passes", "x 4x5", 20, []),
        ("CrossEntropy.backward", "passes", "x 5x4", 20, []),
        ("CrossEntropy.logits_grad", "passes", "x 5x4", 20, []),
        ("adam_step", "passes", "w, m, v 4x5; t = 1..3 and 1000..1002", 360, [])]  # 3 arrays x 20 x 6 steps
    for r in rows[:-1]:  # float64 against central differences: rounding only
        assert 0 < r.max_abs < 1e-6 and 0 < r.max_rel < 1e-6 and r.seconds > 0
    assert rows[-1].max_abs == rows[-1].max_rel == 0.0  # nanoae's own update, to the bit
    # seed 0 unless told: the numbers follow the seed
    dense = generate.exercises()[0]
    assert grade.check_exercise(dense, mods, solved, seed=0).max_abs == rows[0].max_abs
    assert grade.check_exercise(dense, mods, solved, seed=1).max_abs != rows[0].max_abs
    _, again = grade.check_all(solved, seed=1)
    assert again[0].max_abs == grade.check_exercise(dense, mods, solved, seed=1).max_abs
    assert [r.max_abs for r in grade.check_all(solved)[1]] == [r.max_abs for r in rows]


def test_adam_within_its_tolerance_passes_and_reports_its_worst_difference(solved):
    from nanoae import optim  # noqa: PLC0415

    def nearly(w, g, m, v, **kw):  # w off by a relative 1e-12 after every step: well within 1e-10
        optim.adam_step(w, g, m, v, **kw)
        w *= w.dtype.type(1 + 1e-12)

    row = grade.check_exercise(generate.Exercise("optim", None, "adam_step"),
                               {"optim": types.SimpleNamespace(adam_step=nearly)}, solved)
    assert (row.status, row.elements, row.details) == ("passes", 360, [])
    # compared in float64 (in float32 the change rounds away): small differences, but not none
    assert 0 < row.max_abs < 1e-10 and 1e-12 < row.max_rel < 1e-10


def test_the_images_become_float32_rows_in_0_to_1():
    images = np.array([[[0, 51], [255, 102]], [[255, 255], [0, 0]]], dtype=np.uint8)
    rows = grade.flat_images(images)
    assert rows.dtype == np.float32 and rows.shape == (2, 4)
    np.testing.assert_array_equal(rows, np.array([[0, 0.2, 1, 0.4], [1, 1, 0, 0]], dtype=np.float32))


def test_the_workbook_is_cut_from_the_source_of_the_installed_core():
    import inspect  # noqa: PLC0415

    from nanoae import optim  # noqa: PLC0415

    assert _MODULE_SOURCE("optim") == inspect.getsource(optim) and "def adam_step(" in _MODULE_SOURCE("optim")


def test_each_generated_file_keeps_the_cores_docstring_imports_and_names():
    for solved, note in ((False, "Each stub raising NotImplementedError is yours to write; `nanoae workbook --check "
                                 "DIR` checks them."),
                         (True, "It holds the answers (--solved).")):
        for module in generate.EXERCISES:
            core = ast.parse(generate.module_source(module))
            text = generate.learner_module(module, solved=solved)
            mine = ast.parse(text)
            assert ast.get_docstring(mine) == (f"{ast.get_docstring(core)}\n\nYour workbook copy: generated by "
                                               f"`nanoae workbook` from nanoae's own source. {note}")
            assert text.count("from __future__ import annotations") == 1
            imported = [n for n in mine.body if isinstance(n, ast.ImportFrom) and n.module == f"nanoae.{module}"]
            names = [name for node in core.body for name in generate._defined_names(node)]
            wanted = generate.EXERCISES[module]
            assert [a.name for a in imported[0].names] == [
                n for n in names if n not in wanted and n not in ("__all__", "adam_step_in_place")]
    optim = generate.learner_module("optim")
    assert "\nadam_step_in_place = adam_step\n" in optim  # the learner's one form, under both names
    assert "import numpy\n" in optim and "from nanoae.backend import get_array_module, to_numpy\n" in optim
    # a constant of the core is imported like any other name
    text = generate.learner_module("layers", source=generate.module_source("layers") + "\n_EPS = 1e-7\n")
    assert ", _EPS  # noqa: F401\n" in text


def test_the_readme_lists_each_files_exercises_and_the_check_of_its_folder(tmp_path):
    text = generate.readme("my-core")
    assert ("| `layers.py` | `Dense.backward`, `ReLU.backward`, `Sigmoid.backward`, `Softmax.backward`, "
            "`Normalize.backward` |\n"
            "| `losses.py` | `BinaryCrossEntropy.backward`, `BinaryCrossEntropy.logits_grad`, "
            "`CrossEntropy.backward`, `CrossEntropy.logits_grad` |\n"
            "| `optim.py` | `adam_step` |\n") in text
    assert "    .venv/bin/nanoae workbook --check my-core\n" in text
    paths = generate.write_workbook(tmp_path / "new" / "core")  # the folders above made too
    assert [p.name for p in paths] == ["layers.py", "losses.py", "optim.py", "README.md"]
    readme = (tmp_path / "new" / "core" / "README.md").read_text()
    assert f"nanoae workbook --check {tmp_path / 'new' / 'core'}\n" in readme


def test_the_checks_inputs_are_drawn_from_the_seed_where_gradcheck_means_something():
    from nanoae import layers, losses  # noqa: PLC0415

    mods = {"losses": losses}

    def inputs(owner, name, dtype=np.float64):
        return grade._loss_inputs(generate.Exercise("losses", owner, name), mods, dtype, 7)

    # BinaryCrossEntropy: targets in [0, 1), probabilities in [0.05, 0.95) (log finite), logits of spread 3
    rng = np.random.default_rng((7, 1))
    obj, x, target = inputs("BinaryCrossEntropy", "backward")
    np.testing.assert_array_equal(target, rng.random((4, 5)))
    np.testing.assert_array_equal(x, 0.05 + 0.9 * rng.random((4, 5)))
    assert type(obj) is losses.BinaryCrossEntropy and x.dtype == target.dtype == np.float64
    rng = np.random.default_rng((7, 1))
    obj, x, target = inputs("BinaryCrossEntropy", "logits_grad", np.float32)
    np.testing.assert_array_equal(target, rng.random((4, 5)).astype(np.float32))
    np.testing.assert_array_equal(x, (3.0 * rng.standard_normal((4, 5))).astype(np.float32))
    assert x.dtype == target.dtype == np.float32
    model, loss = obj  # the fused pair: the learner's Sigmoid, then the loss
    assert [type(leaf).__name__ for leaf in model.leaves()] == ["Sigmoid"] and type(loss) is losses.BinaryCrossEntropy
    # CrossEntropy: 5 integer labels of 4 classes; rows of probabilities, or logits of spread 2
    rng = np.random.default_rng((7, 1))
    obj, x, target = inputs("CrossEntropy", "backward")
    np.testing.assert_array_equal(target, rng.integers(0, 4, size=5))
    p = rng.random((5, 4)) + 0.1
    np.testing.assert_array_equal(x, p / p.sum(axis=1, keepdims=True))
    assert type(obj) is losses.CrossEntropy and target.dtype.kind == "i"
    rng = np.random.default_rng((7, 1))
    obj, x, target = inputs("CrossEntropy", "logits_grad", np.float32)
    np.testing.assert_array_equal(target, rng.integers(0, 4, size=5))
    rng.random((5, 4))
    np.testing.assert_array_equal(x, (2.0 * rng.standard_normal((5, 4))).astype(np.float32))
    assert [type(leaf).__name__ for leaf in obj[0].leaves()] == ["Softmax"] and type(obj[1]) is losses.CrossEntropy
    # layers: a Dense 5 -> 5 (square) or 5 -> 3 with its weights seeded, on 4 x 5; the others on 4 x 6, spread 2
    for square, out in ((True, 5), (False, 3)):
        layer, x = grade._layer_inputs(layers.Dense, np.float32, 3, square)
        expected = layers.Dense(5, out, dtype=np.float32, rng=3)
        assert layer.W.data.dtype == np.float32
        np.testing.assert_array_equal(layer.W.data, expected.W.data)
        np.testing.assert_array_equal(x, np.random.default_rng((3, 1)).standard_normal((4, 5)).astype(np.float32))
    layer, x = grade._layer_inputs(layers.ReLU, np.float64, 3, True)
    assert type(layer) is layers.ReLU
    np.testing.assert_array_equal(x, 2.0 * np.random.default_rng((3, 1)).standard_normal((4, 6)))


def test_adams_two_runs_start_from_zero_at_t_1_and_from_a_small_random_state_at_t_1000():
    (t0, zero, grads), (t1, late, same) = grade._adam_states(5)
    rng = np.random.default_rng((5, 1))
    expected = [rng.standard_normal((4, 5)) for _ in range(3)]
    assert (t0, t1) == (1, 1000) and same is grads and len(grads) == 3
    for g, e in zip(grads, expected):
        np.testing.assert_array_equal(g, e)
    np.testing.assert_array_equal(zero["w"], rng.standard_normal((4, 5)))
    assert not zero["m"].any() and not zero["v"].any() and zero["m"].shape == zero["v"].shape == (4, 5)
    np.testing.assert_array_equal(late["w"], rng.standard_normal((4, 5)))
    np.testing.assert_array_equal(late["m"], 0.1 * rng.standard_normal((4, 5)))
    np.testing.assert_array_equal(late["v"], 0.01 * rng.random((4, 5)))


# a small core written out by hand: the generator's output on it, line by line
SMALL_LAYERS = "\n".join([
    '"""Layers."""',
    '',
    'from __future__ import annotations',
    '',
    'import numpy',
    '',
    'from nanoae.parameter import (',
    '    Parameter,',
    ')',
    '',
    'LIMIT: float = 1.0',
    '',
    '',
    'def helper(x):',
    '    return x',
    '',
    '',
    'class Dense(Layer):',
    '    """A dense layer.',
    '',
    '    dL/dW = x^T @ g',
    '    the fused logits_grad: dL/dz = p - t',
    '    """',
    '',
    '    def __init__(self, n_in, n_out):',
    '        self.W = Parameter(numpy.zeros((n_in, n_out)))',
    '        self.b = Parameter(numpy.zeros(n_out))',
    '        self.n = int(n_out)',
    '',
    '    def forward(self, x):',
    '        self._x = x',
    '        return x @ self.W.data + self.b.data',
    '',
    '    def backward(self, grad_out):',
    '        """dL/dx = g @ W^T"""',
    '        self.W.grad = self._x.T @ grad_out',
    '        self.b.grad = grad_out.sum(axis=0)',
    '        return grad_out @ self.W.data.T',
    '',
    '    def extra(self):',
    '        return 1',
    '',
    '',
    '@decorated',
    'class ReLU(Layer):',
    '    def forward(self, x):',
    '        self._y = x',
    '        return x',
    '',
    '    def backward(self, grad_out):',
    '        mask = self._y > 0',
    '        return grad_out * mask',
    '',
    '',
    'class Sigmoid(Layer):',
    '    def backward(self, grad_out):',
    '        return grad_out',
    '',
    '',
    'def after():',
    '    return 2',
    '',
])


SMALL_OPTIM = "\n".join([
    '"""Optim."""',
    '',
    'from nanoae.layers import Dense, helper, LIMIT',
    'from nanoae.layers.sub import Dense',
    'from nanoae.sub.layers import Dense',
    '',
    '',
    'def adam_step(w, g, m, v, *, lr, t):',
    '    """One step."""',
    '    m[...] = g',
    '    w -= lr * m',
    '',
    '',
    'class Adam:',
    '    """Adam.',
    '',
    '    m <- b1 m + (1 - b1) g',
    '    w <- w - lr * m_hat',
    '    """',
    '',
    '    def step(self):',
    '        adam_step(1, 2, 3, 4, lr=1, t=1)',
    '',
])


def test_the_stubs_replace_exactly_the_bodies_after_their_docstrings_in_a_small_core():
    assert generate.learner_module("layers", source=SMALL_LAYERS).split("\n") == [
        '"""Layers.',
        '',
        "Your workbook copy: generated by `nanoae workbook` from nanoae's own source. Each stub raising"
        ' NotImplementedError is yours to write; `nanoae workbook --check DIR` checks them.',
        '"""',
        '',
        'from __future__ import annotations',
        '',
        'import numpy',
        'from nanoae.parameter import (',
        '    Parameter,',
        ')',
        '# not exercises: used as nanoae has them',
        'from nanoae.layers import LIMIT, helper, after  # noqa: F401',
        '',
        "__all__ = ['Dense', 'ReLU', 'Sigmoid']",  # the exercises this small core defines
        '',
        '',
        'class Dense(Layer):',
        '    """A dense layer.',
        '',
        '    dL/dW = x^T @ g',
        '    the fused logits_grad: dL/dz = p - t',
        '    """',
        '',
        '    def __init__(self, n_in, n_out):',
        '        self.W = Parameter(numpy.zeros((n_in, n_out)))',
        '        self.b = Parameter(numpy.zeros(n_out))',
        '        self.n = int(n_out)',
        '',
        '    def forward(self, x):',
        '        self._x = x',
        '        return x @ self.W.data + self.b.data',
        '',
        '    def backward(self, grad_out):',
        '        """dL/dx = g @ W^T"""',
        '        # TODO: write Dense.backward. It must set self.W.grad (dL/dW, shaped like self.W.data);',
        '        #   set self.b.grad (dL/db, shaped like self.b.data); return dL/dx, shaped like',
        "        #   forward's input x (N, features), in its dtype.",
        '        # The formula, from the docstring (g: grad_out, the gradient w.r.t. the output):',
        '        #     dL/dx = g @ W^T',
        '        #     dL/dW = x^T @ g',
        '        # forward kept: self._x',
        '        raise NotImplementedError(',
        "            'TODO Dense.backward: set self.W.grad (dL/dW, shaped like self.W.data); set self.b.grad'",
        '            " (dL/db, shaped like self.b.data); return dL/dx, shaped like forward\'s input x (N, "',
        "            'features), in its dtype; dL/dx = g @ W^T; dL/dW = x^T @ g'",
        '        )',
        '',
        '    def extra(self):',
        '        return 1',
        '',
        '',
        '@decorated',
        'class ReLU(Layer):',
        '    def forward(self, x):',
        '        self._y = x',
        '        return x',
        '',
        '    def backward(self, grad_out):',
        "        # TODO: write ReLU.backward. It must return dL/dx, shaped like forward's input x (N,",
        '        #   features), in its dtype.',
        '        # forward kept: self._y',
        '        raise NotImplementedError(',
        '            "TODO ReLU.backward: return dL/dx, shaped like forward\'s input x (N, features), in its "',
        "            'dtype; '",
        '        )',
        '',
        '',
        'class Sigmoid(Layer):',
        '    def backward(self, grad_out):',
        "        # TODO: write Sigmoid.backward. It must return dL/dx, shaped like forward's input x (N,",
        '        #   features), in its dtype.',
        '        raise NotImplementedError(',
        '            "TODO Sigmoid.backward: return dL/dx, shaped like forward\'s input x (N, features), in "',
        "            'its dtype; '",
        '        )',
        '',
    ]
    # only imports of nanoae.layers itself name the learner's sibling file
    assert generate.learner_module("optim", source=SMALL_OPTIM).split("\n") == [
        '"""Optim.',
        '',
        "Your workbook copy: generated by `nanoae workbook` from nanoae's own source. Each stub raising"
        ' NotImplementedError is yours to write; `nanoae workbook --check DIR` checks them.',
        '"""',
        '',
        'from __future__ import annotations',
        '',
        'from nanoae.layers import helper, LIMIT',
        "from layers import Dense  # your classes: the workbook's layers.py",
        'from nanoae.layers.sub import Dense',
        'from nanoae.sub.layers import Dense',
        '',
        "__all__ = ['adam_step', 'Adam']",
        '',
        '',
        'def adam_step(w, g, m, v, *, lr, t):',
        '    """One step."""',
        '    # TODO: write adam_step. It must return nothing: update w, m in place (a[...] = ..., a',
        '    #   -= ...), each keeping its shape and dtype.',
        '    # The formula, from the docstring:',
        '    #     m <- b1 m + (1 - b1) g',
        '    #     w <- w - lr * m_hat',
        '    raise NotImplementedError(',
        "        'TODO adam_step: return nothing: update w, m in place (a[...] = ..., a -= ...), each '",
        "        'keeping its shape and dtype; m <- b1 m + (1 - b1) g; w <- w - lr * m_hat'",
        '    )',
        '',
        '',
        'class Adam:',
        '    """Adam.',
        '',
        '    m <- b1 m + (1 - b1) g',
        '    w <- w - lr * m_hat',
        '    """',
        '',
        '    def step(self):',
        '        adam_step(1, 2, 3, 4, lr=1, t=1)',
        '',
    ]
    # solved: the classes and functions as they are, decorators too
    solved = generate.learner_module("layers", source=SMALL_LAYERS, solved=True)
    assert SMALL_LAYERS[SMALL_LAYERS.index("class Dense"):SMALL_LAYERS.index("def after")].rstrip() in solved
    assert "It holds the answers (--solved)." in solved


def test_what_an_exercise_returned_is_named_when_it_is_no_array_of_the_right_shape_and_dtype():
    like = np.zeros((4, 5), np.float32)
    for found, says in (
            ([1.0], "Dense.backward returned list; it must be dL/dx, an array shaped (4, 5)"),
            (types.SimpleNamespace(shape=(4, 5)), "Dense.backward returned SimpleNamespace; it must be dL/dx, an "
                                                  "array shaped (4, 5)"),
            (types.SimpleNamespace(dtype=np.float32), "Dense.backward returned SimpleNamespace; it must be dL/dx, "
                                                      "an array shaped (4, 5)"),
            (np.zeros((5, 4), np.float32), "Dense.backward returned shape (5, 4); it must be dL/dx, shaped (4, 5) "
                                           "like its input"),
            (np.zeros((4, 5)), "Dense.backward returned float64 for a float32 input; it must stay float32 (a float64 "
                               "constant, or an int mask? use a bool mask or x.dtype.type(c))")):
        with pytest.raises(grade.Mistake) as err:
            grade._same("Dense.backward returned", found, like, "dL/dx")
        assert str(err.value) == says
    grade._same("Dense.backward returned", np.ones((4, 5), np.float32), like, "dL/dx")  # right: no Mistake


def test_a_loss_that_returns_the_wrong_shape_is_told_which_gradient_it_owes():
    from nanoae import losses  # noqa: PLC0415

    class BinaryCrossEntropy(losses.BinaryCrossEntropy):
        def backward(self):
            return super().backward().T

        def logits_grad(self):
            return super().logits_grad()[:1]

    mods = {"losses": types.SimpleNamespace(BinaryCrossEntropy=BinaryCrossEntropy)}
    rows = [grade.check_exercise(generate.Exercise("losses", "BinaryCrossEntropy", name), mods, ".")
            for name in ("backward", "logits_grad")]
    assert [(r.status, r.details) for r in rows] == [
        ("fails", ["BinaryCrossEntropy.backward returned shape (5, 4); it must be dL/dpred, shaped (4, 5) like its "
                   "input"]),
        ("fails", ["BinaryCrossEntropy.logits_grad returned shape (1, 5); it must be dL/dz, shaped (4, 5) like its "
                   "input"])]


def test_a_layer_is_screened_with_an_upstream_gradient_of_its_own_stream():
    class Recorder:
        def forward(self, x):
            return x[:, :3]

        def backward(self, grad_out):
            self.grad_out = grad_out
            return grad_out

        def parameters(self):
            return []

    layer, x = Recorder(), np.zeros((2, 5), np.float32)
    grad, params = grade._analytic(layer, x, None)
    assert grad is layer.grad_out and params == [] and grad.dtype == np.float32
    np.testing.assert_array_equal(grad, np.random.default_rng((1, 1)).standard_normal((2, 3)).astype(np.float32))


def test_adam_step_is_checked_at_adams_defaults_over_steps_1_to_3_and_1000_to_1002():
    import time  # noqa: PLC0415

    from nanoae import optim  # noqa: PLC0415

    calls = []

    def recording(w, g, m, v, **kw):
        calls.append((w.dtype, g.dtype, m.dtype, v.dtype, kw))
        optim.adam_step(w, g, m, v, **kw)

    start = time.perf_counter()
    row = grade.check_exercise(generate.Exercise("optim", None, "adam_step"),
                               {"optim": types.SimpleNamespace(adam_step=recording)}, ".")
    assert 0 < row.seconds <= time.perf_counter() - start
    assert (row.status, row.elements, row.max_abs, row.max_rel) == ("passes", 360, 0.0, 0.0)
    settings = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}
    assert calls == [(dtype,) * 4 + ({"t": t, **settings},) for dtype in (np.float32, np.float64)
                     for t in (1, 2, 3, 1000, 1001, 1002)]


def test_an_input_on_relus_kink_is_redrawn_from_the_next_seed_then_screened_in_float32(monkeypatch):
    from nanoae import layers  # noqa: PLC0415

    drawn, screened, kinks = [], [], [True, True, False]

    def fake_gradcheck(obj, x, target, seed, raise_on_failure):
        drawn.append((x, seed, raise_on_failure))
        return types.SimpleNamespace(kinks=kinks.pop(0) if kinks else True, ok=ok)

    monkeypatch.setattr(grade, "gradcheck", fake_gradcheck)
    monkeypatch.setattr(grade, "_screen", lambda exercise, obj, x, target: screened.append(
        (exercise.label, x, getattr(obj, "W", None) and obj.W.data.shape)))
    relu, dense = generate.Exercise("layers", "ReLU", "backward"), generate.Exercise("layers", "Dense", "backward")
    ok = True
    assert grade._gradient_row(relu, {"layers": layers}, 4).kinks is False
    assert [(seed, raise_) for _, seed, raise_ in drawn] == [(4, False)] * 3
    for (x, _, _), s in zip(drawn, (4, 5, 6)):  # draws from seeds 4, 5, 6; gradcheck's own seed stays 4
        np.testing.assert_array_equal(x, grade._layer_inputs(layers.ReLU, np.float64, s, True)[1])
    assert [x is d[0] for (_, x, _), d in zip(screened, drawn)] == [True] * 3  # each draw screened first
    assert screened[3][1].dtype == np.float32 and len(screened) == 4
    np.testing.assert_array_equal(screened[3][1], grade._layer_inputs(layers.ReLU, np.float32, 4, True)[1])

    built = []

    class Dense(layers.Dense):  # the learner's, as built by the check
        def __init__(self, in_features, out_features, *, dtype, rng):
            built.append(dtype)
            super().__init__(in_features, out_features, dtype=dtype, rng=rng)

    drawn.clear(), screened.clear()
    ok = False  # always on a kink, and failing: five draws, no float32 screen
    assert grade._gradient_row(dense, {"layers": types.SimpleNamespace(Dense=Dense)}, 0).kinks is True
    assert len(drawn) == 5 and len(screened) == 5 and {w for _, _, w in screened} == {(5, 5)}
    ok, kinks = True, [False]
    screened.clear(), built.clear()
    grade._gradient_row(dense, {"layers": types.SimpleNamespace(Dense=Dense)}, 0)
    assert [(x.dtype, w) for _, x, w in screened] == [(np.float64, (5, 5)), (np.float32, (5, 3))]  # square, then not
    assert built == [np.float64, np.float32]


def test_the_learners_files_are_imported_first_and_everything_put_back_after(solved, tmp_path, monkeypatch):
    import sys  # noqa: PLC0415

    decoys = tmp_path / "decoys"
    decoys.mkdir()
    for name in ("layers", "losses", "optim"):
        (decoys / f"{name}.py").write_text("DECOY = True\n")
    monkeypatch.syspath_prepend(str(decoys))
    decoy = types.ModuleType("layers")
    monkeypatch.setitem(sys.modules, "layers", decoy)
    monkeypatch.delitem(sys.modules, "optim", raising=False)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    path = list(sys.path)
    mods = grade.load_workbook(solved)
    assert [Path(m.__file__) for m in mods.values()] == [solved / "layers.py", solved / "losses.py",
                                                        solved / "optim.py"]
    assert mods["losses"].Sigmoid is mods["layers"].Sigmoid  # losses.py found the learner's layers.py
    assert sys.modules["layers"] is decoy and "losses" not in sys.modules and "optim" not in sys.modules
    assert sys.path == path and sys.dont_write_bytecode is False
    assert not (solved / "__pycache__").exists()  # no bytecode cached in the learner's folder
    with pytest.raises(grade.WorkbookError) as err:
        grade.load_workbook(decoys.parent)
    assert str(err.value) == (f"{tmp_path} holds no workbook (layers.py, losses.py, optim.py missing); write one "
                              f"with: nanoae workbook {tmp_path}")
    (tmp_path / "layers.py").write_text("")
    with pytest.raises(grade.WorkbookError, match=r"\(losses\.py, optim\.py missing\)"):
        grade.load_workbook(tmp_path)


def test_a_learners_own_not_implemented_error_fails_and_a_wrong_parameter_gradient_is_named():
    from nanoae import layers  # noqa: PLC0415

    class ReLU(layers.ReLU):
        def backward(self, grad_out):
            raise NotImplementedError("not for this dtype")  # not the stub's TODO: the learner's own

    class Dense(layers.Dense):
        def backward(self, grad_out, *, input_grad=True):
            out = super().backward(grad_out, input_grad=input_grad)
            self.W.grad = self.W.grad[:1]
            return out

    here = Path(__file__).parent  # this file plays the learner's
    mods = {"layers": types.SimpleNamespace(ReLU=ReLU, Dense=Dense)}
    row = grade.check_exercise(generate.Exercise("layers", "ReLU", "backward"), mods, here)
    line = next(i for i, text in enumerate(Path(__file__).read_text().splitlines(), 1)
                if "not for this dtype" in text and "raise" in text)
    assert (row.status, row.details) == ("fails", [
        f"raised NotImplementedError: not for this dtype at {here}/{Path(__file__).name}:{line} (raise "
        "NotImplementedError(\"not for this dtype\")  # not the stub's TODO: the learner's own)"])
    row = grade.check_exercise(generate.Exercise("layers", "Dense", "backward"), mods, here)
    assert (row.status, row.details) == ("fails", [
        "Dense.backward set W.grad to shape (1, 5); it must be dL/dW, shaped (5, 5) like its input"])


def test_the_check_hands_on_its_seed_data_and_image_count_and_says_what_it_found(tmp_path, monkeypatch, capsys):
    from nanoae import workbook  # noqa: PLC0415
    from nanoae.fashion import data  # noqa: PLC0415

    exercises = generate.exercises()[:2]
    status, loaded, compared, raised = ["passes", "passes"], [], [], []
    monkeypatch.setattr(grade, "check_all", lambda directory, seed: (
        f"mods {directory.name} {seed}", [grade.Row(e, s) for e, s in zip(exercises, status)]))
    monkeypatch.setattr(data, "load_fashion_mnist", lambda split, data_dir, verify: (
        loaded.append((split, data_dir, verify)),
        (np.full((5 if split == "train" else 3, 2, 2), 255, np.uint8), None))[1])

    def compare(mods, x_train, x_test, seed):
        compared.append((mods, x_train.tolist(), x_test.shape, seed))
        if raised:
            raise raised[0]
        return {"yours": 0.5, "nanoae": 0.5, "agree": len(compared) == 1, "steps": 1, "parted_at": None,
                "step_losses": ([0.5], [0.5])}

    monkeypatch.setattr(grade, "compare_training", compare)
    assert workbook.check(tmp_path, data_dir="d", verify=False, seed=3, images=2) is None
    assert loaded == [("train", "d", False), ("test", "d", False)]
    assert compared == [(f"mods {tmp_path.name} 3", [[1.0] * 4] * 2, (3, 4), 3)]  # the first 2 images, flat
    out = capsys.readouterr().out
    assert out.startswith(f"workbook {tmp_path}: each backward")  # the table, then the training run
    assert out.endswith("\nall 2 exercises pass\n"
                        "reference autoencoder 784-128-64-32-64-128-784, one epoch on 2 training images (1 steps), "
                        "same seed, test BCE on 3 test images:\n"
                        "    with your classes   0.50000000\n"
                        "    with nanoae's       0.50000000\n"
                        "    |difference| 0 <= 1e-05: they agree\n")

    with pytest.raises(grade.WorkbookError) as err:  # the second run disagrees
        workbook.check(tmp_path)
    assert str(err.value) == "every exercise passes, but training with your classes differs from nanoae's (see above)"
    assert loaded[2:] == [("train", None, True), ("test", None, True)] and compared[1][3] == 0
    assert len(compared[1][1]) == 5  # IMAGES (10,000) is more than there are
    raised.append(ValueError("shapes do not fit"))
    with pytest.raises(grade.WorkbookError) as err:
        workbook.check(tmp_path)
    assert str(err.value) == ("every exercise passes, but training the reference autoencoder with your classes raised "
                              "ValueError: shapes do not fit")
    assert isinstance(err.value.__cause__, ValueError)
    status[:] = ["fails", "todo"]
    capsys.readouterr()
    with pytest.raises(grade.WorkbookError) as err:
        workbook.check(tmp_path)
    assert str(err.value) == ("2 of 2 exercises not passing yet (Dense.backward, ReLU.backward); the training run "
                              "comes when all pass")
    assert len(loaded) == 6 and capsys.readouterr().out.endswith("0 of 2 exercises pass, 1 fail, 1 to do\n")
    status[:] = ["passes", "todo"]
    with pytest.raises(grade.WorkbookError, match=r"^1 of 2 exercises not passing yet \(ReLU\.backward\);"):
        workbook.check(tmp_path)


def test_a_file_that_cannot_be_imported_for_a_reason_outside_it_is_named(solved, monkeypatch):
    import importlib  # noqa: PLC0415

    real = importlib.import_module

    def import_module(name):
        if name == "optim":
            raise RuntimeError("disk on fire")
        return real(name)

    monkeypatch.setattr(importlib, "import_module", import_module)
    with pytest.raises(grade.WorkbookError) as err:
        grade.load_workbook(solved)
    assert str(err.value) == (f"{solved}/optim.py: cannot be imported: RuntimeError: disk on fire; fix it, then "
                              "check again")


def test_adam_step_that_reshapes_its_state_fails_naming_the_array(monkeypatch):
    from nanoae import optim  # noqa: PLC0415

    def reshaping(w, g, m, v, **kw):
        optim.adam_step(w, g, m, v, **kw)
        m.shape = (m.size,)

    row = grade.check_exercise(generate.Exercise("optim", None, "adam_step"),
                               {"optim": types.SimpleNamespace(adam_step=reshaping)}, ".")
    assert (row.status, row.details) == ("fails", ["adam_step left m as shape (20,); it must be m, shaped (4, 5) like "
                                                   "its input"])


def test_a_loss_in_float64_whatever_its_input_fails_the_float32_screen():
    from nanoae import losses  # noqa: PLC0415

    class CrossEntropy(losses.CrossEntropy):
        def backward(self):
            return super().backward().astype(np.float64)

    row = grade.check_exercise(generate.Exercise("losses", "CrossEntropy", "backward"),
                               {"losses": types.SimpleNamespace(CrossEntropy=CrossEntropy)}, ".")
    assert row.status == "fails"
    assert row.details[0].startswith("CrossEntropy.backward returned float64 for a float32 input; it must stay float32")


def test_a_core_module_without_a_docstring_gets_the_workbooks_note_alone():
    text = generate.learner_module("optim", source=SMALL_OPTIM.split("\n", 1)[1])
    assert text.startswith('"""\n\nYour workbook copy: generated by `nanoae workbook`')


@pytest.mark.subprocess
def test_in_a_combined_log_the_table_and_the_training_run_come_before_the_verdict(solved, tmp_path):
    # stdout into a pipe is block-buffered (PYTHONUNBUFFERED unset, as in a user's `2>&1 | tee log`):
    # what the check prints is flushed before the error goes to stderr
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}

    def combined(*args):
        r = subprocess.run([sys.executable, "-m", "nanoae.cli", "workbook", "--check", *map(str, args)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=120)
        assert r.returncode == 1
        return r.stdout.splitlines()

    generate.write_workbook(tmp_path / "todo")
    lines = combined(tmp_path / "todo")
    assert lines[0].startswith(f"workbook {tmp_path / 'todo'}: ") and lines[-2] == "0 of 10 exercises pass, 0 fail, 10 to do"
    assert lines[-1].startswith("nanoae: error: 10 of 10 exercises not passing yet")
    broken = shutil.copytree(solved, tmp_path / "broken")
    rewrite(broken / "layers.py", "ReLU.backward", STALE_MASK)  # passes every exercise, trains otherwise
    make_fake_fashion(tmp_path / "data", n_train=768, n_test=50)  # three steps: they part at step 2
    lines = combined(broken, "--data-dir", tmp_path / "data", "--no-verify")
    assert lines[-2].startswith("    |difference| ") and "they disagree" in lines[-2]
    assert lines[-1] == ("nanoae: error: every exercise passes, but training with your classes differs from nanoae's "
                         "(see above)")

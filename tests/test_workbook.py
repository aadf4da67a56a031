"""The workbook: generated from the core's source, and its checker, on fresh, solved and broken copies.

A broken copy is a solved one with one body rewritten (``rewrite``: found with ``ast`` by
class and method name, as the generator finds them, so no test depends on the core's line text).
The training part runs on small fake IDX files.
"""

import ast
import re
import shutil
from pathlib import Path

import pytest
from helpers.idx_helpers import make_fake_fashion

import nanoae
from nanoae.cli import main
from nanoae.workbook import generate, grade

PACKAGE = Path(nanoae.__file__).resolve().parent


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
    assert "0 of 9 exercises pass, 0 fail, 9 to do" in out
    assert "training" not in out and err.count("\n") == 1 and "9 of 9 exercises not passing" in err


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
    assert code == 1 and "all 9 exercises pass" in out
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
    assert "note = 'a new line'" in text and text.count("raise NotImplementedError(") == 4
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


# -- the generator's pieces, on small inputs written out by hand ---------------------------------

def test_the_formula_lines_picked_for_each_method():
    owner = ["Dense layer.", "dL/dW = x^T @ g", "    y = x @ W + b", "not indented = no",
             "the fused logits_grad: dL/dz = p - t", "Fused gradients: dL/dz = ...",
             "    forward: y = max(0, x)", "    step <- lr * m"]
    method = ["Backward.", "dL/dx = g @ W^T", "dL/dW = x^T @ g", "    indented, no equals"]
    assert generate.formula_lines(owner, method, "backward") == [
        "dL/dx = g @ W^T", "dL/dW = x^T @ g", "y = x @ W + b", "forward: y = max(0, x)", "step <- lr * m"]
    assert generate.formula_lines(owner, [], "logits_grad") == ["the fused logits_grad: dL/dz = p - t"]
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
    func = ast.parse("def f(w, m, v, lr, t):\n    m[...] = 1\n    w -= lr\n    x = v\n    v.y = 2\n"
                     "    t += 1\n    q[0] = 3\n").body[0]
    assert generate._in_place_args(func) == ["w", "m", "t"]  # in the order of the arguments
    owner = ast.parse('class Adam:\n    """Adam.\n\n    m <- b1 m\n    """\n    def step(self):\n'
                      '        adam_step(1)\nclass Other:\n    """Other."""\n')
    lines = ast.unparse(owner).splitlines(keepends=True)
    assert generate._host_docstring("adam_step", [ln + "\n" for ln in ast.unparse(owner).splitlines()]) == [
        "Adam.", "", "m <- b1 m"]
    assert generate._host_docstring("nothing", lines) == []


def test_fill_in_writes_a_body_as_a_learner_does(tmp_path):
    generate.write_workbook(tmp_path)
    path = generate.fill_in(tmp_path, "ReLU.backward", "\n    mask = self._y > 0\n    return grad_out * mask\n")
    assert path == tmp_path / "layers.py"
    relu = next(n for n in ast.parse(path.read_text()).body if getattr(n, "name", None) == "ReLU")
    backward = next(f for f in relu.body if isinstance(f, ast.FunctionDef) and f.name == "backward")
    assert [ast.unparse(s) for s in backward.body] == ["mask = self._y > 0", "return grad_out * mask"]
    assert "        # forward kept: self._y\n        mask = self._y > 0\n" in path.read_text()  # comments stay
    generate.fill_in(tmp_path, "adam_step", "m[...] = 0")
    step = next(n for n in ast.parse((tmp_path / "optim.py").read_text()).body
                if getattr(n, "name", None) == "adam_step")
    assert ast.unparse(step.body[-1]) == "m[...] = 0" and step.body[-1].col_offset == 4
    with pytest.raises(ValueError) as err:
        generate.fill_in(tmp_path, "Tanh.backward", "pass")
    assert str(err.value) == ("no exercise 'Tanh.backward'; the exercises: Dense.backward, ReLU.backward, "
                              "Sigmoid.backward, Softmax.backward, BinaryCrossEntropy.backward, "
                              "BinaryCrossEntropy.logits_grad, CrossEntropy.backward, CrossEntropy.logits_grad, "
                              "adam_step")

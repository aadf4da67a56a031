"""`nanoae gradcheck`: the built-ins pass, a planted bug fails naming the element, each
misuse is one line and exit 2, and inputs at a kink are told apart from bugs."""

import textwrap

import numpy
import pytest

import nanoae as nn
from nanoae.cli import checks as suite
from nanoae.cli import main

# A learner's file: good layers, planted bugs, and layers that cannot be checked at all.
LAYERS = textwrap.dedent('''
    import numpy
    import nanoae as nn
    from nanoae.backend import get_array_module, to_device


    class LeakyReLU(nn.Layer):
        def __init__(self, slope=0.01):
            self.slope = slope
            super().__init__()

        def forward(self, x):
            self.pos = x > 0
            return get_array_module(x).where(self.pos, x, self.slope * x)

        def backward(self, grad_out, *, input_grad=True):
            return get_array_module(grad_out).where(self.pos, grad_out, self.slope * grad_out)


    class ForgotSlope(LeakyReLU):
        def backward(self, grad_out, *, input_grad=True):
            return grad_out * self.pos


    class Scale(nn.Layer):
        """y = x * w + b, per feature: parameters, and an in_features to infer the shape from."""
        def __init__(self, in_features, dtype=numpy.float32):
            super().__init__()
            self.in_features = in_features
            rng = numpy.random.default_rng(3)
            self.w = nn.Parameter(to_device(rng.standard_normal(in_features).astype(dtype)), "w")
            self.b = nn.Parameter(to_device(rng.standard_normal(in_features).astype(dtype)), "b")

        def parameters(self):
            return [self.w, self.b]

        def forward(self, x):
            self.x = x
            return x * self.w.data + self.b.data

        def backward(self, grad_out, *, input_grad=True):
            self.w.grad = (grad_out * self.x).sum(axis=0)
            self.b.grad = grad_out.sum(axis=0)
            return grad_out * self.w.data


    class ScaleBiasOneRow(Scale):
        def backward(self, grad_out, *, input_grad=True):
            out = super().backward(grad_out)
            self.b.grad = grad_out[0] + 0  # the sum over the batch forgotten
            return out


    class NotALayer:
        def forward(self, x):
            return x


    class NoBackward(nn.Layer):
        def forward(self, x):
            return x


    class WrongShape(LeakyReLU):
        def backward(self, grad_out, *, input_grad=True):
            return grad_out.sum(axis=1)


    class WrongDtype(LeakyReLU):
        def backward(self, grad_out, *, input_grad=True):
            return super().backward(grad_out).astype(numpy.float32)


    class Noisy(LeakyReLU):
        def forward(self, x):
            noise = numpy.random.default_rng().standard_normal(x.shape)
            return super().forward(x) + to_device(noise)


    class InPlace(LeakyReLU):
        def forward(self, x):
            x *= 1.0001
            return super().forward(x)


    class Float32Only(Scale):
        def forward(self, x):
            return super().forward(x).astype(numpy.float32)


    class IntegerWeights(Scale):
        def __init__(self, in_features):
            super().__init__(in_features)
            self.w = nn.Parameter(to_device(numpy.arange(in_features)), "w")
''')


@pytest.fixture
def layers(tmp_path):
    path = tmp_path / "my_layers.py"
    path.write_text(LAYERS)
    return path


def test_the_builtins_pass_and_the_table_shows_each(capsys, backend_name):
    assert main(["gradcheck", "--backend", backend_name]) == 0
    out = capsys.readouterr().out
    for case in suite.builtin_cases():
        assert case.label in out
    for column in ("check", "shapes", "elements", "max |a-n|", "max rel", "result", "seconds"):
        assert column in out
    assert "all 17 checks passed" in out and "FAIL" not in out
    for listed in ("Dropout(0.3), training", "CrossEntropy(label_smoothing=0.1)",
                   "Softmax + CrossEntropy(label_smoothing=0.1), fused", "dropout 0.3"):
        assert listed in out


def test_a_learners_layer_passes(layers, capsys, backend_name):
    assert main(["gradcheck", f"{layers}:LeakyReLU", "--args", "slope=0.1",
                 "--backend", backend_name]) == 0
    out = capsys.readouterr().out
    assert "LeakyReLU(slope=0.1)" in out and "x 4x5" in out and "the check passed" in out


def test_parameters_are_checked_and_the_shape_comes_from_in_features(layers, capsys):
    # built with float32 weights by default: the check asks for dtype=float64
    assert main(["gradcheck", f"{layers}:Scale", "--args", "7"]) == 0
    assert "x 4x7, w 7, b 7" in capsys.readouterr().out
    assert main(["gradcheck", f"{layers}:Scale", "--args", "7", "--shape", "2,7"]) == 0
    assert "x 2x7" in capsys.readouterr().out


def test_a_module_path_works_too(capsys):
    assert main(["gradcheck", "nanoae.layers:Dense", "--args", "5, 3"]) == 0
    assert "Dense(5, 3)" in capsys.readouterr().out


@pytest.mark.parametrize("layer, args, element", [
    ("ForgotSlope", [], "input[2, 2] analytic -0 numerical -0.0232503077"),
    ("ScaleBiasOneRow", ["--args", "3"], "(3 of 3 elements of b out of tolerance)"),
])
def test_a_planted_bug_fails_naming_the_array_the_element_and_both_numbers(layers, capsys, layer,
                                                                          args, element):
    assert main(["gradcheck", f"{layers}:{layer}", *args]) == 1
    captured = capsys.readouterr()
    assert element in captured.out and "FAIL" in captured.out and "the check FAILED" in captured.out
    assert "out of tolerance" in captured.out and " analytic " in captured.out
    assert captured.err.strip() == (f"nanoae: error: gradients disagree in {layer}"
                                    f"({' '.join(args[1:])}) (see the table above)")


@pytest.mark.parametrize("spec, args, message", [
    ("no/such/file.py:LeakyReLU", [], "no such file: no/such/file.py"),
    ("{}:Missing", [], "{} has no Missing; the classes it defines: Float32Only, ForgotSlope, InPlace, "
     "IntegerWeights, LeakyReLU, NoBackward, Noisy, NotALayer, Scale, ScaleBiasOneRow, WrongDtype, "
     "WrongShape"),
    ("nanoae.no_such_module:X", [], "no module named nanoae.no_such_module (a file? write it as "
     "path/to/file.py)"),
    ("{}", [], "expected FILE.py:CLASS or MODULE:CLASS (my_layers.py:LeakyReLU), got '{}'"),
    ("{}:NotALayer", [], "NotALayer is not a nanoae Layer; write it as class NotALayer(nanoae.Layer) "
     "with forward(x) and backward(grad_out)"),
    ("{}:NoBackward", [], "NoBackward has no backward(); a layer needs forward(x) and backward(grad_out), "
     "which returns dL/dx"),
    ("{}:WrongShape", [], "WrongShape.backward returned shape (4,) for (4, 5); it must be dL/dx, shaped "
     "like the input x"),
    ("{}:WrongDtype", [], "WrongDtype.backward returned float32 for float64; it must be dL/dx, shaped like "
     "the input x, in float64"),
    ("{}:Noisy", [], "Noisy.forward is not deterministic: two calls on the same input gave different "
     "outputs; gradcheck needs f(x) to be a function of x (turn its randomness off, or fix its seed, "
     "for the check)"),
    ("{}:InPlace", [], "InPlace.forward changed its input in place; it must leave x as it was (write to "
     "a new array)"),
    ("{}:Float32Only", ["--args", "5"], "Float32Only cannot run in float64: with a float64 input and "
     "float64 parameters, forward returned float32; gradients are checked in float64 only (does forward "
     "cast, or use float32 constants or parameters of its own?)"),
    ("{}:IntegerWeights", ["--args", "5"], "parameter w of IntegerWeights is int64: only floating-point "
     "parameters have gradients to check"),
    ("{}:LeakyReLU", ["--args", "slope=numpy.pi"], "--args 'slope=numpy.pi': expected constructor "
     "arguments written as in Python with literal values, e.g. --args '0.1' or --args 'slope=0.1'"),
    ("{}:Scale", [], "Scale() raised TypeError: Scale.__init__() missing 1 required positional argument: "
     "'in_features'; give its constructor arguments with --args"),
    ("{}:Scale", ["--args", "5", "--shape", "4,6"], "Scale.forward on a float64 input of shape (4, 6) "
     "raised ValueError: operands could not be broadcast together with shapes (4,6) (5,) ; give the "
     "input shape with --shape N,F"),
])
def test_what_cannot_be_checked_is_one_line_and_exit_2(layers, capsys, spec, args, message):
    assert main(["gradcheck", spec.format(layers), *args]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines == ["nanoae gradcheck: error: " + message.format(layers)] and captured.out == ""


def test_layer_options_without_a_layer_are_refused(capsys):
    assert main(["gradcheck", "--shape", "4,5"]) == 2
    assert "name it too" in capsys.readouterr().err


def test_a_bad_shape_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["gradcheck", "--shape", "4,0"])
    assert exc.value.code == 2 and "sizes must be positive" in capsys.readouterr().err


# -- kinks -------------------------------------------------------------------------

def kinked_input(rng):
    x = rng.standard_normal((4, 5))
    x[0, 0], x[1, 1], x[2, 2] = 0.0, 3e-6, -7e-6  # on the kink, and within h = 1e-5 of it
    return x


def test_inputs_at_a_kink_are_counted_apart_not_failed(xp, rng):
    x = xp.asarray(kinked_input(rng))
    result = nn.gradcheck(nn.ReLU(), x)
    assert result.ok and result.kinks == {"input": 3} and result.arrays[0].kinks == 3
    assert "within h of a kink: input (3)" in str(result)
    # without the detection the correct ReLU fails there: the one-sided slopes differ
    assert nn.gradcheck(nn.ReLU(), x, detect_kinks=False, raise_on_failure=False).failures == {
        "input": 3}


def test_a_bug_is_not_excused_as_a_kink(xp, rng):
    class ForgotSlope(nn.ReLU):  # a LeakyReLU's forward with ReLU's backward
        def forward(self, x):
            super().forward(x)
            return xp.where(x > 0, x, 0.1 * x)

    result = nn.gradcheck(ForgotSlope(), xp.asarray(kinked_input(rng)), raise_on_failure=False)
    assert not result.ok and result.failures["input"] >= 8  # every negative, smooth element


def test_kinks_are_redrawn_and_reported_when_they_remain():
    def build(seed):  # the first draw has an input on ReLU's kink, later ones are smooth
        x = numpy.random.default_rng(seed).standard_normal((4, 5))
        x[0, 0] = 0.0 if seed == 0 else x[0, 0]
        return nn.ReLU(), x, None

    row = suite.run_case(suite.Case("ReLU", build))
    assert row.result.ok and not row.result.kinks and row.draws == 2

    row = suite.run_case(suite.Case("ReLU", lambda s: (nn.ReLU(), kinked_input(
        numpy.random.default_rng(s)), None)))
    assert row.result.ok and row.draws == suite.REDRAWS
    assert (f"note: ReLU: 3 element(s) of input within h of a kink after {suite.REDRAWS} input "
            "draw(s); not counted") in suite.format_table([row])


# -- the suite's pieces, one by one ---------------------------------------------------

def test_each_builtin_case_builds_its_object_and_inputs():
    """The inputs of every built-in case, seed by seed: shapes, scales and where the targets
    come from (seed + 1), so the table's shapes and the checked points are the documented ones."""
    rng = numpy.random.default_rng
    built = {case.label: case.build(3) for case in suite.builtin_cases()}
    assert list(built) == ["Dense(5, 3)", "ReLU()", "Sigmoid()", "Softmax()", "Normalize()",
                           "Dropout(0.3), training",
                           "Standardize(5)", "BinaryCrossEntropy()", "CrossEntropy()",
                           "CrossEntropy(label_smoothing=0.1)", "Sigmoid + BinaryCrossEntropy (fused)",
                           "Softmax + CrossEntropy (fused)",
                           "Softmax + CrossEntropy(label_smoothing=0.1), fused",
                           "Autoencoder 12-6-4-3-4-6-12 + BCE",
                           "Autoencoder 12-6-4-3-4-6-12, unit code (Normalize) + BCE",
                           "Classifier 3-8-10 + CrossEntropy",
                           "Classifier 3-8-10, dropout 0.3 + CrossEntropy(label_smoothing=0.1)"]
    for label, scale, shape in (("Dense(5, 3)", 1.0, (4, 5)), ("ReLU()", 1.0, (4, 5)),
                                ("Sigmoid()", 3.0, (4, 5)), ("Softmax()", 2.0, (4, 6)),
                                ("Normalize()", 1.0, (4, 5)), ("Dropout(0.3), training", 1.0, (4, 5)),
                                ("Standardize(5)", 1.0, (4, 5))):
        obj, x, target = built[label]
        numpy.testing.assert_array_equal(nn.backend.to_numpy(x), scale * rng(3).standard_normal(shape))
        assert target is None and repr(obj) == label.removesuffix(", training")
    assert built["Dropout(0.3), training"][0].training  # checked while it drops
    loss, x, target = built["CrossEntropy(label_smoothing=0.1)"]
    assert loss.label_smoothing == 0.1 and x.shape == (5, 4) and target.shape == (5,)
    (model, loss), x, target = built["Classifier 3-8-10, dropout 0.3 + CrossEntropy(label_smoothing=0.1)"]
    assert model.config["dropout"] == 0.3 and loss.label_smoothing == 0.1
    dense = built["Dense(5, 3)"][0]
    assert dense.W.data.dtype == numpy.float64
    numpy.testing.assert_array_equal(dense.W.data, nn.Dense(5, 3, dtype=numpy.float64, rng=3).W.data)
    standardize = built["Standardize(5)"][0]
    numpy.testing.assert_array_equal(standardize.mean, rng(3).standard_normal(5))
    numpy.testing.assert_allclose(standardize.inv_std, 1 / (0.5 + numpy.arange(5.0)))
    loss, x, target = built["BinaryCrossEntropy()"]
    numpy.testing.assert_array_equal(x, 0.05 + 0.9 * rng(3).random((4, 5)))
    numpy.testing.assert_array_equal(target, rng(4).random((4, 5)))
    loss, x, target = built["CrossEntropy()"]
    p = rng(3).random((5, 4)) + 0.1
    numpy.testing.assert_array_equal(x, p / p.sum(axis=1, keepdims=True))
    numpy.testing.assert_array_equal(target, rng(4).integers(0, 4, size=5))
    (model, loss), x, target = built["Sigmoid + BinaryCrossEntropy (fused)"]
    assert repr(model) == "Sequential(Sigmoid())" and repr(loss) == "BinaryCrossEntropy()"
    numpy.testing.assert_array_equal(x, 3.0 * rng(3).standard_normal((4, 5)))
    numpy.testing.assert_array_equal(target, rng(4).random((4, 5)))
    (model, loss), x, target = built["Softmax + CrossEntropy (fused)"]
    assert repr(model) == "Sequential(Softmax())" and repr(loss) == "CrossEntropy()"
    numpy.testing.assert_array_equal(x, 2.0 * rng(3).standard_normal((5, 4)))
    numpy.testing.assert_array_equal(target, rng(4).integers(0, 4, size=5))
    (model, loss), x, target = built["Classifier 3-8-10 + CrossEntropy"]
    assert model.config["hidden"] == [8] and model.config["classes"] == 10
    assert repr(loss) == "CrossEntropy()"
    numpy.testing.assert_array_equal(x, rng(3).standard_normal((6, 3)))
    numpy.testing.assert_array_equal(target, rng(4).integers(0, 10, size=6))
    assert all(p.data.dtype == numpy.float64 for p in model.parameters())
    (model, loss), x, target = built["Autoencoder 12-6-4-3-4-6-12, unit code (Normalize) + BCE"]
    assert model.config["code_activation"] == "unit" and repr(model.encoder.layers[-1]) == "Normalize()"


def test_the_mini_autoencoder_has_small_positive_biases_and_its_input_as_target():
    (model, loss), x, target = suite._mini_autoencoder(5)
    assert model.config["widths"] == [12, 6, 4, 3] and model.config["code_activation"] == "relu"
    assert repr(loss) == "BinaryCrossEntropy()"
    numpy.testing.assert_array_equal(x, numpy.random.default_rng(6).random((5, 12)))
    numpy.testing.assert_array_equal(target, x) and target is not x
    rng = numpy.random.default_rng(5)
    for p in model.parameters():
        assert p.data.dtype == numpy.float64
        if p.name == "b":
            numpy.testing.assert_array_equal(p.data, rng.uniform(0.05, 0.2, size=p.data.shape))
    weights = [p.data for p in model.parameters() if p.name == "W"]
    assert all((w < 0).any() for w in weights)  # the weights stay as the model drew them
    drawn = suite.Autoencoder((12, 6, 4, 3), code_activation="relu", dtype=numpy.float64, seed=5)
    for w, want in zip(weights, [p.data for p in drawn.parameters() if p.name == "W"], strict=True):
        numpy.testing.assert_array_equal(w, want)  # drawn from the case's seed


def test_run_case_draws_from_the_seed_and_times_the_check(monkeypatch):
    seen = []

    def build(seed):
        seen.append(seed)
        return nn.ReLU(), numpy.random.default_rng(seed).standard_normal((3, 4)), None

    calls = []
    real = suite.gradcheck

    def gradcheck(obj, x, target, **kw):
        calls.append(kw)
        return real(obj, x, target, **kw)

    monkeypatch.setattr(suite, "gradcheck", gradcheck)
    row = suite.run_case(suite.Case("relu", build), seed=7)
    assert seen == [7] and row.draws == 1 and row.label == "relu"
    assert calls == [{"seed": 7, "raise_on_failure": False}]
    assert 0 <= row.seconds < 5
    assert suite.REDRAWS == 5


def test_load_layer_says_what_it_found(tmp_path, monkeypatch):
    (tmp_path / "empty.py").write_text("x = 1\n")
    (tmp_path / "funcs.py").write_text("import numpy\ndef LeakyReLU(x):\n    return x\n")
    (tmp_path / "broken.py").write_text("1 / 0\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "neighbour.py").write_text("SLOPE = 0.25\n")
    (tmp_path / "lib" / "uses.py").write_text("import nanoae as nn\nfrom neighbour import SLOPE\n"
                                      "class L(nn.ReLU):\n    slope = SLOPE\n")
    (tmp_path / "pkg_bad.py").write_text("raise ValueError('boom')\n")
    (tmp_path / "pkg_missing.py").write_text("import no_such_thing_here\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))

    def message(spec):
        with pytest.raises(suite.NotCheckable) as exc:
            suite.load_layer(spec)
        return str(exc.value)

    assert message("empty.py:X") == "empty.py has no X; the classes it defines: none"
    assert message("funcs.py:LeakyReLU") == ("funcs.py:LeakyReLU is a function, not a class; name the "
                                             "layer's class")
    assert message("broken.py:X") == "broken.py could not be imported: ZeroDivisionError: division by zero"
    for spec in (":X", "x.py:", "x.py:1st", "LeakyReLU"):
        assert message(spec) == f"expected FILE.py:CLASS or MODULE:CLASS (my_layers.py:LeakyReLU), got {spec!r}"
    assert message("pkg_bad:X") == "importing pkg_bad failed: ValueError: boom"
    assert message("pkg_missing:X") == "importing pkg_missing failed: No module named 'no_such_thing_here'"
    assert message("sub/dir:X") == "no such file: sub/dir"  # a path even without .py
    assert message("C:/no/file.py:X") == "no such file: C:/no/file.py"  # the last colon splits
    (tmp_path / "mymod.py").write_text("from fractions import Fraction\nclass B:\n    pass\nclass A:\n    pass\n")
    assert message("mymod:Nope") == "mymod has no Nope; the classes it defines: A, B"  # its own, sorted
    import sys  # noqa: PLC0415

    path = list(sys.path)
    cls = suite.load_layer("lib/uses.py:L")  # its neighbour imports, as when the file runs
    assert cls.slope == 0.25 and sys.path == path  # and sys.path is as it was
    assert suite.load_layer(str(tmp_path / "lib" / "uses.py") + ":L").__name__ == "L"


def test_layer_case_gives_float64_and_the_seed_unless_told(tmp_path):
    (tmp_path / "seeded.py").write_text(
        "import numpy\nimport nanoae as nn\n"
        "class Seeded(nn.Dense):\n"
        "    def __init__(self, n=3, rng=None, dtype=numpy.float32):\n"
        "        super().__init__(n, 2, rng=rng, dtype=dtype)\n"
        "        self.given = (rng, dtype)\n")
    cls = suite.load_layer(f"{tmp_path / 'seeded.py'}:Seeded")
    case = suite.layer_case(cls, seed=4)
    layer, x, target = case.build(9)
    assert case.label == "Seeded()" and layer.given == (4, numpy.float64) and target is None
    numpy.testing.assert_array_equal(x, numpy.random.default_rng(9).standard_normal((4, 3)))
    layer = suite.layer_case(cls, "2, rng=1, dtype=numpy.float32".replace("numpy.float32", "None"),
                             seed=4).build(0)[0]
    assert layer.given == (1, None) and layer.W.data.dtype == numpy.float64  # converted after all
    layer = suite.layer_case(cls, "5", shape=(2, 5)).build(0)[0]
    assert layer.given == (0, numpy.float64)
    assert suite.layer_case(cls, "5", shape=(2, 5)).build(1)[1].shape == (2, 5)
    assert suite.parse_arguments("0.1, 'a', slope=[1, 2]") == ([0.1, "a"], {"slope": [1, 2]})
    assert suite.parse_arguments("") == ([], {})


def test_float32_parameters_are_made_float64_with_fresh_gradients():
    dense = nn.Dense(3, 2, rng=0)
    w32 = dense.W.data.copy()
    suite._parameters_to_float64(dense, "Dense")
    assert dense.W.data.dtype == dense.W.grad.dtype == numpy.float64
    numpy.testing.assert_array_equal(dense.W.data, w32.astype(numpy.float64))
    assert not dense.W.grad.any() and dense.W.grad.shape == (3, 2)
    d64 = nn.Dense(3, 2, rng=0, dtype=numpy.float64)
    grad = d64.W.grad
    suite._parameters_to_float64(d64, "Dense")
    assert d64.W.grad is grad  # already float64: left alone


def test_screen_names_what_backward_returned():
    class ReturnsList(nn.ReLU):
        def backward(self, grad_out, *, input_grad=True):
            return [0.0]

    class Raises(nn.ReLU):
        def backward(self, grad_out, *, input_grad=True):
            raise KeyError("oops")

    class ReturnsNumber(nn.ReLU):
        def forward(self, x):
            return 1.0

    class BadGrad(nn.Dense):
        def backward(self, grad_out, *, input_grad=True):
            out = super().backward(grad_out)
            self.W.grad = self.W.grad[:1]
            return out

    x = numpy.random.default_rng(0).standard_normal((4, 3))

    def message(layer, name):
        with pytest.raises(suite.NotCheckable) as exc:
            suite.screen(layer, x, name)
        return str(exc.value)

    assert message(ReturnsList(), "RL") == ("RL.backward returned list; it must be dL/dx, shaped like "
                                            "the input x")
    assert message(Raises(), "R") == "R.backward raised KeyError: 'oops'"
    assert message(ReturnsNumber(), "N") == "N.forward returned a float, not an array"
    assert message(BadGrad(3, 2, dtype=numpy.float64, rng=0), "B") == (
        "B.backward set W.grad to shape (1, 2) for (3, 2); it must be dL/dW, shaped like W")
    suite.screen(nn.ReLU(), x, "ReLU")  # a good layer passes
    with pytest.raises(suite.NotCheckable, match=r"^S cannot run in float64: with a float64 input, "
                                                 r"forward returned float32"):
        class Single(nn.ReLU):
            def forward(self, x):
                return super().forward(x).astype(numpy.float32)
        suite.screen(Single(), x, "S")


def _result(ok=True, arrays=(), kinks=None):
    from nanoae.gradcheck import ArrayCheck, GradcheckResult  # noqa: PLC0415

    return GradcheckResult(ok=ok, checked=sum(a.checked for a in arrays), h=1e-5, rtol=1e-6, atol=1e-8,
                           kinks=kinks or {}, arrays=list(arrays))


def test_the_table_line_by_line():
    from nanoae.gradcheck import ArrayCheck  # noqa: PLC0415

    good = _result(arrays=[ArrayCheck("input", (4, 5), 20, 1.5e-11, 2.5e-9),
                           ArrayCheck("layer.W", (5, 3), 15, 0.0, 0.0), ArrayCheck("b", (3,), 3)])
    worst = {"name": "b", "index": (1,), "analytic": 0.5, "numerical": 0.25, "diff": 0.25}
    bad = _result(ok=False, arrays=[ArrayCheck("input", (2,), 2),
                                    ArrayCheck("b", (), 1, 0.25, 0.5, failed=1, worst=worst)],
                  kinks={"input": 2})
    rows = [suite.Row("good", good, 1, 0.125), suite.Row("bad one", bad, 5, 2.0)]
    assert suite.format_table(rows).splitlines() == [
        "gradient check in float64: central differences, h=1e-05, rtol=1e-06, atol=1e-08, random upstream "
        "gradient",
        f"{'check':37} {'shapes':28} {'elements':>8} {'max |a-n|':>10} {'max rel':>9} {'result':>6} "
        f"{'seconds':>7}",
        f"{'good':37} {'x 4x5, W 5x3, b 3':28} {38:8d} {'1.5e-11':>10} {'2.5e-09':>9} {'pass':>6} "
        f"{'0.12':>7}",
        f"{'bad one':37} {'x 2, b scalar':28} {3:8d} {'2.5e-01':>10} {'5.0e-01':>9} {'FAIL':>6} "
        f"{'2.00':>7}",
        "    b[1] analytic 0.5 numerical 0.25 |diff| 0.25  (1 of 1 elements of b out of tolerance)",
        "note: bad one: 2 element(s) of input within h of a kink after 5 input draw(s); not counted",
        "1 of 2 checks FAILED"]
    assert suite.format_table(rows[:1]).splitlines()[-1] == "the check passed"
    assert suite.format_table(rows[1:]).splitlines()[-1] == "the check FAILED"
    assert suite.format_table(rows[:1] * 3).splitlines()[-1] == "all 3 checks passed"
    four = _result(arrays=[ArrayCheck(n, (2, 2), 4) for n in ("input", "a", "b", "c")])
    assert suite._shapes(four) == "x 2x2, 3 parameter arrays"

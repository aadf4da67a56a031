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
    assert "all 15 checks passed" in out and "FAIL" not in out
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
    ("{}:Missing", [], "has no Missing; the classes it defines: Float32Only, ForgotSlope"),
    ("nanoae.no_such_module:X", [], "no module named nanoae.no_such_module"),
    ("{}", [], "expected FILE.py:CLASS or MODULE:CLASS"),
    ("{}:NotALayer", [], "NotALayer is not a nanoae Layer"),
    ("{}:NoBackward", [], "NoBackward has no backward()"),
    ("{}:WrongShape", [], "WrongShape.backward returned shape (4,) for (4, 5); it must be dL/dx"),
    ("{}:WrongDtype", [], "WrongDtype.backward returned float32 for float64"),
    ("{}:Noisy", [], "Noisy.forward is not deterministic"),
    ("{}:InPlace", [], "InPlace.forward changed its input in place"),
    ("{}:Float32Only", ["--args", "5"], "Float32Only cannot run in float64: with a float64 input "
                                        "and float64 parameters, forward returned float32"),
    ("{}:IntegerWeights", ["--args", "5"], "parameter w of IntegerWeights is int64"),
    ("{}:LeakyReLU", ["--args", "slope=numpy.pi"], "expected constructor arguments written as in"),
    ("{}:Scale", [], "Scale() raised TypeError"),
    ("{}:Scale", ["--args", "5", "--shape", "4,6"], "Scale.forward on a float64 input of shape"),
])
def test_what_cannot_be_checked_is_one_line_and_exit_2(layers, capsys, spec, args, message):
    assert main(["gradcheck", spec.format(layers), *args]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nanoae gradcheck: error: "), captured.err
    assert message in lines[0] and captured.out == ""


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

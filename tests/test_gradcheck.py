"""Composed models are gradient-checked, and the checker itself can fail."""

import types

import numpy
import pytest
from helpers.learner_run import Tanh

import nanoae as nn
from nanoae.backend import as_array_like
from nanoae.parameter import Parameter

F64 = numpy.float64


def mini_autoencoder(widths=(12, 6, 4, 3, 4, 6, 12), seed=0):
    """The reference pattern in miniature: ReLU inside (code included), sigmoid out."""
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Dense(a, b, dtype=F64, rng=seed + i), nn.ReLU()]
    layers[-1] = nn.Sigmoid()
    # Non-zero biases: with b = 0 a sample whose ReLUs are all off feeds an exact 0
    # into the next ReLU, right on its kink.
    biases = numpy.random.default_rng(seed).uniform(0.05, 0.2, size=sum(widths[1:]))
    for layer in layers[::2]:
        # converted with the bias's own module: CuPy refuses a NumPy array written into its own
        layer.b.data[...] = as_array_like(biases[:layer.out_features], layer.b.data)
        biases = biases[layer.out_features:]
    return nn.Sequential(*layers)


def relu_inputs_away_from_kink(model, x, margin=1e-3):
    """Smallest |pre-activation| feeding a ReLU; the check is only valid if >> h."""
    smallest = numpy.inf
    for layer in model.layers:
        if isinstance(layer, nn.ReLU):
            smallest = min(smallest, float(abs(x).min()))
        x = layer(x)
    assert smallest > margin, f"a ReLU input is within {margin} of its kink: pick another seed"


def test_mini_autoencoder_with_bce(xp, rng):
    model = mini_autoencoder()
    x = xp.asarray(rng.random((5, 12)))
    relu_inputs_away_from_kink(model, x)
    result = nn.gradcheck((model, nn.BinaryCrossEntropy()), x, x.copy())
    assert result.ok and result.checked == 5 * 12 + sum(p.data.size for p in model.parameters())


def test_mini_autoencoder_as_layer(xp, rng):
    model = mini_autoencoder(seed=10)
    x = xp.asarray(rng.random((4, 12)))
    relu_inputs_away_from_kink(model, x)
    nn.gradcheck(model, x)


def test_nested_encoder_decoder(xp, rng):
    enc = nn.Sequential(nn.Dense(8, 5, dtype=F64, rng=1), nn.ReLU(), nn.Dense(5, 3, dtype=F64, rng=2))
    dec = nn.Sequential(nn.Dense(3, 5, dtype=F64, rng=3), nn.ReLU(), nn.Dense(5, 8, dtype=F64, rng=4),
                        nn.Sigmoid())
    model = nn.Sequential(enc, dec)
    x = xp.asarray(rng.random((4, 8)))
    nn.gradcheck((model, nn.BinaryCrossEntropy()), x, x.copy())


def test_classifier_head(xp, rng):
    head = nn.Sequential(nn.Dense(3, 8, dtype=F64, rng=5), nn.ReLU(), nn.Dense(8, 10, dtype=F64, rng=6),
                         nn.Softmax())
    x = xp.asarray(rng.standard_normal((6, 3)))
    relu_inputs_away_from_kink(head, x)
    nn.gradcheck((head, nn.CrossEntropy()), x, xp.asarray([0, 9, 3, 3, 7, 1]))


def test_sampled_coordinates_on_a_wider_net(xp, rng):
    model = mini_autoencoder(widths=(64, 32, 16, 32, 64), seed=20)
    x = xp.asarray(rng.random((4, 64)))
    result = nn.gradcheck((model, nn.BinaryCrossEntropy()), x, x.copy(), max_coords=40)
    assert result.checked == 40 + sum(min(40, p.data.size) for p in model.parameters())


def test_refuses_float32(xp):
    with pytest.raises(TypeError, match="float64"):
        nn.gradcheck(nn.Dense(3, 2), xp.zeros((2, 3), dtype=numpy.float32))


# -- the checker catches deliberately broken backwards -------------------------

class ZeroBackwardSoftmax(nn.Softmax):
    def backward(self, grad_out):
        return grad_out * 0


class WrongSignSigmoid(nn.Sigmoid):
    def backward(self, grad_out):
        return -super().backward(grad_out)


class MissingMeanBCE(nn.BinaryCrossEntropy):
    def logits_grad(self):
        return super().logits_grad() * self._p.size  # forgot the 1/count


class MissingMeanCE(nn.CrossEntropy):
    def backward(self):
        return super().backward() * self._p.shape[0]  # forgot the 1/N


class DenseNoBiasGrad(nn.Dense):
    def backward(self, grad_out, *, input_grad=True):
        out = super().backward(grad_out, input_grad=input_grad)
        self.b.grad[...] = 0
        return out


@pytest.mark.parametrize("case", ["zero softmax", "wrong sign", "bce without 1/count",
                                  "ce without 1/N", "dense bias grad lost"])
def test_checker_catches_broken_backward(xp, rng, case):
    x = xp.asarray(rng.standard_normal((4, 5)))
    t = xp.asarray(rng.random((4, 5)))
    obj, target = {
        "zero softmax": (ZeroBackwardSoftmax(), None),
        "wrong sign": (WrongSignSigmoid(), None),
        "bce without 1/count": ((nn.Sequential(nn.Sigmoid()), MissingMeanBCE()), t),
        "ce without 1/N": (MissingMeanCE(), xp.asarray([0, 1, 2, 3])),
        "dense bias grad lost": (DenseNoBiasGrad(5, 3, dtype=F64), None),
    }[case]
    if case == "ce without 1/N":
        x = xp.asarray(rng.random((4, 5)) + 0.1)
        x /= x.sum(axis=1, keepdims=True)
    with pytest.raises(nn.GradcheckError, match=r"FAILED.*h=1e-05.*worst.*analytic.*numerical"):
        nn.gradcheck(obj, x, target)


def test_zero_softmax_backward_would_pass_with_all_ones_upstream(xp, rng):
    """Why the upstream gradient is random: with ones, the broken softmax passes."""
    x = xp.asarray(rng.standard_normal((4, 5)))
    ones = xp.ones((4, 5))
    assert nn.gradcheck(ZeroBackwardSoftmax(), x, grad_out=ones).ok
    assert not nn.gradcheck(ZeroBackwardSoftmax(), x, raise_on_failure=False).ok


def test_host_input_is_moved_to_the_models_device(xp):
    """A NumPy input against weights on the active backend (CuPy on a GPU) is moved, not refused."""
    model = nn.Sequential(nn.Dense(3, 2, dtype=numpy.float64, rng=0), nn.Sigmoid())
    x = numpy.random.default_rng(0).standard_normal((4, 3))  # on the host
    assert nn.gradcheck(model, x).ok
    target = numpy.random.default_rng(1).random((4, 2))
    assert nn.gradcheck((model, nn.BinaryCrossEntropy()), x, target).ok


class _HalfGradient(nn.Layer):
    """y = 2x, whose backward forgets the 2 on the input's second half of columns."""

    def forward(self, x):
        return 2 * x

    def backward(self, grad_out, *, input_grad=True):
        g = 2 * grad_out
        g[:, g.shape[1] // 2:] /= 2
        return g


def test_a_failed_check_says_where_how_often_and_by_how_much():
    x = numpy.random.default_rng(0).standard_normal((3, 4))
    result = nn.gradcheck(_HalfGradient(), x, raise_on_failure=False)
    assert result.ok is False and result.checked == 12 and result.failures == {"input": 6}
    w = result.worst
    assert w["name"] == "input" and w["index"][1] >= 2
    assert w["diff"] == pytest.approx(abs(w["analytic"] - w["numerical"]))
    assert w["analytic"] * 2 == pytest.approx(w["numerical"], rel=1e-6)
    text = str(result)
    assert text.startswith("gradcheck FAILED: 12 elements, h=1e-05, rtol=1e-06, atol=1e-08; worst: input[")
    assert text.endswith("; out of tolerance: input (6)")
    with pytest.raises(nn.GradcheckError, match=r"^_HalfGradient.*gradcheck FAILED: 12 elements"):
        nn.gradcheck(_HalfGradient(), x)


def test_a_passed_check_counts_every_element_or_the_sampled_ones():
    x = numpy.random.default_rng(1).standard_normal((3, 4))
    layer = nn.Dense(4, 2, dtype=numpy.float64, rng=numpy.random.default_rng(0))
    full = nn.gradcheck(layer, x)
    assert full.ok is True and full.checked == 12 + 8 + 2 and not full.failures
    assert str(full).startswith("gradcheck passed: 22 elements")
    sampled = nn.gradcheck(layer, x, max_coords=4)  # at most 4 distinct coordinates per array
    assert sampled.checked == 4 + 4 + 2  # the bias has only 2
    assert nn.gradcheck(layer, x, max_coords=12).checked == 12 + 8 + 2


def test_gradcheck_refuses_inputs_it_cannot_check_exactly():
    layer = nn.Dense(4, 2, dtype=numpy.float64)
    with pytest.raises(TypeError, match=r"^gradcheck: input is float32; checks need float64 "
                                        r"\(build layers with dtype=numpy\.float64 and pass float64 input\)"):
        nn.gradcheck(layer, numpy.ones((2, 4), numpy.float32))
    with pytest.raises(ValueError, match="^gradcheck: input is not C-contiguous; pass a contiguous array$"):
        nn.gradcheck(layer, numpy.ones((4, 2)).T)


# -- what a result reports: names, counts, kinks, tolerances, messages ---------

class _Kinked(nn.Layer):
    """y = max(x, 0), whose backward takes slope ``at_zero`` exactly at x = 0."""

    def __init__(self, at_zero=0.0):
        super().__init__()
        self.at_zero = at_zero

    def forward(self, x):
        self._x = x
        return numpy.maximum(x, 0)

    def backward(self, grad_out, *, input_grad=True):
        return grad_out * numpy.where(self._x == 0, self.at_zero, (self._x > 0) * 1.0)


class _Params(nn.Layer):
    """y = x * (sum of its parameters' first elements): parameters named as given."""

    def __init__(self, *names):
        self.params = [Parameter(numpy.full(2, 0.5), name=n) for n in names]
        super().__init__()

    def parameters(self):
        return list(self.params)

    def forward(self, x):
        self._x = x
        return x * sum(p.data[0] for p in self.params)

    def backward(self, grad_out, *, input_grad=True):
        for p in self.params:
            p.grad = numpy.array([(grad_out * self._x).sum(), 0.0])
        return grad_out * sum(p.data[0] for p in self.params)


class _Gained(nn.Layer):
    """A layer holding another (not a Sequential) plus a parameter of its own, ``gain``."""

    def __init__(self):
        self.inner = nn.Dense(3, 2, dtype=F64, rng=0)
        self.gain = Parameter(numpy.ones(2), name="gain")
        super().__init__()

    def leaves(self):
        return [self.inner]

    def parameters(self):
        return self.inner.parameters() + [self.gain]

    def forward(self, x):
        self._h = self.inner.forward(x)
        return self._h * self.gain.data

    def backward(self, grad_out, *, input_grad=True):
        self.gain.grad = (grad_out * self._h).sum(axis=0)
        return self.inner.backward(grad_out * self.gain.data)


def test_arrays_are_named_input_then_parameters_by_layer():
    x = numpy.random.default_rng(0).standard_normal((2, 3))
    single = nn.gradcheck(nn.Dense(3, 2, dtype=F64, rng=0), x)
    assert [a.name for a in single.arrays] == ["input", "W", "b"]
    assert [a.shape for a in single.arrays] == [(2, 3), (3, 2), (2,)]
    assert [a.checked for a in single.arrays] == [6, 6, 2]
    model = nn.Sequential(nn.Dense(3, 4, dtype=F64, rng=0), nn.Sigmoid(), nn.Dense(4, 2, dtype=F64, rng=1))
    names = [a.name for a in nn.gradcheck(model, x).arrays]
    assert names == ["input", "layer 0 Dense(3, 4).W", "layer 0 Dense(3, 4).b",
                     "layer 2 Dense(4, 2).W", "layer 2 Dense(4, 2).b"]
    # a layer holding others outside a Sequential: its parameters by their own names
    assert [a.name for a in nn.gradcheck(_Gained(), x).arrays] == ["input", "W", "b", "gain"]


def test_unnamed_and_repeated_parameter_names_get_their_position():
    x = numpy.random.default_rng(0).standard_normal((2, 2))
    result = nn.gradcheck(_Params("", "", "w", "w"), x)
    assert [a.name for a in result.arrays] == ["input", "param#0", "param#1", "w", "w#3"]
    assert nn.gradcheck(_Params("w"), x).ok  # a single parameter


def test_a_kink_is_counted_apart_not_failed():
    """ReLU at exactly 0: the central difference is half a slope; by default that is a kink."""
    x = numpy.array([[0.0, 1.0, -1.0], [2.0, 0.0, 0.5]])
    g = numpy.full((2, 3), 0.5)
    result = nn.gradcheck(nn.ReLU(), x, grad_out=g)
    assert result.ok and result.kinks == {"input": 2} and result.failures == {}
    assert [(a.kinks, a.failed, a.checked) for a in result.arrays] == [(2, 0, 6)]
    assert str(result).startswith("gradcheck passed: 6 elements, h=1e-05")
    assert str(result).endswith("; not counted, within h of a kink: input (2)")
    off = nn.gradcheck(nn.ReLU(), x, grad_out=g, detect_kinks=False, raise_on_failure=False)
    assert not off.ok and off.failures == {"input": 2} and off.kinks == {}


def test_kinks_in_several_arrays_are_all_listed():
    """A ReLU fed exactly 0: its Dense's weight and bias sit at the kink (the input, times W = 0, does not)."""
    dense = nn.Dense(2, 1, dtype=F64)
    dense.W.data[...] = 0
    model = nn.Sequential(dense, nn.ReLU())
    result = nn.gradcheck(model, numpy.array([[1.0, 0.0]]), grad_out=numpy.array([[0.5]]))
    assert result.ok and str(result).startswith("gradcheck passed: 5 elements")
    assert str(result).endswith("; not counted, within h of a kink: "
                                "layer 0 Dense(2, 1).W (1), layer 0 Dense(2, 1).b (1)")


def test_a_kink_is_an_error_no_larger_than_the_jump_in_slope():
    """At x = 0 with h = 0.5: d+ = 1, d- = 0, central 0.5, jump 1. A backward off the
    central difference by exactly the jump is still a kink; by more, a failure."""
    x, g = numpy.array([[0.0]]), numpy.array([[1.0]])
    at_edge = nn.gradcheck(_Kinked(at_zero=1.5), x, grad_out=g, h=0.5)
    assert at_edge.ok and at_edge.kinks == {"input": 1}
    beyond = nn.gradcheck(_Kinked(at_zero=1.75), x, grad_out=g, h=0.5, raise_on_failure=False)
    assert not beyond.ok and beyond.failures == {"input": 1}


def test_exactly_zero_gradients_agree_even_with_no_absolute_tolerance():
    x = numpy.random.default_rng(0).standard_normal((2, 3))
    g = numpy.zeros((2, 3))
    # (with atol = 0 the relative floor atol / rtol is 0 too, and max_rel of an exact 0 is 0 / 0)
    with numpy.errstate(invalid="ignore"):
        result = nn.gradcheck(nn.Sigmoid(), x, grad_out=g, atol=0.0)
    assert result.ok and result.kinks == {} and result.failures == {}


def test_max_abs_and_max_rel_with_the_relative_floor_atol_over_rtol():
    x = numpy.random.default_rng(0).standard_normal((2, 4))
    # analytic g, numerical 2 g on half the columns: relative error 1/2
    big = nn.gradcheck(_HalfGradient(), x, grad_out=numpy.ones((2, 4)), raise_on_failure=False)
    assert big.max_abs == pytest.approx(1.0, rel=1e-6) and big.max_rel == pytest.approx(0.5, rel=1e-6)
    # gradients of 1e-3 and 2e-3 are below atol / rtol = 1e-2: the error is relative to 1e-2
    small = nn.gradcheck(_HalfGradient(), x, grad_out=numpy.full((2, 4), 1e-3), raise_on_failure=False)
    assert small.max_rel == pytest.approx(0.1, rel=1e-4)
    assert small.arrays[0].max_abs == pytest.approx(1e-3, rel=1e-4)


def test_failures_in_several_arrays_are_all_listed():
    x = numpy.random.default_rng(0).standard_normal((3, 5))
    result = nn.gradcheck(_DenseNoParamGrads(5, 2, dtype=F64, rng=0), x, raise_on_failure=False)
    assert result.failures == {"W": 10, "b": 2}
    assert str(result).endswith("; out of tolerance: W (10), b (2)")


class _DenseNoParamGrads(nn.Dense):
    def backward(self, grad_out, *, input_grad=True):
        out = super().backward(grad_out, input_grad=input_grad)
        self.W.grad[...] = 0
        self.b.grad[...] = 0
        return out


def test_the_default_seed_is_zero_and_fixes_the_upstream_gradient():
    x = numpy.random.default_rng(0).standard_normal((3, 4))
    runs = [str(nn.gradcheck(_HalfGradient(), x, raise_on_failure=False, **kw))
            for kw in ({}, {}, {"seed": 0}, {"seed": 1})]
    assert runs[0] == runs[1] == runs[2] != runs[3]


def test_sampled_coordinates_are_distinct():
    """With max_coords below the size, that many different elements are perturbed."""
    seen = []

    class Recording(nn.Sigmoid):
        def forward(self, x):
            seen.append(x.copy())
            return super().forward(x)

    x = numpy.random.default_rng(0).standard_normal((4, 5))
    nn.gradcheck(Recording(), x, max_coords=15)
    perturbed = {tuple(numpy.argwhere(s != x)[0]) for s in seen if (s != x).any()}
    assert len(perturbed) == 15


def test_what_gradcheck_refuses_is_named():
    x = numpy.zeros((2, 3))
    with pytest.raises(TypeError, match=r"^gradcheck: a tuple must be \(layer_or_model, loss\)$"):
        nn.gradcheck((nn.Dense(3, 2, dtype=F64), nn.Dense(2, 2, dtype=F64)), x, x)
    with pytest.raises(TypeError, match=r"^gradcheck: a tuple must be \(layer_or_model, loss\)$"):
        nn.gradcheck((nn.BinaryCrossEntropy(), nn.BinaryCrossEntropy()), x, x)
    with pytest.raises(TypeError, match=r"^gradcheck: cannot check a str$"):
        nn.gradcheck("Dense", x)
    with pytest.raises(ValueError, match=r"^gradcheck: checking a loss needs its target$"):
        nn.gradcheck(nn.BinaryCrossEntropy(), x)


def test_a_failed_pair_names_the_model_and_the_loss():
    x = numpy.random.default_rng(0).standard_normal((2, 3))
    t = numpy.random.default_rng(1).random((2, 3))
    with pytest.raises(nn.GradcheckError,
                       match=r"^Sequential\(Sigmoid\(\)\) \+ MissingMeanBCE\(\): gradcheck FAILED"):
        nn.gradcheck((nn.Sequential(nn.Sigmoid()), MissingMeanBCE()), x, t)


def test_host_input_target_and_upstream_gradient_go_to_the_parameters_device(monkeypatch):
    """With the weights on a device, gradcheck hands the layer device arrays only.

    The device: tests/helpers/device_double.py's arrays, owned by a cupy stand-in as nanoae.backend sees it."""
    from helpers.device_double import NoHostReads, device_module  # noqa: PLC0415

    from nanoae import backend  # noqa: PLC0415

    def owner(*arrays):
        return device_module if any(isinstance(a, NoHostReads) for a in arrays) else numpy

    monkeypatch.setattr(backend, "_cupy", types.SimpleNamespace(
        ndarray=NoHostReads, get_array_module=owner, asnumpy=lambda a: numpy.asarray(a).view(numpy.ndarray)))
    monkeypatch.setattr(NoHostReads, "armed", False)
    seen = set()

    class Watched(nn.Dense):
        def forward(self, x):
            seen.add(("input", type(x)))
            return super().forward(x)

        def backward(self, grad_out, *, input_grad=True):
            seen.add(("grad_out", type(grad_out)))
            return super().backward(grad_out, input_grad=input_grad)

    layer = Watched(3, 2, dtype=F64, rng=0)
    for p in layer.parameters():
        p.data, p.grad = device_module.asarray(p.data), device_module.asarray(p.grad)
    x = numpy.random.default_rng(0).standard_normal((2, 3))  # on the host
    assert nn.gradcheck(layer, x).ok
    assert seen == {("input", NoHostReads), ("grad_out", NoHostReads)}
    model, loss = nn.Sequential(layer, nn.Sigmoid()), nn.BinaryCrossEntropy(check=False)
    seen_loss = []
    loss.forward = lambda pred, target, f=loss.forward: seen_loss.append(type(target)) or f(pred, target)
    assert nn.gradcheck((model, loss), x, numpy.full((2, 2), 0.5)).ok
    assert set(seen_loss) == {NoHostReads}


def test_the_pytorch_style_tanh_passes_the_gradient_check():
    x = numpy.random.default_rng(1).normal(size=(4, 5))
    assert nn.gradcheck(Tanh(), x).ok
    model = nn.Sequential(nn.Dense(5, 4, dtype=numpy.float64, rng=0), Tanh(),
                          nn.Dense(4, 3, dtype=numpy.float64, rng=1), nn.Softmax())
    assert nn.gradcheck((model, nn.CrossEntropy()), x, numpy.array([0, 2, 1, 1])).ok

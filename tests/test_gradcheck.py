"""Composed models are gradient-checked, and the checker itself can fail."""

import numpy
import pytest

import nanoae as nn
from nanoae.backend import as_array_like

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

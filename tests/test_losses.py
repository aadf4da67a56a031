"""Losses: values against naive formulas, gradient checks, stability, errors."""

import types

import numpy
import pytest

import nanoae as nn
from nanoae.backend import to_numpy


def probs(rng, n, c):
    p = rng.random((n, c)) + 0.05
    return p / p.sum(axis=1, keepdims=True)


def test_bce_value_matches_formula(xp, rng):
    p, t = rng.random((4, 5)) * 0.9 + 0.05, rng.random((4, 5))
    expected = -numpy.mean(t * numpy.log(p) + (1 - t) * numpy.log(1 - p))
    got = float(nn.BinaryCrossEntropy()(xp.asarray(p), xp.asarray(t)))
    assert got == pytest.approx(expected, rel=1e-13)


def test_ce_value_matches_formula(xp, rng):
    p, labels = probs(rng, 6, 4), numpy.array([0, 3, 1, 1, 2, 0])
    expected = -numpy.mean(numpy.log(p[numpy.arange(6), labels]))
    got = float(nn.CrossEntropy()(xp.asarray(p), xp.asarray(labels)))
    assert got == pytest.approx(expected, rel=1e-13)


def test_gradcheck_bce(xp, rng):
    nn.gradcheck(nn.BinaryCrossEntropy(), xp.asarray(rng.random((4, 5)) * 0.9 + 0.05),
                 xp.asarray(rng.random((4, 5))))


def test_gradcheck_ce(xp, rng):
    nn.gradcheck(nn.CrossEntropy(), xp.asarray(probs(rng, 5, 4)), xp.asarray([0, 3, 1, 2, 2]))


def test_gradcheck_fused_sigmoid_bce(xp, rng):
    model, loss = nn.Sequential(nn.Sigmoid()), nn.BinaryCrossEntropy()
    assert loss.fuses_with(model[-1])  # the fused path is the one being checked
    nn.gradcheck((model, loss), xp.asarray(3 * rng.standard_normal((4, 5))),
                 xp.asarray(rng.random((4, 5))))


def test_gradcheck_fused_softmax_ce(xp, rng):
    model, loss = nn.Sequential(nn.Softmax()), nn.CrossEntropy()
    assert loss.fuses_with(model[-1])
    nn.gradcheck((model, loss), xp.asarray(2 * rng.standard_normal((5, 4))),
                 xp.asarray([0, 3, 1, 2, 2]))


def test_fused_equals_unfused_chain(xp, rng):
    """logits_grad is exactly what the chain rule through the activation gives."""
    z, t = xp.asarray(rng.standard_normal((3, 4))), xp.asarray(rng.random((3, 4)))
    sig, bce = nn.Sigmoid(), nn.BinaryCrossEntropy()
    bce(sig(z), t)
    numpy.testing.assert_allclose(to_numpy(bce.logits_grad()), to_numpy(sig.backward(bce.backward())),
                                  rtol=1e-12)
    labels = xp.asarray([1, 0, 3])
    soft, ce = nn.Softmax(), nn.CrossEntropy()
    ce(soft(z), labels)
    numpy.testing.assert_allclose(to_numpy(ce.logits_grad()), to_numpy(soft.backward(ce.backward())),
                                  rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_bce_finite_at_zero_and_one(xp, dtype):
    p = xp.asarray(numpy.array([[0.0, 1.0, 0.0, 1.0]], dtype=dtype))
    t = xp.asarray(numpy.array([[0.0, 1.0, 1.0, 0.0]], dtype=dtype))
    loss = nn.BinaryCrossEntropy()
    value = float(loss(p, t))
    assert numpy.isfinite(value) and value > 0
    g = to_numpy(loss.backward())
    assert numpy.isfinite(g).all() and g.dtype == dtype
    assert g[0, 2] < 0 < g[0, 3]  # pushes p up where t = 1, down where t = 0


def test_bce_log_clamp_values(xp):
    """A wrong answer of certainty costs 100, as torch.nn.BCELoss; in float32, -log(tiny) = 87.34."""
    loss = nn.BinaryCrossEntropy()
    for dtype, expected in ((numpy.float64, 100.0), (numpy.float32, -numpy.log(numpy.finfo(numpy.float32).tiny))):
        p = xp.asarray(numpy.array([[0.0, 1.0]], dtype=dtype))
        t = xp.asarray(numpy.array([[1.0, 0.0]], dtype=dtype))
        assert float(loss(p, t)) == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_ce_finite_with_zero_true_probability(xp, dtype):
    p = xp.asarray(numpy.array([[1.0, 0.0], [0.5, 0.5]], dtype=dtype))
    loss = nn.CrossEntropy()
    assert numpy.isfinite(float(loss(p, xp.asarray([1, 0]))))
    g = to_numpy(loss.backward())
    assert numpy.isfinite(g).all() and g.dtype == dtype and g[0, 1] < 0


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_fused_pairs_at_extreme_logits(xp, dtype):
    """Logits of +-1e4: the values and the fused gradients are the exact ones, computed here
    by hand in float64 (not merely finite: an all-zero gradient must fail)."""
    zs = numpy.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 3.0]])
    z = xp.asarray(zs.astype(dtype))
    ts = numpy.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    sig, bce = nn.Sigmoid(), nn.BinaryCrossEntropy()
    value = bce.after(sig, sig(z), xp.asarray(ts.astype(dtype)))
    # BCE from the logits: max(z, 0) - z t + log(1 + e^-|z|); 1e4 wrong by a logit of 1e4 costs 1e4
    expected = numpy.mean(numpy.maximum(zs, 0) - zs * ts + numpy.log1p(numpy.exp(-numpy.abs(zs))))
    assert float(value) == pytest.approx(expected, rel=1e-6)  # (log 2 + 2e4 + 3 + log1p(e^-3)) / 6
    sigmoid = 0.5 * numpy.tanh(0.5 * zs) + 0.5
    g = to_numpy(bce.logits_grad())
    assert g.dtype == dtype
    numpy.testing.assert_allclose(g, (sigmoid - ts) / zs.size, rtol=1e-6, atol=1e-30)
    soft, ce = nn.Softmax(), nn.CrossEntropy()
    labels = xp.asarray([0, 0])
    value = ce.after(soft, soft(z), labels)
    # true-class probabilities 1 and 0: the log of the second is floored (losses._safe_log)
    floor = max(numpy.exp(-100.0), float(numpy.finfo(dtype).tiny))
    assert float(value) == pytest.approx(-numpy.log(floor) / 2, rel=1e-6)
    g = to_numpy(ce.logits_grad())
    assert g.dtype == dtype
    numpy.testing.assert_allclose(g, [[0.0, 0.0, 0.0], [-0.5, 0.5, 0.0]], atol=1e-30)


def test_loss_dtypes(xp, rng):
    for dtype in (numpy.float32, numpy.float64):
        p = xp.asarray(probs(rng, 4, 3).astype(dtype))
        ce = nn.CrossEntropy()
        assert ce(p, xp.asarray([0, 1, 2, 0])).dtype == dtype
        assert ce.backward().dtype == dtype and ce.logits_grad().dtype == dtype
        bce = nn.BinaryCrossEntropy()
        assert bce(p, p.copy()).dtype == dtype
        assert bce.backward().dtype == dtype and bce.logits_grad().dtype == dtype


# -- bad input: a clear error, never a NaN ------------------------------------

def test_labels_out_of_range(xp, rng):
    p = xp.asarray(probs(rng, 3, 4))
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.3.*0\.\.4"):
        nn.CrossEntropy()(p, xp.asarray([0, 4, 1]))
    with pytest.raises(ValueError, match=r"0\.\.3.*-1\.\.2"):
        nn.CrossEntropy()(p, xp.asarray([-1, 2, 1]))


def test_labels_wrong_type_or_shape(xp, rng):
    p = xp.asarray(probs(rng, 3, 4))
    with pytest.raises(TypeError, match="integers"):
        nn.CrossEntropy()(p, xp.asarray([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"labels of shape \(3,\).*\(3, 1\)"):
        nn.CrossEntropy()(p, xp.asarray([[0], [1], [2]]))


def test_nan_inputs_raise(xp, rng):
    p = rng.random((3, 4)) * 0.8 + 0.1
    bad = p.copy()
    bad[1, 2] = numpy.nan
    with pytest.raises(ValueError, match=r"pred contains 1 non-finite"):
        nn.BinaryCrossEntropy(check=True)(xp.asarray(bad), xp.asarray(p))
    with pytest.raises(ValueError, match=r"target contains 1 non-finite"):
        nn.BinaryCrossEntropy(check=True)(xp.asarray(p), xp.asarray(bad))
    q = probs(rng, 3, 4)
    q[0, 0] = numpy.inf
    with pytest.raises(ValueError, match=r"probs contains 1 non-finite"):
        nn.CrossEntropy(check=True)(xp.asarray(q), xp.asarray([0, 1, 2]))


def test_bce_shape_dtype_and_range_errors(xp, rng):
    p = xp.asarray(rng.random((3, 4)))
    with pytest.raises(ValueError, match=r"same shape.*\(3, 4\).*\(4, 3\)"):
        nn.BinaryCrossEntropy()(p, xp.asarray(rng.random((4, 3))))
    with pytest.raises(TypeError, match="same dtype"):
        nn.BinaryCrossEntropy()(p, p.astype(numpy.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        nn.BinaryCrossEntropy(check=True)(p, p * 255)
    with pytest.raises(RuntimeError, match="before forward"):
        nn.BinaryCrossEntropy().backward()


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_bce_from_logits_is_the_same_loss(xp, rng, dtype):
    z = xp.asarray((4 * rng.standard_normal((6, 7))).astype(dtype))
    t = xp.asarray(rng.random((6, 7)).astype(dtype))
    sig, bce = nn.Sigmoid(), nn.BinaryCrossEntropy()
    p = sig(z)
    from_probs = float(bce(p, t))
    from_logits = float(bce(p, t, logits=sig.logits))
    zh, th = to_numpy(z).astype(numpy.float64), to_numpy(t).astype(numpy.float64)
    exact = numpy.mean(numpy.logaddexp(0, zh) - th * zh)
    rtol = 1e-6 if dtype == numpy.float32 else 1e-13
    assert from_logits == pytest.approx(exact, rel=rtol)
    # from probabilities float32 loses digits in log(1 - p) near p = 1: the logits win
    assert from_probs == pytest.approx(exact, rel=100 * rtol)


def test_bce_from_logits_exact_where_probabilities_saturate(xp):
    z = xp.asarray(numpy.array([[30.0, -30.0, 1e4, -1e4]], dtype=numpy.float32))
    t = xp.asarray(numpy.array([[0.5, 0.5, 0.0, 1.0]], dtype=numpy.float32))
    sig, bce = nn.Sigmoid(), nn.BinaryCrossEntropy()
    value = float(bce(sig(z), t, logits=sig.logits))
    zh, th = to_numpy(z).astype(numpy.float64), to_numpy(t).astype(numpy.float64)
    assert value == pytest.approx(numpy.mean(numpy.logaddexp(0, zh) - th * zh), rel=1e-6)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_ce_gradient_at_zero_probability_is_clamped_at_the_dtypes_eps(dtype):
    """-1 / (N * p) with p raised to the machine epsilon of the probabilities' own dtype."""
    p = numpy.array([[1.0, 0.0], [0.5, 0.5]], dtype=dtype)
    loss = nn.CrossEntropy()
    loss(p, numpy.array([1, 0]))
    g = loss.backward()
    assert g[0, 1] == pytest.approx(-1.0 / (2 * numpy.finfo(dtype).eps), rel=1e-6)
    assert g[1, 0] == pytest.approx(-1.0 / (2 * 0.5)) and g[0, 0] == g[1, 1] == 0


def test_losses_name_themselves():
    assert repr(nn.CrossEntropy()) == "CrossEntropy()"
    assert repr(nn.BinaryCrossEntropy()) == "BinaryCrossEntropy()"


def test_cross_entropy_names_what_is_wrong_with_its_inputs():
    ce, p = nn.CrossEntropy(), numpy.full((2, 3), 1 / 3)
    cases = [
        ((numpy.ones(3), numpy.array([0])), ValueError,
         r"^CrossEntropy\(\): expected probs of shape \(N, C\), got \(3,\)$"),
        (([[0.5, 0.5]], numpy.array([0])), ValueError, r"expected probs of shape \(N, C\), got \(\)$"),
        ((numpy.ones((2, 3), numpy.int64), numpy.array([0, 1])), TypeError,
         r"^CrossEntropy\(\): expected floating probs, got int64$"),
        ((p, numpy.array([0, 1, 2])), ValueError,
         r"^CrossEntropy\(\): expected labels of shape \(2,\) for probs of shape \(2, 3\), got \(3,\)$"),
        ((p, [0, 1]), ValueError, r"for probs of shape \(2, 3\), got \(\)$"),
        ((p, numpy.array([0.0, 1.0])), TypeError,
         r"^CrossEntropy\(\): labels must be integers \(class indices\), got float64$"),
        ((numpy.ones((0, 3)), numpy.zeros(0, numpy.int64)), ValueError,
         r"^CrossEntropy\(\): got an empty batch$"),
    ]
    for args, kind, message in cases:
        with pytest.raises(kind, match=message):
            ce(*args)
    assert float(ce(p, numpy.array([0, 1], numpy.uint8))) == pytest.approx(numpy.log(3))


# -- what each refusal says, and when value checks run ------------------------

def test_bce_names_what_is_wrong_with_pred_or_target():
    bce, p = nn.BinaryCrossEntropy(), numpy.full((2, 3), 0.5)
    with pytest.raises(TypeError, match=r"^BinaryCrossEntropy\(\): pred must be a floating-point array, got list$"):
        bce([[0.5]], p)
    with pytest.raises(TypeError, match=r"^BinaryCrossEntropy\(\): pred must be a floating-point array, got int64$"):
        bce(numpy.zeros((2, 3), numpy.int64), p)
    with pytest.raises(TypeError, match=r"^BinaryCrossEntropy\(\): target must be a floating-point array, "
                                        r"got int64$"):
        bce(p, numpy.zeros((2, 3), numpy.int64))
    with pytest.raises(ValueError, match=r"^BinaryCrossEntropy\(\): got an empty batch$"):
        bce(numpy.zeros((0, 3)), numpy.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"^BinaryCrossEntropy\(\): pred and target must have the same shape"):
        bce(p, p[:1])


def test_bce_logits_must_match_pred():
    bce, p = nn.BinaryCrossEntropy(), numpy.full((2, 3), 0.5)
    with pytest.raises(ValueError, match=r"^BinaryCrossEntropy\(\): logits must match pred, got \(2, 2\) "
                                         r"float64 for pred \(2, 3\) float64$"):
        bce(p, p, logits=numpy.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"logits must match pred, got \(2, 3\) float32 for pred \(2, 3\) float64$"):
        bce(p, p, logits=numpy.zeros((2, 3), numpy.float32))


def test_value_checks_run_by_default_on_numpy_and_check_false_turns_them_off():
    p = numpy.full((2, 3), 0.5)
    with pytest.raises(ValueError, match=r"target values must lie in \[0, 1\], got \[0\.5, 1\.5\]"):
        nn.BinaryCrossEntropy()(p, numpy.array([[0.5] * 3, [1.5] * 3]))
    nn.BinaryCrossEntropy(check=False)(p, numpy.array([[0.5] * 3, [1.5] * 3]))
    with pytest.raises(ValueError, match=r"^BinaryCrossEntropy\(\): pred contains 1 non-finite value"):
        nn.BinaryCrossEntropy()(numpy.array([[0.5, numpy.nan]]), numpy.full((1, 2), 0.5))
    assert numpy.isnan(nn.BinaryCrossEntropy(check=False)(numpy.array([[0.5, numpy.nan]]),
                                                           numpy.full((1, 2), 0.5)))


def test_a_non_finite_loss_from_finite_inputs_is_reported():
    """Infinite logits (not among the checked inputs) give inf - inf: the loss itself is named."""
    p, t = numpy.full((1, 2), 0.5), numpy.full((1, 2), 0.5)
    with pytest.raises(ValueError, match=r"^BinaryCrossEntropy\(\): the loss is not finite although its "
                                         r"inputs are$"):
        with numpy.errstate(invalid="ignore"):
            nn.BinaryCrossEntropy()(p, t, logits=numpy.array([[numpy.inf, 0.0]]))


def test_on_a_device_the_value_checks_are_off_by_default(monkeypatch):
    """With device (CuPy) arrays, check=None runs no value check: each would wait for the device.

    The stand-in: tests/helpers/device_double.py's arrays, which fail on any read back to the host,
    owned by a cupy stand-in as nanoae.backend sees it."""
    from helpers.device_double import NoHostReads, device_module  # noqa: PLC0415

    from nanoae import backend  # noqa: PLC0415

    def owner(*arrays):
        return device_module if any(isinstance(a, NoHostReads) for a in arrays) else numpy

    monkeypatch.setattr(backend, "_cupy", types.SimpleNamespace(ndarray=NoHostReads, get_array_module=owner))
    rng = numpy.random.default_rng(0)
    p, t = device_module.asarray(rng.random((3, 4))), device_module.asarray(rng.random((3, 4)))
    bce = nn.BinaryCrossEntropy()
    bce(p, t), bce.backward(), bce.logits_grad(), bce(p, t, logits=device_module.asarray(rng.random((3, 4))))
    q, labels = device_module.asarray(probs(rng, 3, 4)), device_module.asarray(numpy.array([0, 3, 1]))
    ce = nn.CrossEntropy()
    ce(q, labels), ce.backward(), ce.logits_grad()


# -- label smoothing -------------------------------------------------------------

def smoothed_ce_reference(p, labels, eps):
    """-(1/N) sum_n sum_c q[n, c] log p[n, c], q = (1 - eps) onehot + eps / C, in loops."""
    n, c = p.shape
    total = 0.0
    for i in range(n):
        for k in range(c):
            q = (1 - eps) * (k == labels[i]) + eps / c
            total += q * numpy.log(p[i, k])
    return -total / n


def test_label_smoothing_value_matches_the_formula(xp, rng):
    p, labels = probs(rng, 6, 4), numpy.array([0, 3, 1, 1, 2, 0])
    for eps in (0.1, 0.3):
        got = float(nn.CrossEntropy(label_smoothing=eps)(xp.asarray(p), xp.asarray(labels)))
        assert got == pytest.approx(smoothed_ce_reference(p, labels, eps), rel=1e-13), eps


def test_label_smoothing_zero_is_bit_identical_to_the_plain_loss(xp, rng):
    p = xp.asarray(probs(rng, 6, 4).astype(numpy.float32))
    labels = xp.asarray([0, 3, 1, 1, 2, 0])
    plain, zero = nn.CrossEntropy(), nn.CrossEntropy(label_smoothing=0.0)
    assert to_numpy(plain(p, labels)).tobytes() == to_numpy(zero(p, labels)).tobytes()
    for grad in ("backward", "logits_grad"):
        assert to_numpy(getattr(plain, grad)()).tobytes() == to_numpy(getattr(zero, grad)()).tobytes()
    assert repr(zero) == "CrossEntropy()"
    # as before, only the true class's probability is read: another class's value changes nothing
    other = to_numpy(p).copy()
    other[0, 1] = numpy.nan
    assert numpy.isfinite(float(nn.CrossEntropy(label_smoothing=0.0, check=False)(xp.asarray(other),
                                                                                  labels)))
    assert repr(nn.CrossEntropy(label_smoothing=0.1)) == "CrossEntropy(label_smoothing=0.1)"


def test_gradcheck_label_smoothing_plain_and_fused(xp, rng):
    labels = xp.asarray([0, 3, 1, 2, 2])
    nn.gradcheck(nn.CrossEntropy(label_smoothing=0.2), xp.asarray(probs(rng, 5, 4)), labels)
    model, loss = nn.Sequential(nn.Softmax()), nn.CrossEntropy(label_smoothing=0.2)
    assert loss.fuses_with(model[-1])
    nn.gradcheck((model, loss), xp.asarray(2 * rng.standard_normal((5, 4))), labels)


def test_label_smoothing_fused_gradient_is_p_minus_q_over_n_and_the_chain_rule(xp, rng):
    z, labels, eps = xp.asarray(rng.standard_normal((3, 4))), xp.asarray([1, 0, 3]), 0.1
    soft, ce = nn.Softmax(), nn.CrossEntropy(label_smoothing=eps)
    p = soft(z)
    ce(p, labels)
    q = numpy.full((3, 4), eps / 4)
    q[[0, 1, 2], [1, 0, 3]] += 1 - eps
    numpy.testing.assert_allclose(to_numpy(ce.logits_grad()), (to_numpy(p) - q) / 3, rtol=1e-13)
    numpy.testing.assert_allclose(to_numpy(ce.logits_grad()), to_numpy(soft.backward(ce.backward())),
                                  rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_label_smoothing_finite_where_a_probability_is_zero(xp, dtype):
    p = xp.asarray(numpy.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]], dtype=dtype))
    loss = nn.CrossEntropy(label_smoothing=0.1)
    value = loss(p, xp.asarray([1, 0]))
    assert numpy.isfinite(float(value)) and to_numpy(value).dtype == dtype
    for g in (loss.backward(), loss.logits_grad()):
        assert numpy.isfinite(to_numpy(g)).all() and to_numpy(g).dtype == dtype


def test_label_smoothing_must_be_a_probability_below_one():
    for eps in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"CrossEntropy: label_smoothing must lie in \[0, 1\)"):
            nn.CrossEntropy(label_smoothing=eps)

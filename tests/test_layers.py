"""Layers: forward against naive references, gradient checks, dtypes, errors."""

import re

import numpy
import pytest
from helpers.learner_run import Tanh, data

import nanoae as nn
from nanoae.backend import to_numpy

F64 = numpy.float64


def away_from_zero(rng, shape, margin=0.1):
    """Standard normal values pushed at least ``margin`` away from 0 (ReLU's kink)."""
    a = rng.standard_normal(shape)
    return numpy.where(a >= 0, a + margin, a - margin)


# -- forward against obviously correct references -----------------------------

def test_dense_forward_matches_reference(xp, rng):
    layer = nn.Dense(5, 3, dtype=F64, rng=0)
    x = rng.standard_normal((4, 5))
    y = to_numpy(layer(xp.asarray(x)))
    W, b = to_numpy(layer.W.data), to_numpy(layer.b.data)
    expected = numpy.array([[sum(x[n, i] * W[i, o] for i in range(5)) + b[o] for o in range(3)]
                            for n in range(4)])
    numpy.testing.assert_allclose(y, expected, rtol=1e-12)


def test_dense_init_is_seeded_he_normal():
    a, b = nn.Dense(400, 300, rng=7), nn.Dense(400, 300, rng=7)
    numpy.testing.assert_array_equal(to_numpy(a.W.data), to_numpy(b.W.data))
    assert abs(float(to_numpy(a.W.data).std()) - (2 / 400) ** 0.5) < 0.002
    assert not to_numpy(a.b.data).any()
    assert not numpy.array_equal(to_numpy(a.W.data), to_numpy(nn.Dense(400, 300, rng=8).W.data))


def test_relu_sigmoid_softmax_forward(xp):
    x = numpy.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    numpy.testing.assert_array_equal(to_numpy(nn.ReLU()(xp.asarray(x))), [[0, 0, 0, 0.5, 3.0]])
    numpy.testing.assert_allclose(to_numpy(nn.Sigmoid()(xp.asarray(x))), 1 / (1 + numpy.exp(-x)),
                                  rtol=1e-14)
    e = numpy.exp(x)
    numpy.testing.assert_allclose(to_numpy(nn.Softmax()(xp.asarray(x))), e / e.sum(), rtol=1e-14)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_stability_rows(xp, dtype):
    x = xp.asarray(numpy.array([[1e4, 0.0, -1e4], [-1000.0, 1.0, -1000.0], [5.0, 5.0, 5.0]],
                               dtype=dtype))
    p = to_numpy(nn.Softmax()(x))
    assert numpy.isfinite(p).all()
    numpy.testing.assert_allclose(p, [[1, 0, 0], [0, 1, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-6)
    s = to_numpy(nn.Sigmoid()(xp.asarray(numpy.array([[-1e4, 0.0, 1e4]], dtype=dtype))))
    numpy.testing.assert_allclose(s, [[0.0, 0.5, 1.0]], atol=1e-30)  # RuntimeWarnings are errors here


# -- gradient checks (float64, random upstream gradient) ----------------------

def test_gradcheck_dense(xp, rng):
    nn.gradcheck(nn.Dense(5, 4, dtype=F64, rng=1), xp.asarray(rng.standard_normal((3, 5))))


def test_gradcheck_relu(xp, rng):
    nn.gradcheck(nn.ReLU(), xp.asarray(away_from_zero(rng, (4, 5))))


def test_gradcheck_sigmoid(xp, rng):
    nn.gradcheck(nn.Sigmoid(), xp.asarray(3 * rng.standard_normal((4, 5))))


def test_gradcheck_softmax(xp, rng):
    nn.gradcheck(nn.Softmax(), xp.asarray(2 * rng.standard_normal((4, 6))))


def test_gradcheck_normalize(xp, rng):
    nn.gradcheck(nn.Normalize(), xp.asarray(rng.standard_normal((4, 5))))


def test_normalize_gives_unit_rows_in_the_same_direction(xp):
    x = numpy.array([[3.0, 4.0], [0.0, -2.0], [0.5, 0.0]])
    y = to_numpy(nn.Normalize()(xp.asarray(x)))
    numpy.testing.assert_allclose(y, [[0.6, 0.8], [0.0, -1.0], [1.0, 0.0]], rtol=1e-9)


def test_normalize_keeps_a_zero_row_finite(xp):
    layer = nn.Normalize()
    y = layer(xp.zeros((2, 3)))
    g = layer.backward(xp.ones((2, 3)))
    assert numpy.isfinite(to_numpy(y)).all() and numpy.isfinite(to_numpy(g)).all()
    assert not to_numpy(y).any()


def test_normalize_backward_drops_the_component_along_the_output(xp, rng):
    """dL/dx is orthogonal to x: making a code longer does not change its direction."""
    layer = nn.Normalize()
    x = xp.asarray(rng.standard_normal((3, 4)))
    layer(x)
    g = to_numpy(layer.backward(xp.asarray(rng.standard_normal((3, 4)))))
    numpy.testing.assert_allclose((g * to_numpy(x)).sum(axis=1), 0.0, atol=1e-12)


# -- contracts every layer keeps ----------------------------------------------

def all_layers(dtype):
    return [nn.Dense(6, 4, dtype=dtype, rng=0), nn.ReLU(), nn.Sigmoid(), nn.Softmax(), nn.Normalize()]


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_dtype_discipline(xp, rng, dtype):
    for layer in all_layers(dtype):
        x = xp.asarray(away_from_zero(rng, (3, 6)).astype(dtype))
        y = layer(x)
        assert y.dtype == dtype, layer
        g = layer.backward(xp.asarray(rng.standard_normal(y.shape).astype(dtype)))
        assert g.dtype == dtype, layer
        for p in layer.parameters():
            assert p.data.dtype == dtype and p.grad.dtype == dtype, (layer, p)


def test_forward_does_not_modify_input(xp, rng):
    for layer in all_layers(F64):
        x_host = rng.standard_normal((3, 6))
        x = xp.asarray(x_host)
        y = layer(x)
        layer.backward(xp.asarray(rng.standard_normal(y.shape)))
        numpy.testing.assert_array_equal(to_numpy(x), x_host, err_msg=repr(layer))


def test_backward_twice_gives_same_grads(xp, rng):
    for layer in all_layers(F64):
        x = xp.asarray(away_from_zero(rng, (3, 6)))
        g = xp.asarray(rng.standard_normal(layer(x).shape))
        first = to_numpy(layer.backward(g)).copy()
        pgrads = [to_numpy(p.grad).copy() for p in layer.parameters()]
        numpy.testing.assert_array_equal(to_numpy(layer.backward(g)), first)
        for p, before in zip(layer.parameters(), pgrads):
            numpy.testing.assert_array_equal(to_numpy(p.grad), before)  # set, not accumulated


# -- errors that name the layer and the shapes --------------------------------

def test_dense_wrong_width_names_layer_and_shapes(xp):
    layer = nn.Dense(784, 128)
    with pytest.raises(ValueError, match=r"Dense\(784, 128\).*\(N, 784\).*\(2, 783\)"):
        layer(xp.zeros((2, 783), dtype=numpy.float32))


def test_model_fed_images_is_told_to_flatten(xp):
    model = nn.Sequential(nn.Dense(784, 10), nn.Softmax())
    with pytest.raises(ValueError, match=r"layer 0 Dense\(784, 10\).*\(5, 28, 28\).*reshape"):
        model(xp.zeros((5, 28, 28), dtype=numpy.float32))


@pytest.mark.parametrize("bad", [numpy.float64, numpy.int64, numpy.uint8])
def test_dense_wrong_dtype(xp, bad):
    with pytest.raises(TypeError, match=r"Dense\(4, 2\).*float32.*" + numpy.dtype(bad).name):
        nn.Dense(4, 2)(xp.zeros((3, 4), dtype=bad))


def test_empty_batch_and_backward_before_forward(xp):
    with pytest.raises(ValueError, match="empty batch"):
        nn.Dense(4, 2)(xp.zeros((0, 4), dtype=numpy.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        nn.ReLU().backward(xp.zeros((2, 2)))
    with pytest.raises(TypeError, match="ReLU.*floating"):
        nn.ReLU()(xp.zeros((2, 2), dtype=numpy.int32))


def test_backward_shape_mismatch(xp):
    layer = nn.Dense(4, 2, dtype=F64)
    layer(xp.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"Dense\(4, 2\).*\(3, 2\).*\(3, 3\)"):
        layer.backward(xp.zeros((3, 3)))


def test_sigmoid_of_a_real_sized_batch(rng):
    x = (5 * rng.standard_normal((256, 784))).astype(numpy.float32)
    numpy.testing.assert_allclose(nn.Sigmoid()(x), 1 / (1 + numpy.exp(-x.astype(F64))), rtol=2e-6)


@pytest.mark.parametrize("init, std", [("he", numpy.sqrt(2 / 400)),
                                       ("glorot", numpy.sqrt(2 / (400 + 300))),
                                       ("glorot_uniform", numpy.sqrt(2 / (400 + 300)))])
def test_initial_weights_have_the_documented_spread(init, std):
    """He: std sqrt(2/in); Glorot: std sqrt(2/(in+out)), normal or uniform on +-sqrt(6/(in+out))."""
    w = to_numpy(nn.Dense(400, 300, rng=0, init=init, dtype=F64).W.data)
    assert w.std() == pytest.approx(std, rel=0.01)  # 120,000 draws: the std is within ~0.3 %
    assert abs(w.mean()) < 3 * std / numpy.sqrt(w.size)
    if init == "glorot_uniform":
        assert abs(w).max() <= numpy.sqrt(6 / 700) and abs(w).max() > 0.99 * numpy.sqrt(6 / 700)
    with pytest.raises(ValueError, match="init must be"):
        nn.Dense(2, 2, init="xavier")


def test_softmax_works_on_the_last_axis_of_any_shape(rng):
    """A (2, 3, 4) input is six rows of four: forward and backward as row by row."""
    x = rng.standard_normal((2, 3, 4))
    g = rng.standard_normal((2, 3, 4))
    layer = nn.Softmax()
    y = layer(x)
    dx = layer.backward(g)  # the input gradient, by default
    for row_x, row_g, row_y, row_dx in zip(x.reshape(6, 4), g.reshape(6, 4), y.reshape(6, 4),
                                           dx.reshape(6, 4)):
        e = numpy.exp(row_x - row_x.max())
        p = e / e.sum()
        numpy.testing.assert_allclose(row_y, p, rtol=1e-12)
        jacobian = numpy.diag(p) - numpy.outer(p, p)  # dy_i/dx_k = y_i (delta_ik - y_k)
        numpy.testing.assert_allclose(row_dx, jacobian.T @ row_g, rtol=1e-10, atol=1e-14)


def test_normalize_works_on_the_last_axis_of_any_shape(rng):
    """A (2, 3, 4) input is six rows of four: forward and backward as row by row."""
    x = rng.standard_normal((2, 3, 4))
    g = rng.standard_normal((2, 3, 4))
    layer = nn.Normalize()
    y = layer(x)
    dx = layer.backward(g)
    for row_x, row_g, row_y, row_dx in zip(x.reshape(6, 4), g.reshape(6, 4), y.reshape(6, 4),
                                           dx.reshape(6, 4)):
        n = numpy.linalg.norm(row_x)
        numpy.testing.assert_allclose(row_y, row_x / n, rtol=1e-12)
        jacobian = (numpy.eye(4) - numpy.outer(row_y, row_y)) / n  # dy_i/dx_j, symmetric
        numpy.testing.assert_allclose(row_dx, jacobian @ row_g, rtol=1e-10, atol=1e-14)


# -- what each refusal says ---------------------------------------------------

def test_dense_input_errors_say_what_was_expected_and_found():
    layer = nn.Dense(4, 2)
    with pytest.raises(ValueError, match=r"^Dense\(4, 2\): expected input of shape \(N, 4\), got \(3, 5\)$"):
        layer(numpy.zeros((3, 5), numpy.float32))
    with pytest.raises(ValueError, match=r"^Dense\(4, 2\): expected input of shape \(N, 4\), got \(4,\)$"):
        layer(numpy.zeros(4, numpy.float32))
    with pytest.raises(ValueError, match=r"^Dense\(4, 2\): expected input of shape \(N, 4\), got list$"):
        layer([[0.0] * 4])
    with pytest.raises(ValueError, match=r"got \(2, 2, 2\); flatten it first: x\.reshape\(len\(x\), -1\)$"):
        layer(numpy.zeros((2, 2, 2), numpy.float32))
    # a 1-D batch is not images: no advice to flatten, even where its width would fit
    with pytest.raises(ValueError, match=r"^Dense\(1, 2\): expected input of shape \(N, 1\), got \(5,\)$"):
        nn.Dense(1, 2)(numpy.zeros(5, numpy.float32))


def test_dense_dtype_errors_give_the_fix_for_what_was_passed():
    layer = nn.Dense(4, 2)
    with pytest.raises(TypeError, match=r"^Dense\(4, 2\): expected input of dtype float32, got uint8; "
                                        r"pixels\? scale them: x\.astype\(float32\) / 255$"):
        layer(numpy.zeros((2, 4), numpy.uint8))
    with pytest.raises(TypeError, match=r"^Dense\(4, 2\): expected input of dtype float32, got float64; "
                                        r"convert once, outside the training loop: x\.astype\(float32\)$"):
        layer(numpy.zeros((2, 4), numpy.float64))


def test_dense_construction_errors():
    for sizes in ((0, 3), (3, 0)):
        with pytest.raises(ValueError, match=rf"^Dense: sizes must be positive, got \({sizes[0]}, {sizes[1]}\)$"):
            nn.Dense(*sizes)
    with pytest.raises(TypeError, match=r"^Dense: dtype must be floating point, got int32$"):
        nn.Dense(2, 2, dtype=numpy.int32)


@pytest.mark.parametrize("make", [lambda: nn.Dense(3, 2), nn.ReLU, nn.Sigmoid, nn.Softmax, nn.Normalize])
def test_every_layer_refuses_backward_before_forward(make):
    layer = make()
    with pytest.raises(RuntimeError, match=rf"^{re.escape(layer.name)}: backward\(\) called before forward\(\)$"):
        layer.backward(numpy.ones((2, 2), numpy.float32))


def test_a_fresh_sigmoid_has_no_logits_yet():
    assert nn.Sigmoid().logits is None


@pytest.mark.parametrize("make", [nn.ReLU, nn.Sigmoid, nn.Softmax, nn.Normalize])
def test_activations_name_themselves_when_given_integers_or_non_arrays(make):
    layer = make()
    with pytest.raises(TypeError, match=rf"^{make.__name__}\(\): expected a floating-point array, got int64$"):
        layer(numpy.zeros((2, 3), numpy.int64))
    with pytest.raises(TypeError, match=rf"^{make.__name__}\(\): expected a floating-point array, got list$"):
        layer([[0.0, 1.0]])


def test_backward_names_a_wrong_grad_dtype():
    relu = nn.ReLU()
    relu(numpy.ones((2, 3), numpy.float32))
    with pytest.raises(TypeError, match=r"^ReLU\(\): backward expected grad_out of dtype float32, got float64$"):
        relu.backward(numpy.ones((2, 3)))


def test_sigmoid_is_exact_up_to_its_clip_bound():
    """The clip sits at log(max) - 1 (87.7 in float32): just inside it, nothing is clipped."""
    x = numpy.array([[-87.0, 87.0]], numpy.float32)
    expected = 1 / (1 + numpy.exp(-x.astype(numpy.float64)))
    assert numpy.allclose(nn.Sigmoid()(x), expected, rtol=1e-5, atol=0)


def test_a_parameter_names_itself_with_its_shape_and_dtype():
    from nanoae.parameter import Parameter  # noqa: PLC0415

    assert repr(Parameter(numpy.zeros((2, 3)))) == "Parameter(?, shape=(2, 3), dtype=float64)"
    assert repr(Parameter(numpy.zeros(2, numpy.float32), name="W")) == "Parameter(W, shape=(2,), dtype=float32)"
    assert Parameter(numpy.zeros(2)).name == ""


def test_a_forward_hook_sees_what_the_layer_returned_until_it_is_removed():
    calls = []
    tanh = Tanh()
    model = nn.Sequential(nn.Dense(6, 5, rng=0), tanh)
    handle = tanh.register_forward_hook(lambda layer, x, y: calls.append((layer, x.shape, y)))
    out = model(data()[0][:4])
    assert len(calls) == 1 and calls[0][0] is tanh and calls[0][1] == (4, 5) and calls[0][2] is out
    assert Tanh().forward_hooks == ()  # hooks are the layer's own, never shared with another
    handle.remove()
    model(data()[0][:4])
    assert len(calls) == 1 and tanh.forward_hooks == ()


# -- Dropout: a random mask while training, the identity while evaluating -----

def test_dropout_forward_is_the_formula_with_the_mask_of_its_rows(xp, rng):
    x_host = rng.standard_normal((6, 7))
    layer = nn.Dropout(0.4, stream=2)
    nn.seek_draws(layer, seed=3, epoch=2, position=10)
    y = to_numpy(layer(xp.asarray(x_host)))
    m = nn.layers.keep_mask(3, 2, 10, 16, 7, 0.4, stream=2)
    numpy.testing.assert_allclose(y, x_host * m / (1 - 0.4), rtol=1e-15)  # y = x * m / (1 - p)
    assert 0 < (~m).sum() < m.size  # some dropped, some kept: the check above is not vacuous
    g = rng.standard_normal((6, 7))
    numpy.testing.assert_allclose(to_numpy(layer.backward(xp.asarray(g))), g * m / (1 - 0.4),
                                  rtol=1e-15)  # dL/dx = g * m / (1 - p), the same mask


def test_keep_mask_stream_0_is_the_input_maskings_bits():
    """augment.mask_bits and keep_mask draw the same bits (stream 0); other streams others."""
    from nanoae.train.augment import mask_bits  # noqa: PLC0415

    for features in (784, 13):
        bits = numpy.unpackbits(mask_bits(5, 1, 7, 20, features, 0.3), axis=1)[:, :features]
        numpy.testing.assert_array_equal(bits.astype(bool), nn.layers.keep_mask(5, 1, 7, 20, features, 0.3))
        assert not numpy.array_equal(bits.astype(bool),
                                     nn.layers.keep_mask(5, 1, 7, 20, features, 0.3, stream=1))


def test_dropout_drops_a_fraction_p_and_keeps_the_mean():
    x = numpy.ones((400, 500), dtype=numpy.float32)
    y = nn.Dropout(0.3)(x)
    assert (y == 0).mean() == pytest.approx(0.3, abs=0.005)
    assert y.mean() == pytest.approx(1.0, abs=0.01) and y.dtype == numpy.float32
    assert set(numpy.unique(y)) == {0.0, numpy.float32(1 / 0.7)}


def test_dropout_while_evaluating_is_the_identity_forward_and_backward(xp, rng):
    x, g = xp.asarray(rng.standard_normal((4, 5))), xp.asarray(rng.standard_normal((4, 5)))
    model = nn.Sequential(nn.Dense(5, 5, dtype=F64, rng=0), nn.Dropout(0.5))
    nn.set_training(model, False)
    assert [layer.training for layer in model.leaves()] == [False, False]
    y = model(x)
    numpy.testing.assert_array_equal(to_numpy(y), to_numpy(model[0](x)))
    assert model[1].backward(g) is g
    nn.set_training(model, True)
    assert not numpy.array_equal(to_numpy(model(x)), to_numpy(y))


def test_dropout_masks_depend_on_the_rows_place_only_not_on_how_a_batch_is_split():
    """Rows 0-7 in one batch, or 0-2 and 3-7 in two (two ranks' shards), get the same masks;
    another run seed, epoch or stream gets others."""
    x = numpy.ones((8, 30))
    whole = nn.Dropout(0.5)
    nn.seek_draws(nn.Sequential(whole), seed=4, epoch=1, position=0)
    parts = []
    for start, stop in ((0, 3), (3, 8)):
        layer = nn.Dropout(0.5)
        nn.seek_draws(layer, seed=4, epoch=1, position=start)
        parts.append(layer(x[start:stop]))
    numpy.testing.assert_array_equal(whole(x), numpy.concatenate(parts))
    numpy.testing.assert_array_equal(whole(x), whole(x))  # no state moves on: the same call, the same mask
    for seed, epoch, stream in ((5, 1, 1), (4, 2, 1), (4, 1, 2)):
        layer = nn.Dropout(0.5, stream=stream)
        nn.seek_draws(layer, seed=seed, epoch=epoch, position=0)
        assert not numpy.array_equal(layer(x), whole(x)), (seed, epoch, stream)


def test_gradcheck_dropout_training(xp, rng):
    layer = nn.Dropout(0.3)
    x = xp.asarray(rng.standard_normal((4, 5)))
    assert (to_numpy(layer(x)) == 0).any()  # the mask drops something: checked in training mode
    nn.gradcheck(layer, x)


def test_a_dropout_that_forgot_the_scale_fails_the_check(xp, rng):
    class Unscaled(nn.Dropout):
        def backward(self, grad_out):
            return super().backward(grad_out) * (1 - self.p)  # the 1 / (1 - p) left out

    assert not nn.gradcheck(Unscaled(0.3), xp.asarray(rng.standard_normal((4, 5))),
                            raise_on_failure=False).ok


def test_dropout_refuses_impossible_p_and_names_itself():
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"Dropout: p must be a probability in \[0, 1\)"):
            nn.Dropout(p)
    with pytest.raises(ValueError, match=r"Dropout: stream must be >= 1 \(0 is the input masking's\)"):
        nn.Dropout(0.5, stream=0)
    layer = nn.Sequential(nn.Dense(3, 3), nn.Dropout(0.2))[1]
    assert layer.name == "layer 1 Dropout(0.2)"
    with pytest.raises(RuntimeError, match=r"layer 1 Dropout\(0.2\): backward\(\) called before"):
        layer.backward(numpy.zeros((2, 3), numpy.float32))
    with pytest.raises(TypeError, match=r"Dropout\(0.2\): expected a floating-point array"):
        layer(numpy.zeros((2, 3), numpy.int64))
    layer(numpy.zeros((2, 3), numpy.float32))
    with pytest.raises(ValueError, match=r"Dropout\(0.2\): backward expected grad_out of shape \(2, 3\)"):
        layer.backward(numpy.zeros((3, 3), numpy.float32))


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_dropout_keeps_the_dtype_and_leaves_its_input_alone(xp, rng, dtype):
    x_host = rng.standard_normal((3, 6)).astype(dtype)
    x = xp.asarray(x_host)
    layer = nn.Dropout(0.5)
    y = layer(x)
    g = layer.backward(xp.asarray(rng.standard_normal((3, 6)).astype(dtype)))
    assert y.dtype == dtype and g.dtype == dtype
    numpy.testing.assert_array_equal(to_numpy(x), x_host)

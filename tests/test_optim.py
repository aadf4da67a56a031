"""Adam against its closed form, SGD, flat-buffer packing, optimizer state."""

import math

import numpy
import pytest

import nanoae as nn
from nanoae.backend import to_numpy
from nanoae.parameter import Parameter, pack


def adam_reference(w, grads, lr, b1, b2, eps):
    """Algorithm 1 of Kingma & Ba, written out literally, one step per gradient."""
    m = numpy.zeros_like(w)
    v = numpy.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        w = w - lr * m_hat / (numpy.sqrt(v_hat) + eps)
    return w, m, v


@pytest.mark.parametrize("eps", [1e-8, 1e-3])
def test_adam_matches_closed_form(xp, rng, eps):
    w0 = rng.standard_normal((3, 4))
    b0 = rng.standard_normal(4)
    p, q = Parameter(xp.asarray(w0.copy())), Parameter(xp.asarray(b0.copy()))
    opt = nn.Adam([p, q], lr=0.01, betas=(0.8, 0.95), eps=eps)
    grads_w = [rng.standard_normal((3, 4)) * s for s in (1.0, 0.01, 3.0, 0.5, 1e-4)]
    grads_b = [rng.standard_normal(4) for _ in grads_w]
    for gw, gb in zip(grads_w, grads_b):
        p.grad[...] = xp.asarray(gw)
        q.grad[...] = xp.asarray(gb)
        opt.step()
    w_ref, m_ref, v_ref = adam_reference(w0, grads_w, 0.01, 0.8, 0.95, eps)
    numpy.testing.assert_allclose(to_numpy(p.data), w_ref, rtol=1e-12, atol=1e-15)
    numpy.testing.assert_allclose(to_numpy(q.data), adam_reference(b0, grads_b, 0.01, 0.8, 0.95, eps)[0],
                                  rtol=1e-12, atol=1e-15)
    numpy.testing.assert_allclose(to_numpy(opt.m[:12]).reshape(3, 4), m_ref, rtol=1e-12)
    numpy.testing.assert_allclose(to_numpy(opt.v[:12]).reshape(3, 4), v_ref, rtol=1e-12)
    assert opt.t == 5


def test_adam_first_step_moves_by_lr(xp):
    """At t = 1 the bias-corrected step is lr * g / (|g| + eps): ~lr for any |g| >> eps."""
    p = Parameter(xp.asarray(numpy.zeros(3)))
    p.grad[...] = xp.asarray([2.0, -1e-3, 50.0])
    nn.Adam([p], lr=0.1).step()
    numpy.testing.assert_allclose(to_numpy(p.data), [-0.1, 0.1, -0.1], rtol=1e-4)


def test_adam_keeps_float32(xp):
    p = Parameter(xp.asarray(numpy.ones((2, 2), dtype=numpy.float32)))
    opt = nn.Adam([p])
    p.grad[...] = 1
    opt.step()
    assert p.data.dtype == opt.m.dtype == opt.v.dtype == numpy.float32


def test_sgd_with_and_without_momentum(xp):
    p = Parameter(xp.asarray(numpy.array([1.0, 2.0])))
    opt = nn.SGD([p], lr=0.5, momentum=0.9)
    for _ in range(2):
        p.grad[...] = xp.asarray([1.0, -2.0])
        opt.step()
    # v1 = g, v2 = 0.9 g + g = 1.9 g; w = w0 - 0.5 (g + 1.9 g) = w0 - 1.45 g
    numpy.testing.assert_allclose(to_numpy(p.data), [1 - 1.45, 2 + 2.9])
    q = Parameter(xp.asarray(numpy.array([1.0])))
    q.grad[...] = 4
    nn.SGD([q], lr=0.25).step()
    assert float(q.data[0]) == 0.0


def test_pack_makes_views_and_keeps_values(xp, rng):
    model = nn.Sequential(nn.Dense(4, 3, dtype=numpy.float64, rng=0), nn.ReLU(),
                          nn.Dense(3, 2, dtype=numpy.float64, rng=1))
    before = [to_numpy(p.data).copy() for p in model.parameters()]
    flat = pack(model.parameters())
    assert len(flat) == 4 * 3 + 3 + 3 * 2 + 2
    for p, b in zip(model.parameters(), before):
        numpy.testing.assert_array_equal(to_numpy(p.data), b)
    flat.data[...] = 7  # writing the flat vector writes every parameter
    assert all(float(p.data.min()) == 7 for p in model.parameters())
    x = xp.asarray(rng.standard_normal((5, 4)))
    model.backward(model(x) * 0 + 1)  # layers write grads in place, into the flat buffer
    assert float(abs(flat.grad).sum()) > 0
    assert pack(model.parameters()) is flat  # packing again reuses the buffers


def test_optimizer_state_dict_round_trip(xp, rng):
    def make():
        p = Parameter(xp.asarray(numpy.zeros(5)))
        return p, nn.Adam([p], lr=0.01)
    p, opt = make()
    for _ in range(3):
        p.grad[...] = xp.asarray(rng.standard_normal(5))
        opt.step()
    state = opt.state_dict()
    p2, opt2 = make()
    p2.data[...] = p.data
    opt2.load_state_dict(state)
    assert opt2.t == 3
    g = xp.asarray(rng.standard_normal(5))
    p.grad[...] = g
    p2.grad[...] = g
    opt.step()
    opt2.step()
    numpy.testing.assert_array_equal(to_numpy(p.data), to_numpy(p2.data))
    bad = dict(state, m=numpy.zeros(4))
    with pytest.raises(ValueError, match=r"m expected shape \(5,\)"):
        opt2.load_state_dict(bad)


@pytest.mark.parametrize("kwargs", [dict(lr=0), dict(lr=-1), dict(betas=(1.0, 0.9)), dict(eps=0)])
def test_adam_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError, match="Adam"):
        nn.Adam([Parameter(numpy.zeros(2))], **kwargs)


def test_zero_grad(xp):
    p = Parameter(xp.asarray(numpy.zeros(3)))
    opt = nn.SGD([p], lr=1.0)
    p.grad[...] = 5
    opt.zero_grad()
    assert not to_numpy(p.grad).any()
    assert math.isclose(opt.lr, 1.0)


def test_adam_decoupled_weight_decay_is_adamw(xp, rng):
    w0 = rng.standard_normal(6)
    grads = [rng.standard_normal(6) for _ in range(3)]
    p = Parameter(xp.asarray(w0.copy()))
    opt = nn.Adam([p], lr=0.05, weight_decay=0.1)
    w, m, v = w0.copy(), numpy.zeros(6), numpy.zeros(6)
    for t, g in enumerate(grads, start=1):
        p.grad[...] = xp.asarray(g)
        opt.step()
        w = w * (1 - 0.05 * 0.1)  # AdamW: decay first, independent of the gradient
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - 0.05 * (m / (1 - 0.9 ** t)) / (numpy.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    numpy.testing.assert_allclose(to_numpy(p.data), w, rtol=1e-12)


def test_adam_on_a_large_vector_matches_closed_form(rng):
    w0 = rng.standard_normal(100_001)
    grads = [rng.standard_normal(100_001) for _ in range(3)]
    p = Parameter(w0.copy())
    opt = nn.Adam([p], lr=0.01, weight_decay=0.01)
    for g in grads:
        p.grad[...] = g
        opt.step()
    w, m, v = w0.copy(), 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        w = w * (1 - 0.01 * 0.01)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - 0.01 * (m / (1 - 0.9 ** t)) / (numpy.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    numpy.testing.assert_allclose(p.data, w, rtol=1e-12, atol=1e-15)

"""Adam and AdamW against their closed forms, SGD, overlapping optimizers, subnormals, state."""

import math

import numpy
import pytest
from helpers.device_double import use_double

import nanoae as nn
from nanoae.backend import to_numpy
from nanoae.parameter import Parameter


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu), "double"])
def xp(request, use_backend, monkeypatch):
    """Each backend, and the CPU double of a device array (tests/helpers/device_double.py), which
    refuses host arrays written into it as CuPy does."""
    return use_double(monkeypatch) if request.param == "double" else use_backend(request.param)


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
    numpy.testing.assert_allclose(to_numpy(opt.m[0]), m_ref, rtol=1e-12)
    numpy.testing.assert_allclose(to_numpy(opt.v[0]), v_ref, rtol=1e-12)
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
    assert p.data.dtype == opt.m[0].dtype == opt.v[0].dtype == numpy.float32


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


def test_adamw_decays_before_the_adam_step(xp, rng):
    w0 = rng.standard_normal(6)
    grads = [rng.standard_normal(6) for _ in range(3)]
    p = Parameter(xp.asarray(w0.copy()))
    opt = nn.AdamW([p], lr=0.05, weight_decay=0.1)
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
    opt = nn.AdamW([p], lr=0.01, weight_decay=0.01)
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


def test_adam_has_no_weight_decay_argument():
    """Adam's weight_decay in PyTorch is an L2 penalty; the decoupled rule is AdamW, by name."""
    with pytest.raises(TypeError):
        nn.Adam([Parameter(numpy.zeros(2))], weight_decay=0.1)


@pytest.mark.parametrize("make", [lambda ps: nn.SGD(ps, lr=1.0), lambda ps: nn.Adam(ps, lr=1.0)],
                         ids=["SGD", "Adam"])
def test_overlapping_optimizers_each_update_the_live_parameters(xp, make):
    """The defect of issue 10: a second optimizer over an overlapping set once moved the
    parameters into a new buffer, and the first kept stepping memory nobody read."""
    a, b, c = (nn.Dense(2, 2, rng=i) for i in range(3))
    o1 = make(a.parameters() + b.parameters())
    make(b.parameters() + c.parameters())
    o3 = make(a.parameters() + b.parameters())
    for opt in (o3, o1):
        before = [to_numpy(p.data).copy() for p in a.parameters() + b.parameters()]
        for p in a.parameters() + b.parameters():
            p.grad[...] = 1.0
        opt.step()
        # the first step of each (its own t = 1): SGD moves by lr * g = 1; Adam by
        # lr * m_hat / (sqrt(v_hat) + eps) = 1 / (1 + 1e-8), as m_hat = g and v_hat = g^2
        for p, old in zip(a.parameters() + b.parameters(), before):
            numpy.testing.assert_allclose(to_numpy(p.data), old - 1.0, rtol=1e-6, atol=1e-6,
                                          err_msg=f"{p} did not take its own step")


def test_freeze_then_unfreeze(xp, rng):
    """Train the head alone (encoder frozen), then everything: both phases move what they own."""
    enc, head = nn.Dense(4, 3, rng=0), nn.Dense(3, 2, rng=1)
    model = nn.Sequential(enc, nn.ReLU(), head)
    x = xp.asarray(rng.random((8, 4), dtype=numpy.float32))
    labels = xp.asarray(rng.integers(0, 2, 8))
    loss = nn.CrossEntropy()
    model_sm = nn.Sequential(model, nn.Softmax())
    head_only = nn.Adam(head.parameters(), lr=0.1)
    everything = nn.Adam(model.parameters(), lr=0.1)
    for opt, moving, still in ((head_only, head, enc), (everything, enc, None)):
        frozen = [to_numpy(p.data).copy() for p in (still.parameters() if still else [])]
        start = [to_numpy(p.data).copy() for p in moving.parameters()]
        for _ in range(3):
            loss(model_sm(x), labels)
            model_sm.backward_from_loss(loss)
            opt.step()
        assert all(not numpy.array_equal(to_numpy(p.data), s) for p, s in zip(moving.parameters(), start))
        for p, f in zip(still.parameters() if still else [], frozen):
            numpy.testing.assert_array_equal(to_numpy(p.data), f)


def test_a_parameter_given_twice_is_an_error():
    p = Parameter(numpy.zeros(2))
    with pytest.raises(ValueError, match="appears twice"):
        nn.Adam([p, p])


def _subnormals(a):
    a = numpy.abs(to_numpy(a))
    return int(((a > 0) & (a < numpy.finfo(a.dtype).tiny)).sum())


@pytest.mark.parametrize("optimizer", ["Adam", "SGD"])
def test_no_subnormals_in_optimizer_state_of_dead_units(xp, optimizer):
    """Units whose gradient is 0 for good (dead ReLUs): rounding alone leaves Adam's m a few
    ulps of the smallest subnormal forever; the periodic flush takes the state to exactly 0."""
    p = Parameter(xp.asarray(numpy.ones(1000, dtype=numpy.float32)))
    make = {"Adam": lambda **kw: nn.Adam([p], lr=1e-3, **kw),
            "SGD": lambda **kw: nn.SGD([p], lr=1e-3, momentum=0.9, **kw)}[optimizer]
    opt = make()
    p.grad[...] = 1.0
    opt.step()
    p.grad[...] = 0.0  # dead from now on
    for _ in range(2000):
        opt.step()
    for name in opt.state_names:
        assert all(_subnormals(a) == 0 for a in getattr(opt, name)), name
    assert float(abs(opt.m[0] if optimizer == "Adam" else opt.velocity[0]).max()) == 0.0
    # the same run with the flush switched off keeps subnormals: the test can fail
    p.data[...] = 1.0
    opt = make(flush_every=None)
    p.grad[...] = 1.0
    opt.step()
    p.grad[...] = 0.0
    for _ in range(2000):
        opt.step()
    state = opt.m[0] if optimizer == "Adam" else opt.velocity[0]
    assert _subnormals(state) == 1000


@pytest.mark.parametrize("flush_every", [100, None])
def test_no_subnormals_after_training_a_model_with_dead_units(rng, flush_every):
    """A small autoencoder-like model whose units die after learning a while: with the flush
    its Adam state holds no subnormal number; without it (None), it does."""
    model = nn.Sequential(nn.Dense(16, 8, rng=0), nn.ReLU(), nn.Dense(8, 16, rng=1), nn.Sigmoid())
    opt = nn.Adam(model.parameters(), lr=1e-3, flush_every=flush_every)
    loss = nn.BinaryCrossEntropy()
    x = rng.random((64, 16), dtype=numpy.float32)
    for step in range(1000):
        if step == 50:
            model[0].b.data[:4] = -100.0  # four units die: no input can switch them on again
        model.loss_value(loss, model(x), x)
        model.backward_from_loss(loss, input_grad=False)
        opt.step()
    assert float(abs(model[0].W.grad[:, :4]).max()) == 0.0  # really dead
    found = sum(_subnormals(a) for name in ("m", "v") for a in getattr(opt, name))
    assert (found == 0) == (flush_every is not None), found


def test_state_dict_restores_hyper_parameters(xp):
    p = Parameter(xp.asarray(numpy.zeros(3)))
    saved = nn.AdamW([p], lr=0.5, betas=(0.8, 0.9), eps=1e-4, weight_decay=0.3).state_dict()
    other = nn.AdamW([p])
    other.load_state_dict(saved)
    assert (other.lr, other.betas, other.eps, other.weight_decay) == (0.5, (0.8, 0.9), 1e-4, 0.3)


def test_in_place_adam_computes_the_plain_formula(xp, rng):
    """The fast in-place update and the textbook one agree to float32 rounding, step after step."""
    shapes = [(30, 20), (20,)]
    runs = {}
    for in_place in (True, False):
        params = [Parameter(xp.asarray(numpy.random.default_rng(i).standard_normal(s),
                                       dtype=numpy.float32)) for i, s in enumerate(shapes)]
        opt = nn.AdamW(params, lr=1e-2, weight_decay=0.01, in_place=in_place)
        grads = numpy.random.default_rng(7)
        for _ in range(20):
            for p in params:
                p.grad[...] = xp.asarray(grads.standard_normal(p.shape), dtype=numpy.float32)
            opt.step()
        runs[in_place] = [to_numpy(p.data) for p in params] + [to_numpy(m) for m in opt.m]
    for fast, plain in zip(runs[True], runs[False]):
        numpy.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-6)


def test_bce_from_logits_matches_its_plain_formula(xp, rng):
    from nanoae.losses import _bce_from_logits_plain

    z = xp.asarray(rng.standard_normal((64, 50)) * 6, dtype=numpy.float32)
    t = xp.asarray(rng.random((64, 50)), dtype=numpy.float32)
    p = nn.Sigmoid()(z)
    fast = float(nn.BinaryCrossEntropy()(p, t, logits=z))
    assert fast == pytest.approx(float(_bce_from_logits_plain(xp, p, t, z)), rel=1e-5)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize("in_place", [True, False])
def test_adam_follows_pytorchs_trajectory(name, in_place):
    """Ten steps of nanoae's Adam/AdamW and torch.optim's on the same gradients, in float64."""
    torch = pytest.importorskip("torch", reason="PyTorch is optional (pip install -e '.[bench]')")
    rng = numpy.random.default_rng(3)
    w0 = rng.standard_normal((5, 4))
    grads = [rng.standard_normal((5, 4)) * s for s in (1, 1e-3, 10, 0.5, 1, 2, 1e-2, 1, 3, 0.1)]
    kwargs = dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6)
    kwargs_wd = dict(kwargs, weight_decay=0.1) if name == "AdamW" else kwargs
    p = Parameter(w0.copy())
    ours = getattr(nn, name)([p], in_place=in_place, **kwargs_wd)
    t = torch.tensor(w0.copy(), requires_grad=True)
    theirs = getattr(torch.optim, name)([t], foreach=False, **kwargs_wd)
    for g in grads:
        p.grad[...] = g
        ours.step()
        t.grad = torch.tensor(g)
        theirs.step()
    numpy.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-12, atol=1e-14)


def _param(values):
    p = Parameter(numpy.asarray(values, dtype=numpy.float32), name="w")
    p.grad = numpy.zeros_like(p.data)
    return p


def test_defaults_are_the_documented_ones():
    """What a user who passes only the parameters (and SGD's lr) gets."""
    adam, adamw = nn.Adam([_param([1.0])]), nn.AdamW([_param([1.0])])
    for opt in (adam, adamw):
        assert (opt.lr, opt.betas, opt.eps, opt.in_place, opt.flush_every) == (
            1e-3, (0.9, 0.999), 1e-8, True, 100)
    sgd = nn.SGD([_param([1.0])], lr=0.1)
    assert (sgd.momentum, sgd.flush_every) == (0.0, 100)
    assert nn.AdamW([_param([1.0])], flush_every=None, in_place=False).flush_every is None
    assert nn.AdamW([_param([1.0])], in_place=False).in_place is False


@pytest.mark.parametrize("make, settings", [
    (lambda p: nn.SGD(p, lr=0.1, momentum=0.9), {"momentum": 0.9}),
    (lambda p: nn.Adam(p, betas=(0.8, 0.95), eps=1e-6), {"beta1": 0.8, "beta2": 0.95, "eps": 1e-6}),
    (lambda p: nn.AdamW(p, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.3),
     {"beta1": 0.8, "beta2": 0.95, "eps": 1e-6, "weight_decay": 0.3}),
])
def test_hyper_parameters_travel_with_the_state(make, settings):
    saved = make([_param([1.0, 2.0])]).state_dict()
    assert {k: saved[k] for k in settings} == pytest.approx(settings)
    fresh = type(make([_param([0.0, 0.0])]))([_param([0.0, 0.0])], lr=0.5)  # other settings
    fresh.load_state_dict(saved)
    assert fresh.settings() == pytest.approx(settings)
    partial = type(fresh)([_param([0.0, 0.0])], lr=0.5)
    before = partial.settings()
    partial.load_settings({})  # keys it lacks are left alone
    assert partial.settings() == before


def test_eps_bounds_the_step_where_gradients_are_tiny():
    """With a gradient far below eps, Adam's step is lr * g / (|g| + eps), nearly 0, not lr."""
    for in_place in (True, False):
        p = _param([1.0])
        opt = nn.Adam([p], lr=0.1, eps=1e-3, in_place=in_place, flush_every=None)
        p.grad[...] = 1e-6
        opt.step()
        assert 1.0 - p.data[0] == pytest.approx(0.1 * 1e-6 / (1e-6 + 1e-3), rel=1e-3)


def test_flush_happens_every_flush_every_steps():
    p = _param([1.0])
    opt = nn.SGD([p], lr=1e-30, momentum=0.5, flush_every=3)
    tiny = numpy.finfo(numpy.float32).tiny
    for step in range(1, 7):
        opt.velocity[0][...] = tiny / 4  # a subnormal left in the state
        p.grad[...] = 0
        opt.step()
        flushed = opt.velocity[0][0] == 0
        assert flushed == (step % 3 == 0), step


# -- bounds and messages of the hyper-parameters; what in_place chooses ---------

def test_bounds_of_the_hyper_parameters_are_the_documented_ones():
    p = [_param([1.0])]
    nn.SGD(p, lr=0.1, momentum=0.0)
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=rf"^SGD: momentum must be in \[0, 1\), got {bad}$"):
            nn.SGD(p, lr=0.1, momentum=bad)
    nn.Adam(p, betas=(0.0, 0.0))  # 0 is allowed for both
    for betas in ((0.9, 1.0), (0.9, 1.5), (1.0, 0.9)):
        with pytest.raises(ValueError, match=r"^Adam: betas must be in \[0, 1\)"):
            nn.Adam(p, betas=betas)
    assert nn.AdamW(p, weight_decay=0.0).weight_decay == 0.0
    with pytest.raises(ValueError, match=r"^AdamW: weight_decay must be >= 0, got -0\.1$"):
        nn.AdamW(p, weight_decay=-0.1)
    assert nn.AdamW(p).weight_decay == 0.01
    assert nn.SGD(p, lr=0.1, flush_every=1).flush_every == 1
    for bad in (0, -1):
        with pytest.raises(ValueError, match=rf"^SGD: flush_every must be >= 1 or None, got {bad}$"):
            nn.SGD(p, lr=0.1, flush_every=bad)
    with pytest.raises(ValueError, match=r"^Adam: got no parameters$"):
        nn.Adam([])


def test_an_optimizer_built_on_the_base_class_flushes_every_100_steps_by_default():
    class Plain(nn.Optimizer):
        def update(self):
            pass

    assert Plain([_param([1.0])], lr=0.1).flush_every == 100


def test_the_smallest_normal_number_itself_is_not_flushed():
    opt = nn.Adam([_param([1.0, 1.0, 1.0])])
    tiny = numpy.finfo(numpy.float32).tiny
    opt.m[0][...] = numpy.array([tiny, tiny / 2, -tiny], numpy.float32)
    opt.flush_subnormals()
    assert to_numpy(opt.m[0]).tolist() == [tiny, 0.0, -tiny]


def test_load_state_dict_names_the_missing_entries():
    opt = nn.Adam([_param([1.0])])
    state = opt.state_dict()
    del state["v"], state["t"]
    with pytest.raises(ValueError, match=r"^Adam\.load_state_dict: missing \['t', 'v'\]$"):
        opt.load_state_dict(state)


@pytest.mark.parametrize("in_place", [True, False])
def test_in_place_chooses_which_form_of_adam_runs(monkeypatch, in_place):
    calls = []
    for name in ("adam_step", "adam_step_in_place"):
        monkeypatch.setattr(nn.optim, name, lambda *a, name=name, **k: calls.append(name))
    opt = nn.Adam([_param([1.0])], in_place=in_place)
    opt.step()
    assert calls == ["adam_step_in_place" if in_place else "adam_step"]

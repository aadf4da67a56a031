"""Sequential: container behaviour, fused backward, skipping the data gradient, state."""

import numpy
import pytest
from helpers.device_double import use_double
from helpers.learner_run import data, tanh_classifier

import nanoae as nn
from nanoae import sequential
from nanoae.backend import to_numpy
from nanoae.fashion.models import Autoencoder
from nanoae.sequential import backward_through

F64 = numpy.float64


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu), "double"])
def xp(request, use_backend, monkeypatch):
    """Each backend, and the CPU double of a device array (tests/helpers/device_double.py), which
    refuses host arrays written into it as CuPy does."""
    return use_double(monkeypatch) if request.param == "double" else use_backend(request.param)


def small(seed=0):
    return nn.Sequential(nn.Dense(5, 4, dtype=F64, rng=seed), nn.ReLU(),
                         nn.Dense(4, 5, dtype=F64, rng=seed + 1), nn.Sigmoid())


def test_container_protocol():
    model = small()
    assert len(model) == 4 and isinstance(model[0], nn.Dense) and isinstance(model[-1], nn.Sigmoid)
    assert [type(layer) for layer in model] == [type(layer) for layer in model.layers]
    assert model.parameters() == [model[0].W, model[0].b, model[2].W, model[2].b]
    head = model[:2]
    assert isinstance(head, nn.Sequential) and head[0] is model[0]
    assert "Dense(5, 4)" in repr(model)
    with pytest.raises(TypeError, match="item 1 is int"):
        nn.Sequential(nn.ReLU(), 3)


def test_backward_from_loss_uses_fused_gradient(xp, rng):
    model, loss = small(), nn.BinaryCrossEntropy()
    x = xp.asarray(rng.random((3, 5)))
    loss(model(x), x.copy())
    fused = to_numpy(model.backward_from_loss(loss))
    fused_grads = [to_numpy(p.grad).copy() for p in model.parameters()]
    unfused = to_numpy(model.backward(loss.backward()))
    numpy.testing.assert_allclose(fused, unfused, rtol=1e-9)
    for p, g in zip(model.parameters(), fused_grads):
        numpy.testing.assert_allclose(to_numpy(p.grad), g, rtol=1e-9)


def test_input_grad_false_skips_data_gradient_only(xp, rng):
    model, loss = small(), nn.BinaryCrossEntropy()
    x = xp.asarray(rng.random((3, 5)))
    loss(model(x), x.copy())
    model.backward_from_loss(loss)
    full = [to_numpy(p.grad).copy() for p in model.parameters()]
    assert model.backward_from_loss(loss, input_grad=False) is None
    for p, g in zip(model.parameters(), full):
        numpy.testing.assert_array_equal(to_numpy(p.grad), g)


def test_state_dict_round_trip_and_validation(xp):
    a, b = small(0), small(10)
    state = a.state_dict()
    assert sorted(state) == ["0.W", "0.b", "2.W", "2.b"]
    assert all(isinstance(v, numpy.ndarray) for v in state.values())
    b.load_state_dict(state)
    for p, q in zip(a.parameters(), b.parameters()):
        numpy.testing.assert_array_equal(to_numpy(p.data), to_numpy(q.data))
    before = to_numpy(b[0].W.data).copy()
    broken = dict(state, **{"2.W": numpy.zeros((4, 6))})
    with pytest.raises(ValueError, match=r"2\.W expected shape \(4, 5\).*\(4, 6\)"):
        b.load_state_dict(broken)
    numpy.testing.assert_array_equal(to_numpy(b[0].W.data), before)  # nothing half-loaded
    with pytest.raises(ValueError, match="missing keys"):
        b.load_state_dict({"0.W": state["0.W"]})


def test_nested_state_dict_keys():
    model = nn.Sequential(nn.Sequential(nn.Dense(3, 2)), nn.Sequential(nn.ReLU(), nn.Dense(2, 3)))
    assert sorted(model.state_dict()) == ["0.0.W", "0.0.b", "1.1.W", "1.1.b"]


def test_training_reduces_loss(xp, rng):
    """Adam on a tiny autoencoder: a smoke test that the pieces fit together."""
    model = nn.Sequential(nn.Dense(8, 4, rng=0), nn.ReLU(), nn.Dense(4, 8, rng=1), nn.Sigmoid())
    x = xp.asarray(rng.random((32, 8)).astype(numpy.float32) ** 3)
    loss, opt = nn.BinaryCrossEntropy(), nn.Adam(model.parameters(), lr=1e-2)
    first = float(loss(model(x), x))
    for _ in range(200):
        loss(model(x), x)
        model.backward_from_loss(loss, input_grad=False)
        opt.step()
    assert float(loss(model(x), x)) < 0.8 * first


def test_loss_value_reads_the_logits_of_a_fused_pair_where_probabilities_saturate(xp):
    """Sigmoid + BCE: the loss of a saturated output comes from the logits (exact), not from
    the probabilities rounded to 1; a loss that fuses with nothing gets pred alone."""
    model = nn.Sequential(nn.Dense(1, 1, dtype=F64, rng=0), nn.Sigmoid())
    model[0].W.data[...] = 1.0
    model[0].b.data[...] = 0.0
    x = xp.asarray([[50.0]])  # p = sigmoid(50) rounds to 1.0 in float64
    t = xp.zeros((1, 1))
    bce = nn.BinaryCrossEntropy()
    assert float(model.loss_value(bce, model(x), t)) == pytest.approx(50.0, rel=1e-12)
    assert float(bce(model(x), t)) == 100.0  # from p alone: log(1 - p) clamped at -100
    # the pair in a nested Sequential: the last working layer decides
    nested = nn.Sequential(nn.Sequential(model[0]), nn.Sequential(model[1]))
    assert float(nested.loss_value(bce, nested(x), t)) == pytest.approx(50.0, rel=1e-12)
    # Softmax + CrossEntropy: the loss reads probabilities (its after() is the plain call)
    clf = nn.Sequential(nn.Dense(2, 3, dtype=F64, rng=0), nn.Softmax())
    xb, labels = xp.ones((4, 2)), xp.asarray([0, 1, 2, 0])
    ce = nn.CrossEntropy()
    assert float(clf.loss_value(ce, clf(xb), labels)) == float(ce(clf(xb), labels))


def test_loading_into_a_device_model_while_numpy_is_active(monkeypatch):
    # The values are converted with the parameters' own module, not the active backend's:
    # CuPy (and the double) refuse a NumPy array written into a device array.
    from nanoae import backend  # noqa: PLC0415

    use_double(monkeypatch)
    model = small(0)
    optimizer = nn.Adam(model.parameters())
    saved, opt_saved = small(10).state_dict(), optimizer.state_dict()
    monkeypatch.setattr(backend, "_active", numpy)  # the active backend: NumPy
    model.load_state_dict(saved)
    optimizer.load_state_dict(opt_saved)
    numpy.testing.assert_array_equal(numpy.asarray(model[0].W.data), saved["0.W"])


def test_the_double_refuses_a_host_array_written_into_it():
    from helpers.device_double import HostWriteError, NoHostReads  # noqa: PLC0415

    device = numpy.zeros(3).view(NoHostReads)
    device[...] = 1.0  # a scalar is fine, as on CuPy
    with pytest.raises(HostWriteError):
        device[...] = numpy.ones(3)


# -- construction, names, and input_grad through every path -------------------

def test_a_list_of_layers_builds_the_same_model():
    layers = [nn.Dense(3, 4), nn.ReLU(), nn.Dense(4, 2)]
    model = nn.Sequential(layers)
    assert model.layers == layers and len(model) == 3
    assert len(nn.Sequential(nn.Dense(3, 4), nn.ReLU())) == 2


def test_a_slice_and_a_nested_model_keep_their_names():
    inner = nn.Sequential(nn.Dense(3, 2), nn.ReLU())
    model = nn.Sequential(nn.Dense(4, 3), nn.ReLU(), inner)
    assert inner.name == "Sequential(Dense(3, 2), ReLU())"
    assert [layer.name for layer in model[1:]] == ["layer 1 ReLU()", inner.name]
    assert model[0].name == "layer 0 Dense(4, 3)"


def test_last_layer_is_the_last_working_layer():
    model = nn.Sequential(nn.Dense(3, 4), nn.ReLU(), nn.Sequential(nn.Dense(4, 2), nn.Sigmoid()))
    assert isinstance(model.last_layer(), nn.Sigmoid)


def test_input_grad_reaches_the_first_layer_on_every_path(rng):
    x = rng.standard_normal((3, 4)).astype(numpy.float32)
    model = nn.Sequential(nn.Dense(4, 3, rng=0), nn.ReLU())  # ReLU then BCE: not a fused pair
    y = model(x)
    g = numpy.ones_like(y)
    assert model.backward(g) is not None and model.backward(g, input_grad=False) is None
    assert sequential.backward_through(model.leaves(), g) is not None  # True by default
    loss = nn.BinaryCrossEntropy()
    loss(numpy.clip(y, 0.1, 0.9), numpy.full_like(y, 0.5))
    assert model.backward_from_loss(loss).shape == x.shape
    assert model.backward_from_loss(loss, input_grad=False) is None


def test_load_state_dict_names_unexpected_keys():
    model = nn.Sequential(nn.Dense(2, 2))
    state = {**model.state_dict(), "9.W": numpy.zeros(1)}
    with pytest.raises(ValueError, match=r"missing keys \[\], unexpected keys \['9\.W'\]$"):
        model.load_state_dict(state)


def test_input_grad_false_reaches_only_a_layer_that_declares_it():
    seen = []

    class Records(nn.Layer):  # no keyword in its backward: it must never be given one
        def forward(self, x):
            return x

        def backward(self, grad):
            seen.append("plain")
            return grad

    class Skips(Records):
        skips_input_grad = True

        def backward(self, grad, *, input_grad=True):
            seen.append(input_grad)
            return grad if input_grad else None

    g = numpy.ones((2, 3), numpy.float32)
    assert backward_through([Records(), Records()], g, input_grad=False) is g
    assert seen == ["plain", "plain"]
    seen.clear()
    assert backward_through([Skips(), Records()], g, input_grad=False) is None
    assert seen == ["plain", False]
    seen.clear()
    assert backward_through([Skips(), Skips()], g) is g  # only the first is ever told False
    assert seen == [True, True]
    assert nn.Dense.skips_input_grad and nn.Sequential.skips_input_grad and not nn.ReLU.skips_input_grad


def test_loss_value_refuses_a_prediction_that_is_not_the_latest_output():
    x, y = data(n=4)
    model = tanh_classifier()
    loss = nn.CrossEntropy()
    pred = model(x)
    assert model.loss_value(loss, pred, y) == pytest.approx(float(loss(pred, y)))
    other = model(x[::-1].copy())
    with pytest.raises(ValueError, match="not what Sequential.*returned from its latest forward"):
        model.loss_value(loss, pred, y)  # pred is from the pass before
    with pytest.raises(ValueError, match="call loss\\(pred, target\\)"):
        model.loss_value(loss, 0.5 * (pred + other), y)


def test_names_come_from_one_place_and_fields_may_follow_the_base_init():
    class Scaled(nn.Layer):
        def __init__(self, factor):
            super().__init__()
            self.factor = factor  # set after the base's __init__: the name still shows it

        def __repr__(self):
            return f"Scaled({self.factor})"

        def forward(self, x):
            return self.factor * x

        def backward(self, grad):
            return self.factor * grad

    layer = Scaled(2.0)
    assert layer.name == "Scaled(2.0)"
    model = nn.Sequential(nn.Dense(2, 2), layer, label="head")
    assert layer.name == "head layer 1 Scaled(2.0)" and model[0].name == "head layer 0 Dense(2, 2)"
    outer = nn.Sequential(model, nn.Sigmoid())  # a container around it keeps the names as given
    assert layer.name == "head layer 1 Scaled(2.0)" and outer[1].name == "layer 1 Sigmoid()"
    ae = Autoencoder((8, 4, 2))
    assert [leaf.name for leaf in ae.leaves()][:2] == ["encoder layer 0 Dense(8, 4)", "encoder layer 1 ReLU()"]
    assert ae.leaves()[-1].name == "decoder layer 3 Sigmoid()"
    with pytest.raises(ValueError, match=r"^head layer 0 Dense\(2, 2\): expected input"):
        model(numpy.zeros((1, 3), numpy.float32))

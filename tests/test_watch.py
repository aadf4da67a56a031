"""Watch: per-layer diagnostics, checked on tiny models where the numbers are known by hand."""

import json

import numpy
import pytest
from helpers.learner_run import data, tanh_classifier

import nanoae as nn
from nanoae.backend import to_numpy
from nanoae.fashion.plots import plot_diagnostics
from nanoae.train.callbacks import Progress
from nanoae.train.loop import fit
from nanoae.train.watch import Watch, summarize


def std(a):
    return float(numpy.asarray(a, dtype=numpy.float64).std())


def one_step(model, optimizer, x, target, loss=None):
    loss = loss or nn.BinaryCrossEntropy()
    loss(model(x), target)
    model.backward_from_loss(loss)
    optimizer.step()


def test_dead_units_are_those_silent_for_every_example_of_the_epoch(xp):
    """Unit 0 always fires, unit 1 never does (dead), unit 2 fires for one example of the
    second batch only: dead in neither epoch, since each epoch sees both batches; but
    silent for the whole first batch."""
    dense = nn.Dense(2, 3, rng=0)
    dense.W.data[...] = xp.asarray([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]], dtype=numpy.float32)
    dense.b.data[...] = xp.asarray([1.0, -1.0, -0.5], dtype=numpy.float32)
    model = nn.Sequential(dense, nn.ReLU())
    batches = [xp.asarray([[0.0, 0.0], [1.0, 0.0]], dtype=numpy.float32),
               xp.asarray([[0.0, 1.0], [0.0, 0.0]], dtype=numpy.float32)]
    watch = Watch(model, every=1)
    opt = nn.SGD(model.parameters(), lr=1e-12)  # the weights, and so the units, stay (almost) as set
    for _ in range(2):
        for xb in batches:
            one_step(model, opt, xb, xp.zeros((2, 3), dtype=numpy.float32) + 0.5,
                     loss=nn.BinaryCrossEntropy(check=False))
            watch.step()
        watch.end_epoch()
    relu = watch.records["layers"]["layer 1 ReLU()"]
    assert watch.dead_units() == {"layer 1 ReLU()": [1, 1]}
    assert relu["saturated"] == pytest.approx([2 / 3, 1 / 3, 2 / 3, 1 / 3])  # silent for a batch
    assert watch.records["step"] == [0, 1, 2, 3] and watch.records["epoch"] == [1, 1, 2, 2]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_update_ratio_is_the_real_step_relative_to_the_weights(optimizer, rng):
    """SGD's step is lr * g; Adam's first step is lr * g / (|g| + eps) (m_hat = g, v_hat = g^2):
    the ratio std(step) / std(W) must be each one's, measured from the weights themselves."""
    model = nn.Sequential(nn.Dense(6, 4, rng=1), nn.Sigmoid())
    x = rng.random((5, 6), dtype=numpy.float32)
    t = rng.random((5, 4), dtype=numpy.float32)
    lr = 0.1
    opt = nn.SGD(model.parameters(), lr=lr) if optimizer == "sgd" else nn.Adam(model.parameters(), lr=lr)
    w0, b0 = to_numpy(model[0].W.data).copy(), to_numpy(model[0].b.data).copy()
    watch = Watch(model, every=1)
    one_step(model, opt, x, t)
    watch.step()
    watch.end_epoch()
    g = to_numpy(model[0].W.grad).astype(numpy.float64)
    step = lr * g if optimizer == "sgd" else lr * g / (numpy.abs(g) + 1e-8)
    dense = watch.records["layers"]["layer 0 Dense(6, 4)"]
    assert dense["update_ratio"] == [pytest.approx(std(step) / std(w0), rel=1e-4)]
    assert dense["weight_std"] == [pytest.approx(std(w0), rel=1e-5)]
    assert dense["grad_std"] == [pytest.approx(std(g), rel=1e-4)]
    assert dense["grad_norm"] == [pytest.approx(float(numpy.linalg.norm(g)), rel=1e-5)]
    sig = watch.records["layers"]["layer 1 Sigmoid()"]
    y = 1 / (1 + numpy.exp(-(x @ w0 + b0)))  # the forward before the step
    assert sig["mean"] == [pytest.approx(float(y.mean()), rel=1e-5)]
    assert sig["saturated"] == [pytest.approx(float(((y < 0.01) | (y > 0.99)).mean()))]


def test_records_every_k_steps_with_the_weights_each_recorded_step_started_from(rng):
    """Every 3rd step (0, 3, 6) is recorded; the ratio of step 3 compares the weights after
    step 3 with those after step 2, not with older ones."""
    model = nn.Sequential(nn.Dense(4, 3, rng=2), nn.Sigmoid())
    opt = nn.SGD(model.parameters(), lr=0.5)
    x, t = rng.random((8, 4), dtype=numpy.float32), rng.random((8, 3), dtype=numpy.float32)
    watch = Watch(model, every=3)
    ratios = []
    for step in range(8):
        before = to_numpy(model[0].W.data).copy()
        one_step(model, opt, x, t)
        ratios.append(std(to_numpy(model[0].W.data) - before) / std(before))
        watch.step()
    watch.end_epoch()
    assert watch.records["step"] == [0, 3, 6]
    got = watch.records["layers"]["layer 0 Dense(4, 3)"]["update_ratio"]
    assert got == pytest.approx([ratios[0], ratios[3], ratios[6]], rel=1e-4)


def test_watch_in_fit_goes_into_the_history_as_json_and_plots(tmp_path):
    rng = numpy.random.default_rng(0)
    x = rng.integers(0, 256, size=(120, 16), dtype=numpy.uint8)
    model = nn.Sequential(nn.Dense(16, 8, rng=0), nn.ReLU(), nn.Dense(8, 16, rng=1), nn.Sigmoid())
    watch = Watch(model)
    hist = fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), x, epochs=3,
               batch_size=10, callbacks=[watch, Progress(bar=False, verbose=False)])
    records = json.loads(json.dumps(hist["watch"]))  # plain JSON, as metrics.json stores it
    assert records["every"] == 1  # 12 steps per epoch: fewer than 50, so every step
    assert len(records["step"]) == 36 and len(watch.dead_units()["layer 1 ReLU()"]) == 3
    assert records["histograms"]["first"]["epoch"] == 1 and records["histograms"]["last"]["epoch"] == 3
    counts = records["histograms"]["last"]["output"]["layer 3 Sigmoid()"]["counts"]
    assert sum(counts) == 10 * 16  # one batch of outputs, every value in some bin
    assert plot_diagnostics(records, tmp_path / "diagnostics.png").stat().st_size > 10_000
    check_figure_draws_the_records(records)


def check_figure_draws_the_records(records):
    """The diagnostics figure draws the records' own numbers, panel by panel."""
    from nanoae.fashion import plots  # noqa: PLC0415

    figs = []
    real_save = plots._save
    plots._save = lambda fig, path: figs.append(fig)
    try:
        plots.plot_diagnostics(records, "unused.png")
    finally:
        plots._save = real_save
    axes = {ax.get_title(): ax for ax in figs[0].axes}
    layers = records["layers"]
    dense = [n for n, r in layers.items() if "update_ratio" in r]
    ratio = axes["update-to-data ratio per Dense layer"]
    lines = ratio.get_lines()
    assert [list(line.get_ydata()) for line in lines[:-1]] == [layers[n]["update_ratio"] for n in dense]
    assert list(lines[0].get_xdata()) == records["step"]
    assert lines[-1].get_label() == "1e-3 guide" and list(lines[-1].get_ydata()) == [1e-3, 1e-3]
    grads = axes["weight-gradient std per Dense layer"].get_lines()
    assert [list(line.get_ydata()) for line in grads] == [layers[n]["grad_std"] for n in dense]
    dead = axes["dead units per epoch (rectifiers)"].get_lines()
    assert [list(line.get_ydata()) for line in dead] == [
        r["dead_per_epoch"] for r in layers.values() if "dead_per_epoch" in r]
    for name, h in records["histograms"]["last"]["output"].items():  # a panel per output layer
        panel = next(ax for title, ax in axes.items() if name.endswith(title) or title in name)
        stairs = [p for p in panel.patches]
        shares = stairs[-1].get_data().values  # the last epoch's, as shares of its outputs
        numpy.testing.assert_allclose(shares, numpy.asarray(h["counts"]) / sum(h["counts"]))


@pytest.mark.parametrize("depth", [1, 4])
def test_the_figure_renders_for_few_and_many_layers(tmp_path, depth):
    """2 layers (Dense + Sigmoid) and 8 (four Dense/ReLU pairs and a Sigmoid head)."""
    rng = numpy.random.default_rng(1)
    layers = []
    for i in range(depth - 1):
        layers += [nn.Dense(8, 8, rng=i), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Dense(8, 8, rng=9), nn.Sigmoid())
    watch = Watch(model, every=2)
    opt = nn.Adam(model.parameters())
    for epoch in range(2):
        for _ in range(4):
            one_step(model, opt, rng.random((6, 8), dtype=numpy.float32),
                     rng.random((6, 8), dtype=numpy.float32))
            watch.step()
        watch.end_epoch()
    assert len(watch.records["layers"]) == 2 * depth
    path = plot_diagnostics(watch.records, tmp_path / "d.png", title=f"{depth} Dense layers")
    assert path.stat().st_size > 10_000
    check_figure_draws_the_records(watch.records)


def test_a_learners_rectifier_is_watched_when_named():
    class LeakyReLU(nn.Layer):
        def forward(self, x):
            self._y = numpy.where(x > 0, x, 0.01 * x)
            return self._y

        def backward(self, grad_out, *, input_grad=True):
            return grad_out * numpy.where(self._y > 0, 1.0, 0.01).astype(grad_out.dtype)

    model = nn.Sequential(nn.Dense(3, 2, rng=0), LeakyReLU())
    model[0].b.data[...] = [5.0, -5.0]  # unit 1 is negative for any input in [0, 1)
    watch = Watch(model, every=1, rectifiers=(LeakyReLU,))
    model(numpy.random.default_rng(0).random((4, 3), dtype=numpy.float32))
    watch.step()
    watch.end_epoch()
    assert list(watch.dead_units().values()) == [[1]]
    with pytest.raises(ValueError, match="every must be >= 1"):
        Watch(model, every=0)


def test_a_resumed_run_continues_the_records_it_saved(tmp_path):
    """Stopped after epoch 2 of 4 and resumed: the same records as an uninterrupted run."""
    from nanoae.train.callbacks import Checkpoint  # noqa: PLC0415

    x = numpy.random.default_rng(0).integers(0, 256, size=(60, 16), dtype=numpy.uint8)

    def run(epochs, resume=False, ckpt=tmp_path / "run.npz"):
        model = nn.Sequential(nn.Dense(16, 8, rng=0), nn.ReLU(), nn.Dense(8, 16, rng=1), nn.Sigmoid())
        return fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), x, epochs=epochs,
                   batch_size=10, callbacks=[Watch(model, every=4), Checkpoint(ckpt, resume=resume),
                                             Progress(bar=False, verbose=False)])["watch"]

    straight = run(4, ckpt=tmp_path / "straight.npz")
    run(2)
    resumed = run(4, resume=True)
    assert resumed["step"] == straight["step"] == [0, 4, 8, 12, 16, 20]
    assert resumed["layers"] == straight["layers"]
    assert resumed["histograms"] == straight["histograms"]


def test_summarize_states_what_the_records_show():
    records = {"step": [0, 5, 10, 15], "epoch": [1, 1, 2, 2], "layers": {
        "enc 0 Dense": {"kind": "Dense", "update_ratio": [1e-2, 8e-3, 3e-3, 5e-3]},
        "dec 2 Dense": {"kind": "Dense", "update_ratio": [1e-3, 1e-3, 1e-3, 2e-3]},
        "code ReLU": {"kind": "ReLU", "saturated": [0, 0, 0.1, 0.1], "dead_per_epoch": [0, 3]},
        "hidden ReLU": {"kind": "ReLU", "saturated": [0, 0, 0, 0], "dead_per_epoch": [0, 0]},
        "out Sigmoid": {"kind": "Sigmoid", "saturated": [0.0, 0.1, 0.2, 0.25]}}}
    text = " ".join(summarize(records))
    assert "After 2 epochs" in text and "code ReLU 3 (the first in epoch 2)" in text
    assert "hidden ReLU" not in text
    assert "from 1.5e-03 (dec 2 Dense) to 4.0e-03 (enc 0 Dense)" in text
    assert "out Sigmoid 25.0 %" in text


def test_a_learners_layer_is_watched_from_what_it_returns():
    x, y = data()
    model = tanh_classifier()
    watch = nn.Watch(model, every=1)
    nn.fit(model, nn.CrossEntropy(), nn.Adam(model.parameters()), x, y, epochs=2, batch_size=8,
           callbacks=[watch, nn.Progress(bar=False, verbose=False)])
    records = watch.records["layers"]["layer 1 Tanh()"]
    assert records["kind"] == "Tanh" and len(records["mean"]) == len(records["std"]) == 8
    assert all(-1 < m < 1 for m in records["mean"]) and all(0 < s < 1 for s in records["std"])
    counts = watch.records["histograms"]["last"]["output"]["layer 1 Tanh()"]["counts"]
    assert sum(counts) == 8 * 5  # the last batch's outputs, each value in a bin
    assert model[1].forward_hooks == ()  # fit took the hooks off when it ended


def test_a_learners_rectifier_without_any_attribute_has_its_dead_units_counted():
    class Rectifier(nn.Layer):
        def forward(self, x):
            self.mask = x > 0
            return x * self.mask

        def backward(self, grad):
            return grad * self.mask

    model = nn.Sequential(nn.Dense(3, 2, rng=0), Rectifier())
    model[0].b.data[...] = [5.0, -5.0]  # unit 1 is negative for any input in [0, 1)
    watch = nn.Watch(model, every=1, rectifiers=(Rectifier,))
    model(numpy.random.default_rng(0).random((4, 3), dtype=numpy.float32))
    watch.step()
    watch.end_epoch()
    assert watch.dead_units() == {"layer 1 Rectifier()": [1]}

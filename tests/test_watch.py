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


def test_saturated_means_each_kinds_flat_ends():
    """Sigmoid: outputs below 0.01 or above 0.99 (of the sampled rows); Softmax: rows whose
    largest probability is above 0.99; a rectifier: units <= 0 on every row of the batch."""
    sig, soft, relu = nn.Sigmoid(), nn.Softmax(), nn.ReLU()
    model = nn.Sequential(nn.Dense(2, 2, rng=0), sig, soft, relu)
    watch = Watch(model, every=1)
    y = numpy.array([[0.005, 0.01], [0.5, 0.99], [0.995, 0.2]])
    assert watch._saturated(sig, y, y) == (2, 6)  # 0.005 and 0.995; 0.01 and 0.99 are not
    p = numpy.array([[0.995, 0.005], [0.99, 0.01], [0.3, 0.7]])
    assert watch._saturated(soft, p, p) == (1, 3)  # rows, not outputs; 0.99 is not above
    r = numpy.array([[0.0, 2.0, -1.0], [0.0, 0.0, -3.0], [0.0, 0.5, 1e-9]])
    count, n = watch._saturated(relu, r, r[:1])
    assert (int(count), n) == (1, 3)  # unit 0 only: unit 2 fired once (on a row past the sample)
    assert watch._saturated(nn.Dense(2, 2, rng=0), y, y) is None


def test_output_ranges_and_histograms_of_outputs_and_gradients():
    from nanoae.train.watch import GRAD_LOG10_RANGE, OUTPUT_BINS, _output_range  # noqa: PLC0415

    assert _output_range(nn.Sigmoid()) == _output_range(nn.Softmax()) == (0.0, 1.0)
    assert _output_range(nn.ReLU()) == (0.0, 10.0)
    assert _output_range(nn.Dense(2, 2, rng=0)) == (-10.0, 10.0)
    assert OUTPUT_BINS == 50 and GRAD_LOG10_RANGE == (-12.0, 0.0)
    dense = nn.Dense(2, 3, rng=0)
    model = nn.Sequential(dense, nn.ReLU())
    watch = Watch(model, every=1)
    x = numpy.array([[1.0, 2.0], [-30.0, 0.5]], dtype=numpy.float32)
    y = model(x)
    dense.W.grad[...] = numpy.array([[1e-13, 1e-6, 0.5], [2.0, 0.0, -1e-3]], dtype=numpy.float32)
    watch.step()
    watch.end_epoch()
    hist = watch.records["histograms"]["first"]
    assert watch.records["histograms"]["last"] is hist and hist["epoch"] == 1
    out = hist["output"]["layer 1 ReLU()"]
    assert out["range"] == [0.0, 10.0]
    expected = numpy.histogram(numpy.clip(y, 0, 10), bins=50, range=(0, 10))[0]
    assert out["counts"] == expected.tolist() and len(out["counts"]) == 50
    grad = hist["grad"]["layer 0 Dense(2, 3)"]
    assert grad["range"] == [-12.0, 0.0]
    g = numpy.log10(numpy.abs(dense.W.grad.astype(numpy.float64)) + 1e-12)
    expected = numpy.histogram(numpy.clip(g, -12, 0), bins=50, range=(-12, 0))[0]
    assert grad["counts"] == expected.tolist()
    assert grad["counts"][0] == 2 and grad["counts"][-1] == 1  # 0 and 1e-13 at the floor; 2.0 clipped to 0


def test_activation_figures_use_the_first_sample_rows_of_the_batch():
    from nanoae.train.watch import SAMPLE_ROWS  # noqa: PLC0415

    assert SAMPLE_ROWS == 64
    model = nn.Sequential(nn.Dense(3, 4, rng=0), nn.Sigmoid())
    watch = Watch(model, every=1)
    x = numpy.random.default_rng(0).normal(size=(100, 3)).astype(numpy.float32) * 3
    y = numpy.asarray(model(x), dtype=numpy.float64)
    watch.step()
    watch.end_epoch()
    sig = watch.records["layers"]["layer 1 Sigmoid()"]
    first = y[:64]
    assert sig["mean"] == [pytest.approx(first.mean(), rel=1e-6)]
    assert sig["std"] == [pytest.approx(first.std(), rel=1e-5)]
    assert sig["saturated"] == [pytest.approx(((first < 0.01) | (first > 0.99)).mean())]
    assert sig["kind"] == "Sigmoid" and watch.records["layers"]["layer 0 Dense(3, 4)"]["kind"] == "Dense"


def test_the_figures_from_the_sums():
    from nanoae.train.watch import _mean_of, _norm_of, _ratio_of, _share_of, _std_of, _sums  # noqa: PLC0415

    a = numpy.array([[1.0, 2.0], [3.0, 6.0]])
    s = [float(v) for v in _sums(a)]
    assert s == [12.0, 50.0]
    assert _mean_of(s, 4) == 3.0
    assert _std_of(s, 4) == pytest.approx(a.std())
    assert _std_of([2.0, 1.0 - 1e-16], 2) == 0.0  # rounding below zero: 0, not a math error
    assert _norm_of(s, 4) == pytest.approx(numpy.sqrt(50.0))
    assert _ratio_of([0.0, 4.0, 12.0, 50.0], 4) == pytest.approx(1.0 / a.std())
    assert _share_of([3], 4) == 0.75


def test_epoch_reads_come_back_in_the_order_noted_in_one_transfer():
    from nanoae.train.watch import EpochReads  # noqa: PLC0415

    reads = EpochReads()
    assert reads.read(numpy) == []
    reads.note("a", numpy.float32(1.5), numpy.array([2, 3]))
    reads.note("b", numpy.array([[4.0], [5.0]]))
    out = reads.read(numpy)
    assert [w for w, _ in out] == ["a", "b"]
    assert out[0][1].tolist() == [1.5, 2.0, 3.0] and out[1][1].tolist() == [4.0, 5.0]
    assert out[0][1].dtype == numpy.float64


def test_every_is_checked_named_and_by_default_ten_in_a_loop_of_your_own(rng):
    model = nn.Sequential(nn.Dense(2, 2, rng=0), nn.Sigmoid(), nn.Dense(2, 2, rng=1), nn.Sigmoid())
    assert repr(Watch(model, every=3)) == "Watch(every=3)"
    Watch(model, every=1)  # the least allowed
    with pytest.raises(ValueError, match="Watch: every must be >= 1 step, got -2"):
        Watch(model, every=-2)
    watch = Watch(model)
    assert repr(watch) == "Watch(every=None)" and watch.records["every"] is None
    assert watch.records["shard"] == "all of each batch"
    assert list(watch.records["layers"]) == ["layer 0 Dense(2, 2)", "layer 1 Sigmoid()",
                                             "layer 2 Dense(2, 2)", "layer 3 Sigmoid()"]
    opt = nn.SGD(model.parameters(), lr=0.1)
    x, t = rng.random((4, 2), dtype=numpy.float32), rng.random((4, 2), dtype=numpy.float32)
    for _ in range(21):
        one_step(model, opt, x, t)
        watch.step()
    watch.end_epoch()
    assert watch.records["step"] == [0, 10, 20] and watch.steps == 21 and watch.epochs == 1


def test_an_inactive_watch_records_nothing():
    model = nn.Sequential(nn.Dense(2, 2, rng=0), nn.ReLU())
    watch = Watch(model, every=1, active=False)
    model(numpy.ones((2, 2), dtype=numpy.float32))
    watch.step()
    watch.end_epoch()
    assert watch.before is None and watch.steps == 0 and watch.epochs == 0
    assert watch.records["step"] == [] and watch.dead_units() == {} and watch.peak == {}
    assert watch.records["histograms"] == {}


def test_in_fit_every_is_about_fifty_records_per_epoch_and_a_rank_says_its_shard():
    import types  # noqa: PLC0415

    from nanoae.train.watch import RECORDS_PER_EPOCH  # noqa: PLC0415

    assert RECORDS_PER_EPOCH == 50
    model = nn.Sequential(nn.Dense(2, 2, rng=0), nn.ReLU())

    def begin(steps, size=1, is_root=True, every=None):
        watch = Watch(model, every=every)
        run = types.SimpleNamespace(comm=types.SimpleNamespace(is_root=is_root, size=size),
                                    steps_per_epoch=steps)
        watch.on_train_begin(run)
        return watch

    assert [begin(s).every for s in (1, 74, 75, 125, 126, 1000)] == [1, 1, 2, 2, 3, 20]
    assert begin(1000, every=7).every == 7 and begin(1000, every=7).records["every"] == 7
    w = begin(10, size=3)
    assert w.records["shard"] == "rank 0 of 3: the statistics of its own shard of each batch"
    assert w.active
    assert not begin(10, size=3, is_root=False).active
    assert begin(10, size=1).records["shard"] == "all of each batch"
    hooks = len(model[1].forward_hooks)
    w.remove()
    assert w.handles == [] and w.outputs == {} and len(model[1].forward_hooks) == hooks - 1
    w.on_train_begin(types.SimpleNamespace(comm=types.SimpleNamespace(is_root=True, size=1),
                                           steps_per_epoch=10))
    assert len(w.handles) == 1  # hooked again
    w.attach()
    assert len(w.handles) == 1  # once


def test_histograms_in_fit_only_in_the_first_and_last_epoch():
    x = numpy.random.default_rng(0).integers(0, 256, size=(40, 6), dtype=numpy.uint8)
    model = nn.Sequential(nn.Dense(6, 4, rng=0), nn.ReLU(), nn.Dense(4, 6, rng=1), nn.Sigmoid())
    taken = []
    watch = Watch(model, every=2)
    real = watch._note_histograms

    def note():
        taken.append(watch.epochs + 1)
        real()

    watch._note_histograms = note
    fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), x, epochs=4, batch_size=10,
        callbacks=[watch, Progress(bar=False, verbose=False)])
    assert taken == [1, 4]
    assert watch.records["histograms"]["first"]["epoch"] == 1
    assert watch.records["histograms"]["last"]["epoch"] == 4
    assert watch.records["step"] == list(range(0, 16, 2))
    assert watch.records["epoch"] == [1, 1, 2, 2, 3, 3, 4, 4]


def test_summarize_in_detail():
    records = {"step": [0, 1, 2, 3, 4, 5], "epoch": [1, 1, 2, 2, 3, 3], "layers": {
        "a Dense": {"kind": "Dense", "update_ratio": [9.0, 9.0, 9.0, 9.0, 1e-3, 3e-3]},
        "b Dense": {"kind": "Dense", "update_ratio": [0.0, 0.0, 0.0, 0.0, 5e-4, 5e-4]},
        "q ReLU": {"kind": "ReLU", "saturated": [0.2] * 6, "dead_per_epoch": [1, 0, 0]},
        "r ReLU": {"kind": "ReLU", "saturated": [0.5] * 6, "dead_per_epoch": [0, 1, 2]},
        "s Sigmoid": {"kind": "Sigmoid", "saturated": [0.0, 0.125]},
        "t Softmax": {"kind": "Softmax", "saturated": []},
        "u Softmax": {"kind": "Softmax", "saturated": [0.5, 0.0]}}}
    assert summarize(records) == [
        "After 3 epochs, dead units (zero for every training example of the epoch): "
        "r ReLU 2 (the first in epoch 2).",
        "In the last epoch the median update-to-data ratio of the Dense layers ranged from "
        "5.0e-04 (b Dense) to 2.0e-03 (a Dense), against the usual guide of 1e-3.",
        "At the last record, saturated outputs: s Sigmoid 12.5 %; u Softmax 0.0 %."]
    records["layers"]["r ReLU"]["dead_per_epoch"] = [0, 0, 0]
    assert summarize(records)[0] == ("After 3 epochs, dead units (zero for every training example "
                                     "of the epoch): none in any layer.")
    assert summarize({"step": [], "epoch": [], "layers": {"a Dense": {"update_ratio": []},
                                                           "r ReLU": {"dead_per_epoch": []}}}) == []
    uneven = {"step": [0], "epoch": [1], "layers": {"x ReLU": {"dead_per_epoch": [3]},
                                                   "y ReLU": {"dead_per_epoch": [0, 0, 4, 5]}}}
    assert summarize(uneven) == ["After 4 epochs, dead units (zero for every training example of the "
                                 "epoch): x ReLU 3 (the first in epoch 1); y ReLU 5 (the first in epoch 3)."]

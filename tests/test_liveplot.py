"""LivePlot: a PNG per epoch, the Watch's panels, a notebook's display handle, no device reads."""

import io
import math
import sys
import types

import numpy
import pytest
from helpers.device_double import NoHostReads, reads_only_at_epoch_ends

import nanoae as nn
from nanoae.fashion.models import Autoencoder, Classifier
from nanoae.train.callbacks import Callback, Progress
from nanoae.train.liveplot import LivePlot, in_notebook
from nanoae.train.loop import fit  # looks up loop._end_epoch when called: patchable


def tiny_images(n=64, seed=0):
    return numpy.random.default_rng(seed).integers(0, 256, size=(n, 784), dtype=numpy.uint8)


def quiet(*callbacks):
    return [Progress(bar=False, verbose=False), *callbacks]


class Frames(Callback):
    """Keeps the bytes of the PNG after every epoch (runs after LivePlot)."""

    order = 60

    def __init__(self, path):
        self.path, self.frames = path, []

    def on_epoch_end(self, run):
        self.frames.append(self.path.read_bytes())


def test_writes_a_png_after_every_epoch_whose_content_changes(tmp_path):
    path = tmp_path / "live.png"
    model = Autoencoder((784, 8, 4), code_activation="linear", seed=0)
    frames = Frames(path)
    fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), tiny_images(), epochs=3,
        batch_size=16, validation=(tiny_images(16, seed=1), None),
        callbacks=quiet(LivePlot(path), frames))
    assert len(frames.frames) == 3
    assert all(f[:8] == b"\x89PNG\r\n\x1a\n" for f in frames.frames)
    assert len(set(frames.frames)) == 3  # every epoch drew something new
    assert not list(tmp_path.glob("*.part"))  # written atomically


def test_a_classifier_gets_accuracy_and_a_watch_gets_its_panels(tmp_path):
    x = tiny_images(64)
    y = numpy.arange(64) % 3
    model = Classifier(784, (8,), 3, seed=0)
    watch = nn.Watch(model, every=2)
    live = LivePlot(tmp_path / "live.png")
    fit(model, nn.CrossEntropy(), nn.Adam(model.parameters()), x, y, epochs=2, batch_size=16,
        validation=(x[:16], y[:16]), callbacks=quiet(watch, live))  # live finds the watch itself
    titles = [ax.get_title() for ax in live.figure.axes]
    assert titles == ["loss per epoch", "accuracy per epoch", "update-to-data ratio per Dense layer",
                      "dead units per epoch (rectifiers)"]
    loss_ax, acc_ax, ratio_ax, dead_ax = live.figure.axes
    by_label = {line.get_label(): line for line in ratio_ax.lines}
    layers = watch.records["layers"]
    dense = [name for name, rec in layers.items() if "update_ratio" in rec]
    assert len(dense) == 2
    for name in dense:  # the Watch's own numbers, at its recorded steps
        line = by_label[name]
        numpy.testing.assert_allclose(line.get_ydata(), layers[name]["update_ratio"])
        numpy.testing.assert_array_equal(line.get_xdata(), watch.records["step"])
    dead = {line.get_label(): list(line.get_ydata()) for line in dead_ax.lines}
    assert dead == {name: rec["dead_per_epoch"] for name, rec in layers.items()
                    if "dead_per_epoch" in rec}
    acc = {line.get_label(): line.get_ydata() for line in acc_ax.lines}
    assert set(acc) == {"train", "validation"} and len(acc["train"]) == 2
    assert all(0 <= a <= 100 for a in acc["validation"])
    assert {line.get_label() for line in loss_ax.lines} == {"train", "validation"}
    assert live.figure.get_suptitle() == "training"  # the title, in the background
    assert [t.get_text() for t in live.figure.texts] == ["training", "epoch 2/2"]  # the epoch: redrawn each frame


def test_without_a_watch_only_the_loss(tmp_path):
    model = Autoencoder((784, 8, 4), code_activation="linear", seed=0)
    live = LivePlot(tmp_path / "live.png")
    fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), tiny_images(), epochs=2,
        batch_size=32, callbacks=quiet(live))
    assert [ax.get_title() for ax in live.figure.axes] == ["loss per epoch"]
    assert [line.get_label() for line in live.figure.axes[0].lines] == ["train"]


def test_updates_one_notebook_output_in_place(monkeypatch):
    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj))

    def display(obj, display_id=False):
        assert display_id is True  # a handle, so later epochs replace this output
        shown.append(("display", obj))
        return Handle()

    class Image:
        def __init__(self, data, format):
            assert data[:4] == b"\x89PNG" and format == "png"
            self.data = data

    shell = types.SimpleNamespace(kernel=object())  # what a Jupyter kernel's shell has
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    monkeypatch.setitem(sys.modules, "IPython.display",
                        types.SimpleNamespace(display=display, Image=Image))
    assert in_notebook()
    live = LivePlot()  # no path: in a notebook, that is fine
    model = Autoencoder((784, 8, 4), code_activation="linear", seed=0)
    fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), tiny_images(), epochs=3,
        batch_size=32, callbacks=quiet(live))
    assert [kind for kind, _ in shown] == ["display", "update", "update"]
    assert len({obj.data for _, obj in shown}) == 3


def test_outside_a_notebook_it_needs_a_path():
    assert not in_notebook()
    with pytest.raises(ValueError, match="give it a path"):
        LivePlot()


def test_reads_nothing_from_the_device(monkeypatch, tmp_path):
    # Every array of the run is a NoHostReads; only fit's own end-of-epoch reads are allowed.
    x = tiny_images(64).view(NoHostReads)
    reads_only_at_epoch_ends(monkeypatch)
    monkeypatch.setattr(NoHostReads, "armed", True)
    model = Autoencoder((784, 8, 4), code_activation="linear", seed=0)
    for p in model.parameters():
        p.data = p.data.view(NoHostReads)
    # Watch reads the device at its own end_epoch, once (allowed); LivePlot must read none.
    watch = nn.Watch(model, every=2)
    real_watch_end = watch.end_epoch

    def watch_end():
        NoHostReads.armed = False
        try:
            real_watch_end()
        finally:
            NoHostReads.armed = True

    monkeypatch.setattr(watch, "end_epoch", watch_end)
    live = LivePlot(tmp_path / "live.png")
    fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), x, epochs=2, batch_size=16,
        callbacks=quiet(watch, live))
    assert live.frames == 2


def test_png_bytes_is_a_png_that_decodes_to_the_same_pixels():
    from PIL import Image

    from nanoae.train.liveplot import png_bytes

    rgb = numpy.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=numpy.uint8)
    rgb[2:4] = 255  # flat runs, as a plot has
    png = png_bytes(rgb)
    image = Image.open(io.BytesIO(png))
    image.load()  # reads every chunk: a wrong length or CRC raises here
    assert image.mode == "RGB" and image.size == (5, 7)
    numpy.testing.assert_array_equal(numpy.asarray(image), rgb)
    with pytest.raises(ValueError, match="uint8 \\(height, width, 3\\)"):
        png_bytes(rgb[..., :2])
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(rgb.astype(numpy.float32))


def test_a_frame_equals_the_figure_as_matplotlib_draws_it(tmp_path):
    from PIL import Image

    model = Autoencoder((784, 8, 4), code_activation="linear", seed=0)
    live = LivePlot(tmp_path / "live.png")
    fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), tiny_images(), epochs=2,
        batch_size=32, callbacks=quiet(live))
    shown = numpy.asarray(Image.open(tmp_path / "live.png").convert("RGB"))
    drawn = numpy.asarray(live.figure.canvas.buffer_rgba())[..., :3]
    width, height = live.figure.canvas.get_width_height()
    assert shown.shape == (height, width, 3) and width == 10 * 72
    numpy.testing.assert_array_equal(shown, drawn)


def test_thin_keeps_short_series_and_averages_runs_of_long_ones_geometrically():
    from nanoae.train.liveplot import _thin

    x, y = [0, 4, 8], [1e-3, 1e-2, 1e-1]
    assert _thin(x, y, 3) == (x, y)  # at most `most` points: whole, the very lists
    tx, ty = _thin([0, 1, 2, 3, 4], [1e-4, 1e-2, 1e-3, 1e-1, 5.0], 2)  # k = 3: runs of 3, then 2
    assert tx == [1.0, 3.5]
    numpy.testing.assert_allclose(ty, [1e-3, numpy.sqrt(0.5)], rtol=1e-12)
    tx, ty = _thin(list(range(1000)), [1e-3] * 1000, 300)  # k = 4: 250 points
    assert len(tx) == len(ty) == 250 and tx[0] == 1.5 and tx[-1] == 997.5
    # a log axis shows only positive values: others are left out of a run's mean,
    # and a run of none at all is a gap
    _, ty = _thin([0, 1, 2, 3], [0.0, 1e-2, 0.0, -1.0], 2)
    assert ty[0] == pytest.approx(1e-2) and numpy.isnan(ty[1])


def test_a_long_run_draws_each_step_line_with_at_most_max_points(tmp_path):
    x = tiny_images(64)
    model = Autoencoder((784, 8, 4), code_activation="linear", seed=0)
    watch = nn.Watch(model, every=1)  # a record every step: 8 steps an epoch, 24 in all
    live = LivePlot(tmp_path / "live.png", max_points=10)
    fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), x, epochs=3, batch_size=8,
        callbacks=quiet(watch, live))
    ratio_ax = live.figure.axes[1]
    assert ratio_ax.get_title() == "update-to-data ratio per Dense layer"
    lines = [line for line in ratio_ax.lines if line.get_label() != "1e-3 guide"]
    records = [rec["update_ratio"] for rec in watch.records["layers"].values() if "update_ratio" in rec]
    assert len(lines) == len(records) == 4  # the Dense layers, in the model's order
    for line, record in zip(lines, records):
        assert len(record) == 24 and len(line.get_ydata()) == 8  # runs of 3
        numpy.testing.assert_allclose(line.get_ydata()[0], numpy.exp(numpy.log(record[:3]).mean()))
    with pytest.raises(ValueError, match="max_points"):
        LivePlot(tmp_path / "x.png", max_points=1)


def test_the_series_drawn_come_from_the_history_and_the_watch_records():
    from nanoae.train.liveplot import _series  # noqa: PLC0415

    history = {"train_loss": [0.5, 0.4], "val_loss": [], "train_accuracy": [0.5, 0.75],
               "val_accuracy": [0.25]}
    records = {"step": [0, 5, 10], "layers": {
        "encoder layer 0 Dense(4, 2)": {"update_ratio": [1e-3, 2e-3]},
        "decoder layer 1 ReLU()": {"dead_per_epoch": [0, 2]},
        "layer 2 Dense(2, 4)": {"update_ratio": []},
        "layer 3 ReLU()": {"dead_per_epoch": []}}}
    assert _series(history, records) == {
        "loss": {"train": ([1, 2], [0.5, 0.4])},
        "accuracy": {"train": ([1, 2], [50.0, 75.0]), "validation": ([1], [25.0])},
        "update_ratio": {"enc 0 Dense(4, 2)": ([0, 5], [1e-3, 2e-3])},
        "dead": {"dec 1 ReLU()": ([1, 2], [0, 2]), "layer 3 ReLU()": ([], [])}}
    assert _series({"val_loss": [1.0]}, None) == {
        "loss": {"validation": ([1], [1.0])}, "accuracy": {}, "update_ratio": {}, "dead": {}}
    assert _series({}, {}) == {"loss": {}, "accuracy": {}, "update_ratio": {}, "dead": {}}


def test_the_y_limits_grow_only_when_the_values_leave_them():
    from nanoae.train.liveplot import _grown  # noqa: PLC0415

    assert _grown(None, [], False) is None
    assert _grown(None, [float("nan"), float("inf")], False) is None
    assert _grown(None, [1.0, 3.0], False) == (0.0, 4.0)  # half the span to spare on each side
    assert _grown((0.0, 4.0), [1.0, 3.5], False) is None  # inside: no redraw
    assert _grown((0.0, 4.0), [0.0, 4.0], False) is None  # on the edges: still inside
    assert _grown((0.0, 4.0), [-0.5, 3.0], False) == (-2.25, 4.75)
    assert _grown((0.0, 4.0), [1.0, 4.5], False) == (-0.75, 6.25)
    assert _grown(None, [2.0, 3.0], False, least=0.1) == (1.5, 3.5)  # half the span ...
    assert _grown(None, [20.0, 21.0], False) == pytest.approx((18.95, 22.05))  # ... or 5 % of the value
    assert _grown(None, [2.0, 2.0], False) == (1.0, 3.0)  # one value: half of it
    assert _grown(None, [0.0, 0.0], False) == (-1e-3, 1e-3)  # at least `least`
    assert _grown(None, [0.0, 0.0], False, least=1.0) == (-1.0, 1.0)
    assert _grown(None, [-2.0, -2.0], False) == (-3.0, -1.0)  # half of |value|
    assert _grown(None, [80.0], False, bounds=(0.0, 100.5)) == (69.75, 90.25)  # half the way to 100.5
    assert _grown(None, [30.0], False, bounds=(0.0, 100.5)) == (15.0, 45.0)  # half the way to 0
    assert _grown(None, [100.0], False, bounds=(0.0, 100.5)) == (95.0, 100.5)  # 5 %, under the ceiling
    # log scale: in decades; zero and negative values are left out; at least a decade spare
    assert _grown(None, [1e-3, 1e-1], True) == pytest.approx((1e-4, 1.0))
    assert _grown(None, [0.0, -1.0, 1e-2], True) == pytest.approx((1e-3, 1e-1))
    assert _grown((1e-4, 1.0), [1e-3, 1e-1], True) is None
    assert _grown((1e-4, 1.0), [1e-5, 1e-1], True) == pytest.approx((10 ** -7, 10 ** 1))
    assert _grown(None, [0.0], True) is None
    counts = (-0.5, math.inf)
    assert _grown(None, [0.0, 4.0], False, least=1.0, bounds=counts) == (-0.5, 6.0)  # none below -0.5
    assert _grown(None, [10.0, 14.0], False, bounds=counts) == (8.0, 16.0)  # a floor below changes nothing
    assert _grown((-0.5, 6.0), [0.0, 8.0], False, bounds=counts) == (-0.5, 12.0)


def test_a_live_plot_on_rank_0_only_and_its_repr(tmp_path):
    live = LivePlot(tmp_path / "x" / "live.png", display=False)
    assert repr(live) == f"LivePlot({str(tmp_path / 'x' / 'live.png')!r})"
    assert live.display is False and live.frames == 0 and live.full_redraws == 0
    run = types.SimpleNamespace(comm=types.SimpleNamespace(is_root=False), epochs=2, steps_per_epoch=3)
    live.on_train_begin(run)
    live.on_epoch_end(run)  # another rank: nothing drawn, nothing written
    assert live.figure is None and live.frames == 0 and not (tmp_path / "x").exists()
    assert repr(LivePlot(display=True)) == "LivePlot(None)"
    assert LivePlot(display=1).display is True


def test_an_ipython_terminal_is_not_a_notebook(monkeypatch):
    terminal = types.SimpleNamespace()  # IPython's terminal shell has no kernel
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: terminal))
    assert not in_notebook()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert not in_notebook()
    shell = types.SimpleNamespace(kernel=None)
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert not in_notebook()


def test_an_epochs_frame_draws_the_given_watchs_records_and_lands_atomically(tmp_path, monkeypatch):
    import os  # noqa: PLC0415

    path = tmp_path / "a" / "b" / "live.png"
    watch = types.SimpleNamespace(records={"step": [0], "layers": {"x ReLU": {"dead_per_epoch": [3]}}})
    live = LivePlot(path, watch=watch, title="run")
    assert live.dpi == 72
    run = types.SimpleNamespace(comm=types.SimpleNamespace(is_root=True), epochs=4, steps_per_epoch=3,
                                state=types.SimpleNamespace(history={"epoch": [2], "train_loss": [1.0, 0.5],
                                                                     "watch": {"layers": {}}}))
    live.on_train_begin(run)
    assert (live._epochs, live._steps) == (4, 12)
    drawn = []
    monkeypatch.setattr(live, "_build", lambda series: setattr(live, "figure", object()))
    monkeypatch.setattr(live, "_update", lambda series, epoch: drawn.append((series, epoch)))
    monkeypatch.setattr(live, "_png", lambda: b"png")
    moves = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (moves.append((a, b)), real_replace(a, b)))
    live.on_epoch_end(run)
    series, epoch = drawn[0]
    assert epoch == "epoch 2/4" and series["dead"] == {"x ReLU": ([1], [3])}  # the watch's, not the history's
    assert moves == [(path.with_name("live.png.part"), path)] and path.read_bytes() == b"png"
    assert live.frames == 1 and not path.with_name("live.png.part").exists()


def test_a_panel_whose_axis_grows_is_redrawn_alone_and_the_frame_is_what_a_full_draw_gives(tmp_path):
    """Blitting: the background is drawn once, then only the cell of a panel whose y axis had to
    grow is drawn anew. Each frame's pixels must equal those of the whole figure drawn from scratch."""
    model = Autoencoder((784, 8, 4), code_activation="relu", seed=0)
    live = LivePlot(tmp_path / "live.png")
    pixels = []

    class Compare(Callback):
        order = 60  # after LivePlot

        def on_epoch_end(self, run):
            canvas = live.figure.canvas
            blitted = numpy.asarray(canvas.buffer_rgba()).copy()
            canvas.draw()  # the whole figure, from scratch (the animated lines left out) ...
            for _, ax, _, lines, _, _ in live._panels:  # ... then the lines and the epoch over it
                for line in lines.values():
                    ax.draw_artist(line)
            live.figure.draw_artist(live._epoch_text)
            pixels.append((blitted, numpy.asarray(canvas.buffer_rgba()).copy()))

    fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters(), lr=1e-2), tiny_images(), epochs=4,
        batch_size=16, callbacks=quiet(nn.Watch(model), live, Compare()))
    assert live.full_redraws == 1  # the first frame only
    assert live.panel_redraws >= 1  # the loss fell out of the first frame's limits
    assert live.panel_redraws < 3 * (live.frames - 1)  # not every panel every frame
    for blitted, drawn in pixels:
        numpy.testing.assert_array_equal(blitted, drawn)

"""Tests of nanoae.fashion.plots: every figure is written as a valid, reasonably sized PNG."""

import warnings

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest

from nanoae.fashion import plots

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(path, min_side=100, max_bytes=300_000):
    """Assert `path` is a PNG of sensible size and return its pixels."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert 1_000 < len(data) < max_bytes
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > min_side and img.shape[1] > min_side
    return img


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def images(rng):
    labels = np.arange(40) % 10
    floats = rng.random((40, 784))
    return floats, labels


def test_reconstructions_float_flat_and_square_inputs(tmp_path, images):
    floats, labels = images
    out = plots.plot_reconstructions(floats, floats[:, ::-1], labels, CLASS_NAMES,
                                     tmp_path / "a" / "b" / "rec.png")
    assert out == tmp_path / "a" / "b" / "rec.png"  # parents created, Path returned
    one = check_png(out)
    out2 = plots.plot_reconstructions(floats.reshape(-1, 28, 28), floats.reshape(-1, 28, 28),
                                      labels, CLASS_NAMES, tmp_path / "rec2.png", per_class=2,
                                      title="two per class")
    two = check_png(out2)
    assert two.shape[0] > 1.6 * one.shape[0]  # 4 image rows instead of 2


def test_reconstructions_uint8_is_rescaled(tmp_path, images):
    floats, labels = images
    as_uint8 = np.round(floats * 255).astype(np.uint8)
    a = check_png(plots.plot_reconstructions(as_uint8, floats, labels, CLASS_NAMES,
                                             tmp_path / "u8.png"))
    b = check_png(plots.plot_reconstructions(as_uint8 / 255.0, floats, labels, CLASS_NAMES,
                                             tmp_path / "f.png"))
    # Same picture whether pixels come as 0..255 integers or 0..1 floats
    # (without rescaling, the uint8 originals would be clipped to white).
    assert a.shape == b.shape
    assert np.abs(a - b).max() < 0.02


def test_reconstructions_missing_class_and_bad_lengths(tmp_path, images):
    floats, labels = images
    keep = labels != 3
    check_png(plots.plot_reconstructions(floats[keep], floats[keep], labels[keep], CLASS_NAMES,
                                         tmp_path / "missing.png"))
    with pytest.raises(ValueError):
        plots.plot_reconstructions(floats, floats[:-1], labels, CLASS_NAMES, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_curves_handles_missing_and_empty_keys(tmp_path, monkeypatch):
    histories = {
        "autoencoder": {"train_loss": [0.05, 0.03, 0.02], "val_loss": []},
        "classifier (frozen codes)": {"train_loss": [1.0, 0.6], "val_loss": [1.1, 0.7],
                                      "train_accuracy": [0.7, 0.8], "val_accuracy": [0.68, 0.79]},
        "fine-tune": {"val_accuracy": [88.0, 89.5]},  # percent already, no losses
        "not run": {},
    }
    out = plots.plot_curves(histories, tmp_path / "curves.png", title="Curves")
    img = check_png(out)
    assert img.shape[1] > img.shape[0]  # panels side by side
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig))
    plots.plot_curves(histories, "unused.png", title="Curves")
    # what each panel draws: the losses given (an empty val_loss draws no line), then the
    # accuracies in percent on panels of their own (fractions scaled, percents kept)
    drawn = [(ax.get_title(), ax.get_ylabel(), [(line.get_label(), [float(v) for v in line.get_ydata()])
                                               for line in ax.get_lines()]) for ax in figs[0].axes]
    assert drawn == [
        ("autoencoder", "loss", [("train loss", [0.05, 0.03, 0.02])]),
        ("classifier (frozen codes)", "loss", [("train loss", [1.0, 0.6]), ("validation loss", [1.1, 0.7])]),
        ("fine-tune", "loss", []),
        ("not run", "loss", []),
        ("", "accuracy (%)", [("train accuracy", [70.0, 80.0]), ("validation accuracy", [68.0, 79.0])]),
        ("", "accuracy (%)", [("validation accuracy", [88.0, 89.5])]),
    ]
    with pytest.raises(ValueError):
        plots.plot_curves({}, tmp_path / "empty.png")


def test_confusion_zero_row_does_not_warn(tmp_path, rng):
    cm = rng.integers(0, 50, (10, 10)) + np.diag(rng.integers(500, 900, 10))
    cm[4] = 0  # a class with no test images
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fails even outside pytest's filterwarnings
        check_png(plots.plot_confusion(cm, CLASS_NAMES, tmp_path / "cm.png", title="Test"))
        check_png(plots.plot_confusion(cm, CLASS_NAMES, tmp_path / "counts.png", normalize=False))
        check_png(plots.plot_confusion(np.zeros((10, 10), int), CLASS_NAMES,
                                       tmp_path / "zeros.png"))
    with pytest.raises(ValueError):
        plots.plot_confusion(np.ones((3, 3)), CLASS_NAMES, tmp_path / "bad.png")


def test_tsne_with_subtitle_and_subsampling(tmp_path, rng):
    labels = rng.integers(0, 10, 3000)
    emb = rng.normal(size=(3000, 2)) + 6 * np.stack([np.cos(labels), np.sin(labels)], 1)
    check_png(plots.plot_tsne(emb, labels, CLASS_NAMES, tmp_path / "tsne.png",
                              title="t-SNE", subtitle="trustworthiness 0.999"))
    check_png(plots.plot_tsne(emb, labels, CLASS_NAMES, tmp_path / "few.png", max_points=500))
    with pytest.raises(ValueError):
        plots.plot_tsne(emb[:, :1], labels, CLASS_NAMES, tmp_path / "bad.png")


def test_label_positions_separate_close_labels_and_leave_the_rest():
    points = [[0.0, 0.0], [0.05, 0.01], [5.0, 5.0], [0.0, 0.3]]
    pos = plots.label_positions(points, (1.0, 0.2))
    for i in range(len(pos)):  # no two label boxes overlap any more
        for j in range(i + 1, len(pos)):
            dx, dy = abs(pos[i] - pos[j])
            assert dx >= 1.0 or dy >= 0.2 - 1e-9, (i, j, pos)
    assert np.array_equal(pos[:, 0], np.asarray(points)[:, 0])  # moved vertically only
    assert np.array_equal(pos[2], [5.0, 5.0])  # a label far from the others stays put
    assert pos[1, 1] > pos[0, 1]  # order kept: the higher median keeps the higher label


def _texts(fig):
    """Every piece of text on a figure: titles, labels, legend entries, annotations."""
    out = [fig._suptitle.get_text()] if fig._suptitle else []
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()] + [t.get_text() for t in ax.texts]
        if ax.get_legend():
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    return [t for t in out if t]


def test_codes_figure_shows_each_units_spread_and_marks_dead_units_only_where_there_are(tmp_path, rng):
    linear = rng.normal(size=(1000, 32)) * np.geomspace(0.1, 30, 32)
    fig = plots._codes_figure(linear)
    texts = " ".join(_texts(fig))
    assert len(fig.axes) == 1  # no "% non-zero" panel: a linear code is never exactly zero
    assert "none dead" in texts and "red" not in texts and "dead:" not in texts
    # the spread drawn for each unit is its own: the 5-95 % bars grow with the unit's scale
    (thin, thick) = [c for c in fig.axes[0].collections][:2]
    lengths = [abs(seg[1][1] - seg[0][1]) for seg in thin.get_segments()]
    assert np.argsort(lengths).tolist() == list(range(32))

    relu = np.maximum(rng.normal(size=(200, 32)), 0)
    relu[:, [2, 7]] = 0
    fig = plots._codes_figure(relu)
    texts = " ".join(_texts(fig))
    assert len(fig.axes) == 2 and "2 of 32 units dead" in texts and "dead: zero on every image" in texts
    marked = [line for line in fig.axes[0].lines if line.get_marker() == "x"][0]
    assert marked.get_xdata().tolist() == [2, 7]
    check_png(plots.plot_codes_activity(relu, tmp_path / "codes.png"))
    with pytest.raises(ValueError):
        plots.plot_codes_activity(np.empty((0, 32)), tmp_path / "none.png")


def test_a_class_in_two_islands_is_labelled_on_an_island_not_between_them(rng):
    """A centroid (or median) of two equal islands lies in the empty space between them."""
    left = rng.normal(size=(300, 2)) * 0.5 + [-10, 0]
    right = rng.normal(size=(260, 2)) * 0.5 + [10, 0]
    other = rng.normal(size=(300, 2)) * 0.5 + [0, 8]
    emb = np.concatenate([left, right, other])
    labels = np.repeat([0, 0, 1], [300, 260, 300])
    anchors = plots.label_anchors(emb, labels, [0, 1])
    assert np.linalg.norm(anchors[0] - [-10, 0]) < 1.0  # on the larger island
    assert np.linalg.norm(anchors[1] - [0, 8]) < 1.0
    assert abs(np.median(emb[labels == 0], axis=0)[0]) < 10  # where a median would go: between


def test_a_class_is_named_where_most_of_its_points_are_not_at_a_small_tight_clump(rng):
    """70 % of class 0 in a loose island, 30 % in a tight clump beside class 1: the clump is
    the densest spot (where a label placed by local density went), the island is where most
    of the class is."""
    loose = rng.normal(size=(700, 2)) * 2.0
    clump = rng.normal(size=(300, 2)) * 0.1 + [15, 0]
    other = rng.normal(size=(500, 2)) + [15, 6]
    emb = np.concatenate([loose, clump, other])
    labels = np.repeat([0, 0, 1], [700, 300, 500])
    anchors = plots.label_anchors(emb, labels, [0, 1])
    assert np.linalg.norm(anchors[0]) < 1.0  # in the middle of the loose island
    assert np.linalg.norm(anchors[1] - [15, 6]) < 1.0
    # the anchor is one of the class's own points: never in empty space or another class
    assert any((emb[labels == 0] == anchors[0]).all(axis=1))


def test_codes_figure_shows_the_reference_autoencoders_dead_units_beside_the_default(rng):
    linear = rng.normal(size=(500, 32))
    relu = np.maximum(rng.normal(size=(500, 32)), 0)
    relu[:, [3, 5, 9, 30]] = 0
    fig = plots._codes_figure({"autoencoder 784-256-128-32 (linear code)": linear,
                               "reference autoencoder 784-128-64-32 (relu code)": relu})
    titles = [sub._suptitle.get_text() for sub in fig.subfigs]
    assert titles == ["autoencoder 784-256-128-32 (linear code) (32 units, none dead)",
                      "reference autoencoder 784-128-64-32 (relu code) (4 of 32 units dead)"]
    marked = [line for ax in fig.subfigs[1].axes for line in ax.lines if line.get_marker() == "x"]
    assert len(marked) == 1 and marked[0].get_xdata().tolist() == [3, 5, 9, 30]


def test_curves_name_each_loss_and_share_one_accuracy_scale(tmp_path, monkeypatch):
    histories = {"autoencoder": {"train_loss": [0.3, 0.29], "val_loss": [0.28, 0.27]},
                 "head": {"train_loss": [1.0, 0.6], "val_loss": [1.1, 0.7],
                          "train_accuracy": [0.70, 0.80], "val_accuracy": [0.68, 0.79]},
                 "fine-tuned": {"train_loss": [0.5, 0.3], "val_loss": [0.4, 0.35],
                                "train_accuracy": [0.90, 0.95], "val_accuracy": [0.89, 0.91]}}
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig))
    plots.plot_curves(histories, "unused.png", loss_names={"autoencoder": "BCE per pixel",
                                                           "head": "cross-entropy",
                                                           "fine-tuned": "cross-entropy"})
    axes = figs[0].axes
    assert [ax.get_ylabel() for ax in axes[:3]] == ["BCE per pixel", "cross-entropy", "cross-entropy"]
    accuracy = [ax for ax in axes if ax.get_ylabel() == "accuracy (%)"]
    assert len(accuracy) == 2 and accuracy[0].get_ylim() == accuracy[1].get_ylim()
    low, high = accuracy[0].get_ylim()
    assert low <= 68 and high >= 95  # both panels' ranges fit


def test_curves_mark_the_kept_epoch_say_what_the_train_loss_saw_and_use_one_marker(tmp_path):
    histories = {"autoencoder": {"train_loss": [0.3, 0.29], "val_loss": [0.28, 0.27]},
                 "head": {"train_loss": [1.0, 0.6, 0.5], "val_loss": [1.1, 0.7, 0.8],
                          "train_accuracy": [0.7, 0.8, 0.85], "val_accuracy": [0.68, 0.79, 0.78],
                          "best_epoch": 2}}
    out = plots.plot_curves(histories, tmp_path / "c.png",
                            train_labels={"autoencoder": "train loss (masked inputs)"})
    check_png(out)
    fig = plots.Figure()
    axes = fig.subplots(1, 2)
    plots._curves_panel(axes[0], "autoencoder", histories["autoencoder"], "train loss (masked inputs)",
                        "loss")
    plots._curves_panel(axes[1], "head", histories["head"], "train loss", "loss")
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in axes]
    assert legends[0] == ["train loss (masked inputs)", "validation loss"]
    assert "kept epoch 2 (best on validation)" in legends[1]
    kept = [line for line in axes[1].lines if line.get_linestyle() == ":"]
    assert len(kept) == 1 and list(kept[0].get_xdata()) == [2, 2]
    markers = {line.get_marker() for ax in fig.axes for line in ax.lines if line.get_linestyle() != ":"}
    assert markers == {"."}


def test_confusion_cells_share_one_number_format(monkeypatch):
    import re

    cm = np.diag([900, 5, 1000]) + 3  # cells from 0.3 % to 99.7 %: below and above 10
    fig_texts = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: fig_texts.extend(
        t.get_text() for t in fig.axes[0].texts))
    plots.plot_confusion(cm, CLASS_NAMES[:3], "unused.png")
    assert len(fig_texts) == 9 and all(re.fullmatch(r"\d+\.\d", t) for t in fig_texts), fig_texts


def test_no_figures_left_open(tmp_path, rng):
    # Three classes keep this cheap; what matters is that no call leaves a pyplot figure.
    names, labels, x = CLASS_NAMES[:3], np.arange(30) % 3, rng.random((30, 784))
    before = plt.get_fignums()
    plots.plot_reconstructions(x, x, labels, names, tmp_path / "r.png")
    plots.plot_curves({"s": {"train_loss": [1.0, 0.5]}}, tmp_path / "c.png")
    plots.plot_confusion(np.eye(3, dtype=int), names, tmp_path / "m.png")
    plots.plot_tsne(rng.normal(size=(30, 2)), labels, names, tmp_path / "t.png")
    plots.plot_codes_activity(rng.random((50, 8)), tmp_path / "a.png")
    assert plt.get_fignums() == before == []


# -- what the figures compute (the drawing functions are left out of mutation testing) --------

def test_images_are_made_square_and_scaled_to_0_1():
    flat = np.arange(2 * 9).reshape(2, 9).astype(np.uint8)
    out = plots._as_images(flat)
    assert out.shape == (2, 3, 3) and out.dtype == np.float64
    np.testing.assert_array_equal(out.ravel(), np.arange(18) / 255.0)
    floats = np.array([[[0.0, 0.5], [1.5, 1.0]]])  # max 1.5: still on the 0..1 scale
    np.testing.assert_array_equal(plots._as_images(floats), [[[0.0, 0.5], [1.0, 1.0]]])
    big = np.array([[[0.0, 51.0], [255.0, 300.0]]])  # floats never divided by 255
    np.testing.assert_array_equal(plots._as_images(big), [[[0.0, 0.2], [1.0, 1.0]]])
    np.testing.assert_array_equal(plots._as_images(np.array([[[-1.0, 0.5]]])), [[[0.0, 0.5]]])
    assert plots._as_images(np.empty((0, 2, 2))).shape == (0, 2, 2)
    with pytest.raises(ValueError, match="expected square images, got rows of 8 pixels"):
        plots._as_images(np.zeros((2, 8)))
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 784\) or \(N, 28, 28\), got \(4,\)"):
        plots._as_images(np.zeros(4))


def test_a_history_series_is_the_first_key_with_values():
    h = {"a": [], "b": [[1, 2]], "c": [3]}
    np.testing.assert_array_equal(plots._series(h, "a", "b", "c"), [1.0, 2.0])
    assert plots._series(h, "a", "z").shape == (0,) and plots._series(h, "c").dtype == float
    assert plots._series({"a": None, "c": [3]}, "a", "c").tolist() == [3.0]


def test_accuracies_are_shown_in_percent_and_panels_share_one_range():
    np.testing.assert_array_equal(plots._as_percent(np.array([0.5, 1.0])), [50.0, 100.0])
    np.testing.assert_array_equal(plots._as_percent(np.array([-1.0, 0.2])), [-100.0, 20.0])
    np.testing.assert_array_equal(plots._as_percent(np.array([50.0, 90.0])), [50.0, 90.0])
    np.testing.assert_array_equal(plots._as_percent(np.array([1.01])), [1.01])
    np.testing.assert_array_equal(plots._as_percent(np.array([np.nan, 0.5])), [np.nan, 50.0])
    assert plots._union([(40, 80), (10, 60), (30, 95)]) == (10, 95)


def test_confusion_cells_in_percent_of_each_true_class_or_as_counts():
    cm = np.array([[3, 1, 0], [0, 0, 0], [1, 1, 2]])
    values, vmax, label, acc = plots.confusion_cells(cm)
    np.testing.assert_allclose(values, [[75, 25, 0], [0, 0, 0], [25, 25, 50]])
    assert (vmax, label, acc) == (100.0, "% of true class", "62.50 %")  # 5 of 8
    values, vmax, label, acc = plots.confusion_cells(cm, normalize=False)
    np.testing.assert_array_equal(values, cm)
    assert (vmax, label, acc) == (3.0, "count", "62.50 %")
    assert plots.confusion_cells(np.zeros((2, 2)), normalize=False)[1:] == (1.0, "count", "n/a")
    assert plots.cell_text(75.0, 100.0, True) == ("75.0", "white")
    assert plots.cell_text(55.0, 100.0, True) == ("55.0", "black")  # not above 55 %
    assert plots.cell_text(56.0, 100.0, True)[1] == "white"
    assert plots.cell_text(2.0, 3.0, False) == ("2", "white")
    assert plots.cell_text(1.0, 3.0, False) == ("1", "black")


def test_the_map_draws_a_fixed_subset_and_says_so():
    assert plots.drawn_points(5, None).tolist() == [True] * 5
    assert plots.drawn_points(5, 5).all()
    shown = plots.drawn_points(50, 20)
    assert shown.sum() == 20 and np.array_equal(shown, plots.drawn_points(50, 20))  # fixed
    expected = np.zeros(50, bool)
    expected[np.random.default_rng(0).choice(50, 20, replace=False)] = True
    assert np.array_equal(shown, expected)
    assert plots.drawn_points(50, 20.0).sum() == 20
    assert plots.tsne_caption(np.ones(3, bool)) == "t-SNE axes have no units: only neighbourhoods are meaningful"
    assert plots.tsne_caption(shown) == ("t-SNE axes have no units: only neighbourhoods are meaningful; "
                                         "20 of 50 points drawn")
    np.testing.assert_allclose(plots.label_box(np.array([[0.0, 0.0], [10.0, 100.0], [5.0, 20.0]])),
                               [1.3, 3.5])
    assert (plots.label_box(np.zeros((3, 2))) > 0).all()  # a map of one spot: still a box


def test_the_codes_figures_size_and_spread():
    linear, relu = np.ones((4, 10)) * 0.5, np.zeros((4, 60))
    assert plots.codes_figure_size([linear]) == ([3.6], 6.0)  # at least 6 inches wide
    assert plots.codes_figure_size([linear, relu]) == ([3.6, 5.0], 13.5)  # 0.2 * 60 + 1.5
    assert plots.codes_figure_size([np.zeros((2, 100))])[1] == 16.0  # at most 16
    codes = np.array([[0.0, 1.0, 2.0], [0.0, 3.0, 0.0], [0.0, 5.0, 0.0], [0.0, 7.0, 0.0], [0.0, 9.0, 4.0]])
    percentiles, active, dead = plots.code_spread(codes)
    np.testing.assert_allclose(percentiles[:, 1], [1.4, 3.0, 5.0, 7.0, 8.6])
    np.testing.assert_allclose(active, [0.0, 1.0, 0.4])
    assert dead.tolist() == [True, False, False]
    assert plots.dead_state(dead) == "1 of 3 units dead"
    assert plots.dead_state(np.array([False, False])) == "2 units, none dead"
    assert plots._rectified(codes) and not plots._rectified(codes + 0.5)
    assert plots._as_codes([[1, 2]]).dtype == float
    for bad in (np.zeros(3), np.zeros((0, 3))):
        with pytest.raises(ValueError, match="expected a non-empty"):
            plots._as_codes(bad)


def test_the_diagnostics_grid_and_histogram_shares():
    assert [plots.grid_rows(n, 3) for n in (0, 1, 3, 4, 6, 7)] == [1, 1, 1, 2, 2, 3]
    share, edges = plots.histogram_shares({"range": [0.0, 1.0], "counts": [1, 3, 0, 4]})
    np.testing.assert_allclose(share, [0.125, 0.375, 0.0, 0.5])
    np.testing.assert_allclose(edges, [0.0, 0.25, 0.5, 0.75, 1.0])
    share, _ = plots.histogram_shares({"range": [-1, 1], "counts": [0, 0]})
    assert share.tolist() == [0.0, 0.0]  # an empty histogram: no division by zero
    share, _ = plots.histogram_shares({"range": [-1, 1], "counts": [0.25, 0.25]})
    assert share.tolist() == [0.25, 0.25]  # fewer than one count in all: divided by 1


def test_legend_labels_of_the_layers_and_their_histograms():
    assert plots._short("encoder layer 0 Dense(784, 128)") == "enc 0 Dense(784, 128)"
    assert plots._short("decoder layer 2 ReLU()") == "dec 2 ReLU()"
    assert plots._short("layer 3 Sigmoid()") == "3 Sigmoid()"
    relu = {"dead_per_epoch": [0, 4, 7]}
    assert plots._hist_label(relu, 1, [1, 1, 2, 3]) == "epoch 1: 0 dead units"
    assert plots._hist_label(relu, 3, [1, 1, 2, 3]) == "epoch 3: 7 dead units"
    assert plots._hist_label(relu, 4, [1, 4]) == "epoch 4"  # beyond the counts
    sig = {"saturated": [0.1, 0.2, 0.3, 0.45]}
    assert plots._hist_label(sig, 2, [1, 1, 2, 2]) == "epoch 2: 30.0% saturated"  # its first record
    assert plots._hist_label(sig, 1, (1, 1, 2, 2)) == "epoch 1: 10.0% saturated"
    assert plots._hist_label(sig, 3, [1, 1, 2, 2]) == "epoch 3"
    assert plots._hist_label({}, 2, [2]) == "epoch 2"


def test_label_positions_push_an_overlapping_pair_apart_by_half_their_overlap_each():
    pos = plots.label_positions([[0.0, 0.0], [0.5, 0.1]], (1.0, 0.4))
    np.testing.assert_allclose(pos, [[0.0, -0.15], [0.5, 0.25]])  # overlap 0.3: 0.15 each
    pos = plots.label_positions([[0.0, 0.1], [0.5, 0.0]], (1.0, 0.4))
    np.testing.assert_allclose(pos, [[0.0, 0.25], [0.5, -0.15]])  # the lower one goes down
    pos = plots.label_positions([[0.0, 0.0], [1.0, 0.0], [0.0, 0.4]], (1.0, 0.4))
    np.testing.assert_allclose(pos, [[0.0, 0.0], [1.0, 0.0], [0.0, 0.4]])  # touching: apart already
    pos = plots.label_positions([[0.0, 0.0], [0.0, 0.0]], (1.0, 0.4))
    np.testing.assert_allclose(pos, [[0.0, -0.2], [0.0, 0.2]])  # a tie: the second goes up
    three = [[0.0, 0.0], [0.1, 0.1], [0.2, 0.2]]
    once = plots.label_positions(three, (1.0, 0.4), iterations=1)
    settled = plots.label_positions(three, (1.0, 0.4))
    assert not np.allclose(once, settled)  # one pass is not enough for three in a pile
    gaps = np.diff(np.sort(settled[:, 1]))
    assert (gaps >= 0.4 - 1e-9).all() and gaps.max() < 0.4 + 1e-6


def test_label_anchors_are_medoids_of_the_largest_island():
    """Class 0: an island of 4 points (its medoid is the point nearest the others) and a lone
    far point; class 1: two points (fewer than 5 others: the spacing of the nearest)."""
    emb = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.6, 0.0], [40.0, 0.0], [5.0, 5.0], [5.0, 6.0]])
    labels = np.array([0, 0, 0, 0, 0, 1, 1])
    anchors = plots.label_anchors(emb, labels, [1, 0])
    np.testing.assert_array_equal(anchors, [[5.0, 5.0], [2.0, 0.0]])
    one = plots.label_anchors(np.array([[3.0, 4.0]]), np.array([0]), [0])
    np.testing.assert_array_equal(one, [[3.0, 4.0]])
    assert plots.label_anchors(emb, labels, []).shape == (0, 2)
    # at most `sample` points per class, a fixed subset: the same anchor on every call
    rng = np.random.default_rng(3)
    many = rng.normal(size=(400, 2))
    a = plots.label_anchors(many, np.zeros(400, int), [0], sample=50)
    assert np.array_equal(a, plots.label_anchors(many, np.zeros(400, int), [0], sample=50))
    assert not np.array_equal(a, plots.label_anchors(many, np.zeros(400, int), [0]))
    # seven points a step apart and two far ones: the seven are the largest island, whose
    # medoid is the middle one; a link wide enough joins all nine, and the medoid moves right
    line = np.array([[x, 0.0] for x in (0, 1, 2, 3, 4, 5, 6, 30, 31)])
    np.testing.assert_array_equal(plots.label_anchors(line, np.zeros(9, int), [0]), [[3.0, 0.0]])
    np.testing.assert_array_equal(plots.label_anchors(line, np.zeros(9, int), [0], link=100.0),
                                  [[4.0, 0.0]])


def test_an_empty_or_all_missing_accuracy_series_is_shown_as_it_is():
    assert plots._as_percent(np.array([])).shape == (0,)  # no values: no maximum to ask for
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.isnan(plots._as_percent(np.array([np.nan]))).all()


def test_floats_up_to_1_5_are_fractions_and_above_it_grey_levels():
    np.testing.assert_allclose(plots._as_images(np.array([[[0.0, 2.0]]])), [[[0.0, 2.0 / 255]]])


def test_confusion_cells_of_a_single_count_and_of_no_classes():
    values, vmax, label, acc = plots.confusion_cells(np.array([[1, 0], [0, 0]]))
    assert values.tolist() == [[100.0, 0.0], [0.0, 0.0]] and acc == "100.00 %"  # one example is enough
    assert plots.confusion_cells(np.zeros((0, 0)), normalize=False)[1] == 1.0  # nothing to count
    assert plots.cell_text(0.55 * 100.0, 100.0, True)[1] == "black"  # exactly 55 % of the top: not dark


def test_label_positions_one_pass_and_the_default_number_of_passes():
    once = plots.label_positions([[0.0, 0.0], [0.1, 0.1], [0.2, 0.2]], (1.0, 0.4), iterations=1)
    # pairs (0, 1), (0, 2), (1, 2) in turn, each pushed apart by half of its overlap each
    np.testing.assert_allclose(once, [[0.0, -0.175], [0.1, 0.4375], [0.2, 0.0375]])
    np.testing.assert_allclose(plots.label_positions([[0, 0], [0, 0]], (1, 1)), [[0, -0.5], [0, 0.5]])  # ints
    pile = np.zeros((20, 2))  # twenty labels on one spot take more than 100 passes to settle
    default = plots.label_positions(pile, (1.0, 0.4))
    np.testing.assert_array_equal(default, plots.label_positions(pile, (1.0, 0.4), iterations=100))
    assert not np.array_equal(default, plots.label_positions(pile, (1.0, 0.4), iterations=101))


def test_label_anchors_islands_at_their_link_and_their_sample():
    """Seven points a step apart and three 18 beyond: the spacing (median distance to the 5th
    nearest point) is 4.5, so the three join the seven at a link of 4 (18 <= 4 x 4.5), not below."""
    line = np.array([[x, 0.0] for x in (0, 1, 2, 3, 4, 5, 6, 24, 25, 26)])
    zeros = np.zeros(10, int)
    np.testing.assert_array_equal(plots.label_anchors(line, zeros, [0]), [[3.0, 0.0]])  # link 3
    np.testing.assert_array_equal(plots.label_anchors(line, zeros, [0], link=3.5), [[3.0, 0.0]])
    np.testing.assert_array_equal(plots.label_anchors(line, zeros, [0], link=4.0), [[4.0, 0.0]])  # joined
    anchors = plots.label_anchors(np.array([[1, 2], [3, 4]]), np.zeros(2, int), [0])
    assert anchors.dtype == float and anchors.tolist() == [[1.0, 2.0]]
    # as many points as the sample: all of them, in their order (a tie goes to the first)
    square = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    np.testing.assert_array_equal(plots.label_anchors(square, np.zeros(4, int), [0], sample=4), [[0.0, 0.0]])
    # 1,501 points, symmetric about a centre that is their medoid: the fixed sample of 1,500 leaves it out
    rng = np.random.default_rng(7)
    half = np.sqrt(rng.uniform(0, 1, 750))[:, None] * np.c_[np.cos(a := rng.uniform(0, 2 * np.pi, 750)), np.sin(a)]
    left_out = np.setdiff1d(np.arange(1501), np.random.default_rng(0).choice(1501, 1500, replace=False))[0]
    cloud = np.insert(np.r_[half, -half], left_out, [0.0, 0.0], axis=0)
    np.testing.assert_array_equal(plots.label_anchors(cloud, np.zeros(1501, int), [0], sample=1501), [[0.0, 0.0]])
    assert plots.label_anchors(cloud, np.zeros(1501, int), [0]).tolist() != [[0.0, 0.0]]


def test_integer_pixels_are_grey_levels_and_float32_fractions_stay_fractions():
    np.testing.assert_allclose(plots._as_images(np.array([[[0, 1]]], np.uint8)), [[[0.0, 1 / 255]]])
    np.testing.assert_allclose(plots._as_images(np.array([[[0.0, 0.5]]], np.float32)), [[[0.0, 0.5]]])


def test_label_anchors_sample_distinct_points():
    pts = np.random.default_rng(0).normal(size=(8, 2))
    subset = np.random.default_rng(0).choice(8, 6, replace=False)  # the fixed sample: six different points
    np.testing.assert_array_equal(plots.label_anchors(pts, np.zeros(8, int), [0], sample=6),
                                  plots.label_anchors(pts[subset], np.zeros(6, int), [0]))

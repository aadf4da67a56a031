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

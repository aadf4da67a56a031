"""Figures for the Fashion-MNIST autoencoder + classifier report.

Every function takes host NumPy arrays, writes one PNG (parent folders are
created), closes its figure and returns the :class:`~pathlib.Path`.

* :func:`plot_reconstructions` -- one column per class; rows alternate the
  original image and the autoencoder's reconstruction of it. Blurry but
  recognisable shapes are normal for a small dense code; a column where the
  reconstruction looks like another class shows what the code cannot tell apart.
* :func:`plot_reconstruction_rows` -- the same test images, then one row per
  model's reconstruction of them (the demo: the autoencoder, then PCA with as
  many components as the code), so the eye compares them column by column.
* :func:`plot_curves` -- one panel per training stage: loss on the left axis
  (train solid, validation dashed) and, where recorded, accuracy in % on the
  right axis; a dotted vertical line marks the epoch whose weights were kept.
  Validation loss rising while train loss falls means overfitting.
* :func:`plot_confusion` -- row-normalised confusion matrix: row = true class,
  column = predicted class, each row sums to 100 %. The diagonal is per-class
  recall; bright off-diagonal cells are the classes that get mixed up
  (on Fashion-MNIST typically shirt / T-shirt / pullover / coat).
* :func:`plot_tsne` -- 2-D t-SNE map of the codes, coloured by class, each class
  named where most of its points are (:func:`label_anchors`). Only neighbourhoods are
  meaningful: the axes, distances between clusters and cluster sizes are not.
* :func:`plot_codes_activity` -- per code unit, the spread of its values over
  the images (5-95 % range, quartiles, median); a unit that is zero on every
  image is dead (a ReLU code can have them) and is marked. For a ReLU code a
  second panel gives how often each unit is non-zero.

Only the object API (:class:`matplotlib.figure.Figure`) is used: it needs no
backend selection, never opens a window, and nothing is left in pyplot's
figure registry, so there is nothing to leak.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import patheffects
from matplotlib.figure import Figure

DPI = 110
_OUTLINE = [patheffects.withStroke(linewidth=3, foreground="white")]


def _save(fig: Figure, path) -> Path:  # pragma: no mutate block (drawing)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # No pyplot, so no registry holds the figure: it is freed once the caller's
    # frame drops it (an explicit fig.clear() only costs time).
    fig.savefig(path, dpi=DPI)
    return path


def _as_images(x) -> np.ndarray:
    """(N, 784) or (N, 28, 28), uint8 0..255 or float 0..1 -> float (N, side, side) in [0, 1]."""
    x = np.asarray(x)
    if x.ndim == 2:
        side = int(round(np.sqrt(x.shape[1])))
        if side * side != x.shape[1]:
            raise ValueError(f"expected square images, got rows of {x.shape[1]} pixels")
        x = x.reshape(len(x), side, side)
    if x.ndim != 3:
        raise ValueError(f"expected images of shape (N, 784) or (N, 28, 28), got {x.shape}")
    # Integer pixels, or floats that were never divided by 255, are on the 0..255 scale.
    if not np.issubdtype(x.dtype, np.floating) or (x.size and np.nanmax(x) > 1.5):
        x = x.astype(np.float64) / 255.0
    return np.clip(x, 0.0, 1.0)


def plot_reconstructions(originals, reconstructions, labels, class_names, path,
                         per_class=1, title=None) -> Path:  # pragma: no mutate block (drawing)
    """Grid: one column per class, rows alternate original / reconstruction."""
    orig, rec = _as_images(originals), _as_images(reconstructions)
    labels = np.asarray(labels).astype(int).ravel()
    if not len(orig) == len(rec) == len(labels):
        raise ValueError(f"originals, reconstructions and labels differ in length: "
                         f"{len(orig)}, {len(rec)}, {len(labels)}")
    per_class = int(per_class)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    k = len(class_names)
    nrows = 2 * per_class
    fig = Figure(figsize=(1.05 * k + 0.9, 1.1 * nrows + 0.8))
    axes = fig.subplots(nrows, k, squeeze=False)
    for c in range(k):
        picks = np.flatnonzero(labels == c)[:per_class]  # first ones: deterministic
        for j in range(per_class):
            for r, (imgs, name) in enumerate(((orig, "original"), (rec, "reconstruction"))):
                ax = axes[2 * j + r, c]
                # Hide ticks but keep the axes, so the row label (ylabel) stays visible.
                ax.set_xticks([])
                ax.set_yticks([])
                if j < len(picks):
                    ax.imshow(imgs[picks[j]], cmap="gray", vmin=0.0, vmax=1.0)
                else:  # class absent from the sample: leave the cell empty
                    for s in ax.spines.values():
                        s.set_visible(False)
                if c == 0:
                    ax.set_ylabel(name, fontsize=8)
        axes[0, c].set_title(class_names[c], fontsize=8)
    fig.suptitle(title or "Autoencoder reconstructions", fontsize=11)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.02, top=1 - 0.6 / fig.get_figheight(),
                        wspace=0.05, hspace=0.08)
    return _save(fig, path)


def plot_reconstruction_rows(originals, rows: dict, labels, class_names, path, title=None) -> Path:  # pragma: no mutate block (drawing)
    """Grid: one column per image (named by its class), the originals on top, then one row
    per entry of ``rows`` (row name -> reconstructions of the same images, in order)."""
    images = [("original", _as_images(originals))] + [(name, _as_images(r)) for name, r in rows.items()]
    labels = np.asarray(labels).astype(int).ravel()
    lengths = {name: len(imgs) for name, imgs in images}
    if len(set(lengths.values()) | {len(labels)}) != 1:
        raise ValueError(f"every row needs one image per label ({len(labels)}), got {lengths}")
    fig = Figure(figsize=(1.05 * len(labels) + 0.9, 1.1 * len(images) + 0.8))
    axes = fig.subplots(len(images), len(labels), squeeze=False)
    for r, (name, imgs) in enumerate(images):
        for c in range(len(labels)):
            ax = axes[r, c]
            ax.set_xticks([])  # no ticks, but the axes stay: the row name is their ylabel
            ax.set_yticks([])
            ax.imshow(imgs[c], cmap="gray", vmin=0.0, vmax=1.0)
        axes[r, 0].set_ylabel(name, fontsize=8)
    for c, label in enumerate(labels):
        axes[0, c].set_title(class_names[label], fontsize=8)
    fig.suptitle(title or "Reconstructions", fontsize=10)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.02, top=1 - 0.6 / fig.get_figheight(),
                        wspace=0.05, hspace=0.08)
    return _save(fig, path)


def _series(history: dict, *keys) -> np.ndarray:
    for key in keys:
        v = history.get(key)
        if v is not None and len(v):
            return np.asarray(v, dtype=float).ravel()
    return np.empty(0)


def plot_curves(histories, path, title=None, train_labels=None, loss_names=None) -> Path:  # pragma: no mutate block (drawing)
    """One panel per stage: loss (left axis) and accuracy in % (right axis) per epoch.

    train_labels: stage -> the legend label of its training loss, to say what it
    was measured on (e.g. masked inputs), where that is not the plain input.
    loss_names: stage -> the name of its loss, for the axis (default: "loss").
    A history's ``best_epoch`` (the epoch whose weights were kept) is marked.
    Every accuracy axis has the same range, so panels side by side compare.
    """
    histories = dict(histories)
    if not histories:
        raise ValueError("histories is empty: nothing to plot")
    train_labels, loss_names = dict(train_labels or {}), dict(loss_names or {})
    n = len(histories)
    fig = Figure(figsize=(4.4 * n, 4.2), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    accuracy_axes = [_curves_panel(ax, stage, hist or {}, train_labels.get(stage, "train loss"),
                                   loss_names.get(stage, "loss"))
                     for ax, (stage, hist) in zip(axes, histories.items())]
    accuracy_axes = [a for a in accuracy_axes if a is not None]
    if accuracy_axes:  # one accuracy scale for every panel: the union of their ranges
        low, high = _union([a.get_ylim() for a in accuracy_axes])
        for a in accuracy_axes:
            a.set_ylim(low, high)
    fig.suptitle(title or "Training curves", fontsize=12)
    return _save(fig, path)


def _curves_panel(ax, stage: str, hist: dict, train_label: str, loss_name: str):  # pragma: no mutate block (drawing)
    """One stage's losses, accuracies and kept epoch, all lines with the same marker.

    Returns the accuracy axis, or None when the stage recorded no accuracy.
    """
    ax.set_title(stage, fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel(loss_name)
    ax2 = None
    handles = []
    for key, style, label in (("train_loss", "-", train_label), ("val_loss", "--", "validation loss")):
        y = _series(hist, key)
        if y.size:
            handles += ax.plot(np.arange(1, y.size + 1), y, style, color="tab:blue", marker=".",
                               label=label)
    accs = [(_series(hist, f"{s}_accuracy", f"{s}_acc"), s) for s in ("train", "val")]
    if any(a.size for a, _ in accs):
        ax2 = ax.twinx()
        ax2.set_ylabel("accuracy (%)", color="tab:orange")
        for y, s in accs:
            if y.size:
                y = _as_percent(y)
                handles += ax2.plot(np.arange(1, y.size + 1), y, "-" if s == "train" else "--",
                                    color="tab:orange", marker=".",
                                    label="train accuracy" if s == "train" else "validation accuracy")
    if hist.get("best_epoch"):
        handles.append(ax.axvline(hist["best_epoch"], color="grey", linestyle=":",
                                  label=f"kept epoch {hist['best_epoch']} (best on validation)"))
    if handles:
        # Below the panel: inside it would cover curves on one of the two axes.
        ax.legend(handles=handles, fontsize=8, loc="upper center", ncol=2,
                  bbox_to_anchor=(0.5, -0.2), frameon=False)
        # Epochs are whole numbers: avoid ticks at 1.5, 2.5, ...
        ax.xaxis.get_major_locator().set_params(integer=True)
    else:
        ax.text(0.5, 0.5, "no history recorded", ha="center", va="center",
                transform=ax.transAxes, color="grey")
    ax.grid(alpha=0.3)
    return ax2


def plot_confusion(cm, class_names, path, title=None, normalize=True) -> Path:  # pragma: no mutate block (drawing)
    """Heat map of the confusion matrix (rows true, columns predicted), values in each cell."""
    cm = np.asarray(cm)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix must be ({k}, {k}) for {k} classes, got {cm.shape}")
    values, vmax, label, acc = confusion_cells(cm, normalize)
    fig = Figure(figsize=(8.0, 6.8), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(im, ax=ax, shrink=0.85, label=label)
    for i in range(k):
        for j in range(k):
            text, color = cell_text(values[i, j], vmax, normalize)
            ax.text(j, i, text, ha="center", va="center", fontsize=6.5, color=color)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", rotation_mode="anchor",
                  fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title or 'Confusion matrix'} (accuracy {acc})", fontsize=11)
    return _save(fig, path)


def plot_tsne(embedding, labels, class_names, path, title=None, subtitle=None,
              max_points=20000) -> Path:  # pragma: no mutate block (drawing)
    """2-D scatter of a t-SNE embedding coloured by class, each named where most of its points are.

    At most ``max_points`` points are drawn (a fixed random subset, said in the
    caption): more only overplot, and the PNG's noise of translucent dots would
    grow past a few hundred KB. The label places use every point.
    """
    emb = np.asarray(embedding, dtype=float)
    labels = np.asarray(labels).astype(int).ravel()
    if emb.ndim != 2 or emb.shape[1] != 2 or len(emb) != len(labels):
        raise ValueError(f"expected embedding (N, 2) and labels (N,), got {emb.shape} "
                         f"and {labels.shape}")
    shown = drawn_points(len(emb), max_points)
    colors = matplotlib.colormaps["tab10"].colors  # qualitative: classes have no order
    fig = Figure(figsize=(8.2, 6.6), layout="constrained")
    ax = fig.subplots()
    present = []
    for c, name in enumerate(class_names):
        members = labels == c
        if not members.any():
            continue
        drawn = emb[members & shown]
        # Rasterized: tens of thousands of points would bloat a vector file and slow drawing.
        ax.scatter(drawn[:, 0], drawn[:, 1], s=2.5, alpha=0.6, color=colors[c % len(colors)],
                   linewidths=0, rasterized=True, label=name)
        present.append(c)
    if present:
        anchors = label_anchors(emb, labels, present)
        for c, (x, y) in zip(present, label_positions(anchors, label_box(emb))):
            ax.text(x, y, class_names[c], ha="center", va="center", fontsize=9, weight="bold",
                    color=colors[c % len(colors)], path_effects=_OUTLINE)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(tsne_caption(shown), fontsize=8, color="grey")
    if ax.collections:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, markerscale=5,
                  frameon=False, scatterpoints=1)
        leg = ax.get_legend()
        # legend_handles is the matplotlib >= 3.7 name; legendHandles the older one.
        for h in getattr(leg, "legend_handles", None) or leg.legendHandles:
            h.set_alpha(1.0)  # legend swatches opaque, unlike the points
    fig.suptitle(title or "t-SNE of the codes", fontsize=12)
    if subtitle:
        ax.set_title(subtitle, fontsize=9)
    return _save(fig, path)


def label_anchors(emb, labels, classes, *, sample: int = 1500, link: float = 3.0) -> np.ndarray:
    """For each class in ``classes``, a place on the map where most of its points are, (K, 2).

    "Most of its points": the class's largest island, and in it the medoid (the
    point of the island with the least total distance to the island's others).
    A centroid can fall in empty space between two islands (bags, sandals), and
    the densest spot can be a small tight clump, or a few of the class's points
    inside another class, while most of the class lies elsewhere.

    Islands: the class's points joined wherever two lie within ``link`` times
    the typical spacing of the class (the median distance from a point to its
    5th nearest point of the class); a gap wider than that separates islands.
    At most ``sample`` points per class are used (a fixed subset: the cost is
    quadratic in it).
    """
    from scipy.sparse.csgraph import connected_components  # noqa: PLC0415  (scikit-learn's dependency)

    emb = np.asarray(emb, dtype=float)
    labels = np.asarray(labels).ravel()
    rng = np.random.default_rng(0)
    anchors = []
    for c in classes:
        pts = emb[labels == c]
        if len(pts) > sample:
            pts = pts[rng.choice(len(pts), sample, replace=False)]
        dist = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(axis=2))  # (n, n)
        fifth = min(5, len(pts) - 1)
        spacing = np.median(np.partition(dist, fifth, axis=1)[:, fifth]) if fifth > 0 else 0.0
        _, island = connected_components(dist <= link * spacing, directed=False)
        largest = island == np.bincount(island).argmax()
        medoid = dist[np.ix_(largest, largest)].sum(axis=1).argmin()
        anchors.append(pts[largest][medoid])
    return np.array(anchors).reshape(len(anchors), 2)


def label_positions(points, box, iterations: int = 100):
    """Label centres near ``points`` (K, 2) whose boxes (width, height) = ``box`` do not overlap.

    Two class anchors can lie close together (pullover and coat, on a map of
    Fashion-MNIST), and their labels would then print over each other. Each
    pass moves every overlapping pair apart vertically by half of their
    vertical overlap each, so a label stays as close to its class as the others allow.
    """
    pos = np.array(points, dtype=float)
    width, height = box
    for _ in range(iterations):
        moved = False
        for i in range(len(pos)):
            for j in range(i + 1, len(pos)):
                dx, dy = pos[j] - pos[i]
                if abs(dx) < width and abs(dy) < height:
                    push = (height - abs(dy)) / 2 * (1 if dy >= 0 else -1)
                    pos[i, 1] -= push
                    pos[j, 1] += push
                    moved = True
        if not moved:
            break
    return pos


def plot_codes_activity(codes, path, title=None) -> Path:  # pragma: no mutate block (drawing)
    """Per code unit: the spread of its values over the images, dead units marked.

    codes: an (N, code_dim) array, or a mapping {model name: array} for one
    row of panels per model (the demo's default and reference autoencoders).
    Top: for each unit, a thin bar over the 5-95 % range of its values, a thick
    one over the middle half (quartiles) and a dot at the median; a code unit
    whose bars are short carries little. A unit that is zero on every image is
    dead (a ReLU code can have them): it has no bar and is marked with a red x.
    Where some values are exactly zero (a ReLU code) a second panel gives the
    share of images on which each unit is non-zero.
    """
    return _save(_codes_figure(codes, title), path)


def _codes_figure(codes, title=None) -> Figure:  # pragma: no mutate block (drawing)
    named = dict(codes) if isinstance(codes, dict) else {None: codes}
    if not named:
        raise ValueError("codes is empty: nothing to plot")
    arrays = {name: _as_codes(c) for name, c in named.items()}
    heights, width = codes_figure_size(arrays.values())
    fig = Figure(figsize=(width, sum(heights)), layout="constrained")
    if len(arrays) == 1:
        _codes_panels(fig, next(iter(arrays.values())), title or "Code units")
        return fig
    subfigs = fig.subfigures(len(arrays), 1, squeeze=False, height_ratios=heights)[:, 0]
    for sub, (name, c) in zip(subfigs, arrays.items()):
        _codes_panels(sub, c, name)
    fig.suptitle(title or "Code units", fontsize=12)
    return fig


def _as_codes(codes) -> np.ndarray:
    codes = np.asarray(codes, dtype=float)
    if codes.ndim != 2 or len(codes) == 0:
        raise ValueError(f"expected a non-empty (N, code_dim) array, got {codes.shape}")
    return codes


def _rectified(codes) -> bool:
    return bool((codes == 0).any())  # exact zeros: a rectified code


def _codes_panels(fig, codes, title) -> None:  # pragma: no mutate block (drawing)
    """One model's code units into ``fig`` (a Figure or SubFigure)."""
    d = codes.shape[1]
    x = np.arange(d)
    (p5, q1, med, q3, p95), active, dead = code_spread(codes)
    relu_like = _rectified(codes)
    axes = fig.subplots(2 if relu_like else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    ax.vlines(x, p5, p95, color="tab:blue", linewidth=1.2, label="5-95 % of images")
    ax.vlines(x, q1, q3, color="tab:blue", linewidth=5, label="middle half")
    ax.plot(x, med, "o", color="white", markeredgecolor="tab:blue", markersize=3.5, label="median")
    if dead.any():
        ax.plot(x[dead], np.zeros(int(dead.sum())), "x", color="tab:red", markersize=7,
                markeredgewidth=2, label="dead: zero on every image")
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.set_ylabel("value over the images")
    ax.legend(fontsize=7, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    if relu_like:
        axes[1].bar(x, 100.0 * active, color=np.where(dead, "tab:red", "tab:blue"), width=0.8)
        axes[1].set_ylabel("non-zero on\n% of images")
        axes[1].set_ylim(0, 105)
    axes[-1].set_xlabel("code unit")
    axes[-1].set_xlim(-0.7, d - 0.3)
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    for a in axes:
        a.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{title} ({dead_state(dead)})", fontsize=11)


def plot_diagnostics(records: dict, path, title=None) -> Path:  # pragma: no mutate block (drawing)
    """``diagnostics.png``: what happened inside each layer while it trained (``watch.Watch``).

    Top row, one line per layer: the update-to-data ratio ``std(step) / std(W)``
    of each Dense layer over the steps (log scale, with the usual healthy 1e-3
    as a guide), the std of its weight gradient, and the dead units of each
    rectifier per epoch. Below, one small panel per activation layer: the
    histogram of its outputs at the first and at the last epoch watched, with
    the saturated (or dead) share in the legend.
    """
    layers = records["layers"]
    dense = [n for n, r in layers.items() if "update_ratio" in r]
    acts = [n for n in records.get("histograms", {}).get("first", {}).get("output", {})]
    cols = 3
    act_rows = grid_rows(len(acts), cols)
    fig = Figure(figsize=(13, 3.6 * (1 + act_rows)), layout="constrained")
    grid = fig.add_gridspec(1 + act_rows, cols)
    colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, max(1, len(dense))))
    steps = np.asarray(records["step"])

    ax = fig.add_subplot(grid[0, 0])
    for name, c in zip(dense, colors):
        ax.plot(steps, layers[name]["update_ratio"], color=c, lw=1.2, label=_short(name))
    ax.axhline(1e-3, color="0.4", ls="--", lw=1, label="1e-3 guide")
    ax.set(yscale="log", xlabel="step", ylabel="std(update) / std(W)",
           title="update-to-data ratio per Dense layer")
    ax.legend(fontsize=7, loc="best")

    ax = fig.add_subplot(grid[0, 1])
    for name, c in zip(dense, colors):
        ax.plot(steps, layers[name]["grad_std"], color=c, lw=1.2, label=_short(name))
    ax.set(yscale="log", xlabel="step", ylabel="std(dL/dW)", title="weight-gradient std per Dense layer")
    ax.legend(fontsize=7, loc="best")

    ax = fig.add_subplot(grid[0, 2])
    dead = {n: r["dead_per_epoch"] for n, r in layers.items() if "dead_per_epoch" in r}
    for name, counts in dead.items():
        ax.plot(np.arange(1, len(counts) + 1), counts, marker="o", ms=3, label=_short(name))
    ax.set(xlabel="epoch", ylabel="dead units", title="dead units per epoch (rectifiers)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.yaxis.get_major_locator().set_params(integer=True)
    if dead:
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no rectifier layers", ha="center", va="center", transform=ax.transAxes)

    hist = records.get("histograms", {})
    first, last = hist.get("first", {}), hist.get("last", {})
    for i, name in enumerate(acts):
        ax = fig.add_subplot(grid[1 + i // cols, i % cols])
        for entry, style in ((first, dict(color="0.55", lw=1.2)), (last, dict(color="C3", lw=1.4))):
            h = entry.get("output", {}).get(name)
            if h is None:
                continue
            share, edges = histogram_shares(h)
            ax.stairs(share, edges, label=_hist_label(layers[name], entry["epoch"], records["epoch"]),
                      **style)
        ax.set(xlabel="output (the end bins hold everything beyond them)", ylabel="share of outputs",
               title=_short(name))
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _short(name: str) -> str:
    """A layer's label without the model's prefix words: 'encoder layer 0 Dense(784, 128)' ->
    'enc 0 Dense(784, 128)'."""
    return name.replace("encoder layer ", "enc ").replace("decoder layer ", "dec ").replace("layer ", "")


def _hist_label(record: dict, epoch: int, record_epochs) -> str:
    """'epoch 1: 12.0% saturated' (dead units, for a rectifier): what the legend shows."""
    dead = record.get("dead_per_epoch")
    if dead and epoch <= len(dead):
        return f"epoch {epoch}: {dead[epoch - 1]} dead units"
    saturated = record.get("saturated")
    if saturated and epoch in record_epochs:  # the first record of that epoch
        return f"epoch {epoch}: {100 * saturated[list(record_epochs).index(epoch)]:.1f}% saturated"
    return f"epoch {epoch}"


# -- what the figures compute (pure functions, tested and mutated; the drawing above is not) --

def _as_percent(y: np.ndarray) -> np.ndarray:
    """Accuracies in %: histories may store fractions (all |y| <= 1) or percentages."""
    return y * 100.0 if np.nanmax(np.abs(y), initial=0.0) <= 1.0 else y


def _union(limits) -> tuple:
    """(lowest low, highest high) of several (low, high) ranges: one scale for every panel."""
    return min(lo for lo, _ in limits), max(hi for _, hi in limits)


def confusion_cells(cm, normalize: bool = True):
    """(cell values, colour-scale top, colour-bar label, accuracy text) of a confusion matrix.

    Normalised: each row in % of its true class (a class with no examples: a row of 0, not a
    division by zero), the scale 0..100. Else the counts, the scale 0..max(largest, 1).
    """
    counts = np.asarray(cm).astype(np.float64)
    total = counts.sum()
    acc = f"{100.0 * np.trace(counts) / total:.2f} %" if total > 0 else "n/a"
    if normalize:
        rows = counts.sum(axis=1, keepdims=True)
        values = np.divide(100.0 * counts, rows, out=np.zeros_like(counts), where=rows > 0)
        return values, 100.0, "% of true class", acc
    return counts, max(counts.max(initial=0.0), 1.0), "count", acc


def cell_text(v: float, vmax: float, normalize: bool) -> tuple:
    """(text, colour) of one cell: one format in every cell, white on the dark ones."""
    return (f"{v:.1f}" if normalize else f"{int(v)}"), ("white" if v > 0.55 * vmax else "black")


def drawn_points(n: int, max_points) -> np.ndarray:
    """Which of ``n`` map points are drawn: all, or a fixed random ``max_points`` of them."""
    shown = np.ones(n, dtype=bool)
    if max_points is not None and n > max_points:
        shown[:] = False
        shown[np.random.default_rng(0).choice(n, int(max_points), replace=False)] = True
    return shown


def tsne_caption(shown) -> str:
    caption = "t-SNE axes have no units: only neighbourhoods are meaningful"
    if not shown.all():
        caption += f"; {int(shown.sum())} of {len(shown)} points drawn"
    return caption


def label_box(emb) -> np.ndarray:
    """(width, height) of a class label on the map: 13 % and 3.5 % of the map's extent."""
    return (np.ptp(emb, axis=0) + 1e-12) * (0.13, 0.035)


def codes_figure_size(arrays) -> tuple:
    """(panel heights, figure width) of the codes figure: taller for a rectified code (its second
    panel), wider for more units (0.2 inch each, within 6..16 inches)."""
    arrays = list(arrays)
    heights = [5.0 if _rectified(c) else 3.6 for c in arrays]
    widest = max(c.shape[1] for c in arrays)
    return heights, min(max(6.0, 0.2 * widest + 1.5), 16.0)


def code_spread(codes):
    """(5th, 25th, 50th, 75th, 95th percentiles per unit, share of non-zero values per unit,
    dead units: zero on every image)."""
    percentiles = np.percentile(codes, [5, 25, 50, 75, 95], axis=0)
    active = (codes != 0).mean(axis=0)
    return percentiles, active, active == 0


def dead_state(dead) -> str:
    d = len(dead)
    return f"{int(dead.sum())} of {d} units dead" if dead.any() else f"{d} units, none dead"


def grid_rows(panels: int, cols: int) -> int:
    """Rows of ``cols`` panels that hold ``panels`` (at least one)."""
    return max(1, -(-panels // cols))


def histogram_shares(h: dict):
    """(share of each bin, bin edges) of a Watch histogram {"range": [lo, hi], "counts": [...]}."""
    counts = np.asarray(h["counts"], dtype=float)
    edges = np.linspace(*h["range"], len(counts) + 1)
    return counts / max(1.0, counts.sum()), edges

"""LivePlot: one figure of a run, redrawn in place after every epoch.

What it shows, from what ``fit`` already keeps on the host (``run.state.history``,
filled once per epoch) and, when a ``Watch`` is in the same run, from its public
``records`` (the dict ``fashion/plots.py::plot_diagnostics`` draws):

* the loss per epoch: train, and validation when there is one;
* the accuracy per epoch (%), for a classifier;
* with a Watch: the update-to-data ratio of each Dense layer over the steps
  (log scale, the 1e-3 guide dashed), and each rectifier's dead units per epoch.

In a notebook (a Jupyter kernel) the figure is one output, updated in place
(an IPython display handle). Outside one it is written to ``path`` after
every epoch (atomically, so an image viewer never shows half a file).

Why it is cheap (a frame after the first is under 1 % of an epoch of the reference
autoencoder, measured by ``benchmarks/liveplot_cost.py``; docs/training.md gives the
figures): it reads nothing from the device, and it does not redraw the whole figure
each epoch. Each panel is a cell of its own (a matplotlib subfigure, opaque white).
The first frame draws everything once into a background image: axes, ticks, legends,
the title; each later frame copies that image back and draws only the lines and the
epoch over it ("blitting"). Only a panel whose curves leave its y limits is drawn anew
into the background first, and its cell alone (about a third of a full draw); the limits
are chosen with room to spare (``_grown``), so that in the reference run this happens
once, to the dead units at the second epoch.

Two more things keep a frame's cost flat over a long run:

* a line over the steps (the update ratios: about 50 points an epoch) is drawn
  with at most ``max_points`` points, each the geometric mean of a run of
  consecutive records (``_thin``): a panel is about 300 pixels wide, so more
  points show nothing more, and drawing them grew the frame epoch by epoch;
* the PNG is encoded by ``png_bytes``: the pixels' rows unfiltered, deflated
  at zlib's fastest level with its run-length strategy, which suits a plot's
  flat white areas. Pillow (``Image.save(format="png")``) always tries every
  PNG row filter and keeps the best, and cannot be told not to; that made it
  2 to 3 times slower here for a file about as small (measured in the benchmark).

matplotlib and IPython are imported only when the first frame is drawn, so
``import nanoae`` stays free of them.
"""

from __future__ import annotations

import math
import os
import struct
import sys
import zlib
from pathlib import Path

from nanoae.train.callbacks import ORDER, Callback

__all__ = ["LivePlot", "in_notebook", "png_bytes"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel. IPython is never imported here: a kernel has already."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


class LivePlot(Callback):
    """Redraw one figure of the run after every epoch (see the module docstring).

    path: the PNG written after every epoch (None: none; then it must run in a notebook).
    display: show it in the notebook, updated in place (None: when in a Jupyter kernel).
    watch: the ``Watch`` whose records to draw; None: the one among the run's
        callbacks, if any (a Watch leaves its records in ``run.state.history["watch"]``).
    title: the figure's title, before "epoch 3/20".
    dpi: pixels per inch of the figure (10 inches wide).
    max_points: the most points a line over the steps is drawn with (see ``_thin``).
    """

    order = ORDER["LivePlot"]  # after Watch has recorded the epoch and Progress has printed it

    def __init__(self, path=None, *, display: bool | None = None, watch=None, title: str = "training",
                 dpi: int = 72, max_points: int = 300):
        self.path = None if path is None else Path(path)
        self.display = in_notebook() if display is None else bool(display)
        if self.path is None and not self.display:
            raise ValueError("LivePlot: outside a notebook it writes a PNG after every epoch; "
                             "give it a path, e.g. LivePlot('runs/live.png')")
        if max_points < 2:
            raise ValueError(f"LivePlot: max_points must be at least 2, got {max_points}")
        self.watch, self.title, self.dpi, self.max_points = watch, title, dpi, max_points
        self.figure = None  # the matplotlib Figure, built at the first epoch's end
        self.frames = 0     # epochs drawn
        self.full_redraws = 0  # the whole figure drawn: the first frame
        self.panel_redraws = 0  # one panel drawn anew: its y axis had to grow
        self._handle = None  # the notebook's display handle

    def __repr__(self) -> str:
        return f"LivePlot({None if self.path is None else str(self.path)!r})"

    def on_train_begin(self, run):
        self._active = run.comm.is_root  # data parallel: rank 0 draws, as it prints
        self._epochs, self._steps = run.epochs, run.epochs * run.steps_per_epoch

    def on_epoch_end(self, run):
        if not self._active:
            return
        history = run.state.history  # host floats, appended once per epoch by fit
        records = self.watch.records if self.watch is not None else history.get("watch")
        series = _series(history, records, self.max_points)
        if self.figure is None:
            self._build(series)
        self._update(series, f"epoch {history['epoch'][-1]}/{self._epochs}")
        self._show(self._png())
        self.frames += 1

    # -- the figure --------------------------------------------------------------------------
    def _build(self, series):  # pragma: no mutate block (drawing)
        """A panel per thing the run records, each in a cell of its own (a subfigure, white, opaque),
        so that one panel can be redrawn without the others; every line "animated" (left out of
        the background)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415
        from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

        panels = [p for p in PANELS if series[p[0]]]
        rows = -(-len(panels) // 2)
        fig = Figure(figsize=(10, 3.1 * rows + 0.5), dpi=self.dpi)
        FigureCanvasAgg(fig)
        # the top 0.5 inch: the title's row (a subfigure fills its share of the grid's ratios)
        cells = fig.add_gridspec(rows + 1, 2, height_ratios=[0.5] + [3.1] * rows, wspace=0, hspace=0)
        self._panels = []  # (cell, axes, panel name, {label: Line2D}, log scale?, y bounds)
        for i, (name, title, xlabel, ylabel, log, bounds) in enumerate(panels):
            cell = fig.add_subfigure(cells[1 + i // 2, i % 2], facecolor="white")
            cell.subplots_adjust(left=0.16, right=0.97, bottom=0.14, top=0.89)
            ax = cell.add_subplot()
            ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
            if xlabel == "epoch":
                ax.set_xlim(0.5, self._epochs + 0.5)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 2.5
            else:
                ax.set_xlim(0, self._steps)
            if log:
                ax.set(yscale="log", ylim=(1e-5, 1e-1))  # (the data's own limits come below)
                ax.axhline(1e-3, color="0.5", ls="--", lw=1, label="1e-3 guide")
            style = ".-" if xlabel == "epoch" else "-"
            lines = {label: ax.plot([], [], style, lw=1.2, label=label, animated=True)[0]
                     for label in series[name]}
            ax.legend(fontsize=7, loc="upper right")
            self._panels.append((cell, ax, name, lines, log, bounds))
        fig.suptitle(self.title)  # in the background: drawn only on a full redraw
        # only the epoch is redrawn each frame: a text's glyphs cost about 40 us apiece
        self._epoch_text = fig.text(0.99, 0.995, "", ha="right", va="top", animated=True)
        self.figure, self._background = fig, None

    def _update(self, series, epoch_text):  # pragma: no mutate block (drawing)
        """New data into the lines. The first frame draws everything into the background (axes,
        ticks, legends); later frames copy it back and draw only the lines and the epoch over
        it ("blitting"), except in a panel whose y axis must grow to hold its lines: that
        panel's cell is drawn anew into the background first (about a third of a full draw)."""
        grown_cells = []
        for cell, ax, name, lines, log, bounds in self._panels:
            for label, line in lines.items():
                line.set_data(*series[name].get(label, ([], [])))
            values = [v for x, y in series[name].values() for v in y]
            grown = _grown(None if self._background is None else ax.get_ylim(), values, log,
                           least=1.0 if name == "dead" else 1e-3, bounds=bounds)  # dead: counts
            if grown is not None:
                ax.set_ylim(*grown)
                grown_cells.append(cell)
        self._epoch_text.set_text(epoch_text)
        canvas = self.figure.canvas
        if self._background is None:
            canvas.draw()
            self.full_redraws += 1
        elif grown_cells:
            canvas.restore_region(self._background)
            for cell in grown_cells:  # its white face covers the old ticks, then the new ones
                cell.draw(canvas.get_renderer())
            self.panel_redraws += len(grown_cells)
        if self._background is None or grown_cells:
            self._background = canvas.copy_from_bbox(self.figure.bbox)
        canvas.restore_region(self._background)
        for _, ax, _, lines, _, _ in self._panels:
            for line in lines.values():
                ax.draw_artist(line)
        self.figure.draw_artist(self._epoch_text)

    def _png(self) -> bytes:  # pragma: no mutate block (drawing)
        import numpy  # noqa: PLC0415

        rgba = numpy.asarray(self.figure.canvas.buffer_rgba())  # (height, width, 4), no copy
        return png_bytes(rgba[..., :3])  # the figure is opaque: alpha says nothing

    def _show(self, png: bytes):
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            part = self.path.with_name(self.path.name + ".part")
            part.write_bytes(png)
            os.replace(part, self.path)  # atomic: a viewer sees the old frame or the new one
        if self.display:
            from IPython.display import Image, display  # noqa: PLC0415

            if self._handle is None:
                self._handle = display(Image(data=png, format="png"), display_id=True)
            else:
                self._handle.update(Image(data=png, format="png"))


# (series key, title, x label, y label, log y, (lowest, highest) y limit the values allow)
PANELS = (("loss", "loss per epoch", "epoch", "loss", False, (-math.inf, math.inf)),  # any loss
          ("accuracy", "accuracy per epoch", "epoch", "accuracy (%)", False, (0.0, 100.5)),
          ("update_ratio", "update-to-data ratio per Dense layer", "step", "std(update) / std(W)", True,
           (-math.inf, math.inf)),
          ("dead", "dead units per epoch (rectifiers)", "epoch", "dead units", False, (-0.5, math.inf)))


def png_bytes(rgb) -> bytes:
    """A PNG file of ``rgb``, a uint8 array (height, width, 3): the format's four parts.

    signature, IHDR (width, height, 8 bits, colour type 2 = RGB), IDAT (the rows,
    each after a filter byte 0 = "none", deflated), IEND; each chunk is
    length, type, data, CRC-32 of type + data (the PNG specification, section 5).
    """
    import numpy  # noqa: PLC0415

    height, width, channels = rgb.shape
    if channels != 3 or rgb.dtype != numpy.uint8:
        raise ValueError(f"png_bytes: expected uint8 (height, width, 3), got {rgb.dtype} {rgb.shape}")
    rows = numpy.zeros((height, 1 + 3 * width), numpy.uint8)  # column 0: each row's filter byte
    pixels = rows[:, 1:].reshape(height, width, 3)
    for channel in range(3):  # = `pixels[...] = rgb`, which NumPy copies 4-5x slower from RGBA's strides
        pixels[..., channel] = rgb[..., channel]
    # level 1 with Z_RLE: the fastest here, and a plot's flat areas are long runs
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    idat = deflate.compress(rows) + deflate.flush()  # the array's own buffer: no copy

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def _thin(x: list, y: list, most: int):
    """At most ``most`` points of a positive series: the geometric mean of each run of k.

    k = ceil(len / most) consecutive points become one, at their mean x; the last run
    may be shorter. Geometric, because the panel's y axis is logarithmic (a mean of
    logs is what the eye averages there); only the values a log axis can show
    (positive, finite) enter a run's mean, and a run of none is a gap (nan).
    Series of ``most`` points or fewer are kept whole. Whole arrays, not a Python
    loop per point: a long run has tens of thousands of records to thin each epoch.
    """
    if len(y) <= most:
        return x, y
    import numpy  # noqa: PLC0415

    x, y = numpy.asarray(x, dtype=float), numpy.asarray(y, dtype=float)
    k = -(-len(y) // most)
    starts = numpy.arange(0, len(y), k)  # each run is y[start:start + k] (the last may be shorter)
    lengths = numpy.diff(numpy.append(starts, len(y)))
    shown = (y > 0) & (y < math.inf)
    logs = numpy.log(y, out=numpy.zeros_like(y), where=shown)
    counts = numpy.add.reduceat(shown, starts)
    mean_logs = numpy.divide(numpy.add.reduceat(logs, starts), counts,
                             out=numpy.full(len(starts), math.nan), where=counts > 0)
    return (numpy.add.reduceat(x, starts) / lengths).tolist(), numpy.exp(mean_logs).tolist()


def _series(history: dict, records: dict | None, max_points: int = 300) -> dict:
    """{panel: {line label: (x, y)}} from the history and the Watch's records (host lists).

    Lines over the steps are thinned to ``max_points`` (``_thin``); lines over epochs are whole.
    """
    def per_epoch(values):
        return list(range(1, len(values) + 1)), values

    out = {"loss": {}, "accuracy": {}, "update_ratio": {}, "dead": {}}
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        if history.get(key):
            out["loss"][label] = per_epoch(history[key])
    for key, label in (("train_accuracy", "train"), ("val_accuracy", "validation")):
        if history.get(key):
            out["accuracy"][label] = per_epoch([100 * a for a in history[key]])
    for name, rec in (records or {}).get("layers", {}).items():
        label = name.replace("encoder layer ", "enc ").replace("decoder layer ", "dec ")
        if rec.get("update_ratio"):
            out["update_ratio"][label] = _thin(records["step"][:len(rec["update_ratio"])],
                                               rec["update_ratio"], max_points)
        if "dead_per_epoch" in rec:
            out["dead"][label] = per_epoch(rec["dead_per_epoch"])
    return out


def _grown(limits, values, log: bool, least: float = 1e-3, bounds=(-math.inf, math.inf)):
    """New y limits when ``values`` leave ``limits`` (None: none yet), else None.

    The new limits hold the values with half their span to spare on each side, so
    a loss that keeps falling forces a new background only every few epochs. One value
    (the first epoch's) has no span to go by: it gets half the way it can still go,
    to 0 or to its ceiling (a loss falls by a good part of itself in the next epochs,
    an accuracy of 85 % can rise by 15 points at most; 5 % of the value forced a redraw
    at the second epoch). The limits stay within ``bounds``, which the values cannot
    pass (an accuracy: up to 100.5 %; counts: from -0.5, so that 0 shows and nothing
    below); on a log axis they are in decades and the spare is at least one.
    """
    import numpy  # noqa: PLC0415

    values = numpy.asarray(values, dtype=float)  # whole arrays: a panel has thousands of values
    if log:
        values = numpy.log10(values[values > 0])
    values = values[numpy.isfinite(values)]
    if not len(values):
        return None
    lo, hi = float(values.min()), float(values.max())
    if limits is not None:
        old = [math.log10(v) for v in limits] if log else list(limits)
        if old[0] <= lo and hi <= old[1]:
            return None
    spare = max(0.5 * (hi - lo), 0.05 * abs(hi), 1.0 if log else least)
    if hi == lo:  # one value: half the way it can go (to 0, or to the ceiling of its bounds)
        spare = max(spare, 0.5 * min(abs(hi), bounds[1] - hi))
    new = (max(lo - spare, bounds[0]), min(hi + spare, bounds[1]))
    return tuple(10 ** v for v in new) if log else new

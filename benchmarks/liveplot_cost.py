"""What ``LivePlot`` costs, as a share of the epochs it draws: one real ``fit``, timed from inside.

    python benchmarks/liveplot_cost.py                 # reference AE, 60,000 images, 20 epochs
    python benchmarks/liveplot_cost.py --epochs 40     # a longer run: the Watch's lines grow
    python benchmarks/liveplot_cost.py --quick         # 6,000 images, 4 epochs (a smoke test)

It trains the reference autoencoder (784-128-64-32, ReLU code, Adam 1e-3, batch 256) on
the installed Fashion-MNIST with a ``Watch`` and a ``LivePlot`` writing a PNG, as
``nanoae train-ae --watch`` does, and times every ``LivePlot.on_epoch_end`` (and its two
parts, drawing and PNG encoding) against the epochs' own seconds (``history["seconds"]``)
in the same process, so that the machine's load weighs on both. Frames after the first
are the steady cost; the first also imports matplotlib and draws everything once.
Prints one table and the CPU; ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy

import nanoae as nn
from nanoae.fashion.data import load_fashion_mnist
from nanoae.fashion.models import Autoencoder
from nanoae.train.liveplot import LivePlot, png_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import cpu_model  # noqa: E402  (the benchmarks' one way of naming the CPU)


class TimedLivePlot(LivePlot):
    """LivePlot with a stopwatch on each frame and on its two dear parts."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds = {"frame": [], "draw": [], "encode": []}

    def on_epoch_end(self, run):
        t0 = time.perf_counter()
        super().on_epoch_end(run)
        self.seconds["frame"].append(time.perf_counter() - t0)

    def _update(self, series, title):
        t0 = time.perf_counter()
        super()._update(series, title)
        self.seconds["draw"].append(time.perf_counter() - t0)

    def _png(self):
        t0 = time.perf_counter()
        png = super()._png()
        self.seconds["encode"].append(time.perf_counter() - t0)
        return png


def encoders_on(figure, repeats: int = 20) -> dict:
    """Median seconds to encode the last frame: nanoae's ``png_bytes`` against Pillow's fastest PNG."""
    from PIL import Image

    rgba = numpy.asarray(figure.canvas.buffer_rgba())

    def pillow():
        out = io.BytesIO()
        Image.fromarray(rgba[..., :3]).save(out, format="png", compress_level=1)
        return out.getvalue()

    def ours():
        return png_bytes(rgba[..., :3])

    result = {}
    for name, encode in (("png_bytes", ours), ("pillow_level_1", pillow)):
        seconds = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            size = len(encode())
            seconds.append(time.perf_counter() - t0)
        result[name] = {"median_s": statistics.median(seconds), "bytes": size}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the run (default 20)")
    parser.add_argument("--images", type=int, default=60000, help="training images (default 60000)")
    parser.add_argument("--quick", action="store_true", help="6,000 images, 4 epochs: a smoke test")
    parser.add_argument("--dpi", type=int, default=None, help="LivePlot's dpi (default: LivePlot's)")
    parser.add_argument("--max-points", type=int, default=None,
                        help="LivePlot's max_points (default: LivePlot's)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.images = 4, 6000

    x, _ = load_fashion_mnist("train")
    x = x.reshape(len(x), -1)[:args.images]
    model = Autoencoder((784, 128, 64, 32), code_activation="relu", init="glorot_uniform", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        knobs = {k: v for k, v in (("dpi", args.dpi), ("max_points", args.max_points)) if v is not None}
        live = TimedLivePlot(Path(tmp) / "live.png", display=False, title="reference AE", **knobs)
        history = nn.fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters(), lr=1e-3), x,
                         epochs=args.epochs, batch_size=256, seed=0,
                         callbacks=[nn.Progress(bar=False, verbose=False), nn.Watch(model), live])
        encoders = encoders_on(live.figure)
    epochs = history["seconds"]
    frames = live.seconds["frame"]
    later = frames[1:] or frames
    result = {
        "cpu": cpu_model(), "python": platform.python_version(), "epochs": args.epochs,
        "images": len(x), "epoch_median_s": statistics.median(epochs),
        "dpi": live.dpi, "max_points": live.max_points, "frames": len(frames), "first_frame_s": frames[0], "later_frame_median_s": statistics.median(later),
        "later_frame_max_s": max(later),
        "draw_median_s": statistics.median(live.seconds["draw"][1:] or live.seconds["draw"]),
        "encode_median_s": statistics.median(live.seconds["encode"][1:] or live.seconds["encode"]),
        "full_redraws": live.full_redraws, "panel_redraws": live.panel_redraws, "encoders": encoders,
        "whole_run_share": sum(frames) / sum(epochs),
        "later_frames_share": sum(later) / sum(epochs[1:] or epochs),
    }
    print(f"CPU: {result['cpu']}; reference AE, {len(x)} images, {args.epochs} epochs, with a Watch; "
          f"LivePlot dpi {live.dpi}, max_points {live.max_points}")
    print(f"epoch (median)                 {1e3 * result['epoch_median_s']:8.1f} ms")
    print(f"first frame (imports, draws)   {1e3 * result['first_frame_s']:8.1f} ms")
    print(f"later frames: median / max     {1e3 * result['later_frame_median_s']:8.1f} ms / "
          f"{1e3 * result['later_frame_max_s']:.1f} ms")
    print(f"  of which lines (median)      {1e3 * result['draw_median_s']:8.1f} ms")
    print(f"  of which PNG (median)        {1e3 * result['encode_median_s']:8.1f} ms")
    for name, e in encoders.items():
        print(f"  last frame by {name:15s} {1e3 * e['median_s']:8.1f} ms, {e['bytes']:,} bytes")
    print(f"full redraws / panel redraws   {result['full_redraws']:8d} / {result['panel_redraws']} "
          f"in {len(frames)} frames")
    print(f"later frames / their epochs    {100 * result['later_frames_share']:8.2f} %")
    print(f"all frames / all epochs        {100 * result['whole_run_share']:8.2f} %  "
          "(the first frame's import included)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

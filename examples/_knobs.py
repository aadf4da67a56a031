"""The few settings every example reads from the environment, so the tests can run them tiny.

    NANOAE_EXAMPLE_EPOCHS=N      train for N epochs (each script has its own default)
    NANOAE_EXAMPLE_LIMIT=N       use only the first N training and N test images
    NANOAE_EXAMPLE_NO_VERIFY=1   skip the official checksums (for your own or fake files)
    NANOAE_EXAMPLE_OUT=DIR       write figures into DIR instead of examples/out/
    NANOAE_DATA_DIR=DIR          where Fashion-MNIST is (read by nanoae.fashion.data itself)

And the one helper for figures, ``show``: written to out_dir() as a script, and shown
inline too in a notebook.
"""

import os
from pathlib import Path

import numpy as np

from nanoae.fashion.data import load_fashion_mnist
from nanoae.train.liveplot import LivePlot, in_notebook

LIMIT = int(os.environ.get("NANOAE_EXAMPLE_LIMIT") or 0) or None  # None: every image
VERIFY = os.environ.get("NANOAE_EXAMPLE_NO_VERIFY", "") not in ("1", "true", "yes")


def epochs(default: int) -> int:
    return int(os.environ.get("NANOAE_EXAMPLE_EPOCHS") or default)


def out_dir() -> Path:
    out = Path(os.environ.get("NANOAE_EXAMPLE_OUT") or Path(__file__).resolve().parent / "out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def load(split: str):
    """uint8 images (N, 784) and int64 labels (N,) of "train" or "test", cut to LIMIT."""
    x, y = load_fashion_mnist(split, verify=VERIFY)
    # Flat rows: the Dense layers take (N, features), not (N, 28, 28).
    return x[:LIMIT].reshape(-1, 28 * 28), y[:LIMIT].astype(np.int64)


def show(figure, name: str | None = None) -> Path:
    """Keep a figure in out_dir() and, in a notebook, show it below the cell; returns its path.

    figure: the path of a PNG that a ``nanoae.fashion.plots`` function wrote, or a
    matplotlib ``Figure`` (then written as ``out_dir() / name``). As a script the
    PNG is all there is; in a notebook it is also displayed, inline.
    """
    if isinstance(figure, (str, Path)):
        path = Path(figure)
    else:
        path = out_dir() / name
        figure.savefig(path, dpi=110)
    if in_notebook():
        from IPython.display import Image, display  # noqa: PLC0415  (a kernel has IPython)

        display(Image(filename=str(path)))
    return path


def live(name: str):
    """A LivePlot for fit: the run's curves redrawn after every epoch, in a notebook in place
    of one output, and as out_dir() / name in both cases."""
    return LivePlot(out_dir() / name)

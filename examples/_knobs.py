"""The few settings every example reads from the environment, so the tests can run them tiny.

    NANOAE_EXAMPLE_EPOCHS=N      train for N epochs (each script has its own default)
    NANOAE_EXAMPLE_LIMIT=N       use only the first N training and N test images
    NANOAE_EXAMPLE_NO_VERIFY=1   skip the official checksums (for your own or fake files)
    NANOAE_EXAMPLE_OUT=DIR       write figures into DIR instead of examples/out/
    NANOAE_DATA_DIR=DIR          where Fashion-MNIST is (read by nanoae.fashion.data itself)
"""

import os
from pathlib import Path

import numpy as np

from nanoae.fashion.data import load_fashion_mnist

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

"""Write small synthetic IDX files (and a whole fake Fashion-MNIST) for the data tests."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

FAKE_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The uncompressed IDX encoding of a uint8 array: 00 00 08 ndim, big-endian dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_idx(path, array: np.ndarray, gz: bool = True) -> Path:
    """Write ``array`` to exactly ``path`` as IDX, gzip-compressed when ``gz``."""
    path = Path(path)
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def make_fake_fashion(directory, n_train: int = 20, n_test: int = 10, gz: bool = True,
                      seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write the four files under their official names (``.gz`` when ``gz``) into ``directory``.

    Returns split -> (images, labels), the arrays that were written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(directory / (FAKE_NAMES[split][0] + suffix), images, gz=gz)
        write_idx(directory / (FAKE_NAMES[split][1] + suffix), labels, gz=gz)
        out[split] = (images, labels)
    return out

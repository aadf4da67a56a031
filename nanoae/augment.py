"""Data augmentation for flattened square images: mirror, shift, masking noise.

Every function takes a float batch ``(N, side * side)`` on the device and
returns a new array (the caller's batch, often a view of the dataset, is never
changed). All of them work on whole batches with array operations only: no
Python loop over images, and no operation whose result size depends on the
data (boolean indexing), which on a GPU would make the host wait to learn it.

``Augmentation`` bundles the three for ``fit``: it draws what is random
from ``(seed, epoch)`` alone, so a run resumed mid-epoch sees exactly the
batches an uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy

from .backend import get_array_module

__all__ = ["mirror_images", "flip_some", "shift_images", "mask_inputs", "Augmentation"]


def _square_side(x, what: str) -> int:
    """The side of the flattened square images in the rows of ``x``."""
    side = math.isqrt(x.shape[1])
    if side * side != x.shape[1]:
        raise ValueError(f"{what} needs flattened square images, got {x.shape[1]} features")
    return side


def mirror_images(x):
    """Every image of ``x`` mirrored left to right, as a new array."""
    side = _square_side(x, "mirror")
    return x.reshape(len(x), side, side)[:, :, ::-1].reshape(len(x), -1)  # the reshape copies


def flip_some(x, which):
    """Image i mirrored where ``which[i]`` (a bool array (N,)) is True, else as it is."""
    xp = get_array_module(x)
    return xp.where(which[:, None], mirror_images(x), x)


def shift_images(x, offsets, pad: int):
    """Move each image of ``x`` by its (rows, columns) in ``offsets``; pixels moved in are 0.

    ``offsets`` is an integer array (N, 2) with entries in -pad..pad. One gather
    for the whole batch: output pixel (i, j) of image b is input pixel
    (i - dy_b, j - dx_b) of the image zero-padded by ``pad`` on every side.
    """
    xp = get_array_module(x)
    side = _square_side(x, "shift")
    padded = xp.pad(x.reshape(len(x), side, side), ((0, 0), (pad, pad), (pad, pad)))
    grid = xp.arange(side)
    rows = (grid + pad)[None, :, None] - offsets[:, 0, None, None]  # (N, side, 1)
    cols = (grid + pad)[None, None, :] - offsets[:, 1, None, None]  # (N, 1, side)
    batch = xp.arange(len(x))[:, None, None]
    return padded[batch, rows, cols].reshape(len(x), -1)


def mask_inputs(x, p: float, rng, *, part=None):
    """``x`` with each value zeroed with probability p and the others scaled by 1 / (1 - p).

    The scaling keeps the expected value of every input unchanged (inverted
    dropout). ``rng`` is a generator of x's array module (``xp.random.default_rng``).
    part: ``(rows, total)`` when ``x`` is only the rows ``rows`` (a slice) of a
    batch of ``total`` examples (data parallel, ``distributed.py``): the mask is
    drawn for the whole batch, as one process draws it, and its ``rows`` are used.
    """
    shape = x.shape if part is None else (part[1], *x.shape[1:])
    draw = rng.random(shape, dtype=numpy.float32)
    keep = (draw if part is None else draw[part[0]]) >= p
    return x * keep * x.dtype.type(1 / (1 - p))


@dataclass(frozen=True)
class Augmentation:
    """What ``fit`` does to each training batch, in this order.

    flip: mirror a random half of the images left to right.
    shift: move each image by a random whole number of pixels in -shift..shift
        along each axis, filling with 0.
    mask: masking noise: zero each input value with this probability (see
        ``mask_inputs``). An autoencoder still reconstructs the clean batch.

    Which images flip and how far each moves are drawn on the host from
    ``(seed, epoch)`` for the whole epoch, one value per example. Masks, one
    value per pixel, are drawn on the device from one generator per epoch.
    """

    flip: bool = False
    shift: int = 0
    mask: float = 0.0

    def __post_init__(self):
        if int(self.shift) < 0:
            raise ValueError(f"fit: shift must be >= 0 pixels, got {self.shift}")
        if not 0 <= self.mask < 1:
            raise ValueError(f"fit: mask must be a probability in [0, 1), got {self.mask}")

    def __bool__(self) -> bool:
        return bool(self.flip or self.shift or self.mask)

    def for_epoch(self, xp, seed: int, epoch: int, n: int) -> "EpochDraws":
        """This epoch's random choices for examples 0..n-1, on the device."""
        host = numpy.random.default_rng([seed, epoch, 1])
        flips = xp.asarray(host.random(n) < 0.5) if self.flip else None
        offsets = xp.asarray(host.integers(-self.shift, self.shift + 1, (n, 2))) if self.shift else None
        # cupy.random.default_rng takes one integer seed: derive it from (seed, epoch)
        mask_seed = int(numpy.random.SeedSequence([seed, epoch, 2]).generate_state(1)[0])
        return EpochDraws(self, flips, offsets, xp.random.default_rng(mask_seed) if self.mask else None)


@dataclass
class EpochDraws:
    """One epoch of an ``Augmentation``: apply it to the batches in order."""

    augmentation: Augmentation
    flips: object
    offsets: object
    mask_rng: object

    def apply(self, xb, idx, part=None):
        """(inputs, clean) for the examples ``idx``, whose rows of the dataset are ``xb``.

        clean: the images flipped and shifted as drawn; inputs: the same with
        the masking noise on top (the autoencoder's target is the clean batch).
        part: ``(rows, total)`` when ``idx`` is only a part of the batch (see ``mask_inputs``).
        """
        aug = self.augmentation
        if aug.flip:
            xb = flip_some(xb, self.flips[idx])
        if aug.shift:
            xb = shift_images(xb, self.offsets[idx], aug.shift)
        inputs = mask_inputs(xb, aug.mask, self.mask_rng, part=part) if aug.mask else xb
        return inputs, xb

    def skip(self, shape) -> None:
        """Draw and drop the masks of a batch of ``shape`` (to resume mid-epoch exactly)."""
        if self.augmentation.mask:
            self.mask_rng.random(shape, dtype=numpy.float32)

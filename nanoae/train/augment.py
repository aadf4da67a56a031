"""Data augmentation for flattened square images: mirror, shift, masking noise.

Every function takes a float batch ``(N, side * side)`` on the device and
returns a new array (the caller's batch, often a view of the dataset, is never
changed). All of them work on whole batches with array operations only: no
Python loop over images, and no operation whose result size depends on the
data (boolean indexing), which on a GPU would make the host wait to learn it.

``Augmentation`` bundles the three for ``fit``: it draws what is random
from ``(seed, epoch)`` alone, so a run resumed mid-epoch sees exactly the
batches an uninterrupted one would.

Masks are drawn per sample from a counter-based generator (``mask_bits``):
the mask of the example at position q of the epoch's order is a pure function
of ``(seed, epoch, q)``. Each rank of a data-parallel job draws only the
positions of its own shards, the draws do not depend on the number of ranks,
and NumPy and CuPy runs mask with the same numbers (drawn on the host once per
epoch, moved to the device once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy

from nanoae.backend import get_array_module
from nanoae.layers import keep_mask

__all__ = ["mirror_images", "flip_some", "shift_images", "mask_inputs", "mask_bits", "Augmentation"]


def _square_side(x, what: str) -> int:
    """The side of the flattened square images in the rows of ``x``."""
    side = math.isqrt(x.shape[1])
    if side * side != x.shape[1]:
        raise ValueError(f"{what} needs flattened square images, got {x.shape[1]} features")
    return side


def mirror_images(x):
    """Every image of ``x`` mirrored left to right, as a new array."""
    side = _square_side(x, "mirror")
    return x.reshape(len(x), side, side)[:, :, ::-1].reshape(x.shape)  # the reshape copies


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
    return padded[batch, rows, cols].reshape(x.shape)


def mask_inputs(x, p: float, keep):
    """``x`` with the values where ``keep`` is 0 zeroed and the others scaled by 1 / (1 - p).

    keep: 0/1 values shaped like x, each 1 with probability 1 - p (``mask_bits``).
    The scaling keeps the expected value of every input unchanged (inverted dropout).
    """
    return x * keep * x.dtype.type(1 / (1 - p))


def mask_bits(seed: int, epoch: int, start: int, stop: int, features: int, p: float):
    """The keep-bits of the examples at positions start..stop-1 of an epoch's order, packed.

    They are ``layers.keep_mask``'s stream 0 (the one rule every mask of a run
    follows, Dropout's too): position q's bits come from NumPy's Philox (a
    counter-based generator) with key (seed, epoch), starting at counter
    q * ceil(features / 8): one 32-bit draw u per feature, kept where
    u >= p * 2^32. So any range is drawn on its own, and equals the same rows of
    a longer range. Returns uint8 (stop - start, ceil(features / 8)), each row's
    bits padded with zeros to whole bytes (``numpy.packbits``).
    """
    return numpy.packbits(keep_mask(seed, epoch, start, stop, features, p), axis=1)


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
    value per pixel, are drawn per position in the epoch's order (``mask_bits``).
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

    def for_epoch(self, xp, seed: int, epoch: int, n: int, *, features: int = 0,
                  batch_size: int | None = None, shard=None, first_step: int = 0) -> "EpochDraws":
        """This epoch's random choices for examples 0..n-1, on the device.

        For masks: ``features`` per example; the batches are positions
        [s * batch_size, (s + 1) * batch_size) of the epoch's order, of which this
        rank takes ``shard(len(batch))`` (default: all); steps before
        ``first_step`` (done before a resume) are not drawn.
        """
        host = numpy.random.default_rng([seed, epoch, 1])
        flips = xp.asarray(host.random(n) < 0.5) if self.flip else None
        offsets = xp.asarray(host.integers(-self.shift, self.shift + 1, (n, 2))) if self.shift else None
        bits = None
        if self.mask:
            batch_size = batch_size or n
            shard = shard or (lambda size: slice(0, size))
            parts = []
            for start in range(first_step * batch_size, n, batch_size):
                rows = shard(min(batch_size, n - start))
                parts.append(mask_bits(seed, epoch, start + rows.start, start + rows.stop,
                                       features, self.mask))
            bits = xp.asarray(numpy.concatenate(parts))  # this rank's whole epoch: one copy
        return EpochDraws(self, flips, offsets, bits)


@dataclass
class EpochDraws:
    """One epoch of an ``Augmentation``: apply it to this rank's batches in order."""

    augmentation: Augmentation
    flips: object
    offsets: object
    bits: object  # packed keep-bits of this rank's examples, in the order of its batches
    used: int = 0  # rows of ``bits`` consumed by earlier batches

    def apply(self, xb, idx, part=None):
        """(inputs, clean) for the examples ``idx``, whose rows of the dataset are ``xb``.

        clean: the images flipped and shifted as drawn; inputs: the same with
        the masking noise on top (the autoencoder's target is the clean batch).
        Batches must come in the order ``for_epoch`` was told (part: unused, kept
        for callers that pass where their shard lies).
        """
        aug = self.augmentation
        if aug.flip:
            xb = flip_some(xb, self.flips[idx])
        if aug.shift:
            xb = shift_images(xb, self.offsets[idx], aug.shift)
        inputs = xb
        if aug.mask:
            xp = get_array_module(xb)
            rows = self.bits[self.used:self.used + len(xb)]
            self.used += len(xb)
            keep = xp.unpackbits(rows.reshape(-1)).reshape(len(xb), 8 * rows.shape[-1])[:, :xb.shape[1]]
            inputs = mask_inputs(xb, aug.mask, keep)
        return inputs, xb

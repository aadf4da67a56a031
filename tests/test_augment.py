"""Augmentation: each transform against the slow, obvious way; seeded draws; no caller data touched."""

import numpy
import pytest

from nanoae.backend import to_numpy
from nanoae.train.augment import (
    Augmentation,
    flip_some,
    mask_bits,
    mask_inputs,
    mirror_images,
    shift_images,
)


def test_flip_some_mirrors_the_chosen_images_and_never_the_callers_data(xp):
    x = xp.asarray(numpy.arange(3 * 784, dtype=numpy.float32).reshape(3, 784))
    before = to_numpy(x).copy()
    out = to_numpy(flip_some(x[:], xp.asarray([True, False, True])))
    for i, flipped in enumerate([True, False, True]):
        image = before[i].reshape(28, 28)
        numpy.testing.assert_array_equal(out[i].reshape(28, 28), image[:, ::-1] if flipped else image)
    numpy.testing.assert_array_equal(to_numpy(x), before)
    numpy.testing.assert_array_equal(to_numpy(mirror_images(mirror_images(x))), before)


def _shift_by_hand(image, dy, dx):
    """One image moved dy rows down and dx columns right, zeros coming in (the slow, obvious way)."""
    out = numpy.zeros_like(image)
    side = image.shape[0]
    for i in range(side):
        for j in range(side):
            if 0 <= i - dy < side and 0 <= j - dx < side:
                out[i, j] = image[i - dy, j - dx]
    return out


def test_shift_images_matches_a_pixel_by_pixel_shift(xp):
    rng = numpy.random.default_rng(4)
    x = rng.random((6, 49), dtype=numpy.float32)
    offsets = numpy.array([[0, 0], [1, 0], [0, -1], [-2, 2], [2, -2], [-1, 1]])
    out = to_numpy(shift_images(xp.asarray(x), xp.asarray(offsets), 2))
    assert out.shape == x.shape and out.dtype == x.dtype
    for b, (dy, dx) in enumerate(offsets):
        numpy.testing.assert_array_equal(out[b].reshape(7, 7), _shift_by_hand(x[b].reshape(7, 7), dy, dx))
    with pytest.raises(ValueError, match="square"):
        shift_images(xp.asarray(x[:, :48]), xp.asarray(offsets), 2)


def test_mask_inputs_zeroes_a_fraction_and_keeps_the_mean(xp):
    x = xp.ones((400, 250), dtype=numpy.float32)
    keep = xp.asarray(numpy.unpackbits(mask_bits(12, 0, 0, 400, 250, 0.2), axis=1)[:, :250])
    out = to_numpy(mask_inputs(x, 0.2, keep))
    assert out.dtype == numpy.float32
    assert set(numpy.unique(out).tolist()) == {0.0, numpy.float32(1 / 0.8)}
    assert (out == 0).mean() == pytest.approx(0.2, abs=0.01)
    assert out.mean() == pytest.approx(1.0, abs=0.015)


def test_mask_bits_of_a_range_are_those_rows_of_a_longer_range():
    # Counter-based: positions 5..9 drawn alone equal rows 5..9 of positions 0..19, whatever
    # the width (here not a multiple of 8, so rows are padded to whole bytes).
    whole = mask_bits(3, 2, 0, 20, 13, 0.3)
    numpy.testing.assert_array_equal(mask_bits(3, 2, 5, 10, 13, 0.3), whole[5:10])
    assert not numpy.array_equal(mask_bits(3, 1, 0, 20, 13, 0.3), whole)  # another epoch
    assert not numpy.unpackbits(whole, axis=1)[:, 13:].any()  # the padding is never kept


def test_epoch_draws_depend_on_seed_and_epoch_only(xp):
    aug = Augmentation(flip=True, shift=2, mask=0.25)
    x = xp.asarray(numpy.random.default_rng(0).random((10, 49), dtype=numpy.float32))
    idx = xp.arange(10)

    def run(seed, epoch):
        draws = aug.for_epoch(xp, seed, epoch, 10, features=49)
        return [to_numpy(a) for a in draws.apply(x, idx)]

    a, b, c = run(0, 0), run(0, 0), run(0, 1)
    for u, v in zip(a, b):
        numpy.testing.assert_array_equal(u, v)
    assert not numpy.array_equal(a[0], c[0])
    inputs, clean = a
    assert ((inputs == 0) | numpy.isclose(inputs, clean / 0.75)).all()  # masked on top of clean


def test_flip_mirrors_about_half_of_the_images_a_different_half_each_epoch(xp):
    n = 1000
    x = xp.asarray(numpy.tile(numpy.arange(16, dtype=numpy.float32), (n, 1)))  # no image is symmetric
    mirrored = to_numpy(mirror_images(x[:1]))[0]
    flipped = []
    for epoch in (0, 1):
        out, _ = Augmentation(flip=True).for_epoch(xp, 0, epoch, n).apply(x, xp.arange(n))
        out = to_numpy(out)
        is_mirrored = (out == mirrored).all(axis=1)
        assert (is_mirrored | (out == to_numpy(x)).all(axis=1)).all()  # each one as is, or mirrored
        assert 0.45 < is_mirrored.mean() < 0.55  # 3 standard deviations of a fair coin's share
        flipped.append(is_mirrored)
    assert 0.4 < (flipped[0] != flipped[1]).mean() < 0.6  # drawn afresh, not the same half


def test_shift_moves_each_image_by_every_offset_within_shift_and_none_beyond(xp):
    n, side, shift = 1000, 7, 2
    x = numpy.zeros((n, side, side), dtype=numpy.float32)
    x[:, 3, 3] = 1  # one bright pixel in the middle: where it lands is the offset
    out, _ = Augmentation(shift=shift).for_epoch(xp, 1, 0, n).apply(xp.asarray(x.reshape(n, -1)),
                                                                   xp.arange(n))
    rows, cols = numpy.divmod(to_numpy(out).argmax(axis=1), side)
    assert (to_numpy(out).sum(axis=1) == 1).all()  # within 2 pixels of the middle: never cut off
    offsets = set(zip((rows - 3).tolist(), (cols - 3).tolist()))
    assert offsets == {(dy, dx) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)}


def test_draws_do_not_depend_on_ranks_or_on_resuming(xp):
    """Batches of 4 over 10 examples: two "ranks" and a run resumed at step 1 see exactly
    the inputs of one uninterrupted process."""
    aug = Augmentation(flip=True, shift=1, mask=0.5)
    x = xp.asarray(numpy.random.default_rng(0).random((10, 16), dtype=numpy.float32))
    order = numpy.random.default_rng(1).permutation(10)

    def run(shard=None, first_step=0, size=1, rank=0):
        draws = aug.for_epoch(xp, 3, 0, 10, features=16, batch_size=4, shard=shard,
                              first_step=first_step)
        out = {}
        for start in range(4 * first_step, 10, 4):
            batch = order[start:start + 4]
            rows = slice(0, len(batch)) if shard is None else shard(len(batch))
            idx = xp.asarray(batch[rows])
            inputs, _ = draws.apply(x[idx], idx)
            out.update(zip(batch[rows].tolist(), to_numpy(inputs)))
        return out

    one = run()

    def halves(rank):
        return lambda n: slice(rank * n // 2, (rank + 1) * n // 2)

    two = {**run(halves(0)), **run(halves(1))}
    resumed = run(first_step=1)
    assert sorted(two) == sorted(one)
    for i in one:
        numpy.testing.assert_array_equal(two[i], one[i])
        if i in resumed:
            numpy.testing.assert_array_equal(resumed[i], one[i])
    assert len(resumed) == 6


def test_an_empty_shard_passes_through_every_augmentation(xp):
    """With 8 ranks and a last batch of 5, three ranks get no rows: flip, shift and mask must
    hand back an empty batch of the right width (once, a reshape to (0, -1) failed here)."""
    aug = Augmentation(flip=True, shift=1, mask=0.5)
    draws = aug.for_epoch(xp, 0, 0, 13, features=16, batch_size=8, shard=lambda n: slice(n, n))
    empty = xp.zeros((0, 16), dtype=numpy.float32)
    inputs, clean = draws.apply(empty, xp.zeros(0, dtype=numpy.int64))
    assert inputs.shape == clean.shape == (0, 16)


@pytest.mark.parametrize("kwargs, message", [(dict(shift=-1), "shift must be >= 0"),
                                             (dict(mask=1.0), "mask must be a probability")])
def test_bad_augmentation_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Augmentation(**kwargs)


def test_mirror_and_shift_name_themselves_when_the_images_are_not_square():
    x = numpy.zeros((2, 5), dtype=numpy.float32)
    with pytest.raises(ValueError, match="^mirror needs flattened square images, got 5 features$"):
        mirror_images(x)
    with pytest.raises(ValueError, match="^shift needs flattened square images, got 5 features$"):
        shift_images(x, numpy.zeros((2, 2), dtype=int), 1)


def test_mask_bits_follow_the_documented_philox_rule_packed_in_whole_bytes():
    """Position q's bits: Philox keyed by (seed, epoch), from counter q * blocks, one 32-bit
    draw per feature, kept where the draw >= p * 2^32; each row padded to whole bytes."""
    seed, epoch, features, p = 3, 2, 10, 0.25  # 10 features: 2 bytes, 16 bits, 2 counter blocks
    raw = numpy.random.Philox(key=numpy.array([seed, epoch], dtype=numpy.uint64)).random_raw(5 * 8)
    draws = raw.view(numpy.uint32).reshape(5, 16)
    keep = draws >= numpy.uint32(p * 2 ** 32)
    keep[:, features:] = False
    bits = mask_bits(seed, epoch, 0, 5, features, p)
    assert bits.shape == (5, 2) and bits.dtype == numpy.uint8
    numpy.testing.assert_array_equal(bits, numpy.packbits(keep, axis=1))
    numpy.testing.assert_array_equal(mask_bits(seed, epoch, 3, 5, features, p), bits[3:])
    almost_all = mask_bits(0, 0, 0, 64, 64, 1 - 1e-12)  # the threshold saturates at 2^32 - 1
    assert not almost_all.any()


def test_an_augmentation_is_true_when_it_does_anything():
    assert not Augmentation()
    assert Augmentation(flip=True) and Augmentation(shift=1) and Augmentation(mask=0.5)
    assert Augmentation(flip=True, shift=0, mask=0.0) and Augmentation(shift=2, mask=0.0)


def test_flips_and_shifts_of_seed_0_epoch_0_stay_those_of_earlier_versions():
    """Reproducible across versions: a saved run resumed by a newer nanoae draws the same."""
    host = numpy.random.default_rng([0, 0, 1])
    flips = host.random(8) < 0.5
    offsets = host.integers(-2, 3, (8, 2))
    draws = Augmentation(flip=True, shift=2).for_epoch(numpy, 0, 0, 8)
    numpy.testing.assert_array_equal(draws.flips, flips)
    numpy.testing.assert_array_equal(draws.offsets, offsets)
    only_shift = Augmentation(shift=2).for_epoch(numpy, 0, 0, 8)  # no flips drawn: the same stream
    numpy.testing.assert_array_equal(only_shift.offsets, numpy.random.default_rng([0, 0, 1]).integers(-2, 3, (8, 2)))

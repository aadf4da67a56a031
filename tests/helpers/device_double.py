"""A CPU stand-in for a CuPy array: it refuses what CuPy refuses or makes slow.

``NoHostReads`` is a NumPy array that

* fails whenever its values are read back as Python numbers (float(), int(),
  bool(), .item(), .tolist()): on a GPU each such read makes the host wait for
  the device, and inside the step loop that would happen every batch;
* refuses a host (plain NumPy) array written into it, ``dev[...] = host``, as
  CuPy does (its ``fill``/``setitem`` take device arrays and scalars only): code
  must first convert with the destination's array module.

Arrays computed from one of these are of this class too, so a whole training
loop is watched on the CPU. ``device_module`` stands in for ``cupy`` (its
``asarray`` makes a NoHostReads); ``as_device(monkeypatch)`` makes
``nanoae.backend.get_array_module`` return it for these arrays.
"""

from __future__ import annotations

import types

import numpy


class HostReadError(AssertionError):
    """A device value was read on the host where it must not be."""


class HostWriteError(TypeError):
    """A host array was written into a device array (CuPy raises here too)."""


class NoHostReads(numpy.ndarray):
    armed = True  # host reads fail while True (the epoch's end disarms it)

    def __array_wrap__(self, obj, context=None, return_scalar=False):
        # keep reductions (sum, mean) 0-d arrays of this class, as CuPy keeps them on the device
        return numpy.asarray(obj).view(NoHostReads)

    def __setitem__(self, key, value):
        if type(value) is numpy.ndarray and value.ndim > 0:
            raise HostWriteError("a host (NumPy) array was written into a device array; convert it "
                                 "with the destination's array module first (as CuPy requires)")
        numpy.ndarray.__setitem__(self, key, value)


def _refusing(name):
    """The ndarray method ``name``, failing while NoHostReads is armed."""
    def method(self, *args):
        if NoHostReads.armed:
            raise HostReadError(f"a device value was read on the host ({name}) inside the step loop")
        return getattr(numpy.ndarray, name)(self, *args)
    return method


for _name in ("__float__", "__int__", "__bool__", "__index__", "item", "tolist"):
    setattr(NoHostReads, _name, _refusing(_name))


def _device_asarray(a, dtype=None):
    return numpy.asarray(a, dtype=dtype).view(NoHostReads)


# numpy's functions, except that new arrays from host data land "on the device"
device_module = types.SimpleNamespace(**{name: getattr(numpy, name) for name in dir(numpy)
                                         if not name.startswith("__")})
device_module.asarray = device_module.array = _device_asarray


def as_device(monkeypatch):
    """Make nanoae's backend treat NoHostReads arrays as arrays of ``device_module``."""
    from nanoae import backend  # noqa: PLC0415

    real = backend.get_array_module

    def get_array_module(*arrays):
        if any(isinstance(a, NoHostReads) for a in arrays):
            return device_module
        return real(*arrays)

    monkeypatch.setattr(backend, "get_array_module", get_array_module)


def use_double(monkeypatch):
    """Make the double the active backend for one test: new parameters and data are NoHostReads.

    Host reads are allowed here (tests read results); host *writes* are refused.
    """
    from nanoae import backend  # noqa: PLC0415

    as_device(monkeypatch)
    monkeypatch.setattr(backend, "_active", device_module)
    monkeypatch.setattr(NoHostReads, "armed", False)
    return device_module


def reads_only_at_epoch_ends(monkeypatch):
    """Make ``fit``'s data NoHostReads arrays, allowed to be read only inside its epoch's end.

    Patches nanoae.train.loop: ``backend.to_device`` hands back NoHostReads views, the
    per-epoch figures (``_end_epoch``, where the one read of an epoch happens) run unarmed,
    and the one-off data checks before training are skipped. The caller arms
    ``NoHostReads`` and views its model's parameters as NoHostReads.
    """
    from nanoae.train import loop  # noqa: PLC0415

    real_to_device, real_end = loop.backend.to_device, loop._end_epoch
    monkeypatch.setattr(loop.backend, "to_device", lambda a, dtype=None: (
        real_to_device(a, dtype).view(NoHostReads)))

    def end_epoch(*args, **kwargs):  # the per-epoch reads are allowed
        NoHostReads.armed = False
        try:
            return real_end(*args, **kwargs)
        finally:
            NoHostReads.armed = True

    monkeypatch.setattr(loop, "_end_epoch", end_epoch)
    monkeypatch.setattr(loop, "_validate_data", lambda *a: None)  # checked once, before

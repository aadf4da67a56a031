"""NumPy or CuPy: one code path for the CPU and an NVIDIA GPU.

The layers never import ``numpy`` or ``cupy`` for their math. They ask for the
array module of their input, ``xp = get_array_module(x)``, and call ``xp.exp``,
``xp.matmul`` and so on, so the same line runs on whichever device the data
lives on (the pattern of Chainer and DeZero).

The *active backend* decides only where new arrays are created: the initial
weights (drawn on the host with a seeded NumPy generator, then moved, so CPU and
GPU runs start from identical weights) and the dataset. Choose it once:

    nanoae.backend.set_backend("cupy")      # or "numpy", or "auto"
    NANOAE_BACKEND=cupy python my_script.py  # the same, from the environment

"auto" picks CuPy when it imports *and* a CUDA device answers, NumPy otherwise.
Asking for "cupy" where it cannot run raises a ``RuntimeError`` that repeats why
the import or the device check failed, rather than failing later with an
unhelpful message.

Moving data to the host (``to_numpy``) happens only at the edges: metrics at the
end of an epoch, plots, checkpoints. Each such call waits for the GPU to finish.
"""

from __future__ import annotations

import os

import numpy

__all__ = [
    "get_array_module",
    "to_numpy",
    "to_device",
    "as_array_like",
    "set_backend",
    "get_backend",
    "xp",
    "cupy_available",
    "synchronize",
]

BACKENDS = ("numpy", "cupy", "auto")

# Import CuPy lazily and remember *why* it failed, so that the error raised when
# a user asks for it can say so (Chainer's check_cuda_available does the same).
_cupy = None
_cupy_error: str | None = None
_cupy_checked = False


def _load_cupy():
    """Return the cupy module if it imports and sees a CUDA device, else None."""
    global _cupy, _cupy_error, _cupy_checked
    if _cupy_checked:
        return _cupy
    _cupy_checked = True
    try:
        import cupy  # noqa: PLC0415  (optional dependency)
    except Exception as exc:  # ImportError, or a broken CUDA install
        _cupy_error = f"CuPy could not be imported ({type(exc).__name__}: {exc})"
        return None
    try:
        # Ask the runtime itself: cupy.is_available() swallows every exception, so a driver
        # older than the wheel's CUDA would read as "no device"; the runtime's error says why.
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        _cupy_error = f"CuPy imported but CUDA failed ({type(exc).__name__}: {exc})"
        return None
    if count < 1:
        _cupy_error = "CuPy imported but CUDA reports no device"
        return None
    _cupy = cupy
    return _cupy


def cupy_available() -> bool:
    """True when CuPy imports and a CUDA device is usable."""
    return _load_cupy() is not None


def cupy_unavailable_reason() -> str | None:
    """Why CuPy cannot be used here, or None when it can."""
    _load_cupy()
    return _cupy_error


def _resolve(name: str):
    name = str(name).lower()
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "numpy":
        return numpy
    cp = _load_cupy()
    if name == "auto":
        return cp if cp is not None else numpy
    if cp is None:
        raise RuntimeError(f"backend 'cupy' was requested but cannot run: {_cupy_error}; "
                           "install CuPy for your CUDA version, from the nanoae checkout: "
                           "pip install -e \".[cuda12]\" (or \".[cuda13]\")")
    return cp


_active = None  # resolved on first use, so importing nanoae never touches CUDA


def set_backend(name: str):
    """Make ``name`` ("numpy", "cupy" or "auto") the active backend; returns its module."""
    global _active
    _active = _resolve(name)
    return _active


def get_backend() -> str:
    """The name of the active backend: "numpy" or "cupy"."""
    return "cupy" if xp() is not numpy else "numpy"


def xp():
    """The active array module (numpy or cupy)."""
    global _active
    if _active is None:
        _active = _resolve(os.environ.get("NANOAE_BACKEND", "numpy"))
    return _active


def get_array_module(*arrays):
    """The array module that owns ``arrays``: cupy if any of them is a CuPy array.

    Cheap on the NumPy path: CuPy is consulted only once it has been loaded, or
    when an argument's type comes from the ``cupy`` package (created by the user).
    """
    if _cupy is not None:
        return _cupy.get_array_module(*arrays)
    for a in arrays:  # a plain loop: this runs several times per layer per step
        if type(a).__module__.startswith("cupy") and _load_cupy() is not None:
            return _cupy.get_array_module(*arrays)
    return numpy


def to_numpy(a) -> numpy.ndarray:
    """A host (NumPy) copy or view of ``a``; waits for the GPU when ``a`` lives there."""
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy.asnumpy(a)
    return numpy.asarray(a)


def to_device(a, dtype=None):
    """``a`` as an array of the active backend (no copy when it is already there)."""
    return xp().asarray(a, dtype=dtype)


def as_array_like(value, reference):
    """``value`` as an array of ``reference``'s array module (moved to the device if needed).

    For writing host data into an existing array: CuPy refuses ``dev[...] = host``,
    so the value is converted with the *destination's* module, whatever the
    active backend is. (On CuPy it lands on the current device: the rank's own.)
    """
    return get_array_module(reference).asarray(value)


def synchronize(a=None) -> None:
    """Wait for the GPU to finish queued work (no-op on NumPy). For honest timings."""
    if _cupy is not None and (a is None or isinstance(a, _cupy.ndarray)):
        _cupy.cuda.get_current_stream().synchronize()

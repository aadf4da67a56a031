"""Shared fixtures: the array module under test (NumPy always, CuPy where a GPU is).

Every test that takes ``xp`` runs once per backend. The CuPy run is marked
``gpu`` and skipped, with the reason CuPy cannot run, on machines without it:
the same test functions serve both backends, never copies of them.
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")  # before anything imports pyplot: no display in CI

import numpy
import pytest

from nanoae import backend


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module under test; makes it the active nanoae backend for the test."""
    if request.param == "cupy" and not backend.cupy_available():
        pytest.skip(f"needs CuPy and a CUDA device: {backend.cupy_unavailable_reason()}")
    previous = backend.get_backend()
    module = backend.set_backend(request.param)
    yield module
    backend.set_backend(previous)


@pytest.fixture
def rng():
    return numpy.random.default_rng(12345)

"""Shared fixtures: the array module under test (NumPy always, CuPy where a GPU is).

Every test that takes ``xp`` (or ``backend_name``) runs once per backend. The
CuPy run is marked ``gpu`` and skipped, with the reason CuPy cannot run, on
machines without it: the same test functions serve both backends, never
copies of them. ``backend_name`` is for tests that hand the backend on by name
(``--backend`` on the command line, ``NANOAE_BACKEND`` for a subprocess);
``use_backend`` switches backends in the middle of a test (save on one device,
load on the other).
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")  # before anything imports pyplot: no display in CI

import numpy
import pytest

from nanoae import backend

BACKENDS = ["numpy", pytest.param("cupy", marks=pytest.mark.gpu)]


def _require(name):
    """Skip the calling test, with the reason, when backend ``name`` cannot run here."""
    if name == "cupy" and not backend.cupy_available():
        pytest.skip(f"needs CuPy and a CUDA device: {backend.cupy_unavailable_reason()}")


@pytest.fixture
def use_backend():
    """A function ``use_backend(name)`` that makes ``name`` the active backend (skipping the
    test if it cannot run) and returns its module; the backend before the test comes back after."""
    previous = backend.get_backend()

    def use(name):
        _require(name)
        return backend.set_backend(name)

    yield use
    backend.set_backend(previous)


@pytest.fixture(params=BACKENDS)
def xp(request, use_backend):
    """The array module under test; makes it the active nanoae backend for the test."""
    return use_backend(request.param)


@pytest.fixture(params=BACKENDS)
def backend_name(request, use_backend):
    """The name of the backend under test ("numpy" or "cupy"), made active for the test."""
    use_backend(request.param)
    return request.param


@pytest.fixture
def rng():
    return numpy.random.default_rng(12345)



@pytest.fixture(autouse=True)
def ctrl_c_reaches_us(request):
    """In a test marked ``sigint``: SIGINT delivered as Python's KeyboardInterrupt, whatever
    the shell did; the handler found before the test comes back after it.

    A shell starts a background job (``... &``, nohup, some CI runners) with SIGINT
    ignored, and ``fit`` rightly leaves it so; a test that simulates Ctrl-C needs
    it delivered, so it says so with the mark.
    """
    if request.node.get_closest_marker("sigint") is None:
        yield
        return
    import signal

    found = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, found)

"""The backend switch: names, errors that say why, moving arrays."""

import sys

import numpy
import pytest

from nanoae import backend


def test_numpy_backend_and_module_detection():
    previous = backend.get_backend()
    try:
        assert backend.set_backend("numpy") is numpy
        assert backend.get_backend() == "numpy"
        a = backend.to_device([1.0, 2.0], dtype=numpy.float32)
        assert isinstance(a, numpy.ndarray) and a.dtype == numpy.float32
        assert backend.get_array_module(a) is numpy
        assert backend.to_numpy(a) is a or numpy.shares_memory(backend.to_numpy(a), a)
    finally:
        backend.set_backend(previous)


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match=r"unknown backend 'tpu'.*numpy, cupy, auto"):
        backend.set_backend("tpu")


def test_cupy_request_says_why_when_unavailable():
    if backend.cupy_available():
        pytest.skip("CuPy works here; the error path cannot be exercised")
    with pytest.raises(RuntimeError, match="backend 'cupy' was requested but cannot run: .+"):
        backend.set_backend("cupy")
    previous = backend.get_backend()
    try:
        assert backend.set_backend("auto") is numpy  # auto falls back quietly
    finally:
        backend.set_backend(previous)


def test_environment_variable_chooses_the_backend(monkeypatch):
    monkeypatch.setenv("NANOAE_BACKEND", "numpy")
    monkeypatch.setattr(backend, "_active", None)
    assert backend.xp() is numpy
    monkeypatch.setenv("NANOAE_BACKEND", "bogus")
    monkeypatch.setattr(backend, "_active", None)
    with pytest.raises(ValueError, match="bogus"):
        backend.xp()


def test_the_core_imports_nothing_heavy():
    """The numerical core (layers, losses, optim, model, gradcheck) never imports matplotlib,
    scikit-learn, tqdm or cupy: it stays light to import and to read."""
    import subprocess
    import sys

    code = ("import sys, nanoae; heavy = {'matplotlib', 'sklearn', 'tqdm', 'cupy', 'torch'};"
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _fake_cupy(count):
    """A stand-in for the cupy module whose runtime reports ``count`` devices (a function: raises)."""
    runtime = type("runtime", (), {"getDeviceCount": staticmethod(count)})
    return type("cupy", (), {"cuda": type("cuda", (), {"runtime": runtime})})


@pytest.mark.parametrize("fake, error", [
    (None, "CuPy could not be imported (ModuleNotFoundError: "),  # None: the import fails
    (_fake_cupy(lambda: 1 / 0), "CuPy imported but CUDA failed (ZeroDivisionError: division by zero)"),
    (_fake_cupy(lambda: 0), "CuPy imported but CUDA reports no device"),
], ids=["import-fails", "runtime-fails", "no-device"])  # (not "cupy": that id means a GPU test)
def test_cupy_that_cannot_run_is_refused_with_the_reason(monkeypatch, fake, error):
    monkeypatch.setitem(sys.modules, "cupy", fake)  # None: the import fails
    monkeypatch.setattr(backend, "_cupy_checked", False)
    monkeypatch.setattr(backend, "_cupy_error", None)
    monkeypatch.setattr(backend, "_cupy", None)
    assert backend.cupy_available() is False
    assert backend._cupy_error.startswith(error)
    with pytest.raises(RuntimeError, match=error.split(" (")[0]):
        backend.set_backend("cupy")
    assert backend._load_cupy() is None  # asked once, remembered


@pytest.mark.parametrize("fake", [_fake_cupy(lambda: 1)], ids=["one-device"])
def test_cupy_that_sees_a_device_is_used(monkeypatch, fake):
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(backend, "_cupy_checked", False)
    monkeypatch.setattr(backend, "_cupy_error", None)
    monkeypatch.setattr(backend, "_cupy", None)
    assert backend._load_cupy() is fake and backend.cupy_available() and backend._cupy_error is None


def test_the_runtimes_own_error_is_kept(monkeypatch):
    # A driver older than the wheel's CUDA: cupy.is_available() would say False and hide why.
    import types  # noqa: PLC0415

    def count():
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient "
                           "for CUDA runtime version")

    fake = types.ModuleType("cupy")
    fake.is_available = lambda: False
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=count))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    for name, value in (("_cupy", None), ("_cupy_error", None), ("_cupy_checked", False)):
        monkeypatch.setattr(backend, name, value)
    assert not backend.cupy_available()
    assert "cudaErrorInsufficientDriver: CUDA driver version is insufficient" in (
        backend.cupy_unavailable_reason())

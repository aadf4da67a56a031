"""The backend switch: names, errors that say why, moving arrays."""

import sys
import types

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


# -- with a stand-in for CuPy: when it is consulted, and what goes through it --

class _FakeDeviceArray:
    """An array type that reads as CuPy's: its class lives in a ``cupy`` module."""


_FakeDeviceArray.__module__ = "cupy._core.core"


def _device_fake(monkeypatch):
    """A cupy stand-in with one device, importable but not yet loaded; it records its calls."""
    calls = []

    def count():
        calls.append("getDeviceCount")
        return 1

    fake = types.ModuleType("cupy")
    fake.ndarray = _FakeDeviceArray
    fake.get_array_module = lambda *arrays: calls.append("get_array_module") or fake
    fake.asnumpy = lambda a: calls.append("asnumpy") or numpy.array([a], dtype=object)
    stream = types.SimpleNamespace(synchronize=lambda: calls.append("synchronize"))
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=count),
                                      get_current_stream=lambda: stream)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    for name, value in (("_cupy", None), ("_cupy_error", None), ("_cupy_checked", False),
                        ("_active", backend._active)):
        monkeypatch.setattr(backend, name, value)
    return fake, calls


def test_cupy_is_asked_for_its_devices_once(monkeypatch):
    fake, calls = _device_fake(monkeypatch)
    assert backend._load_cupy() is fake and backend._load_cupy() is fake
    assert calls == ["getDeviceCount"]


def test_auto_picks_a_cupy_that_sees_a_device(monkeypatch):
    fake, _ = _device_fake(monkeypatch)
    assert backend.set_backend("auto") is fake and backend.get_backend() == "cupy"
    assert backend.set_backend("numpy") is numpy and backend.get_backend() == "numpy"


def test_host_arrays_never_load_cupy_and_device_arrays_go_to_it(monkeypatch):
    fake, calls = _device_fake(monkeypatch)
    assert backend.get_array_module(numpy.zeros(2), 1.0) is numpy
    assert calls == [] and not backend._cupy_checked  # CUDA untouched
    assert backend.get_array_module(numpy.zeros(2), _FakeDeviceArray()) is fake
    assert calls == ["getDeviceCount", "get_array_module"]


def test_to_numpy_and_synchronize_go_through_cupy_for_its_arrays_only(monkeypatch):
    fake, calls = _device_fake(monkeypatch)
    backend.synchronize()  # CuPy not loaded: nothing to wait for
    assert calls == []
    backend._load_cupy()
    calls.clear()
    device = _FakeDeviceArray()
    assert backend.to_numpy(device)[0] is device and calls == ["asnumpy"]
    backend.synchronize(numpy.zeros(2))  # a host array: nothing to wait for
    assert calls == ["asnumpy"]
    backend.synchronize()
    backend.synchronize(device)
    assert calls == ["asnumpy", "synchronize", "synchronize"]


def test_an_unusable_cupy_request_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # the import fails
    for name, value in (("_cupy", None), ("_cupy_error", None), ("_cupy_checked", False)):
        monkeypatch.setattr(backend, name, value)
    with pytest.raises(RuntimeError, match=r"^backend 'cupy' was requested but cannot run: CuPy could not be "
                                           r"imported \(.*\); install CuPy for your CUDA version, from the "
                                           r"nanoae checkout: pip install -e \"\.\[cuda12\]\" "
                                           r"\(or \"\.\[cuda13\]\"\)$"):
        backend.set_backend("cupy")

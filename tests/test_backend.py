"""The backend switch: names, errors that say why, moving arrays."""

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


def test_in_halves_equals_one_call_and_reraises():
    def square_into(x, out):
        numpy.multiply(x, x, out=out)
        out += 1

    x = numpy.random.default_rng(0).standard_normal((300, 400)).astype(numpy.float32)  # > 65k: split
    split, whole = numpy.empty_like(x), numpy.empty_like(x)
    backend.in_halves(square_into, x, split)
    square_into(x, whole)
    numpy.testing.assert_array_equal(split, whole)

    def fails_on_second_half(x):
        if x[0, 0] == 1:
            raise ArithmeticError("second half")

    y = numpy.zeros((300, 400))
    y[150:] = 1
    with pytest.raises(ArithmeticError, match="second half"):
        backend.in_halves(fails_on_second_half, y)

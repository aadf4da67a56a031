"""Parameter: a trainable array and the gradient of the loss with respect to it."""

from __future__ import annotations

from nanoae.backend import get_array_module

__all__ = ["Parameter"]


class Parameter:
    """A trainable array ``data`` and its gradient ``grad`` (same shape, dtype and device).

    Layers *set* ``grad`` in their backward pass (they replace it, they never
    add to it), so calling backward twice gives the same gradient twice and no
    ``zero_grad`` is needed between steps. Nothing else holds on to ``data`` or
    ``grad``: optimizers keep the Parameter object and read both afresh at
    every step, so either may be rebound freely.
    """

    __slots__ = ("data", "grad", "name")

    def __init__(self, data, name: str = ""):
        xp = get_array_module(data)
        self.data = data
        self.grad = xp.zeros_like(data)
        self.name = name

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self) -> str:
        return f"Parameter({self.name or '?'}, shape={tuple(self.shape)}, dtype={self.dtype})"

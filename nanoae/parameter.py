"""Parameter: a trainable array and the gradient of the loss with respect to it.

A model's parameters can be *packed* into one flat buffer (``pack``): every
``Parameter.data`` becomes a view into one long vector, and every ``.grad`` a
view into another. Nothing else changes for the layers (they still read
``W.data`` and write ``W.grad`` in place), but the optimizer can then update all
parameters with a handful of whole-vector operations instead of a Python loop of
small ones, and a checkpoint or a gradient check can treat the model as one
vector (scikit-learn's MLP does the same with ``_pack``).
"""

from __future__ import annotations

from .backend import get_array_module

__all__ = ["Parameter", "FlatParameters", "pack"]


class Parameter:
    """A trainable array ``data`` and its gradient ``grad`` (same shape, dtype and device).

    Layers *set* ``grad`` in their backward pass (they overwrite it, they never
    add to it), so calling backward twice gives the same gradient twice and no
    ``zero_grad`` is needed between steps. Layers write into ``grad`` in place,
    so it may be a view into a larger buffer (see ``pack``); for the same reason
    new values are written into ``data`` in place (``p.data[...] = value``),
    never by rebinding it.
    """

    __slots__ = ("data", "grad", "name", "_packed")

    def __init__(self, data, name: str = ""):
        xp = get_array_module(data)
        self.data = data
        self.grad = xp.zeros_like(data)
        self.name = name
        self._packed = None  # the FlatParameters holding data/grad, if packed

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self) -> str:
        return f"Parameter({self.name or '?'}, shape={tuple(self.shape)}, dtype={self.dtype})"


class FlatParameters:
    """Parameters whose ``data`` and ``grad`` are views into two flat vectors.

    ``data`` and ``grad`` are the two vectors (shape ``(total,)``); writing into
    them changes every parameter at once.
    """

    def __init__(self, params, data, grad):
        self.params = list(params)
        self.data = data
        self.grad = grad

    def __len__(self) -> int:
        return int(self.data.size)


def pack(params) -> FlatParameters:
    """Move ``params`` into two flat buffers, in order, and rebind them as views.

    Values and gradients are copied, so the parameters keep both; only where
    they live changes. Parameters already packed contiguously, in this order, into
    one buffer are reused as they are (packing twice costs nothing).
    All parameters must share one dtype and one device.
    """
    params = list(params)
    if not params:
        raise ValueError("pack: got no parameters")
    dtypes = {p.data.dtype for p in params}
    if len(dtypes) != 1:
        raise TypeError(f"pack: parameters have mixed dtypes {sorted(map(str, dtypes))}")
    xp = get_array_module(*[p.data for p in params])
    sizes = [int(p.data.size) for p in params]
    total = sum(sizes)

    packed = params[0]._packed
    if (packed is not None and len(packed.params) == len(params)
            and all(a is b for a, b in zip(packed.params, params))):
        return packed

    data = xp.empty(total, dtype=params[0].data.dtype)
    grad = xp.empty(total, dtype=params[0].data.dtype)
    offset = 0
    for p, n in zip(params, sizes):
        shape = p.data.shape
        data[offset:offset + n] = p.data.reshape(-1)
        grad[offset:offset + n] = p.grad.reshape(-1)
        p.data = data[offset:offset + n].reshape(shape)
        p.grad = grad[offset:offset + n].reshape(shape)
        offset += n
    flat = FlatParameters(params, data, grad)
    for p in params:
        p._packed = flat
    return flat

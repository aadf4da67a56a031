"""Sequential: layers applied one after another, and the chain rule run backwards.

Forward:  y = f_k(... f_2(f_1(x)))
Backward: g_k = dL/dy; for each layer from last to first, g_{i-1} = layer_i.backward(g_i).

That loop *is* backpropagation: each layer turns the gradient with respect to
its output into the gradient with respect to its input, and sets the gradients
of its own parameters on the way.

(This is the container; the networks of the Fashion-MNIST story built from it,
Autoencoder and Classifier, are in ``nanoae/fashion/models.py``.)
"""

from __future__ import annotations

from nanoae import backend
from nanoae.backend import to_numpy
from nanoae.layers import Layer
from nanoae.parameter import Parameter

__all__ = ["Sequential", "backward_through"]


class Sequential(Layer):
    """A chain of layers. ``Sequential(Dense(4, 3), ReLU(), Dense(3, 2))``.

    Supports ``len(model)``, ``model[i]`` (a layer; a slice gives a new
    Sequential sharing the same layer objects), iteration and ``model.layers``.

    label: a word put before each layer's position in its ``place`` (and so in
        its ``name``): ``Sequential(Dense(784, 128), label="encoder")[0].name`` is
        ``"encoder layer 0 Dense(784, 128)"``.

    Names are given here, once: each layer that has no ``place`` yet gets its
    position in this chain. A slice, or a container built around this one,
    shares the layers and leaves their places as they are.
    """

    skips_input_grad = True  # it passes input_grad=False on to its first layer, if that one skips

    def __init__(self, *layers: Layer, label: str = ""):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is {type(layer).__name__}, not a Layer")
        self.layers = list(layers)
        self.output = None  # what the latest forward returned (loss_value checks its pred is it)
        prefix = f"{label} " if label else ""
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Sequential) and not layer.place:
                layer.place = f"{prefix}layer {i}"

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in getattr(self, "layers", []))
        return f"Sequential({inner})"

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def parameters(self) -> list[Parameter]:
        """All parameters, in layer order (W then b for each Dense)."""
        return [p for layer in self.layers for p in layer.parameters()]

    def leaves(self) -> list[Layer]:
        """The working layers in order, with nested Sequentials opened up."""
        return [leaf for layer in self.layers for leaf in layer.leaves()]

    def last_layer(self) -> Layer:
        """The last working layer (looks inside a nested Sequential)."""
        return self.leaves()[-1]

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)  # layer(x), not layer.forward(x): its forward hooks see the output
        self.output = x
        return x

    def backward(self, grad_out, *, input_grad: bool = True):
        """Backpropagate dL/dy through every layer, last to first; returns dL/dx.

        With ``input_grad=False`` the first layer may skip computing dL/dx
        (nobody needs the gradient with respect to the data) and None is returned.
        """
        return backward_through(self.leaves(), grad_out, input_grad)

    def loss_value(self, loss, pred, target):
        """``loss(pred, target)`` for ``pred``, the output of this model's latest forward.

        The counterpart of ``backward_from_loss``, and the one place where a
        fused pair hands over what its activation kept: the loss gets the last
        layer (``loss.after``) and reads from it what it can use, e.g.
        BinaryCrossEntropy the Sigmoid's logits, exact where p rounded to 0 or 1.
        ``pred`` must be that latest output, and anything else is refused
        rather than combined with the logits of another pass (for an average
        of two passes, say, call ``loss(pred, target)``).
        """
        if pred is not self.output:
            raise ValueError(
                f"loss_value: pred is not what {self!r} returned from its latest forward, so the "
                "loss cannot use what that pass kept (the logits); call loss(pred, target) for "
                "any other prediction")
        return loss.after(self.last_layer(), pred, target)

    def backward_from_loss(self, loss, *, input_grad: bool = True):
        """Backpropagate from a loss whose ``forward`` was just called on this model's output.

        Plain: ``self.backward(loss.backward())``. When the last layer and the
        loss form a fused pair (Sigmoid then BinaryCrossEntropy, Softmax then
        CrossEntropy; ``loss.fuses_with(layer)`` says), the loss gives the
        gradient with respect to that layer's *input* directly
        (``loss.logits_grad()``: ``(y - t) / count``) and the backward pass
        starts one layer earlier. It is the same gradient, computed stably and
        with fewer passes. Returns dL/dx (None with ``input_grad=False``).
        """
        layers = self.leaves()
        if loss.fuses_with(layers[-1]):
            return backward_through(layers[:-1], loss.logits_grad(), input_grad)
        return backward_through(layers, loss.backward(), input_grad)

    # -- saving and loading ---------------------------------------------------
    def state_dict(self) -> dict:
        """Host (NumPy) copies of every parameter, keyed ``"<layer>.<name>"`` (e.g. ``"0.W"``)."""
        return {key: to_numpy(p.data).copy() for key, p in self._named_parameters()}

    def load_state_dict(self, state: dict) -> None:
        """Copy arrays from ``state`` into the parameters, in place, after checking them all.

        Every key, shape and dtype is checked before anything is written, so a
        mismatch leaves the model as it was.
        """
        named = dict(self._named_parameters())
        missing = sorted(set(named) - set(state))
        unexpected = sorted(set(state) - set(named))
        if missing or unexpected:
            raise ValueError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for key, p in named.items():
            value = state[key]
            if tuple(value.shape) != tuple(p.data.shape) or value.dtype != p.data.dtype:
                raise ValueError(
                    f"load_state_dict: {key} expected shape {tuple(p.data.shape)} dtype "
                    f"{p.data.dtype}, got shape {tuple(value.shape)} dtype {value.dtype}"
                )
        for key, p in named.items():
            p.data[...] = backend.as_array_like(state[key], p.data)  # the parameter's own module

    def _named_parameters(self, prefix=""):
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Sequential):
                yield from layer._named_parameters(f"{prefix}{i}.")
            else:
                for p in layer.parameters():
                    yield f"{prefix}{i}.{p.name}", p


def backward_through(layers, grad, input_grad: bool = True):
    """The chain rule over ``layers``, last to first: g <- layer.backward(g); returns the last g.

    ``input_grad=False`` is passed to the first layer alone, and only if it declares
    ``skips_input_grad`` (every later layer's dL/dx is the gradient its predecessor
    needs; a layer that does not declare it computes dL/dx anyway).
    """
    if not layers:  # a fused pair was the whole model: the loss gave dL/dx itself
        return grad
    for layer in reversed(layers[1:]):
        grad = layer.backward(grad)
    first = layers[0]
    if not input_grad and first.skips_input_grad:
        return first.backward(grad, input_grad=False)
    return first.backward(grad)

"""A layer of your own: LeakyReLU, in the few lines the layer protocol asks for.

Used by 06_your_own_layer.py; check it from a shell with

    nanoae gradcheck examples/my_layers.py:LeakyReLU --args 'slope=0.1'
    nanoae gradcheck examples/my_layers.py:LeakyReLUForgotSlope    # fails, naming the element
"""

from nanoae import Layer
from nanoae.backend import get_array_module


class LeakyReLU(Layer):
    """``y = x`` where x > 0, else ``slope * x``: a ReLU whose negative side keeps a small slope.

    Backward: ``dL/dx = g`` where x > 0, else ``slope * g``. A unit that is
    negative on every input still passes a gradient, so it can come back to life.
    """

    def __init__(self, slope: float = 0.01):
        self.slope = slope
        self.y = None

    def __repr__(self) -> str:
        return f"LeakyReLU({self.slope})"

    def forward(self, x):
        xp = get_array_module(x)  # NumPy or CuPy: whichever x lives in
        # Keep the output, as ReLU does: y > 0 exactly where x > 0 (for a positive slope),
        # which is all backward needs. (Watch sees what forward returns: no name is required.)
        self.y = xp.where(x > 0, x, self.slope * x)
        return self.y

    def backward(self, grad_out):
        xp = get_array_module(grad_out)
        return xp.where(self.y > 0, grad_out, self.slope * grad_out)


class LeakyReLUForgotSlope(LeakyReLU):
    """The mistake to catch: backward copied from ReLU, the slope of the negative side forgotten."""

    def backward(self, grad_out):
        return grad_out * (self.y > 0)  # should be slope * grad_out where x <= 0

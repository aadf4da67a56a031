# %% [markdown]
# ## 02 - Check a gradient by hand, then let nanoae.gradcheck check a whole model.
#
# What it teaches: how a hand-written backward() is tested. One element of dL/dW
# of a Dense layer by central differences, (L(w + h) - L(w - h)) / 2h, against
# backward(); why that needs float64; then nanoae.gradcheck on a small model, and
# a deliberately broken backward (the 1/N of a mean forgotten) being caught.
#
# Run:  .venv/bin/python examples/02_gradcheck_by_hand.py
# Run time: 0.6 s as a script; no data needed, real data, on a quiet 2-core Intel Xeon
# (lscpu: family 6, model 167), 2026-12-02.
# Writes examples/out/gradcheck_step_size.png.

# %%
import numpy as np
from _knobs import show
from matplotlib.figure import Figure

import nanoae as nn
from nanoae.backend import to_device

rng = np.random.default_rng(0)
# Drawn on the host, then put where the weights live (the GPU with NANOAE_BACKEND=cupy).
x, G = to_device(rng.standard_normal((4, 5))), to_device(rng.standard_normal((4, 3)))


def make_net(dtype):
    """Dense then Sigmoid; the same seed in every dtype gives the same weights, rounded.

    The Sigmoid makes L curved in W: after a Dense alone, L = sum(G * (x W + b)) is
    linear in W and central differences would be exact at any h (rounding aside)."""
    return nn.Sequential(nn.Dense(5, 3, dtype=dtype, rng=0), nn.Sigmoid())


def central_difference(net, i, j, h):
    """d/dW[i, j] of L = sum(G * net(x)): the loss whose gradient dL/dy is exactly G."""
    w, xn, g = net[0].W.data, x.astype(net[0].dtype), G.astype(net[0].dtype)
    old = float(w[i, j])  # a copy: on CuPy, w[i, j] is a 0-d view that the next line changes
    w[i, j] = old + h
    up = float((net(xn) * g).sum())
    w[i, j] = old - h
    down = float((net(xn) * g).sum())
    w[i, j] = old  # put it back: the next check must see the same weights
    return (up - down) / (2 * h)

# %% [markdown]
# ### One element, by hand
# The loss `L = sum(G * net(x))` has `dL/dy = G`, so `net.backward(G)` gives `dL/dW`; the central difference `(L(w + h) - L(w - h)) / 2h` must agree with it.

# %%
# A random G, not ones: with G = 1 some bugs (e.g. in softmax) cancel out and pass.
net = make_net(np.float64)
net(x)
net.backward(G)  # the chain rule: Sigmoid turns G into dL/dz, Dense sets W.grad = x.T @ dL/dz
analytic = float(net[0].W.grad[1, 2])
numerical = central_difference(net, 1, 2, h=1e-5)
print(f"dL/dW[1,2]: backward {analytic:.10f}, central difference {numerical:.10f}, "
      f"relative error {abs(analytic - numerical) / abs(analytic):.1e}")

# %% [markdown]
# ### Why float64
# The error of a central difference against its step h: truncation falls as h^2, rounding grows as eps / h.

# %%
# The step h trades truncation error (~h^2) against rounding (~eps / h). In float32
# (eps ~ 1e-7) no h gets near 1e-6, so a bug could hide in the noise: checks use float64.
hs = np.logspace(-12, -1, 45)
fig = Figure(figsize=(6, 4), layout="constrained")
ax = fig.subplots()
for dtype in (np.float64, np.float32):
    net_d = make_net(dtype)
    errors = [abs(central_difference(net_d, 1, 2, h) - analytic) / abs(analytic) for h in hs]
    ax.loglog(hs, np.maximum(errors, 1e-17), ".-", label=np.dtype(dtype).name)
ax.axhline(1e-6, color="grey", linestyle="--", label="gradcheck's rtol")
ax.set(xlabel="step h", ylabel="relative error of dL/dW[1,2]", title="Central differences")
ax.legend()
show(fig, "gradcheck_step_size.png")

# %% [markdown]
# ### Every element of a model: `nanoae.gradcheck`

# %%
# The same test on every element of a small model, through its loss (the fused
# Sigmoid + BCE gradient included), as the test suite does for every layer.
model = nn.Sequential(nn.Dense(6, 5, dtype=np.float64, rng=1), nn.ReLU(),
                      nn.Dense(5, 4, dtype=np.float64, rng=2), nn.Sigmoid())
xs, target = to_device(rng.standard_normal((8, 6))), to_device(rng.random((8, 4)))
print(nn.gradcheck((model, nn.BinaryCrossEntropy()), xs, target))

# %% [markdown]
# ### A bug it must catch
# A mean loss whose backward forgets the 1/N.

# %%
class ForgotTheMean(nn.BinaryCrossEntropy):
    """A bug to catch. The model ends in a Sigmoid, so backward_from_loss takes dL/dz from
    logits_grad(): (p - t) / count for a mean loss. This one forgets the "/ count"."""

    def logits_grad(self):
        return self._p - self._t


broken = nn.gradcheck((model, ForgotTheMean()), xs, target, raise_on_failure=False)
if broken.ok:
    raise SystemExit("the broken gradient passed the check: gradcheck is not doing its job")
print(f"caught the forgotten 1/N: {broken}")

# %% [markdown]
# ## 06 - Write a layer of your own, check its backward pass, then train with it.
#
# What it teaches: the layer protocol from the learner's side. LeakyReLU, in
# my_layers.py, takes a dozen lines: forward keeps what backward needs, backward
# returns dL/dx. nanoae.gradcheck passes it; a planted mistake (the slope
# forgotten in backward) fails, naming the element. Then the reference
# autoencoder (784-128-64-32-64-128-784, ReLU code) trains twice, with ReLU and
# with LeakyReLU(0.1), watched by nanoae.Watch, and the code units that
# were <= 0 on every training image of an epoch are printed and plotted per
# epoch for both. For ReLU such a unit is dead: it outputs 0 and passes no
# gradient, so its incoming weights stop learning. A LeakyReLU unit below 0 on
# every image still passes 0.1 x forward and 0.1 g back: it counts the same way,
# but it still carries information and still learns.
#
# The same checks from a shell (exit 0, then exit 1 naming the element):
#     nanoae gradcheck examples/my_layers.py:LeakyReLU --args 'slope=0.1'
#     nanoae gradcheck examples/my_layers.py:LeakyReLUForgotSlope
#
# Run:  .venv/bin/python examples/06_your_own_layer.py
# Run time: 3.5 s as a script (LivePlot included), real data, on a quiet 2-core Intel Xeon
# (lscpu: family 6, model 167), 2026-12-02.
# Knobs (see _knobs.py): NANOAE_EXAMPLE_EPOCHS (default 5), NANOAE_EXAMPLE_LIMIT (default
# here: the first 10000 training images).
# Writes examples/out/dead_code_units.png.

# %%
import numpy as np
from _knobs import LIMIT, epochs, live, load, show
from matplotlib.figure import Figure
from my_layers import LeakyReLU, LeakyReLUForgotSlope

import nanoae as nn
from nanoae import Progress, Watch, fit, predict
from nanoae.backend import to_device, to_numpy

EPOCHS, BATCH = epochs(5), 256

# %% [markdown]
# ### 1. Check the backward pass

# %%
# 1. Check the backward pass, in float64, against central differences, with a random
#    upstream gradient. No parameters here, so a float64 input is all it takes.
x = to_device(np.random.default_rng(0).standard_normal((4, 5)))
print(nn.gradcheck(LeakyReLU(0.1), x))

# %% [markdown]
# ### 2. A planted mistake, caught

# %%
# 2. The planted mistake: backward copied from ReLU, the slope forgotten. Where x < 0 the
#    true dL/dx is slope * g, the broken one says 0, and the check names that element.
broken = nn.gradcheck(LeakyReLUForgotSlope(0.1), x, raise_on_failure=False)
if broken.ok:
    raise SystemExit("the forgotten slope passed the check: gradcheck is not doing its job")
print(f"caught the forgotten slope: {broken}")

# %% [markdown]
# ### 3. Train with it, watched
# Each run shows its `LivePlot`: losses, update ratios and dead units, redrawn after every epoch.

# %%
# 3. Train the reference autoencoder with each activation, watching the layers.
x_train, _ = load("train")
x_train = x_train[:LIMIT or 10000]  # a subset keeps the default run short
x_test, _ = load("test")
print(f"data: {len(x_train)} training images, {len(x_test)} test images")


def reference_autoencoder(activation):
    """784-128-64-32-64-128-784, ``activation`` after every layer but the last (the 32-unit
    code included, as in the reference), a sigmoid out; Glorot-uniform weights, as
    nanoae.fashion.pipeline.REFERENCE_AE. The same seed gives both runs the same weights."""
    rng = np.random.default_rng(0)
    widths = (784, 128, 64, 32, 64, 128, 784)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Dense(a, b, rng=rng, init="glorot_uniform"), activation()]
    layers[-1] = nn.Sigmoid()
    return nn.Sequential(*layers)


dead = {}
for name, activation in (("ReLU", nn.ReLU), ("LeakyReLU(0.1)", lambda: LeakyReLU(0.1))):
    model = reference_autoencoder(activation)
    code = model[5]  # Dense, act, Dense, act, Dense, act: the code's activation
    # Watch counts dead units for ReLU, and for the classes named as rectifiers
    watch = Watch(model, rectifiers=(LeakyReLU,))
    fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters(), lr=1e-3), x_train,
        epochs=EPOCHS, batch_size=BATCH, callbacks=[watch, Progress(name), live(f"live_{name.split('(')[0]}.png")])
    dead[name] = watch.dead_units()[code.name]  # per epoch: units <= 0 on every image seen
    codes = to_numpy(predict(model[:6], x_test))  # the encoder alone: the 32-number codes
    silent = int((codes <= 0).all(axis=0).sum())
    print(f"{name}: code units <= 0 on every training image, per epoch: {dead[name]}; "
          f"on every test image after training: {silent} of 32")

# %% [markdown]
# ### Dead code units per epoch, ReLU against LeakyReLU

# %%
fig = Figure(figsize=(6, 3.5), layout="constrained")
ax = fig.subplots()
for name, counts in dead.items():
    ax.plot(range(1, len(counts) + 1), counts, "o-", label=name)
ax.set(xlabel="epoch", ylabel="code units (of 32)", xticks=range(1, EPOCHS + 1),
       ylim=(-0.5, max(max(c) for c in dead.values()) + 1.5),
       title="Code units <= 0 on every training image of the epoch")
ax.legend()
path = show(fig, "dead_code_units.png")
print(f"wrote {path}")

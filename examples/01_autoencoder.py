# %% [markdown]
# ## 01 - An autoencoder on Fashion-MNIST, with the training loop written out by hand.
#
# What it teaches: how the core pieces (Dense, ReLU, Sigmoid, Sequential,
# BinaryCrossEntropy, Adam) fit together, and the data flow of one training step:
# batch -> forward -> loss -> backward_from_loss -> optimizer.step.
#
# Run:  .venv/bin/python examples/01_autoencoder.py
# Run time: 6.6 s as a script, real data, on a quiet 2-core Intel Xeon
# (lscpu: family 6, model 167), 2026-12-02.
# Knobs (see _knobs.py): NANOAE_EXAMPLE_EPOCHS (default 5), NANOAE_EXAMPLE_LIMIT.
# Writes examples/out/reconstructions.png.

# %%
import numpy as np
from _knobs import epochs, load, out_dir, show

import nanoae as nn
from nanoae.backend import to_device, to_numpy
from nanoae.fashion.data import CLASS_NAMES
from nanoae.fashion.plots import plot_reconstructions

EPOCHS, BATCH = epochs(5), 256

# %% [markdown]
# ### The data
# Fashion-MNIST: 60,000 training and 10,000 test images of 28 x 28 grey pixels, as rows of 784 numbers.

# %%
x_train, _ = load("train")
x_test, y_test = load("test")
print(f"data: {len(x_train)} training images, {len(x_test)} test images, "
      f"{x_train.shape[1]} pixels each")
# Pixels become float32 in [0, 1] once, here: BCE needs targets in [0, 1], and the
# layers refuse any other dtype rather than convert silently on every step.
# to_device puts them where the weights live (NumPy, or CuPy with NANOAE_BACKEND=cupy).
x_train = to_device(x_train.astype(np.float32) / 255)
x_test = to_device(x_test.astype(np.float32) / 255)

# %% [markdown]
# ### The model
# An encoder squeezes 784 pixels into 32 numbers, a decoder rebuilds the image from them. The loss is the binary cross-entropy between each pixel and its reconstruction:
# `L = -mean(x log p + (1 - x) log(1 - p))`.

# %%
# 784 -> 128 -> 64 -> 32 -> 64 -> 128 -> 784. The 32-number code is the bottleneck:
# to rebuild 784 pixels from it, the encoder must keep what matters about each image.
# No ReLU on the code itself, so no code unit can "die" (be 0 for every image).
rng = np.random.default_rng(0)  # one seeded generator: every run starts from the same weights
encoder = nn.Sequential(nn.Dense(784, 128, rng=rng), nn.ReLU(),
                        nn.Dense(128, 64, rng=rng), nn.ReLU(),
                        nn.Dense(64, 32, rng=rng))
decoder = nn.Sequential(nn.Dense(32, 64, rng=rng), nn.ReLU(),
                        nn.Dense(64, 128, rng=rng), nn.ReLU(),
                        nn.Dense(128, 784, rng=rng), nn.Sigmoid())  # pixel "probabilities"
model = nn.Sequential(encoder, decoder)
loss_fn = nn.BinaryCrossEntropy()
optimizer = nn.Adam(model.parameters(), lr=1e-3)

# %% [markdown]
# ### The training loop, by hand
# One step: forward, loss, backward (every `Parameter.grad` set), `optimizer.step()`. The loss is read from the device once per epoch, never per step.

# %%
for epoch in range(EPOCHS):
    order = to_device(rng.permutation(len(x_train)))  # a fresh order each epoch: new batches
    total = 0.0  # becomes a 0-d array where the data lives, summed there
    for start in range(0, len(order), BATCH):
        xb = x_train[order[start:start + BATCH]]
        pred = model(xb)  # forward: every layer keeps what its backward will need
        # The target is the input itself. model.loss_value lets the loss read the
        # sigmoid's input (the logits) too: exact where a pixel probability rounded to 0 or 1.
        loss = model.loss_value(loss_fn, pred, xb)
        # Backward from the loss: Sigmoid + BCE fuse into dL/dz = (p - x) / count, then
        # each layer turns dL/d(output) into dL/d(input) and sets its W.grad and b.grad.
        # input_grad=False: nobody needs the gradient with respect to the pixels.
        model.backward_from_loss(loss_fn, input_grad=False)
        optimizer.step()  # no zero_grad(): backward overwrites the gradients, never adds
        # mean over the batch -> sum, for an epoch mean. No float(loss) here: on a GPU each
        # float() waits for the device to finish (a host sync); the sum stays on the device.
        total = total + loss * len(xb)
    train_bce = float(total) / len(x_train)  # the epoch's one read of the training loss
    test_pred = model(x_test)
    test_bce = float(model.loss_value(loss_fn, test_pred, x_test))
    print(f"epoch {epoch + 1}/{EPOCHS}: train BCE {train_bce:.4f}, test BCE {test_bce:.4f}")

# %% [markdown]
# ### What the model makes of test images
# Top row: one test image per class; below it, its reconstruction from 32 numbers.

# %%
# One test image of each class (where the class occurs), and what the model makes of it.
pick = np.concatenate([np.flatnonzero(y_test == c)[:1] for c in range(10)])
originals = x_test[to_device(pick)]
path = show(plot_reconstructions(to_numpy(originals), to_numpy(model(originals)), y_test[pick],
                            CLASS_NAMES, out_dir() / "reconstructions.png",
                            title=f"Test images (top) and reconstructions, {EPOCHS} epoch(s)"))
print(f"wrote {path}")

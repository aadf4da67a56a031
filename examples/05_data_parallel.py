# %% [markdown]
# ## 05 - Data-parallel training: the hand-written loop of 01 on several processes at once.
#
# What it teaches: data parallelism is the training step of 01 plus two calls.
# It trains the autoencoder of 01 (784-128-64-32 and back, masks and schedule left out).
# Every process (a *rank*) holds the whole model and computes the gradient on its
# own slice of each global batch; one all-reduce then gives every rank the
# gradient of the whole batch, so every rank takes the same optimizer step and
# the weights stay identical everywhere, as if one process had done it all.
#
# Run:  .venv/bin/python examples/05_data_parallel.py   (one process: the same loop, size 1)
#       .venv/bin/mpiexec -n 2 .venv/bin/python examples/05_data_parallel.py   (pip install -e ".[mpi]" first)
# Run time: 2.4 s as one process, real data, on a quiet 2-core Intel Xeon
# (lscpu: family 6, model 167), 2026-12-02.
# Knobs (see _knobs.py): NANOAE_EXAMPLE_EPOCHS (default 2), NANOAE_EXAMPLE_LIMIT.
#
# In a notebook it runs as one process (size 1): the same loop, the same numbers.

# %%
import numpy as np
from _knobs import epochs, load

import nanoae as nn
from nanoae import backend
from nanoae.backend import to_device
from nanoae.parallel.communicator import world

EPOCHS, BATCH = epochs(2), 256  # BATCH is the *global* batch: the ranks share it

# %% [markdown]
# ### The ranks
# `world()` is every process of the job; without `mpiexec`, this process alone.

# %%
comm = world()  # size 1 and no MPI at all when not started by mpiexec
comm.install_excepthook()  # a crash on any rank ends every rank, instead of a silent hang
if comm.size > 1 and backend.get_backend() == "cupy":  # NANOAE_BACKEND=cupy
    comm.use_gpu()  # each rank its own GPU, before any array exists (world() did it already)


def say(message):
    if comm.is_root:  # one rank speaks for all; the others would print the same lines
        print(message, flush=True)

# %% [markdown]
# ### The data and the model of 01, on every rank

# %%
x_train, _ = load("train")  # every rank loads the same data (and picks its slices below)
x_train = to_device(x_train.astype(np.float32) / 255)
say(f"{comm.size} rank(s), {len(x_train)} training images, global batch {BATCH} "
    f"= {comm.size} x {BATCH // comm.size} per rank")

rng = np.random.default_rng(0)
encoder = nn.Sequential(nn.Dense(784, 128, rng=rng), nn.ReLU(),  # the model of example 01
                        nn.Dense(128, 64, rng=rng), nn.ReLU(),
                        nn.Dense(64, 32, rng=rng))
decoder = nn.Sequential(nn.Dense(32, 64, rng=rng), nn.ReLU(),
                        nn.Dense(64, 128, rng=rng), nn.ReLU(),
                        nn.Dense(128, 784, rng=rng), nn.Sigmoid())
model = nn.Sequential(encoder, decoder)
loss_fn = nn.BinaryCrossEntropy()
optimizer = nn.Adam(model.parameters(), lr=1e-3)

# %% [markdown]
# ### Call 1: the same weights everywhere

# %%
# Call 1: start from the same weights everywhere. (The seeded rng already gives every
# rank the same draw; broadcasting rank 0's weights makes it true whatever the seeding.)
comm.broadcast_parameters(model.parameters())

# %% [markdown]
# ### The loop of 01, with call 2
# Each rank: its slice of the global batch, forward, backward; then one all-reduce of the gradients, and the same step everywhere.

# %%
for epoch in range(EPOCHS):
    # The same seed on every rank: the same permutation, so the slices below never overlap.
    order = to_device(np.random.default_rng([0, epoch]).permutation(len(x_train)))  # once an epoch
    total = 0.0  # the loss sum stays on the device; read once per epoch, as in 01
    for start in range(0, len(order), BATCH):
        batch = order[start:start + BATCH]  # the global batch, identical on every rank
        mine = batch[comm.shard(len(batch))]  # this rank's contiguous part of it
        if len(mine):  # (a last, small batch may leave a rank without examples)
            xb = x_train[mine]
            pred = model(xb)
            loss = model.loss_value(loss_fn, pred, xb)
            model.backward_from_loss(loss_fn, input_grad=False)  # p.grad of MY shard's mean loss
            total = total + loss * len(mine)  # no float() here: it would wait for the GPU
        # Call 2: the global batch's mean loss is sum_r (b_r / B) * (rank r's mean loss),
        # so its gradient is the same weighted sum of the ranks' gradients: one all-reduce.
        comm.average_gradients(model.parameters(), weight=len(mine) / len(batch))
        optimizer.step()  # the same gradient everywhere: the same step everywhere
    total = comm.allreduce_sum(total)  # one read per epoch: the sum of all shards' loss sums
    say(f"epoch {epoch + 1}/{EPOCHS}: train BCE {total / len(x_train):.4f}")

say("every rank holds the same weights; rank 0 would be the one to save them")

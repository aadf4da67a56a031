# %% [markdown]
# # 07 - Write the core yourself: the workbook
#
# What it teaches: backpropagation, by writing it. `nanoae workbook DIR` writes a copy of
# nanoae's core (the layers Dense, ReLU, Sigmoid, Softmax, Normalize, the losses with their fused
# gradients, and Adam's update) generated from nanoae's own source, with every `backward`
# and the body of `adam_step` replaced by a stub that says what to return, its shape and the
# formula. `nanoae workbook --check DIR` checks each exercise against finite differences (or
# nanoae's Adam), and once all pass it trains the reference autoencoder with your classes and
# with nanoae's and compares the test losses.
#
# From a shell, the same steps:
#
#     .venv/bin/nanoae workbook my-core          # then edit my-core/layers.py, losses.py, optim.py
#     .venv/bin/nanoae workbook --check my-core  # as often as you like
#
# Run:  .venv/bin/python examples/07_workbook.py
# Run time: 1.2 s as a script (it fills the exercises with the answers, `--solved`, to show the whole way), real data, on a quiet 2-core Intel Xeon
# (lscpu: family 6, model 167), 2026-12-02.
# Knobs (see _knobs.py): NANOAE_EXAMPLE_LIMIT (training images of the check's epoch, default
# 10000), NANOAE_EXAMPLE_NO_VERIFY, NANOAE_EXAMPLE_OUT (the workbook goes in OUT/my-core).

# %%
import shutil

from _knobs import LIMIT, VERIFY, out_dir

from nanoae import workbook
from nanoae.workbook.generate import fill_in

# %% [markdown]
# ## 1. Generate the workbook
# Three files and a README. Everything in them that is not an exercise is imported from nanoae
# (the `Layer` base class, `Parameter`, the backend), so your code is the only difference.

# %%
book = out_dir() / "my-core"
shutil.rmtree(book, ignore_errors=True)  # a fresh one each run
workbook.write(book)
print((book / "layers.py").read_text().split("class ReLU")[1].split("class Sigmoid")[0])

# %% [markdown]
# ## 2. Your first exercise: ReLU.backward
# The forward kept its output `self._y`. ReLU is the identity where its input is positive and
# 0 elsewhere, so its derivative is 1 there and 0 elsewhere, and the chain rule gives
#
#     dL/dx = dL/dy * [y > 0]
#
# Multiplying by a *bool* mask keeps `grad_out`'s dtype (an int mask would turn float32 into
# float64, and the check says so). In a notebook, open `my-core/layers.py` and replace the stub;
# here the cell writes it for you:

# %%
fill_in(book, "ReLU.backward", "return grad_out * (self._y > 0)")


# %% [markdown]
# ## 3. Check it
# One row per exercise: `todo` while its stub is there, `fails` with the element, your number
# and the finite-difference one, `passes`. The check exits with status 1 until all pass; from
# Python it raises `WorkbookError`, whose one line we print.

# %%
def check():
    try:
        workbook.check(book, verify=VERIFY, images=LIMIT or workbook.IMAGES)
        return True
    except workbook.WorkbookError as exc:
        print(f"not yet: {exc}")
        return False


check()

# %% [markdown]
# ## 4. Fill in the rest
# Dense (three products: which one needs `W^T`? the shapes in the docstring say), Sigmoid
# (`y * (1 - y)`), Softmax (the Jacobian-vector product, no Jacobian), Normalize (the same
# idea: take out of g its component along y, then divide by the length), the two losses and their
# fused gradients (`logits_grad`: why is it so much simpler than `backward`?), and `adam_step`
# (do not forget the bias correction: at t = 1 it multiplies the step by 10 for `m`).
# Here the answers (`nanoae workbook --solved`) stand in for your work.

# %%
workbook.write(book, solved=True, force=True)

# %% [markdown]
# ## 5. Check again, and train with your classes
# When every exercise passes, the check trains the reference autoencoder
# (784-128-64-32-64-128-784) for one epoch twice from the same seed, with your classes and with
# nanoae's, and prints both test losses. They agree to 1e-5, or the check says at which step
# they part.

# %%
print("all pass, and training agrees" if check() else "some exercise still to do")

# %% [markdown]
# ## 03 - Classify clothes from the autoencoder's 32-number codes.
#
# What it teaches: nanoae.fit (the loop of 01, plus shuffling, validation,
# schedules and best-epoch restore), then a small softmax head trained on the
# frozen, standardised codes: how much class information the code kept without
# ever seeing a label.
#
# Run:  .venv/bin/python examples/03_classify_codes.py
# Run time: 12.6 s as a script (LivePlot included), real data, on a quiet 2-core Intel Xeon
# (lscpu: family 6, model 167), 2026-12-02.
# Knobs (see _knobs.py): NANOAE_EXAMPLE_EPOCHS (autoencoder epochs, default 5; the
# head gets 4x as many), NANOAE_EXAMPLE_LIMIT.
# Writes examples/out/confusion.png and examples/out/curves.png.

# %%
from _knobs import epochs, live, load, out_dir, show

from nanoae import (
                    Adam,
                    BinaryCrossEntropy,
                    CrossEntropy,
                    KeepBest,
                    LearningRateSchedule,
                    Progress,
                    Sequential,
                    evaluate,
                    fit,
                    predict,
)
from nanoae.backend import to_device, to_numpy
from nanoae.fashion.data import CLASS_NAMES
from nanoae.fashion.metrics import confusion_matrix
from nanoae.fashion.models import Autoencoder, Classifier, Standardize
from nanoae.fashion.plots import plot_confusion, plot_curves
from nanoae.train.loop import cosine_schedule, split_validation

AE_EPOCHS = epochs(5)
HEAD_EPOCHS = 4 * AE_EPOCHS  # the head sees 32 numbers per image, not 784: epochs are cheap
BATCH = 256

x, y = load("train")
x_test, y_test = load("test")

# %% [markdown]
# ### 1. The autoencoder, with `fit`
# The figure below is the run's `LivePlot`: redrawn after every epoch.

# %%
# 1. The autoencoder of 01, built and trained in two lines. y=None means "the target
#    is the input". It may see every training image: it never sees a label.
ae = Autoencoder((784, 128, 64, 32), code_activation="linear", seed=0)
ae_hist = fit(ae, BinaryCrossEntropy(), Adam(ae.parameters(), lr=1e-3), x, epochs=AE_EPOCHS,
              batch_size=BATCH, callbacks=[Progress("autoencoder"), live("live_autoencoder.png")])

# %% [markdown]
# ### 2. The codes

# %%
# 2. Codes. The encoder is frozen from here on: its weights are not given to the optimizer.
#    (fit and predict scale the uint8 pixels batch by batch, so x stays uint8.)
codes = predict(ae.encoder, to_device(x))
codes_test = predict(ae.encoder, to_device(x_test))
y, y_test = to_device(y), to_device(y_test)

# %% [markdown]
# ### 3. A classifier on the frozen codes

# %%
# 3. The head. A validation split (10 %) picks the best epoch, so the test set is only
#    scored once, at the end. Standardize gives every code unit mean 0 and std 1
#    (statistics of the training split only); Adam would cope without, but the
#    He-initialised head starts in a sensible regime only with unit-scale inputs.
tr, va = map(to_device, split_validation(len(codes), 0.1, seed=0))  # indices, beside the codes
scaler = Standardize.fit(codes[tr])
head = Classifier(32, hidden=(256, 256), classes=10, seed=1)
model = Sequential(scaler, head)
steps = -(-len(tr) // BATCH) * HEAD_EPOCHS
head_hist = fit(model, CrossEntropy(), Adam(head.parameters(), lr=1e-3), codes[tr], y[tr],
                epochs=HEAD_EPOCHS, batch_size=BATCH, validation=(codes[va], y[va]),
                callbacks=[LearningRateSchedule(cosine_schedule(1e-3, steps)),  # large steps, then fine
                           KeepBest(monitor="val_loss"),  # keep the best epoch's weights
                           Progress("head"), live("live_head.png")])

# %% [markdown]
# ### The test set, scored once

# %%
test = evaluate(model, CrossEntropy(), codes_test, y_test)
print(f"autoencoder: train BCE {ae_hist['train_loss'][-1]:.4f} after {AE_EPOCHS} epochs")
best = head_hist["best_epoch"]  # the epoch of lowest validation loss, whose weights were kept
print(f"head: kept epoch {best} of {HEAD_EPOCHS}, the one with the lowest validation loss "
      f"({head_hist['val_loss'][best - 1]:.4f}); validation accuracy "
      f"{100 * head_hist['val_accuracy'][best - 1]:.2f} %")
print(f"test accuracy {100 * test['accuracy']:.2f} % on {len(codes_test)} test images")

# %% [markdown]
# ### Which classes get mixed up

# %%
# Rows: true class, columns: predicted class. Off-diagonal cells are the mix-ups.
cm = confusion_matrix(to_numpy(y_test), to_numpy(predict(model, codes_test).argmax(axis=1)))
confusion = show(plot_confusion(cm, CLASS_NAMES, out_dir() / "confusion.png",
                                 title="Head on frozen codes, test set"))

# %% [markdown]
# ### Both runs' curves, as kept

# %%
curves = show(plot_curves({"autoencoder": ae_hist, "head on codes": head_hist}, out_dir() / "curves.png"))
print(f"wrote {confusion} and {curves}")

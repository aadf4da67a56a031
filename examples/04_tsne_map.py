# %% [markdown]
# ## 04 - A t-SNE map of the codes: do similar clothes get similar codes?
#
# What it teaches: the ready-made steps of nanoae.fashion.pipeline (Settings,
# train_autoencoder, tsne_map) that ``nanoae demo`` runs, with the demo's default
# autoencoder (784-512-128-32, unit-length code, denoising), and how to read a t-SNE map without
# over-reading it: trustworthiness says whether the map's neighbours were
# neighbours in the 32-d codes too, and 5-NN accuracy how well classes separate.
#
# Run:  .venv/bin/python examples/04_tsne_map.py
# Run time: 22.2 s as a script (LivePlot included), real data, on a quiet 2-core AMD EPYC
# (lscpu: family 25, model 17), 2026-12-06, with the 784-512-128-32 autoencoder (14.6 s with
# the 784-256-128-32 one before it, on a quiet 2-core Intel Xeon, family 6, model 167).
# Knobs (see _knobs.py): NANOAE_EXAMPLE_EPOCHS (default 5), NANOAE_EXAMPLE_LIMIT.
# Writes examples/out/live_autoencoder.png, codes.png and tsne.png.
# The order is the seed notebook's (t-SNE_Dimentionality_Reduction.ipynb, a Keras autoencoder):
# the autoencoder, its codes, the t-SNE map coloured by class; then what nanoae adds.

# %%
from _knobs import epochs, live, load, out_dir, show

from nanoae import predict
from nanoae.backend import to_device, to_numpy
from nanoae.fashion.data import CLASS_NAMES
from nanoae.fashion.pipeline import Settings, train_autoencoder, tsne_map
from nanoae.fashion.plots import plot_codes_activity, plot_tsne

# t-SNE costs O(n log n) per iteration with a large constant: all 10000 test images take
# several times as long as 2000, and the picture barely changes.
POINTS = 2000

# %% [markdown]
# ### 1. The data

# %%
settings = Settings(ae_epochs=epochs(5), seed=0)
x, _ = load("train")
x_test, y_test = load("test")

# %% [markdown]
# ### 2. The autoencoder
# The demo's default one, trained by the pipeline's step and watched: the live figure below shows its losses, the update-to-data ratio of each Dense layer and the dead ReLU units, per epoch.

# %%
# Not the autoencoder of 01 and 03: the demo's default one, trained by the pipeline's step
# (Settings' ae_*: 784-512-128-32 with codes scaled to length 1 (layers.Normalize: only their
# direction counts), 10 % of the input pixels masked, a cosine learning-rate schedule from 2e-3).
ae, history = train_autoencoder(x, settings, watch=True, callbacks=[live("live_autoencoder.png")])

# %% [markdown]
# ### 3. Its codes
# 32 numbers per test image; below, the spread of each code unit over the images (a unit zero on every image would be dead).

# %%
codes = predict(ae.encoder, to_device(x_test))  # test images only: the map shows unseen data
show(plot_codes_activity(to_numpy(codes), out_dir() / "codes.png", title="Code units of the test images"))

# %% [markdown]
# ### 4. The t-SNE map, coloured by class
# t-SNE places the codes on a plane so that neighbours stay neighbours; it never sees the labels.

# %%
# (with NANOAE_EXAMPLE_LIMIT there may be fewer test images than POINTS: map them all)
embedding, m = tsne_map(codes, y_test, seed=settings.seed, points=min(POINTS, len(codes)))
n = m["tsne_points"]
print(f"t-SNE of {n} test codes took {m['tsne_seconds']:.1f} s")
path = show(plot_tsne(embedding, y_test[:n], CLASS_NAMES, out_dir() / "tsne.png",
                      title=f"t-SNE of {n} test codes ({ae.code_size}-d)",
                      subtitle=f"trustworthiness {m['tsne_trustworthiness']:.3f}, "
                               f"5-NN accuracy on the map {100 * m['tsne_knn_accuracy']:.1f} %"))
print(f"wrote {path}")

# %% [markdown]
# ### 5. What nanoae adds: how good the map is
# Trustworthiness (k=5): were the map's 5 nearest neighbours close in the codes too?
# 5-NN accuracy: how well the classes separate, on the map and on the codes.

# %%
print(f"autoencoder: train BCE {history['train_loss'][-1]:.4f} after {settings.ae_epochs} epochs")
# 1.0 would mean every 5 nearest neighbours on the map were close in the codes as well.
print(f"trustworthiness (k=5): {m['tsne_trustworthiness']:.4f}")
# A 5-nearest-neighbour vote, cross-validated. On the 2-D map it cannot beat the codes by
# much: t-SNE only rearranges what the codes already hold (it never sees the labels).
print(f"5-NN accuracy: {100 * m['tsne_knn_accuracy']:.1f} % on the map, "
      f"{100 * m['codes_knn_accuracy']:.1f} % on the 32-d codes")

# %% [markdown]
# ### 6. ... and the dead units
# A ReLU unit that is 0 on every training image of an epoch passes no gradient: it has
# stopped learning. The Watch that train_autoencoder ran (watch=True) counted them per
# epoch; its records are in the history. (The code itself has no ReLU here: it cannot die.)

# %%
for layer, rec in history["watch"]["layers"].items():
    if "dead_per_epoch" in rec:
        print(f"{layer}: dead units per epoch {rec['dead_per_epoch']}")

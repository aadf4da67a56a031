# %% [markdown]
# # 08 - The autoencoder as a scikit-learn transformer, against PCA
#
# What it teaches: `nanoae.sklearn.AutoencoderTransformer` is a scikit-learn
# estimator like any other, so it goes into a `Pipeline` and `cross_val_score`
# beside scikit-learn's own `PCA`. Both pipelines squeeze each image into 32
# numbers and hand them to the same `LogisticRegression`: the linear classifier
# scores how much of the class each 32 numbers kept, with the same folds.
#
# Run:  .venv/bin/python examples/08_sklearn_pipeline.py
# Run time: 15.7 s as a script, real data, on a quiet 2-core Intel Xeon
# (lscpu: family 6, model 167), 2026-12-02.
# Knobs (see _knobs.py): NANOAE_EXAMPLE_EPOCHS (autoencoder epochs, default 10),
# NANOAE_EXAMPLE_LIMIT (default here: the first 10,000 training images).
# Writes nothing; prints a table.

# %%
import time

from _knobs import LIMIT, epochs, load
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from nanoae.sklearn import AutoencoderTransformer

# %% [markdown]
# ## The data
#
# scikit-learn takes floats: the pixels as 0..255 in float64, its default. The
# transformer casts them to float32 inside (nanoae trains in float32) and scales
# them to [0, 1] by the training fold's range; PCA takes them as they are.
# 10,000 images keep the three folds short; set NANOAE_EXAMPLE_LIMIT for more.

# %%
x, y = load("train")
n = LIMIT or 10000
x, y = x[:n].astype("float64"), y[:n]
print(f"data: {len(x)} training images, {x.shape[1]} pixels each")

# %% [markdown]
# ## Two pipelines, one protocol
#
# The same 3 folds for both (a fixed `StratifiedKFold`), so each pipeline is
# fitted on the same training folds and scored on the same held-out fold: the
# autoencoder and PCA see only the training folds, as a transformer must.
# Standardizing the 32 numbers first helps the logistic regression converge.

# %%
pipelines = {
    "autoencoder (32) + logistic regression": Pipeline([
        ("ae", AutoencoderTransformer(32, hidden=(256, 128), epochs=epochs(10), mask=0.1, random_state=0)),
        ("scale", StandardScaler()),
        ("clf", LogisticRegression(max_iter=500))]),
    "PCA (32) + logistic regression": Pipeline([
        ("pca", PCA(32, random_state=0)),
        ("scale", StandardScaler()),
        ("clf", LogisticRegression(max_iter=500))]),
}
folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
rows = []
for name, pipeline in pipelines.items():
    started = time.perf_counter()
    scores = cross_val_score(pipeline, x, y, cv=folds)
    rows.append((name, scores.mean(), scores.std(), time.perf_counter() - started))

# %% [markdown]
# ## The table
#
# Accuracy of the held-out folds, mean and spread over the folds. A gap smaller
# than the spread is no gap. On 10,000 images and 10 epochs PCA wins (2026-12-02:
# 82.22 % against 80.35 %, +/- 0.4): an autoencoder needs more images and epochs
# than a linear method. The demo's (54,000 images, 40 epochs) beats PCA with the
# same head on top, by half a point (docs/recipe.md, "The baselines").

# %%
print("\n| pipeline | accuracy (3-fold) | +/- | seconds |\n| --- | ---: | ---: | ---: |")
for name, mean, std, seconds in rows:
    print(f"| {name} | {100 * mean:.2f} % | {100 * std:.2f} | {seconds:.0f} |")

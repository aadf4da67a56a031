"""Scores: what the demo's report and figures say about the models and the map.

* ``autoencoder_metrics``: test BCE (from the logits), MSE per pixel, dead code units.
* ``dead_units``: code units that are zero on every example (dead ReLUs).
* ``score_classifier``: test accuracy and loss of a classifier on images, with
  the mirror-image average where validation prefers it.
* ``confusion_matrix``: counts of true class (rows) against predicted class (columns).
* ``trustworthiness``: how well a map's nearest neighbours were neighbours before
  the map; scikit-learn's formula, computed in blocks of rows so that 10,000
  points need about 150 MiB, not the three 10,000 x 10,000 matrices (2.4 GB)
  scikit-learn builds.
* ``knn_accuracy``: cross-validated accuracy of a 5-nearest-neighbour classifier;
  ``knn_folds``: how many folds a set of labels allows (5, fewer for a rare class).

Every function returns host numbers (one read from the device per call).
"""

from __future__ import annotations

import numpy

from nanoae import backend
from nanoae.losses import BinaryCrossEntropy, CrossEntropy
from nanoae.train.loop import as_batch, mirror_images, predict

__all__ = ["autoencoder_metrics", "dead_units", "score_classifier", "confusion_matrix",
           "trustworthiness", "knn_accuracy", "knn_folds"]

# scikit-learn's pairwise and neighbour searches work in chunks of about this many MiB
# (its default, 1024, lets one chunk of a 10,000-point search take a GiB; a block of
# trustworthiness holds its distances, their sort order and ranks: a few times this)
WORKING_MEMORY_MIB = 16


def dead_units(codes) -> int:
    """How many code units are zero on every example (dead ReLUs)."""
    xp = backend.get_array_module(codes)
    return int((xp.abs(codes).max(axis=0) == 0).sum())


def autoencoder_metrics(model, x_test, *, prefix: str = "ae", batch_size: int = 2048) -> dict:
    """``{prefix}_test_bce`` (exact, from the logits), ``{prefix}_test_mse`` (per pixel) and
    ``{prefix}_dead_code_units`` (code units zero on every test image): the names every
    command and metrics.json use.

    One pass over the test set: each batch is encoded once, and the codes serve
    both the reconstruction and the dead-unit count.
    """
    x = backend.to_device(x_test)
    xp = backend.get_array_module(x)
    loss = BinaryCrossEntropy()
    bce_sum = sq_sum = 0.0
    codes = []
    for i in range(0, len(x), batch_size):
        xb = as_batch(x[i:i + batch_size])
        code = model.encoder(xb)
        recon = model.decoder(code)
        bce_sum = bce_sum + model.decoder.loss_value(loss, recon, xb) * len(xb)
        sq_sum = sq_sum + ((recon - xb) ** 2).sum()
        codes.append(code)
    return {f"{prefix}_test_bce": float(bce_sum) / len(x),
            f"{prefix}_test_mse": float(sq_sum) / x.size,
            f"{prefix}_dead_code_units": dead_units(xp.concatenate(codes))}


def score_classifier(model, splits, prefix: str = "clf", *, test_mirror: bool = True) -> dict:
    """Test accuracy and loss of a classifier on images, answering as validation says.

    splits: anything with ``x_val, y_val, x_test, y_test`` (``pipeline.Splits``).
    With ``test_mirror`` the classifier may answer with the mean of its
    probabilities on each image and its mirror image; it does so only if that
    is more accurate on the validation split (``mirror`` in the result says
    which was used). ``test_accuracy``/``test_loss`` are the figures of the
    chosen way; ``*_single_view`` are always those of one pass on the image
    alone. Every key starts with ``prefix``.
    """
    loss = CrossEntropy()

    def views(x, mirror):
        """Class probabilities on the images alone and, if asked, averaged with those on
        their mirror images (what ``predict(..., mirror=True)`` computes): one pass per view."""
        x = backend.to_device(x)
        single = predict(model, x)
        return single, (0.5 * (single + predict(model, mirror_images(x))) if mirror else None)

    def figures(probs, y):
        y = backend.to_device(y)
        return float((probs.argmax(axis=1) == y).mean()), float(loss(probs, y))

    val_single, val_both = views(splits.x_val, test_mirror)
    result = {"val_accuracy_single_view": figures(val_single, splits.y_val)[0]}
    mirror = False
    if val_both is not None:
        result["val_accuracy_mirrored"] = figures(val_both, splits.y_val)[0]
        mirror = result["val_accuracy_mirrored"] > result["val_accuracy_single_view"]
    test_single, test_both = views(splits.x_test, mirror)
    single = figures(test_single, splits.y_test)
    accuracy, value = figures(test_both, splits.y_test) if mirror else single
    result.update(mirror=mirror, test_accuracy=accuracy, test_loss=value,
                  test_accuracy_single_view=single[0], test_loss_single_view=single[1])
    return {f"{prefix}_{k}": v for k, v in result.items()}


def confusion_matrix(y_true, y_pred, classes: int = 10):
    """Counts ``cm[t, p]`` of the examples of true class t predicted as class p (host arrays)."""
    cm = numpy.zeros((classes, classes), dtype=numpy.int64)
    numpy.add.at(cm, (numpy.asarray(y_true), numpy.asarray(y_pred)), 1)
    return cm


def trustworthiness(x, embedding, n_neighbors: int = 5) -> float:
    """scikit-learn's ``sklearn.manifold.trustworthiness`` (Euclidean), in blocks of rows.

        T(k) = 1 - 2 / (n k (2n - 3k - 1)) * sum_i sum_{j in U_k(i)} max(0, r(i, j) - k)

    U_k(i): the k nearest neighbours of point i on the map; r(i, j): the rank of
    j among i's neighbours in x (1 = nearest, i itself excluded). A map neighbour
    that was a stranger in x costs how far down x's list it was.

    scikit-learn sorts a full n x n distance matrix and inverts the sort (three
    n x n arrays, 2.4 GB for 10,000 points). Here each block of rows of the
    distance matrix is made, sorted and inverted in turn
    (``pairwise_distances_chunked``, about ``WORKING_MEMORY_MIB`` per block).
    Each row is sorted exactly as scikit-learn sorts it, so even exact ties
    (float32 distances have them) get the same ranks and the same result.
    """
    from sklearn.metrics import pairwise_distances_chunked  # noqa: PLC0415
    from sklearn.neighbors import NearestNeighbors  # noqa: PLC0415

    x, embedding = numpy.asarray(x), numpy.asarray(embedding)
    n, k = len(x), int(n_neighbors)
    if not 0 < k < n / 2:
        raise ValueError(f"trustworthiness: n_neighbors must be in 1..{(n - 1) // 2} for {n} "
                         f"points (fewer than half of them), got {k}")
    # (n, k): each point's k nearest neighbours on the map, itself excluded
    on_map = NearestNeighbors(n_neighbors=k).fit(embedding).kneighbors(return_distance=False)
    penalty = 0
    start = 0
    for dist in pairwise_distances_chunked(x, working_memory=WORKING_MEMORY_MIB):
        rows = numpy.arange(len(dist))[:, None]  # dist: (b, n), the distances of rows start..start+b
        dist[rows[:, 0], start + rows[:, 0]] = numpy.inf  # a point is not its own neighbour
        # rank[i, j] = position of j in row i sorted by distance, from 1: the same sort as
        # scikit-learn's (argsort row by row), so that exact ties are ordered alike
        rank = numpy.empty(dist.shape, dtype=numpy.int64)
        rank[rows, numpy.argsort(dist, axis=1)] = numpy.arange(1, dist.shape[1] + 1)
        excess = rank[rows, on_map[start:start + len(dist)]] - k  # (b, k)
        penalty += int(excess[excess > 0].sum())
        start += len(dist)
    return 1.0 - penalty * (2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)))


def knn_accuracy(features, labels, *, folds: int = 5, n_neighbors: int = 5) -> float:
    """Mean accuracy of a ``n_neighbors``-NN classifier over ``folds``-fold cross-validation."""
    import sklearn  # noqa: PLC0415
    from sklearn.model_selection import cross_val_score  # noqa: PLC0415
    from sklearn.neighbors import KNeighborsClassifier  # noqa: PLC0415

    with sklearn.config_context(working_memory=WORKING_MEMORY_MIB):  # the same answer, in small chunks
        scores = cross_val_score(KNeighborsClassifier(n_neighbors=n_neighbors), features, labels,
                                 cv=folds)
    return float(scores.mean())


def knn_folds(labels, most: int = 5) -> int:
    """The folds of the 5-NN figures: ``most``, or fewer when a class present has fewer points
    (stratified k-fold needs k of each). Every 5-NN accuracy the report compares uses this."""
    counts = numpy.bincount(numpy.asarray(labels))
    return min(int(most), int(counts[counts > 0].min()))

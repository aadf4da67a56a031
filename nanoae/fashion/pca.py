"""What the autoencoder's codes are compared with: PCA with as many components, and the pixels.

An autoencoder earns its 32 numbers only if they beat what a one-line linear
method gives. PCA is that method, and it is itself a linear autoencoder: its
encoder is one Dense layer whose columns are the first k principal directions
(``code = (x - mean) @ components.T``), its decoder the same directions back
(``x' = code @ components + mean``). ``PCAAutoencoder`` builds exactly that from
nanoae's own ``Dense`` layers, so the demo can treat it as it treats the trained
autoencoder: encode the splits, train the same head on the codes, score it
with the same functions (``pipeline.baseline_stage`` does; the head on PCA's
codes is ``pipeline.train_frozen_classifier`` itself).

* ``fit_pca``: scikit-learn's PCA on the training split's pixels, as a ``PCAAutoencoder``.
* ``pca_reconstruction_metrics``: its test BCE and MSE per pixel.
* ``reconstruct_clipped``: its reconstructions of some images, for the figure.
* ``knn_baselines``: 5-NN accuracy of PCA's codes and of the raw pixels, by the
  protocol of the codes' own figure (``tsne_map``: the same test images, the same folds).
"""

from __future__ import annotations

import numpy

from nanoae import backend
from nanoae.fashion.metrics import knn_accuracy, knn_folds
from nanoae.layers import Dense
from nanoae.sequential import Sequential
from nanoae.train.loop import as_batch, predict

__all__ = ["PCAAutoencoder", "fit_pca", "pca_reconstruction_metrics", "reconstruct_clipped",
           "knn_baselines", "BCE_CLIP"]

# PCA's reconstruction is not a probability: it overshoots below 0 and above 1. BCE needs
# one, so the reconstruction is clipped to [BCE_CLIP, 1 - BCE_CLIP], one grey level from
# black and from white. The figure depends on that choice, though not its verdict: on the
# real test set 0.2955 at 1/255, 0.2958 at 1e-3, 0.3023 at 1e-7 (the autoencoder: 0.27).
BCE_CLIP = 1 / 255


def _fixed_dense(weights, bias) -> Dense:
    """A Dense layer holding the given (in, out) weights and (out,) bias, float32, on the device."""
    layer = Dense(*weights.shape)
    layer.W.data = backend.to_device(numpy.asarray(weights, dtype=numpy.float32))
    layer.b.data = backend.to_device(numpy.asarray(bias, dtype=numpy.float32))
    return layer


class PCAAutoencoder(Sequential):
    """PCA as a linear autoencoder: ``Sequential(encoder, decoder)``, one Dense layer each.

        encoder:  code = x @ C.T - mean @ C.T      (C: the (k, 784) principal directions)
        decoder:  x'   = code @ C + mean

    It has ``encoder``, ``decoder``, ``code_size`` and ``config`` like
    ``models.Autoencoder``, so the demo's steps take either. Nothing here is
    trained by gradient descent: the weights come from ``fit_pca``.
    """

    def __init__(self, components, mean):
        components = numpy.asarray(components, dtype=numpy.float64)
        mean = numpy.asarray(mean, dtype=numpy.float64)
        self.encoder = Sequential(_fixed_dense(components.T, -mean @ components.T))
        self.decoder = Sequential(_fixed_dense(components, mean))
        super().__init__(self.encoder, self.decoder)
        self.config = {"kind": "pca", "widths": [components.shape[1], components.shape[0]],
                       "code_activation": "linear"}

    @property
    def code_size(self) -> int:
        return self.config["widths"][-1]


def fit_pca(x_train, components: int, *, seed: int = 0) -> PCAAutoencoder:
    """scikit-learn's PCA with ``components`` components, fit on uint8 (or [0, 1]) images x_train.

    Fit on the host, in float32 (scikit-learn's default solver for 54,000 x 784
    is the eigendecomposition of the covariance matrix: about a quarter of a
    second); ``seed`` matters only for its randomized solver on other shapes.
    """
    from sklearn.decomposition import PCA  # noqa: PLC0415  (scikit-learn: only for the demo)

    pixels = backend.to_numpy(as_batch(backend.to_numpy(x_train)))
    pca = PCA(n_components=int(components), random_state=seed).fit(pixels)
    return PCAAutoencoder(pca.components_, pca.mean_)


def pca_reconstruction_metrics(model: PCAAutoencoder, x_test, *, prefix: str = "pca",
                               batch_size: int = 2048) -> dict:
    """``{prefix}_test_bce`` and ``{prefix}_test_mse`` of a PCA autoencoder on uint8 images.

    MSE per pixel on the plain reconstruction (what PCA minimises; the number
    scikit-learn's ``inverse_transform`` gives). BCE on the reconstruction
    clipped to [BCE_CLIP, 1 - BCE_CLIP], since BCE needs probabilities (see
    ``BCE_CLIP``). Both are means over every pixel of every test image, as the
    autoencoder's are.
    """
    x = backend.to_device(x_test)
    xp = backend.get_array_module(x)
    bce_sum = sq_sum = 0.0
    for i in range(0, len(x), batch_size):
        xb = as_batch(x[i:i + batch_size])
        recon = model(xb)
        sq_sum = sq_sum + ((recon - xb) ** 2).sum()
        p = xp.clip(recon, BCE_CLIP, 1 - BCE_CLIP)
        bce_sum = bce_sum - (xb * xp.log(p) + (1 - xb) * xp.log(1 - p)).sum()
    return {f"{prefix}_test_bce": float(bce_sum) / x.size, f"{prefix}_test_mse": float(sq_sum) / x.size}


def reconstruct_clipped(model: PCAAutoencoder, images):
    """PCA's reconstructions of uint8 images, clipped to [0, 1] (for a figure), on the host."""
    recon = model(as_batch(backend.to_device(images)))
    return backend.to_numpy(backend.get_array_module(recon).clip(recon, 0, 1))


def knn_baselines(pca: PCAAutoencoder, x_test, y_test, points: int) -> dict:
    """5-NN accuracy of PCA's codes and of the raw pixels, on the first ``points`` test images.

    The protocol of ``codes_knn_accuracy`` (``pipeline.tsne_map``): the same
    images, the same k-fold cross-validation (``metrics.knn_folds``), pixels
    scaled to [0, 1].
    """
    labels = backend.to_numpy(y_test)[:points]
    folds = knn_folds(labels)
    pixels = backend.to_numpy(as_batch(backend.to_numpy(x_test)[:points]))
    codes = backend.to_numpy(predict(pca.encoder, backend.to_device(x_test[:points])))
    return {"pca_knn_accuracy": knn_accuracy(codes, labels, folds=folds),
            "pixels_knn_accuracy": knn_accuracy(pixels, labels, folds=folds)}

"""nanoae's models as scikit-learn estimators, so they sit in a Pipeline beside PCA and friends.

* ``AutoencoderTransformer``: ``fashion.models.Autoencoder`` trained by ``nanoae.fit``;
  ``transform`` gives the codes, ``inverse_transform`` the reconstructions.
* ``MLPClassifier``: ``Standardize`` then ``fashion.models.Classifier`` (the demo's
  head), trained by ``nanoae.fit`` on the labels.

Written as scikit-learn's own ``BernoulliRBM`` is (and as skorch and scikeras wrap
torch and Keras): ``__init__`` only stores its arguments under their own names
(``clone`` and ``get_params`` read them back); ``fit`` validates the data, makes the
seeds from ``random_state`` and sets the learned attributes, whose names end in
``_``; every other method first checks that ``fit`` ran. Inputs may be float64
(scikit-learn's default): nanoae trains in float32, so they are cast inside, and
outputs come back as NumPy arrays in the input's float dtype, on either backend.
"""

from __future__ import annotations

import numpy
from sklearn.base import BaseEstimator, ClassifierMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_array, check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from nanoae import backend
from nanoae.fashion.models import Autoencoder, Classifier, Standardize
from nanoae.losses import BinaryCrossEntropy, CrossEntropy
from nanoae.optim import Adam
from nanoae.parallel.communicator import Communicator
from nanoae.sequential import Sequential
from nanoae.train.augment import Augmentation
from nanoae.train.callbacks import Progress
from nanoae.train.loop import fit, predict

__all__ = ["AutoencoderTransformer", "MLPClassifier"]

FLOATS = (numpy.float64, numpy.float32)  # what validate_data keeps; anything else becomes float64


def _seeds(random_state, count: int) -> list[int]:
    """``count`` integer seeds for nanoae (weights, data order) from a scikit-learn random_state."""
    rng = check_random_state(random_state)
    return [int(s) for s in rng.randint(numpy.iinfo(numpy.int32).max, size=count)]


def _train(model, loss, x, y, estimator) -> dict:
    """``nanoae.fit`` with the estimator's epochs, batch size and learning rate; one process.

    ``comm=Communicator()``: an estimator trains in its own process even under
    mpiexec (a cross-validation's folds are not data-parallel ranks).
    """
    return fit(model, loss, Adam(model.parameters(), lr=estimator.learning_rate), x, y,
               epochs=estimator.epochs, batch_size=estimator.batch_size, seed=estimator._fit_seed,
               augment=Augmentation(mask=getattr(estimator, "mask", 0.0)),
               callbacks=[Progress(type(estimator).__name__, bar=False, verbose=bool(estimator.verbose))],
               comm=Communicator())


class AutoencoderTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """An autoencoder as a transformer: ``transform`` maps each row to its ``n_components`` code.

    n_components: the code's width (``fashion.models.Autoencoder``'s last width).
    hidden: the encoder's widths between the input and the code (the decoder mirrors them).
    code_activation: "linear" (no unit can die), "relu" (the reference's) or "unit"
        (codes scaled to length 1, ``layers.Normalize``).
    epochs, batch_size, learning_rate: ``nanoae.fit`` with Adam.
    mask: denoising: the fraction of input values zeroed in each training batch
        (``transform`` never masks: unseen data is encoded as it is).
    random_state: None, an int or a RandomState: the weights and the data order.
    verbose: print a line per epoch.

    The autoencoder reproduces values in [0, 1] (a sigmoid output, BCE). ``fit``
    therefore maps X to [0, 1] with one scale for all features, from the
    training data's smallest and largest value (``data_min_``, ``data_max_``):
    pixels 0..255 become the /255 pixels the demo trains on, and other data
    keeps its features' relative scales. ``inverse_transform`` maps back.

    Attributes after fit: ``autoencoder_`` (the nanoae model), ``n_features_in_``,
    ``feature_names_in_`` (for a DataFrame), ``data_min_``, ``data_max_``, ``history_``.
    """

    def __init__(self, n_components: int = 32, *, hidden=(256, 128), code_activation: str = "linear",
                 epochs: int = 10, batch_size: int = 256, learning_rate: float = 2e-3, mask: float = 0.0,
                 random_state=None, verbose: bool = False):
        self.n_components = n_components
        self.hidden = hidden
        self.code_activation = code_activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.mask = mask
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]  # out in the input's dtype
        return tags

    def fit(self, X, y=None):
        """Train the autoencoder to reproduce X (y is ignored); returns self."""
        X = validate_data(self, X, dtype=FLOATS)
        weights_seed, self._fit_seed = _seeds(self.random_state, 2)
        self.data_min_, self.data_max_ = float(X.min()), float(X.max())
        widths = (X.shape[1], *(int(h) for h in self.hidden), int(self.n_components))
        self.autoencoder_ = Autoencoder(widths, code_activation=self.code_activation, seed=weights_seed)
        self.history_ = _train(self.autoencoder_, BinaryCrossEntropy(), self._scaled(X), None, self)
        return self

    def transform(self, X):
        """The codes of X: (n_samples, n_components), in X's float dtype."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=FLOATS, reset=False)
        codes = predict(self.autoencoder_.encoder, backend.to_device(self._scaled(X)))
        return backend.to_numpy(codes).astype(X.dtype, copy=False)

    def inverse_transform(self, X):
        """The reconstructions decoded from codes X (n_samples, n_components), on X's original scale."""
        check_is_fitted(self)
        X = self._check_codes(X)  # codes, not samples: n_features_in_ does not apply
        p = backend.to_numpy(predict(self.autoencoder_.decoder, backend.to_device(X.astype(numpy.float32))))
        return (self.data_min_ + p.astype(X.dtype) * self._span()).astype(X.dtype, copy=False)

    @property
    def _n_features_out(self) -> int:
        """How many names ``get_feature_names_out`` gives: one per code unit."""
        return int(self.n_components)

    def _span(self) -> float:
        """max - min of the training data, or 1 where it was constant (nothing to scale)."""
        return (self.data_max_ - self.data_min_) or 1.0

    def _scaled(self, X):
        """X mapped to [0, 1] by the training data's range, float32 (nanoae trains in float32)."""
        return ((X - self.data_min_) / self._span()).astype(numpy.float32)

    def _check_codes(self, X):
        X = check_array(X, dtype=FLOATS)
        if X.shape[1] != self.n_components:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__}.inverse_transform "
                             f"is expecting {self.n_components} (the code's width)")
        return X


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """The demo's head as a classifier: standardized inputs, dense ReLU layers, softmax.

    hidden: the widths of the hidden layers (the demo's head on codes: (512, 512)).
    epochs, batch_size, learning_rate: ``nanoae.fit`` with Adam on the cross-entropy.
    random_state: None, an int or a RandomState: the weights and the data order.
    verbose: print a line per epoch.

    Attributes after fit: ``model_`` (``Sequential(Standardize, Classifier)``),
    ``classes_`` (the labels, in the order of ``predict_proba``'s columns),
    ``n_features_in_``, ``feature_names_in_`` (for a DataFrame), ``history_``.
    """

    def __init__(self, hidden=(64,), *, epochs: int = 20, batch_size: int = 256, learning_rate: float = 1e-3,
                 random_state=None, verbose: bool = False):
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Train on features X and labels y (any labels scikit-learn calls classes); returns self."""
        X, y = validate_data(self, X, y, dtype=FLOATS)
        check_classification_targets(y)  # a continuous y is an error, not 1,000 classes
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        weights_seed, self._fit_seed = _seeds(self.random_state, 2)
        x32 = X.astype(numpy.float32)
        head = Classifier(X.shape[1], tuple(int(h) for h in self.hidden), len(self.classes_),
                          seed=weights_seed)
        self.model_ = Sequential(Standardize.fit(x32), head)
        self.history_ = _train(self.model_, CrossEntropy(), x32, encoder.transform(y).astype(numpy.int64),
                               self)
        return self

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes_``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=FLOATS, reset=False)
        probs = predict(self.model_, backend.to_device(X.astype(numpy.float32)))
        return backend.to_numpy(probs).astype(X.dtype, copy=False)

    def predict(self, X):
        """The most probable class of each row, as one of ``classes_``."""
        check_is_fitted(self)
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

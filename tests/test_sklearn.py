"""nanoae.sklearn: scikit-learn's own estimator checks, and what the wrappers promise beyond them.

Every check of ``parametrize_with_checks`` runs and passes for both estimators with the
tiny settings below (about 100 checks, 2 s on a 2-core Intel Xeon): none is listed as an
expected failure. scikit-learn itself skips three, for what this environment lacks, not
for the estimators: the array-API checks (they run only with SCIPY_ARRAY_API=1 and an
array-API library) and the pandas check (pandas is not installed here).
"""

import pickle

import numpy
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from nanoae import backend
from nanoae.sklearn import AutoencoderTransformer, MLPClassifier

# Small enough that the ~50 checks per estimator run in about a second, large enough that
# check_classifiers_train's blobs are learned (it asks for accuracy > 0.83).
SMALL = [AutoencoderTransformer(4, hidden=(8,), epochs=2, batch_size=32),
         MLPClassifier((16,), epochs=30, batch_size=32, learning_rate=1e-2)]


@parametrize_with_checks(SMALL)
def test_scikit_learns_estimator_checks(estimator, check):
    check(estimator)


def _pixels(n=96, seed=0):
    """Image-like rows: 0..255 as float64, the dtype scikit-learn hands on by default."""
    return numpy.random.default_rng(seed).integers(0, 256, (n, 20)).astype(numpy.float64)


def test_the_transformer_casts_float64_inside_and_answers_in_the_inputs_dtype(xp):
    x = _pixels()
    ae = AutoencoderTransformer(3, hidden=(8,), epochs=2, batch_size=32, mask=0.5, random_state=0).fit(x)
    assert ae.n_features_in_ == 20 and (ae.data_min_, ae.data_max_) == (x.min(), x.max())
    assert ae.autoencoder_.parameters()[0].data.dtype == numpy.float32  # trained in float32
    codes = ae.transform(x)
    assert type(codes) is numpy.ndarray and codes.dtype == numpy.float64 and codes.shape == (96, 3)
    assert ae.transform(x.astype(numpy.float32)).dtype == numpy.float32
    # unseen data is encoded as it is, never masked: the same rows give the same codes
    numpy.testing.assert_array_equal(ae.transform(x[:5]), ae.transform(x[:5]))
    expected = backend.to_numpy(ae.autoencoder_.encoder(xp.asarray(((x[:5] - x.min()) / (x.max() - x.min()))
                                                               .astype(numpy.float32))))
    numpy.testing.assert_allclose(codes[:5], expected, rtol=1e-5, atol=1e-6)
    back = ae.inverse_transform(codes)
    assert back.shape == x.shape and x.min() <= back.min() and back.max() <= x.max()  # original scale
    assert list(ae.get_feature_names_out()) == [f"autoencodertransformer{i}" for i in range(3)]
    with pytest.raises(ValueError, match="expecting 3"):
        ae.inverse_transform(codes[:, :2])


def test_the_same_random_state_gives_the_same_model_and_fit_draws_it_not_init():
    x = _pixels()
    a = AutoencoderTransformer(3, hidden=(8,), epochs=1, random_state=7)
    assert a.get_params()["random_state"] == 7 and not hasattr(a, "autoencoder_")  # init only stores
    numpy.testing.assert_array_equal(a.fit_transform(x), clone(a).fit(x).transform(x))
    assert not numpy.array_equal(a.transform(x), clone(a).set_params(random_state=8).fit(x).transform(x))


def test_the_classifier_learns_labels_of_any_kind_and_pickles(xp):
    rng = numpy.random.default_rng(1)
    x = numpy.r_[rng.normal(-2, 1, (60, 5)), rng.normal(2, 1, (60, 5))]
    y = numpy.array(["coat"] * 60 + ["sandal"] * 60)
    clf = MLPClassifier((16,), epochs=20, batch_size=16, learning_rate=1e-2, random_state=0).fit(x, y)
    assert list(clf.classes_) == ["coat", "sandal"] and clf.score(x, y) > 0.95
    probs = clf.predict_proba(x)
    assert type(probs) is numpy.ndarray and probs.dtype == numpy.float64
    numpy.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    again = pickle.loads(pickle.dumps(clf))
    numpy.testing.assert_array_equal(again.predict(x), clf.predict(x))

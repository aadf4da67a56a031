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


def test_what_fit_hands_to_nanoae(monkeypatch):
    """The estimator's settings reach nanoae.fit: epochs, batch size, Adam's lr, the mask, the
    data-order seed (the second of two drawn from random_state), one process, a quiet bar."""
    from sklearn.utils import check_random_state  # noqa: PLC0415

    from nanoae.sklearn import estimators  # noqa: PLC0415

    calls = []

    def fit(model, loss, optimizer, x, y, **kw):
        calls.append((model, loss, optimizer, x, y, kw))
        return {"epoch": [1]}

    monkeypatch.setattr(estimators, "fit", fit)
    X = numpy.array([[0.0, 255.0, 51.0], [102.0, 0.0, 255.0]])
    ae = AutoencoderTransformer(4, hidden=(5,), code_activation="relu", epochs=3, batch_size=7,
                                learning_rate=0.25, mask=0.5, random_state=11, verbose=True).fit(X)
    model, loss, optimizer, x, y, kw = calls[-1]
    seeds = [int(s) for s in check_random_state(11).randint(numpy.iinfo(numpy.int32).max, size=2)]
    assert estimators._seeds(11, 2) == seeds and len(estimators._seeds(None, 3)) == 3
    assert model is ae.autoencoder_ and repr(loss) == "BinaryCrossEntropy()" and y is None
    assert optimizer.lr == 0.25 and optimizer.params == model.parameters()
    assert kw["epochs"] == 3 and kw["batch_size"] == 7 and kw["seed"] == seeds[1] == ae._fit_seed
    assert kw["augment"].mask == 0.5 and kw["comm"].size == 1
    assert [type(c).__name__ for c in kw["callbacks"]] == ["Progress"]
    assert kw["callbacks"][0].verbose is True and kw["callbacks"][0].bar is False
    assert kw["callbacks"][0].desc == "AutoencoderTransformer"
    assert ae.autoencoder_.config["widths"] == [3, 5, 4] and ae.autoencoder_.config["code_activation"] == "relu"
    from nanoae.fashion.models import Autoencoder, Classifier  # noqa: PLC0415

    same = Autoencoder((3, 5, 4), code_activation="relu", seed=seeds[0])
    assert all(numpy.array_equal(backend.to_numpy(a.data), backend.to_numpy(b.data))
               for a, b in zip(ae.autoencoder_.parameters(), same.parameters()))
    assert ae.history_ == {"epoch": [1]}
    numpy.testing.assert_allclose(x, X / 255.0, rtol=1e-6)  # one scale for all features: 0..255 -> 0..1
    assert x.dtype == numpy.float32 and (ae.data_min_, ae.data_max_) == (0.0, 255.0)
    clf = MLPClassifier(hidden=(6, 2), epochs=2, batch_size=5, learning_rate=0.5, random_state=11).fit(
        X, ["b", "a"])
    model, loss, optimizer, x, y, kw = calls[-1]
    assert repr(loss) == "CrossEntropy()" and optimizer.lr == 0.5 and kw["epochs"] == 2
    assert kw["batch_size"] == 5 and kw["augment"].mask == 0.0 and kw["seed"] == seeds[1]
    assert kw["callbacks"][0].verbose is False and kw["callbacks"][0].desc == "MLPClassifier"
    assert y.tolist() == [1, 0] and y.dtype == numpy.int64 and x.dtype == numpy.float32
    assert list(clf.classes_) == ["a", "b"]
    assert clf.model_[1].config["hidden"] == [6, 2] and clf.model_[1].config["classes"] == 2
    same = Classifier(3, (6, 2), 2, seed=seeds[0])
    assert all(numpy.array_equal(backend.to_numpy(a.data), backend.to_numpy(b.data))
               for a, b in zip(clf.model_[1].parameters(), same.parameters()))
    numpy.testing.assert_allclose(clf.model_[0].mean, X.mean(axis=0), rtol=1e-6)


def test_the_defaults_are_the_documented_ones():
    assert AutoencoderTransformer().get_params() == {
        "n_components": 32, "hidden": (256, 128), "code_activation": "linear", "epochs": 10,
        "batch_size": 256, "learning_rate": 2e-3, "mask": 0.0, "random_state": None, "verbose": False}
    assert MLPClassifier().get_params() == {"hidden": (64,), "epochs": 20, "batch_size": 256,
                                            "learning_rate": 1e-3, "random_state": None, "verbose": False}
    assert AutoencoderTransformer().__sklearn_tags__().transformer_tags.preserves_dtype == ["float64", "float32"]


def test_scaling_back_and_the_codes_width_checked():
    X = numpy.full((6, 3), 7.0)  # constant: nothing to scale, span 1
    ae = AutoencoderTransformer(2, hidden=(3,), epochs=1, random_state=0).fit(X)
    assert (ae.data_min_, ae.data_max_, ae._span()) == (7.0, 7.0, 1.0)
    numpy.testing.assert_allclose(ae._scaled(X), 0.0)
    recon = ae.inverse_transform(numpy.zeros((2, 2)))
    p = backend.to_numpy(ae.autoencoder_.decoder(numpy.zeros((2, 2), numpy.float32)))
    numpy.testing.assert_allclose(recon, 7.0 + p, rtol=1e-6)
    X = numpy.array([[2.0, 4.0, 6.0], [10.0, 2.0, 3.0]] * 3)
    ae = AutoencoderTransformer(2, hidden=(3,), epochs=1, random_state=0).fit(X)
    assert ae._span() == 8.0
    numpy.testing.assert_allclose(ae._scaled(X), (X - 2.0) / 8.0, rtol=1e-6)
    codes = numpy.array([[0.5, -1.0]], dtype=numpy.float32)
    p = backend.to_numpy(ae.autoencoder_.decoder(codes))
    out = ae.inverse_transform(codes)
    assert out.dtype == numpy.float32
    numpy.testing.assert_allclose(out, 2.0 + 8.0 * p, rtol=1e-5)
    with pytest.raises(ValueError) as err:
        ae.inverse_transform(numpy.zeros((1, 3)))
    assert str(err.value) == ("X has 3 features, but AutoencoderTransformer.inverse_transform is expecting 2 "
                              "(the code's width)")
    assert list(ae.get_feature_names_out()) == ["autoencodertransformer0", "autoencodertransformer1"]
    clf = MLPClassifier(hidden=(4,), epochs=1, random_state=0).fit(X, [0, 1] * 3)
    probs = clf.predict_proba(X.astype(numpy.float32))
    assert probs.dtype == numpy.float32 and probs.shape == (6, 2)
    assert clf.predict(X).tolist() == probs.argmax(axis=1).tolist()

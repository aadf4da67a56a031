"""Scores: trustworthiness in blocks equals scikit-learn's; the k-NN score is scikit-learn's."""

import numpy
import pytest

from nanoae.fashion import metrics


def codes_and_map(n=3000, seed=0):
    rng = numpy.random.default_rng(seed)
    codes = rng.normal(size=(n, 32)).astype(numpy.float32)
    # a map that keeps some neighbourhoods and breaks others, as t-SNE's does
    emb = codes[:, :2] + 0.5 * rng.normal(size=(n, 2)).astype(numpy.float32)
    return codes, emb


@pytest.mark.parametrize("k", [5, 12])
def test_trustworthiness_in_blocks_equals_scikit_learns(k, monkeypatch):
    from sklearn.manifold import trustworthiness

    codes, emb = codes_and_map()
    expected = trustworthiness(codes, emb, n_neighbors=k)
    monkeypatch.setattr(metrics, "WORKING_MEMORY_MIB", 1)  # many blocks, of ~40 rows
    assert metrics.trustworthiness(codes, emb, k) == expected
    # coarse float32 distances tie; the ranks of tied neighbours must follow scikit-learn's sort
    coarse = numpy.round(codes, 1)
    assert metrics.trustworthiness(coarse, emb, k) == trustworthiness(coarse, emb, n_neighbors=k)


def test_trustworthiness_of_a_perfect_and_of_a_shuffled_map():
    codes, _ = codes_and_map(400)
    assert metrics.trustworthiness(codes, codes, 5) == 1.0
    shuffled = codes[numpy.random.default_rng(1).permutation(len(codes))]
    assert metrics.trustworthiness(codes, shuffled[:, :2], 5) < 0.6
    with pytest.raises(ValueError, match="n_neighbors must be in 1..199 for 400 points"):
        metrics.trustworthiness(codes, codes, 200)


def test_knn_accuracy_is_scikit_learns_cross_validated_score():
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    codes, emb = codes_and_map(1000)
    labels = (codes[:, 0] > 0).astype(int) + 2 * (codes[:, 1] > 0)
    expected = cross_val_score(KNeighborsClassifier(5), emb, labels, cv=5).mean()
    assert metrics.knn_accuracy(emb, labels, folds=5) == pytest.approx(expected, abs=0)



def test_dead_units_are_the_units_zero_on_every_example():
    codes = numpy.array([[0.0, 1.0, 0.0, -2.0], [0.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert metrics.dead_units(codes) == 1  # a negative value is alive too (|code| is read)
    assert metrics.dead_units(numpy.zeros((4, 3))) == 3
    assert metrics.dead_units(numpy.ones((4, 3))) == 0


def test_autoencoder_metrics_are_the_means_over_every_test_image():
    """BCE per pixel from the logits, MSE per pixel and dead code units, over every batch."""
    from nanoae.fashion.models import Autoencoder  # noqa: PLC0415

    rng = numpy.random.default_rng(7)
    images = rng.integers(0, 256, (11, 20), dtype=numpy.uint8)
    model = Autoencoder((20, 6, 3), code_activation="relu", seed=1)
    model.encoder.layers[-2].b.data[...] = [0.0, -50.0, 0.0]  # code unit 1: dead on every image
    x = images.astype(numpy.float64) / 255
    p = numpy.clip(model(x.astype(numpy.float32)).astype(numpy.float64), 1e-12, 1 - 1e-12)
    bce = float(-(x * numpy.log(p) + (1 - x) * numpy.log(1 - p)).mean())
    mse = float(((p - x) ** 2).mean())
    for batch_size in (4, 11, 100):
        got = metrics.autoencoder_metrics(model, images, prefix="m", batch_size=batch_size)
        assert sorted(got) == ["m_dead_code_units", "m_test_bce", "m_test_mse"]
        assert got["m_test_bce"] == pytest.approx(bce, rel=1e-4)
        assert got["m_test_mse"] == pytest.approx(mse, rel=1e-4)
        assert got["m_dead_code_units"] == 1
    assert sorted(metrics.autoencoder_metrics(model, images)) == [
        "ae_dead_code_units", "ae_test_bce", "ae_test_mse"]


def test_score_classifier_reports_accuracy_and_loss_of_the_view_it_chose():
    """Four 2x2 test images; the classifier's probabilities are known, so are its figures."""
    import types  # noqa: PLC0415

    import nanoae as nn  # noqa: PLC0415

    dense = nn.Dense(4, 3)
    dense.W.data[...] = numpy.array([[2, 0, 0], [0, 2, 0], [0, 0, 2], [1, 1, 1]], dtype=numpy.float32)
    dense.b.data[...] = 0
    model = nn.Sequential(dense, nn.Softmax())
    x = numpy.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]], dtype=numpy.float32)
    y = numpy.array([0, 1, 1, 0])  # the third is wrong
    probs = nn.backend.to_numpy(model(x)).astype(numpy.float64)
    loss = float(-numpy.log(probs[numpy.arange(4), y]).mean())
    splits = types.SimpleNamespace(x_val=x, y_val=y, x_test=x, y_test=y)
    r = metrics.score_classifier(model, splits, test_mirror=False)
    assert r == {"clf_val_accuracy_single_view": 0.75, "clf_mirror": False, "clf_test_accuracy": 0.75,
                 "clf_test_loss": pytest.approx(loss, rel=1e-5), "clf_test_accuracy_single_view": 0.75,
                 "clf_test_loss_single_view": pytest.approx(loss, rel=1e-5)}


def test_confusion_matrix_has_ten_classes_by_default_and_counts_repeats():
    cm = metrics.confusion_matrix(numpy.array([9, 9, 0]), numpy.array([1, 1, 0]))
    assert cm.shape == (10, 10) and cm.dtype == numpy.int64
    assert cm[9, 1] == 2 and cm[0, 0] == 1 and cm.sum() == 3


def brute_trustworthiness(x, emb, k):
    """The formula of the docstring, point by point (no ties in these tests)."""
    n = len(x)
    penalty = 0
    for i in range(n):
        in_x = sorted((j for j in range(n) if j != i), key=lambda j: abs(x[j] - x[i]).sum())
        on_map = sorted((j for j in range(n) if j != i), key=lambda j: abs(emb[j] - emb[i]).sum())[:k]
        penalty += sum(max(0, in_x.index(j) + 1 - k) for j in on_map)
    return 1 - 2 / (n * k * (2 * n - 3 * k - 1)) * penalty


def test_trustworthiness_by_hand_on_a_line():
    """Seven points on a line, at distances that never tie, and a map that moves two of them."""
    x = numpy.array([[0.0], [1.0], [2.1], [3.3], [4.6], [6.0], [7.5]])
    assert metrics.trustworthiness(x, x, 1) == 1.0
    emb = numpy.array([[0.0], [6.1], [2.2], [3.5], [4.9], [1.05], [7.7]])  # 1 and 5 swapped
    for k in (1, 2, 3):
        expected = brute_trustworthiness(x, emb, k)
        assert expected < 1
        assert metrics.trustworthiness(x, emb, k) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match=r"n_neighbors must be in 1..3 for 7 points \(fewer than half "
                                         r"of them\), got 4"):
        metrics.trustworthiness(x, emb, 4)
    with pytest.raises(ValueError, match="got 0"):
        metrics.trustworthiness(x, emb, 0)


def test_knn_accuracy_passes_the_neighbours_and_folds_on():
    from sklearn.model_selection import cross_val_score  # noqa: PLC0415
    from sklearn.neighbors import KNeighborsClassifier  # noqa: PLC0415

    codes, emb = codes_and_map(300, seed=2)
    labels = (codes[:, 0] > 0).astype(int)
    for folds, k in ((3, 1), (4, 9)):
        expected = cross_val_score(KNeighborsClassifier(k), emb, labels, cv=folds).mean()
        assert metrics.knn_accuracy(emb, labels, folds=folds, n_neighbors=k) == expected
    assert metrics.knn_accuracy(emb, labels) == cross_val_score(KNeighborsClassifier(5), emb, labels,
                                                                cv=5).mean()


def test_knn_folds_are_five_or_the_smallest_class_present():
    assert metrics.knn_folds(numpy.repeat(numpy.arange(10), 7)) == 5
    assert metrics.knn_folds(numpy.r_[numpy.zeros(9, int), [3, 3, 3], numpy.full(8, 7)]) == 3  # 1, 2 absent
    assert metrics.knn_folds(numpy.r_[numpy.zeros(9, int), [3, 3, 3]], most=2) == 2
    assert metrics.knn_folds(numpy.r_[numpy.zeros(9, int), numpy.ones(9, int)], most=12) == 9
    assert metrics.knn_folds(numpy.r_[numpy.zeros(9, int), [4]]) == 1  # a class of one point

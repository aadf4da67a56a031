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


"""nanoae.sklearn: scikit-learn's own estimator checks, and what the wrappers promise beyond them."""

import numpy
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from nanoae.sklearn import AutoencoderTransformer, MLPClassifier

# Small enough that the ~50 checks per estimator run in seconds, large enough that
# check_classifiers_train's blobs are learned (it asks for accuracy > 0.83).
SMALL = [AutoencoderTransformer(4, hidden=(8,), epochs=2, batch_size=32),
         MLPClassifier((16,), epochs=30, batch_size=32, learning_rate=1e-2)]


@parametrize_with_checks(SMALL)
def test_scikit_learns_estimator_checks(estimator, check):
    check(estimator)

"""scikit-learn estimators wrapping nanoae's models: a wing of its own.

    estimators.py   AutoencoderTransformer (fit, transform, inverse_transform,
                    get_feature_names_out) and MLPClassifier (fit, predict,
                    predict_proba, score)

Imports the core, ``train``, ``parallel`` and ``fashion`` (its models); nothing imports it.
``import sklearn`` in here is scikit-learn itself (imports are absolute).

    from sklearn.pipeline import Pipeline
    from sklearn.linear_model import LogisticRegression
    from nanoae.sklearn import AutoencoderTransformer

    Pipeline([("ae", AutoencoderTransformer(32, epochs=10)), ("clf", LogisticRegression())])
"""

from nanoae.sklearn.estimators import AutoencoderTransformer, MLPClassifier

__all__ = ["AutoencoderTransformer", "MLPClassifier"]

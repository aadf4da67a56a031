"""Pipeline choices that the demo's figures rest on."""

import numpy

import nanoae as nn
from nanoae.pipeline import REFERENCE_AE, Settings, Splits, score_classifier, train_autoencoder


def left_vs_right():
    """A classifier of 2x2 images: class 0 when the top-left pixel is brighter than the
    top-right one, class 1 otherwise. Its mirror image swaps the two, so averaging the
    two views leaves a tie, which argmax gives to class 0."""
    dense = nn.Dense(4, 2)
    dense.W.data[...] = 0
    dense.W.data[0, 0] = dense.W.data[1, 1] = 10
    return nn.Sequential(dense, nn.Softmax())


def splits(val_images, val_labels):
    test = numpy.array([[0.9, 0.1, 0, 0], [0.1, 0.9, 0, 0]], dtype=numpy.float32)
    return Splits(val_images, val_labels, val_images, val_labels, test, numpy.array([0, 1]), val_images)


def test_mirror_averaging_is_used_only_where_validation_prefers_it(xp):
    model = left_vs_right()
    right_as_is = splits(numpy.array([[0.9, 0.1, 0, 0]] * 4, dtype=numpy.float32), numpy.zeros(4, int))
    r = score_classifier(model, right_as_is, Settings(), prefix="p")
    assert r["p_val_accuracy_single_view"] == 1.0 and r["p_val_accuracy_mirrored"] == 1.0
    assert r["p_mirror"] is False  # a tie keeps the single view
    assert r["p_test_accuracy"] == r["p_test_accuracy_single_view"] == 1.0

    wrong_as_is = splits(numpy.array([[0.1, 0.9, 0, 0]] * 4, dtype=numpy.float32), numpy.zeros(4, int))
    r = score_classifier(model, wrong_as_is, Settings(), prefix="p")
    assert r["p_val_accuracy_single_view"] == 0.0 and r["p_val_accuracy_mirrored"] == 1.0
    assert r["p_mirror"] is True
    assert r["p_test_accuracy_single_view"] == 1.0 and r["p_test_accuracy"] == 0.5  # a tie goes to class 0

    r = score_classifier(model, wrong_as_is, Settings(test_mirror=False), prefix="p")
    assert r["p_mirror"] is False and "p_val_accuracy_mirrored" not in r


def test_autoencoder_widths_come_from_the_settings_and_the_reference_stays_fixed(xp):
    x = numpy.random.default_rng(0).integers(0, 256, (64, 784), dtype=numpy.uint8)
    settings = Settings(ae_widths=(784, 16, 8), ae_epochs=1, batch_size=32, progress=False)
    model, history = train_autoencoder(x, settings)
    assert model.config["widths"] == [784, 16, 8] and model.config["code_activation"] == "linear"
    assert len(history["epoch"]) == 1
    reference, history = train_autoencoder(x, settings, reference=True)
    assert reference.config["widths"] == list(REFERENCE_AE["widths"]) == [784, 128, 64, 32]
    assert reference.config["code_activation"] == "relu" and len(history["epoch"]) == 20
    assert Settings().as_dict()["ae_widths"] == [784, 256, 128, 32]  # JSON-friendly in metrics

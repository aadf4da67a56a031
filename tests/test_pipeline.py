"""Pipeline choices that the demo's figures rest on."""

import math

import numpy
import pytest

import nanoae as nn
import nanoae.train.loop
from nanoae.fashion.metrics import (
    autoencoder_metrics,
    confusion_matrix,
    score_classifier,
)
from nanoae.fashion.models import Autoencoder, ImageClassifier
from nanoae.fashion.pipeline import (
    REFERENCE_AE,
    Settings,
    Splits,
    fine_tune,
    train_autoencoder,
    train_head,
    tsne_map,
)


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
    r = score_classifier(model, right_as_is, prefix="p")
    assert r["p_val_accuracy_single_view"] == 1.0 and r["p_val_accuracy_mirrored"] == 1.0
    assert r["p_mirror"] is False  # a tie keeps the single view
    assert r["p_test_accuracy"] == r["p_test_accuracy_single_view"] == 1.0

    wrong_as_is = splits(numpy.array([[0.1, 0.9, 0, 0]] * 4, dtype=numpy.float32), numpy.zeros(4, int))
    r = score_classifier(model, wrong_as_is, prefix="p")
    assert r["p_val_accuracy_single_view"] == 0.0 and r["p_val_accuracy_mirrored"] == 1.0
    assert r["p_mirror"] is True
    assert r["p_test_accuracy_single_view"] == 1.0 and r["p_test_accuracy"] == 0.5  # a tie goes to class 0

    r = score_classifier(model, wrong_as_is, prefix="p", test_mirror=False)
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


def test_autoencoder_validation_loss_is_on_the_clean_held_out_images():
    rng = numpy.random.default_rng(1)
    x, x_val = (rng.integers(0, 256, (n, 784), dtype=numpy.uint8) for n in (64, 32))
    settings = Settings(ae_widths=(784, 16, 8), ae_epochs=2, ae_mask=0.5, batch_size=32, progress=False)
    model, history = train_autoencoder(x, settings, validation=x_val)
    assert len(history["val_loss"]) == 2
    clean = nn.evaluate(model, nn.BinaryCrossEntropy(), x_val)["loss"]
    assert history["val_loss"][-1] == pytest.approx(clean, rel=1e-6)
    metrics = autoencoder_metrics(model, x_val, prefix="ae")
    assert set(metrics) == {"ae_test_bce", "ae_test_mse", "ae_dead_code_units"}
    assert metrics["ae_test_bce"] == pytest.approx(clean, rel=1e-5)


def test_tsne_map_refuses_what_it_cannot_do_and_reports_the_perplexity_it_used():
    rng = numpy.random.default_rng(0)
    codes, labels = rng.normal(size=(40, 4)).astype(numpy.float32), numpy.arange(40) % 4
    for points in (41, 10):
        with pytest.raises(ValueError, match="more than 10 points and at most the 40 codes"):
            tsne_map(codes, labels, points=points)
    with pytest.raises(ValueError, match="class 3 has a single point among the first 12"):
        tsne_map(codes, numpy.r_[numpy.arange(11) % 3, 3, numpy.zeros(28, int)], points=12)
    _, metrics = tsne_map(codes, labels, points=31, perplexity=20)
    assert metrics["tsne_points"] == 31 and metrics["tsne_perplexity"] == 10.0  # (31 - 1) / 3


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], classes=3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def _cosine_at(peak, step, total):
    return peak * 0.5 * (1 + math.cos(math.pi * step / total))


def test_each_stages_cosine_schedule_spans_the_steps_of_its_run():
    """The learning rate of every stage falls from its peak to ~0 over that stage's steps:
    each epoch ends at the schedule's value for its last step (not for a count of examples)."""
    rng = numpy.random.default_rng(2)
    x, x_val = (rng.integers(0, 256, (n, 784), dtype=numpy.uint8) for n in (64, 16))
    y, y_val = rng.integers(0, 10, 64), rng.integers(0, 10, 16)
    settings = Settings(ae_widths=(784, 16, 8), ae_epochs=2, ae_mask=0.0, head_hidden=(8,),
                        head_epochs=2, head_mirror=False, finetune_epochs=2, finetune_mask=0.0,
                        batch_size=8, progress=False)  # 8 steps per epoch, 16 per stage

    def assert_spans(history, peak):
        expected = [_cosine_at(peak, 8 * epoch - 1, 16) for epoch in (1, 2)]
        assert history["lr"] == pytest.approx(expected, rel=1e-6)
        assert history["lr"][-1] < 0.01 * peak  # the end of the run: nearly 0

    ae, history = train_autoencoder(x, settings)
    assert_spans(history, settings.ae_lr)
    codes, codes_val = (nn.predict(ae.encoder, images) for images in (x, x_val))
    scaler, head, history = train_head(codes, y, codes_val, y_val, settings)
    assert_spans(history, settings.head_lr)
    splits = Splits(x, y, x_val, y_val, x_val, y_val, x)
    _, history = fine_tune(ImageClassifier(ae, scaler, head), splits, settings)
    assert_spans(history, settings.finetune_lr)


def test_autoencoder_mse_is_the_mean_squared_error_per_pixel():
    rng = numpy.random.default_rng(3)
    images = rng.integers(0, 256, (13, 784), dtype=numpy.uint8)
    model = Autoencoder((784, 16, 4), code_activation="linear", seed=0)
    pixels = images.astype(numpy.float32) / 255
    expected = float(((model(pixels) - pixels) ** 2).mean())
    for batch_size in (5, 2048):  # several batches (the last one partial), and one
        metrics = autoencoder_metrics(model, images, prefix="ae", batch_size=batch_size)
        assert metrics["ae_test_mse"] == pytest.approx(expected, rel=1e-5)


def test_pca_is_a_linear_autoencoder_of_two_dense_layers(xp):
    """PCAAutoencoder's encoder and decoder give scikit-learn's transform and inverse_transform."""
    from sklearn.decomposition import PCA  # noqa: PLC0415

    from nanoae.fashion.pca import fit_pca, pca_reconstruction_metrics  # noqa: PLC0415

    images = numpy.random.default_rng(4).integers(0, 256, (120, 784), dtype=numpy.uint8)
    pixels = images.astype(numpy.float32) / 255
    reference = PCA(8, random_state=0).fit(pixels)
    pca = fit_pca(images, 8, seed=0)
    assert pca.code_size == 8 and pca.config["widths"] == [784, 8]
    codes = nn.predict(pca.encoder, xp.asarray(images))
    # float32 rounding, not another answer: the Dense layer's x @ C.T - mean @ C.T subtracts two
    # sums over 784 pixels where scikit-learn projects x - mean (codes here are ~1 in size)
    numpy.testing.assert_allclose(nn.backend.to_numpy(codes), reference.transform(pixels), atol=1e-3)
    recon = reference.inverse_transform(reference.transform(pixels))
    numpy.testing.assert_allclose(nn.backend.to_numpy(pca(xp.asarray(pixels))), recon, atol=1e-4)
    metrics = pca_reconstruction_metrics(pca, images, batch_size=50)  # three batches, the last partial
    assert metrics["pca_test_mse"] == pytest.approx(float(((recon - pixels) ** 2).mean()), rel=1e-4)
    p = numpy.clip(recon, 1 / 255, 1 - 1 / 255)  # BCE on the clipped reconstruction
    bce = -(pixels * numpy.log(p) + (1 - pixels) * numpy.log(1 - p)).mean()
    assert metrics["pca_test_bce"] == pytest.approx(float(bce), rel=1e-4)


def test_the_baseline_stage_scores_pca_and_the_pixels_as_the_codes_are(tmp_path):
    from nanoae.fashion.metrics import knn_accuracy  # noqa: PLC0415
    from nanoae.fashion.pca import fit_pca, knn_baselines  # noqa: PLC0415
    from nanoae.fashion.pipeline import baseline_stage  # noqa: PLC0415

    rng = numpy.random.default_rng(5)
    x, x_val, x_test = (rng.integers(0, 256, (n, 784), dtype=numpy.uint8) for n in (80, 20, 40))
    y, y_val, y_test = (numpy.arange(n) % 4 for n in (80, 20, 40))
    settings = Settings(ae_widths=(784, 16, 6), ae_epochs=1, head_hidden=(8,), head_epochs=2,
                        batch_size=32, tsne_points=30, progress=False)
    ae, _ = train_autoencoder(x, settings)
    metrics = {"ae_test_mse": 0.01}
    baseline_stage(ae, Splits(x, y, x_val, y_val, x_test, y_test, x), settings, metrics, tmp_path)
    assert metrics["pca_components"] == 6  # as many as the code
    for key in ("pca_test_bce", "pca_test_mse", "pca_knn_accuracy", "pixels_knn_accuracy",
                "clf_pca_test_accuracy", "clf_pca_test_accuracy_single_view", "baseline_seconds"):
        assert isinstance(metrics[key], float), key
    assert (tmp_path / "pca_reconstructions.png").stat().st_size > 0
    # the 5-NN protocol of codes_knn_accuracy: the first tsne_points test images, 5 folds
    pixels = x_test[:30].astype(numpy.float32) / 255
    assert metrics["pixels_knn_accuracy"] == knn_accuracy(pixels, y_test[:30], folds=5)
    # a class with 3 images among them: 3 folds, as tsne_map would use
    few = knn_baselines(fit_pca(x, 6), x_test, numpy.r_[numpy.zeros(27, int), numpy.ones(13, int)], 30)
    assert few["pixels_knn_accuracy"] == knn_accuracy(pixels, numpy.r_[numpy.zeros(27, int), [1, 1, 1]],
                                                      folds=3)


def test_the_heads_dropout_and_label_smoothing_come_from_the_settings(monkeypatch):
    import nanoae.fashion.pipeline as pipeline  # noqa: PLC0415

    losses = []
    real_fit = pipeline.fit

    def spy(model, loss, *args, **kwargs):
        losses.append(loss)
        return real_fit(model, loss, *args, **kwargs)

    monkeypatch.setattr(pipeline, "fit", spy)
    rng = numpy.random.default_rng(2)
    x, x_val = (rng.integers(0, 256, (n, 784), dtype=numpy.uint8) for n in (64, 16))
    y, y_val = rng.integers(0, 10, 64), rng.integers(0, 10, 16)
    settings = Settings(ae_widths=(784, 16, 8), ae_epochs=1, head_hidden=(8, 8), head_epochs=1,
                        head_mirror=False, head_dropout=0.25, head_label_smoothing=0.1,
                        finetune_epochs=1, finetune_label_smoothing=0.05, batch_size=16, progress=False)
    ae, _ = train_autoencoder(x, settings)
    codes, codes_val = (nn.predict(ae.encoder, images) for images in (x, x_val))
    scaler, head, _ = train_head(codes, y, codes_val, y_val, settings)
    assert [layer.p for layer in head.leaves() if isinstance(layer, nn.Dropout)] == [0.25, 0.25]
    assert head.config["dropout"] == 0.25
    fine_tune(ImageClassifier(ae, scaler, head), Splits(x, y, x_val, y_val, x_val, y_val, x), settings)
    assert [loss.label_smoothing for loss in losses[1:]] == [0.1, 0.05]  # the head's, the fine-tune's
    assert not any(layer.training for layer in head.leaves())

"""Pipeline choices that the demo's figures rest on."""

import json
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
    assert model.config["widths"] == [784, 16, 8] and model.config["code_activation"] == "unit"
    assert repr(model.encoder.layers[-1]) == "Normalize()"
    assert len(history["epoch"]) == 1
    reference, history = train_autoencoder(x, settings, reference=True)
    assert reference.config["widths"] == list(REFERENCE_AE["widths"]) == [784, 128, 64, 32]
    assert reference.config["code_activation"] == "relu" and len(history["epoch"]) == 20
    assert Settings().as_dict()["ae_widths"] == [784, 512, 128, 32]  # JSON-friendly in metrics


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


# -- run_demo's wiring, every stage stubbed (fast: the real demo runs in test_cli.py) ----------

class _AE:
    def __init__(self, widths, code):
        self.config = {"widths": widths, "code_activation": code}
        self.code_size = widths[-1]
        self.encoder = "encoder"


def _stub_demo(monkeypatch, root=True):
    """Every stage of run_demo replaced by a recorder; returns the calls, in order."""
    import types  # noqa: PLC0415

    from nanoae.fashion import pipeline, plots, report  # noqa: PLC0415

    calls = []
    x_test = numpy.zeros((30, 4), numpy.uint8)
    splits = types.SimpleNamespace(x_all=numpy.zeros(50), x_train=numpy.zeros((45, 4)), x_val=numpy.zeros((5, 4)),
                                   x_test=x_test, y_test=numpy.arange(30) % 10)
    monkeypatch.setattr(pipeline, "world", lambda: types.SimpleNamespace(is_root=root))
    monkeypatch.setattr(pipeline, "versions", lambda: {"numpy": "x"})
    monkeypatch.setattr(pipeline, "load_splits", lambda settings: splits)

    def train_autoencoder(x, settings, **kw):
        calls.append(("train_autoencoder", kw))
        ae = _AE([784, 128, 64, 32], "relu") if kw.get("reference") else _AE([784, 16, 8], "linear")
        return ae, {"seconds": [1.0, 3.0, 2.0], "watch": {"w": 1}, "tag": kw.get("desc")}

    monkeypatch.setattr(pipeline, "train_autoencoder", train_autoencoder)
    monkeypatch.setattr(pipeline, "autoencoder_metrics",
                        lambda ae, x, prefix="ae": {f"{prefix}_test_bce": ae.code_size / 100})
    monkeypatch.setattr(pipeline, "write_diagnostics", lambda records, out, metrics: calls.append(
        ("write_diagnostics", records)))
    monkeypatch.setattr(pipeline, "_plot_reconstructions", lambda ae, s, m, out: calls.append(
        ("reconstructions", ae.code_size)))
    monkeypatch.setattr(pipeline, "train_frozen_classifier", lambda ae, s, settings, **kw: (
        calls.append(("frozen", kw)), ("frozen", {"best_epoch": 7, "tag": "frozen"}, numpy.ones((30, 8))))[1])
    monkeypatch.setattr(pipeline, "predict", lambda model, x, mirror=False: (
        calls.append(("predict", model, mirror)), numpy.eye(10)[numpy.arange(len(x)) % 10])[1])
    monkeypatch.setattr(pipeline, "score_classifier", lambda model, s, prefix, test_mirror: (
        calls.append(("score", model, prefix, test_mirror)),
        {f"{prefix}_test_accuracy": 0.5, f"{prefix}_mirror": prefix == "clf_finetune"})[1])
    monkeypatch.setattr(pipeline, "_tsne_stage", lambda ae, c, s, settings, metrics, out, log: (
        calls.append(("tsne", ae.code_size)), metrics.update(tsne_trustworthiness=0.9)))
    monkeypatch.setattr(pipeline, "baseline_stage", lambda ae, s, settings, metrics, out, root: (
        calls.append(("baselines", root)), root and metrics.update(baseline_seconds=12.4)))
    monkeypatch.setattr(pipeline, "fine_tune", lambda frozen, s, settings, **kw: (
        calls.append(("fine_tune", frozen, kw)), ("tuned", {"best_epoch": 2, "tag": "tuned"}))[1])
    monkeypatch.setattr(plots, "plot_codes_activity", lambda codes, path, title: calls.append(
        ("codes", sorted(codes), path.name, title)))
    monkeypatch.setattr(plots, "plot_confusion", lambda cm, names, path, title: calls.append(
        ("confusion", int(cm.trace()), path.name, title)))
    monkeypatch.setattr(plots, "plot_curves", lambda h, path, train_labels, loss_names: calls.append(
        ("curves", list(h), path.name, train_labels, loss_names)))
    monkeypatch.setattr(report, "write_report", lambda out, metrics, cm: calls.append(("report", out)))
    return calls


def test_run_demo_runs_each_stage_in_order_and_says_so(monkeypatch, tmp_path):
    from nanoae.fashion import pipeline  # noqa: PLC0415

    calls = _stub_demo(monkeypatch)
    logged = []
    settings = Settings(ae_widths=(784, 16, 8), seed=3, tsne_points=12, ae_mask=0.1)
    metrics = pipeline.run_demo(tmp_path / "demo", settings, log=logged.append)
    out = tmp_path / "demo"
    assert logged[:-1] == [
        "data: 50 training images (45 train + 5 validation, held out for model selection and the learning "
        "curves), 30 test",
        "1/6 reference autoencoder (784-128-64-32, ReLU code)",
        "2/6 autoencoder (unit code, 0.1 of the pixels masked)",
        "3/6 classifier on the frozen codes",
        f"4/6 t-SNE map of 12 test codes (scikit-learn; {pipeline.TSNE_DURATION})",
        "5/6 baselines: PCA with 8 components, and the raw pixels",
        "    baselines done in 12 s",
        "6/6 encoder + head fine-tuned end to end"]
    assert logged[-1].startswith("done in ") and logged[-1].endswith(f" s: see {out / 'report.md'}")
    names = [c[0] for c in calls]
    assert names == ["train_autoencoder", "write_diagnostics", "train_autoencoder", "reconstructions", "frozen",
                     "predict", "codes", "score", "tsne", "baselines", "fine_tune", "score", "predict",
                     "confusion", "curves", "report"]
    assert calls[0][1] == {"validation": pipeline.load_splits(settings).x_val, "reference": True,
                           "checkpoint": out / "autoencoder_reference.npz", "desc": "reference AE", "watch": True}
    assert calls[2][1]["checkpoint"] == out / "autoencoder.npz" and "reference" not in calls[2][1]
    assert calls[4][1] == {"checkpoint": out / "classifier.npz"}
    assert calls[5][1:] == ("encoder", False)  # the reference's codes, for the codes figure
    assert calls[6][1:] == (["autoencoder 784-16-8 (linear code)", "reference autoencoder 784-128-64-32 (relu code)"],
                            "codes.png", "Code units over the test images")
    assert calls[7][1:] == ("frozen", "clf_frozen", True) and calls[11][1:] == ("tuned", "clf_finetune", True)
    assert calls[9][1] is True and calls[10][1:] == ("frozen", {"checkpoint": out / "finetuned.npz"})
    assert calls[12][1:] == ("tuned", True)  # the mirror the fine-tuned classifier chose
    assert calls[13][1:] == (30, "confusion.png", "Fine-tuned classifier on the test set")
    stages = ["reference autoencoder (ReLU code)", "autoencoder (unit code)", "classifier on frozen codes",
              "encoder + head fine-tuned"]
    assert calls[14][1:] == (stages, "curves.png", pipeline._train_loss_labels(settings),
                             {stages[0]: "BCE per pixel", stages[1]: "BCE per pixel",
                              stages[2]: "cross-entropy", stages[3]: "cross-entropy"})
    assert [metrics["histories"][s]["tag"] for s in stages] == ["reference AE", None, "frozen", "tuned"]
    assert metrics["ref_ae_test_bce"] == 0.32 and metrics["ae_test_bce"] == 0.08
    assert metrics["ae_seconds_per_epoch"] == 2.0  # the median
    assert metrics["clf_frozen_best_epoch"] == 7 and metrics["clf_finetune_best_epoch"] == 2
    assert metrics["backend"] == "numpy" and metrics["seed"] == 3 and metrics["versions"] == {"numpy": "x"}
    assert metrics["settings"] == settings.as_dict() and metrics["total_seconds"] >= 0
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["tsne_trustworthiness"] == 0.9 and saved["clf_finetune_mirror"] is True
    assert (out / "metrics.json").read_text().endswith("}\n")


def test_run_demo_without_the_reference_and_baselines_and_on_another_rank(monkeypatch, tmp_path):
    from nanoae.fashion import pipeline  # noqa: PLC0415

    calls = _stub_demo(monkeypatch)
    logged = []
    settings = Settings(ae_widths=(784, 16, 8), reference=False, baselines=False, tsne_points=100000)
    pipeline.run_demo(tmp_path / "d", settings, log=logged.append)
    assert [line.split(" ")[0] for line in logged[1:-1]] == ["1/4", "2/4", "3/4", "4/4"]
    assert logged[2] == f"2/4 classifier on the frozen codes"
    assert logged[3].startswith("3/4 t-SNE map of 30 test codes")  # no more than the test images
    assert [c[0] for c in calls].count("train_autoencoder") == 1 and "baselines" not in [c[0] for c in calls]
    assert calls[3][1:3] == (["autoencoder 784-16-8 (linear code)"], "codes.png")
    calls = _stub_demo(monkeypatch, root=False)
    logged = []
    metrics = pipeline.run_demo(tmp_path / "r1", Settings(ae_widths=(784, 16, 8)), log=logged.append)
    assert logged == [] and not (tmp_path / "r1").exists()  # rank 1 trains, says and writes nothing
    assert [c[0] for c in calls] == ["train_autoencoder", "train_autoencoder", "frozen", "baselines", "fine_tune"]
    assert calls[3][1] is False and set(metrics) == {"backend", "seed", "settings", "versions", "histories"}


def test_the_demos_small_pieces():
    from nanoae.fashion import pipeline  # noqa: PLC0415

    stages, lines = pipeline._Stages(3, None), []
    stages.log = lines.append
    stages.start("a")
    stages.start("b")
    assert lines == ["1/3 a", "2/3 b"]
    assert pipeline._describe_ae(_AE([784, 16, 8], "linear")) == "autoencoder 784-16-8 (linear code)"
    assert pipeline._describe_ae(_AE([784, 4], "relu"), reference=True) == "reference autoencoder 784-4 (relu code)"
    assert pipeline._loss_names({"autoencoder (x)": 1, "reference autoencoder (y)": 2, "head": 3}) == {
        "autoencoder (x)": "BCE per pixel", "reference autoencoder (y)": "BCE per pixel", "head": "cross-entropy"}
    assert pipeline._train_loss_labels(Settings(ae_mask=0.25)) == {
        "encoder + head fine-tuned": "train loss (flipped and masked inputs)",
        "autoencoder (unit code)": "train loss (on inputs with 25% of pixels masked)"}
    assert pipeline._train_loss_labels(Settings(ae_mask=0.0, finetune_flip=False, finetune_mask=0.0,
                                                code_activation="relu")) == {
        "encoder + head fine-tuned": "train loss"}
    assert pipeline._train_loss_labels(Settings(ae_mask=0.0, finetune_flip=True, finetune_mask=0.0))[
        "encoder + head fine-tuned"] == "train loss (flipped and masked inputs)"
    assert pipeline._train_loss_labels(Settings(ae_mask=0.0, finetune_flip=False, finetune_mask=0.1))[
        "encoder + head fine-tuned"] == "train loss (flipped and masked inputs)"
    assert pipeline._one_per_class(numpy.array([3, 1, 0, 1, 2, 4, 5, 6, 7, 8, 9, 0])).tolist() == [
        2, 1, 4, 0, 5, 6, 7, 8, 9, 10]
    assert pipeline._one_per_class(numpy.array([10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0])).tolist() == list(range(10, 0, -1))
    v = pipeline.versions()
    assert set(v) == {"nanoae", "numpy", "scikit-learn", "python", "machine"} and v["numpy"] == numpy.__version__


def test_the_demos_figures_are_drawn_from_its_figures(monkeypatch, tmp_path):
    """The stages' figures, with the drawing recorded: the t-SNE map, the reconstructions and the
    diagnostics get the run's own numbers in their titles."""
    import types  # noqa: PLC0415

    from nanoae.fashion import pipeline, plots  # noqa: PLC0415

    drawn, logged = [], []
    for name in ("plot_tsne", "plot_reconstructions", "plot_diagnostics"):
        monkeypatch.setattr(plots, name, lambda *a, _name=name, **kw: drawn.append((_name, a, kw)))
    y_test = numpy.r_[numpy.arange(10), numpy.arange(10)]
    splits = types.SimpleNamespace(x_test=numpy.arange(20 * 4, dtype=numpy.uint8).reshape(20, 4), y_test=y_test)
    ae = Autoencoder((4, 3, 2), code_activation="linear", seed=0)
    mapped = []

    def tsne_map(codes, labels, **kw):
        mapped.append((codes, labels, kw))
        return "emb", {"tsne_seconds": 3.6, "tsne_trustworthiness": 0.98765, "tsne_knn_accuracy": 0.8125}

    monkeypatch.setattr(pipeline, "tsne_map", tsne_map)
    metrics = {"ae_test_bce": 0.123456}
    settings = Settings(seed=5, tsne_points=12, tsne_perplexity=7.0)
    pipeline._tsne_stage(ae, "codes", splits, settings, metrics, tmp_path, logged.append)
    assert mapped == [("codes", y_test, {"seed": 5, "points": 12, "perplexity": 7.0})]
    assert metrics["tsne_trustworthiness"] == 0.98765 and logged == ["    t-SNE done in 4 s"]
    name, args, kw = drawn[0]
    assert args[0] == "emb" and args[1].tolist() == y_test[:12].tolist() and args[3] == tmp_path / "tsne.png"
    assert args[2] is pipeline.CLASS_NAMES
    assert kw == {"title": "t-SNE of 12 test codes (2-d)",
                  "subtitle": "trustworthiness (k=5) 0.9877, 5-NN accuracy on the map 81.2 %"}
    pipeline._tsne_stage(ae, "codes", splits, Settings(tsne_points=100), metrics, tmp_path, logged.append)
    assert mapped[-1][2]["points"] == 20  # no more than the test images
    pipeline._plot_reconstructions(ae, splits, metrics, tmp_path)
    name, (originals, recon, labels, names, path), kw = drawn[-1]
    assert name == "plot_reconstructions" and labels.tolist() == list(range(10)) and names is pipeline.CLASS_NAMES
    numpy.testing.assert_array_equal(originals, splits.x_test[:10])
    expected = nn.backend.to_numpy(ae.reconstruct(splits.x_test[:10].astype(numpy.float32) / 255))
    numpy.testing.assert_allclose(recon, expected, rtol=1e-6)
    assert path == tmp_path / "reconstructions.png" and kw == {
        "title": "Test images (top) and their reconstructions by the autoencoder 4-3-2 (linear code), "
                 "test BCE 0.1235"}
    records = {"step": [0], "epoch": [1], "layers": {"r": {"kind": "ReLU", "dead_per_epoch": [2]}}}
    pipeline.write_diagnostics(records, tmp_path, metrics)
    assert drawn[-1] == ("plot_diagnostics", (records, tmp_path / "diagnostics.png"), {
        "title": "Inside the reference autoencoder while it trained (nanoae.train.watch)"})
    assert metrics["ref_ae_diagnostics"] == [
        "After 1 epochs, dead units (zero for every training example of the epoch): r 2 (the first in epoch 1)."]


# -- each training stage's recipe, with fit recorded instead of run ------------------------------

def _record_fits(monkeypatch):
    """pipeline.fit replaced by a recorder of its arguments; returns the list of calls."""
    import nanoae.fashion.pipeline as pipeline  # noqa: PLC0415

    fits = []

    def fit(model, loss, opt, x, y=None, **kw):
        fits.append({"model": model, "loss": loss, "opt": opt, "x": x, "y": y, **kw})
        return {"best_epoch": 3, "seconds": [1.0]}

    monkeypatch.setattr(pipeline, "fit", fit)
    return fits


def _odd_settings(**overrides):
    """Settings where every knob differs from its default and from every other one."""
    return Settings(**{**dict(seed=7, batch_size=8, ae_widths=(784, 12, 6), ae_epochs=3, ae_lr=3e-3,
                              ae_mask=0.2, code_activation="relu", head_hidden=(9,), head_epochs=5,
                              head_lr=4e-3, head_weight_decay=0.06, head_dropout=0.3,
                              head_label_smoothing=0.15, head_mirror=False, finetune_epochs=4,
                              finetune_lr=5e-3, finetune_weight_decay=0.2, finetune_flip=False,
                              finetune_mask=0.05, finetune_label_smoothing=0.12, select_on="val_loss",
                              progress=False), **overrides})


def _schedule_values(callback, steps):
    return [callback.schedule(step) for step in range(steps + 2)]


def _assert_cosine(callback, peak, steps):
    expected = [_cosine_at(peak, min(step, steps), steps) for step in range(steps + 2)]
    assert _schedule_values(callback, steps) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_the_autoencoders_recipe_reaches_fit(monkeypatch, tmp_path):
    from nanoae.train.callbacks import Checkpoint, LearningRateSchedule, Progress  # noqa: PLC0415
    from nanoae.train.watch import Watch  # noqa: PLC0415

    fits = _record_fits(monkeypatch)
    settings = _odd_settings()
    x = numpy.zeros((20, 784), numpy.uint8)  # 20 images in batches of 8: 3 steps an epoch
    x_val = numpy.ones((4, 784), numpy.uint8)
    extra = Progress("extra", bar=False)
    model, history = train_autoencoder(x, settings, validation=x_val, checkpoint=tmp_path / "ae.npz",
                                       resume=True, desc="my AE", watch=True, callbacks=[extra])
    assert history == {"best_epoch": 3, "seconds": [1.0]}
    f = fits[0]
    assert f["model"] is model and f["x"] is x and f["y"] is None
    assert model.config == {"kind": "autoencoder", "widths": [784, 12, 6], "code_activation": "relu",
                            "dtype": "float32", "init": "he"}
    assert repr(model) == repr(Autoencoder((784, 12, 6), code_activation="relu", seed=7))
    for p, q in zip(model.parameters(), Autoencoder((784, 12, 6), code_activation="relu", seed=7).parameters()):
        numpy.testing.assert_array_equal(p.data, q.data)  # seeded by the settings
    assert isinstance(f["loss"], nn.BinaryCrossEntropy)
    assert type(f["opt"]) is nn.Adam and f["opt"].lr == 3e-3
    assert [id(p) for p in f["opt"].params] == [id(p) for p in model.parameters()]
    assert f["epochs"] == 3 and f["batch_size"] == 8 and f["seed"] == 7
    assert f["validation"][0] is x_val and f["validation"][1] is None
    assert f["augment"].mask == 0.2 and not f["augment"].flip and not f["augment"].shift
    progress, watch, passed, schedule, checkpoint = f["callbacks"]
    assert type(progress) is Progress and progress.desc == "my AE" and progress.bar is False
    assert type(watch) is Watch and watch.model is model and passed is extra
    assert type(schedule) is LearningRateSchedule
    _assert_cosine(schedule, 3e-3, 3 * 3)
    assert type(checkpoint) is Checkpoint and checkpoint.path == tmp_path / "ae.npz" and checkpoint.resume
    assert checkpoint.meta == {"model": model.config, "settings": settings.as_dict(), "recipe": {
        "widths": (784, 12, 6), "code_activation": "relu", "epochs": 3, "lr": 3e-3, "cosine": True,
        "mask": 0.2}}

    model, _ = train_autoencoder(x, settings)  # the defaults: no validation, watch, checkpoint
    f = fits[1]
    assert f["validation"] is None
    assert [type(c) for c in f["callbacks"]] == [Progress, LearningRateSchedule]
    assert f["callbacks"][0].desc == "autoencoder"
    assert f["callbacks"][0].bar is False and f["callbacks"][0].verbose is True


def test_the_reference_autoencoders_recipe_is_fixed_whatever_the_settings(monkeypatch, tmp_path):
    from nanoae.train.callbacks import Checkpoint, Progress  # noqa: PLC0415

    fits = _record_fits(monkeypatch)
    settings = _odd_settings()
    x = numpy.zeros((20, 784), numpy.uint8)
    model, _ = train_autoencoder(x, settings, reference=True, checkpoint=tmp_path / "ref.npz")
    f = fits[0]
    assert model.config == {"kind": "autoencoder", "widths": [784, 128, 64, 32], "code_activation": "relu",
                            "dtype": "float32", "init": "glorot_uniform"}
    reference = Autoencoder((784, 128, 64, 32), code_activation="relu", init="glorot_uniform", seed=7)
    for p, q in zip(model.parameters(), reference.parameters()):
        numpy.testing.assert_array_equal(p.data, q.data)
    assert f["opt"].lr == 1e-3 and f["epochs"] == 20 and f["batch_size"] == 8 and f["seed"] == 7
    assert f["augment"].mask == 0.0 and not f["augment"]  # clean inputs
    assert [type(c) for c in f["callbacks"]] == [Progress, Checkpoint]  # a constant learning rate
    assert f["callbacks"][1].resume is False
    assert f["callbacks"][1].meta["recipe"] == REFERENCE_AE


def test_the_heads_recipe_reaches_fit(monkeypatch, tmp_path):
    from nanoae.fashion.models import Classifier, Standardize, encoder_fingerprint  # noqa: PLC0415
    from nanoae.train.callbacks import Checkpoint, KeepBest, LearningRateSchedule, Progress  # noqa: PLC0415
    from nanoae.train.watch import Watch  # noqa: PLC0415

    fits = _record_fits(monkeypatch)
    settings = _odd_settings()
    rng = numpy.random.default_rng(8)
    codes, codes_val = rng.normal(size=(17, 6)).astype(numpy.float32), rng.normal(size=(5, 6)).astype(numpy.float32)
    y, y_val = numpy.arange(17) % 10, numpy.arange(5)
    ae = Autoencoder((784, 12, 6), seed=0)
    extra = Progress("extra", bar=False)
    scaler, head, history = train_head(codes, y, codes_val, y_val, settings, autoencoder=ae,
                                       checkpoint=tmp_path / "h.npz", watch=True, desc="my head",
                                       callbacks=[extra])
    assert history["best_epoch"] == 3
    f = fits[0]
    numpy.testing.assert_array_equal(nn.backend.to_numpy(scaler.mean), Standardize.fit(codes).mean)
    expected_head = Classifier(6, (9,), 10, seed=8, dropout=0.3)
    assert head.config == expected_head.config and repr(head) == repr(expected_head)
    for p, q in zip(head.parameters(), expected_head.parameters()):
        numpy.testing.assert_array_equal(p.data, q.data)  # seeded seed + 1
    assert f["model"].layers == [scaler, head] and f["x"] is codes and f["y"] is y
    assert isinstance(f["loss"], nn.CrossEntropy) and f["loss"].label_smoothing == 0.15
    assert type(f["opt"]) is nn.AdamW and f["opt"].lr == 4e-3 and f["opt"].weight_decay == 0.06
    assert [id(p) for p in f["opt"].params] == [id(p) for p in head.parameters()]
    assert f["epochs"] == 5 and f["batch_size"] == 8 and f["seed"] == 7
    assert f["validation"][0] is codes_val and f["validation"][1] is y_val
    assert f.get("augment") is None
    schedule, keep, progress, checkpoint, watch, passed = f["callbacks"]
    assert type(schedule) is LearningRateSchedule
    _assert_cosine(schedule, 4e-3, 5 * 3)  # 17 codes in batches of 8: 3 steps an epoch
    assert type(keep) is KeepBest and keep.monitor == "val_loss" and keep.patience is None
    assert type(progress) is Progress and progress.desc == "my head" and progress.bar is False
    assert type(checkpoint) is Checkpoint and checkpoint.path == tmp_path / "h.npz" and not checkpoint.resume
    assert checkpoint.meta == {"model": head.config, "scaler": scaler.config, "settings": settings.as_dict(),
                               "autoencoder": encoder_fingerprint(ae)}
    assert type(watch) is Watch and watch.model is head and passed is extra

    train_head(codes, y, codes_val, y_val, settings)  # no autoencoder, checkpoint or watch
    assert [type(c) for c in fits[1]["callbacks"]] == [LearningRateSchedule, KeepBest, Progress]
    assert fits[1]["callbacks"][2].desc == "head on codes"


def test_the_fine_tunings_recipe_reaches_fit(monkeypatch, tmp_path):
    from nanoae.fashion.models import Classifier, FineTuned, Standardize  # noqa: PLC0415
    from nanoae.train.callbacks import Checkpoint, KeepBest, LearningRateSchedule, Progress  # noqa: PLC0415
    from nanoae.train.watch import Watch  # noqa: PLC0415

    fits = _record_fits(monkeypatch)
    settings = _odd_settings()
    rng = numpy.random.default_rng(9)
    x, x_val = rng.integers(0, 256, (25, 784), dtype=numpy.uint8), rng.integers(0, 256, (5, 784), dtype=numpy.uint8)
    y, y_val = numpy.arange(25) % 10, numpy.arange(5)
    ae = Autoencoder((784, 12, 6), seed=0)
    scaler = Standardize.fit(rng.normal(size=(10, 6)).astype(numpy.float32))
    head = Classifier(6, (9,), 10, seed=1)
    extra = Progress("extra", bar=False)
    model, history = fine_tune(ImageClassifier(ae, scaler, head), Splits(x, y, x_val, y_val, x_val, y_val, x),
                               settings, checkpoint=tmp_path / "f.npz", watch=True, callbacks=[extra])
    assert history["best_epoch"] == 3
    f = fits[0]
    assert type(model) is FineTuned and f["model"] is model
    assert model.autoencoder is ae and model.scaler is scaler and model.head is head
    assert f["x"] is x and f["y"] is y and f["validation"][0] is x_val and f["validation"][1] is y_val
    assert isinstance(f["loss"], nn.CrossEntropy) and f["loss"].label_smoothing == 0.12
    assert type(f["opt"]) is nn.AdamW and f["opt"].lr == 5e-3 and f["opt"].weight_decay == 0.2
    assert [id(p) for p in f["opt"].params] == [id(p) for p in model.parameters()]  # encoder and head
    assert f["epochs"] == 4 and f["batch_size"] == 8 and f["seed"] == 7
    assert f["augment"].flip is False and f["augment"].mask == 0.05 and not f["augment"].shift
    schedule, keep, progress, checkpoint, watch, passed = f["callbacks"]
    _assert_cosine(schedule, 5e-3, 4 * 4)  # 25 images in batches of 8: 4 steps an epoch
    assert type(keep) is KeepBest and keep.monitor == "val_loss"
    assert type(progress) is Progress and progress.desc == "fine-tune" and progress.bar is False
    assert type(checkpoint) is Checkpoint and checkpoint.path == tmp_path / "f.npz"
    assert checkpoint.meta == {"model": model.config, "settings": settings.as_dict()}
    assert type(watch) is Watch and watch.model is model and passed is extra

    fine_tune(ImageClassifier(ae, scaler, head), Splits(x, y, x_val, y_val, x_val, y_val, x),
              Settings(batch_size=8, progress=False))  # the defaults: mirrored and masked
    f = fits[1]
    assert f["augment"].flip is True and f["augment"].mask == 0.1 and f["loss"].label_smoothing == 0.1
    assert f["opt"].lr == 1e-3 and f["opt"].weight_decay == 0.1 and f["epochs"] == 20
    assert [type(c) for c in f["callbacks"]] == [LearningRateSchedule, KeepBest, Progress]
    assert f["callbacks"][1].monitor == "val_accuracy"


def test_the_frozen_classifier_trains_on_the_codes_of_the_images_and_of_their_mirrors(monkeypatch, tmp_path):
    from nanoae.fashion.pipeline import head_training_set, train_frozen_classifier  # noqa: PLC0415
    from nanoae.train.loop import mirror_images  # noqa: PLC0415

    fits = _record_fits(monkeypatch)
    rng = numpy.random.default_rng(10)
    x, x_val, x_test = (rng.integers(0, 256, (n, 784), dtype=numpy.uint8) for n in (6, 4, 3))
    y, y_val, y_test = numpy.arange(6), numpy.arange(4), numpy.arange(3)
    splits = Splits(x, y, x_val, y_val, x_test, y_test, x)
    ae = Autoencoder((784, 5, 3), code_activation="linear", seed=0)
    codes = [nn.backend.to_numpy(nn.predict(ae.encoder, images)) for images in (x, x_val, x_test)]
    mirrored = nn.backend.to_numpy(nn.predict(ae.encoder, mirror_images(x)))
    assert not numpy.allclose(mirrored, codes[0])  # the encoder maps a mirror image elsewhere

    settings = _odd_settings(head_mirror=True)
    extra = nn.Progress("extra", bar=False)
    clf, history, c_test = train_frozen_classifier(ae, splits, settings, checkpoint=tmp_path / "c.npz",
                                                   desc="my frozen", watch=True, callbacks=[extra])
    f = fits[0]
    numpy.testing.assert_allclose(nn.backend.to_numpy(f["x"]), numpy.concatenate([codes[0], mirrored]), rtol=1e-6)
    assert f["y"].tolist() == y.tolist() * 2
    numpy.testing.assert_allclose(nn.backend.to_numpy(f["validation"][0]), codes[1], rtol=1e-6)
    assert f["validation"][1] is y_val
    numpy.testing.assert_allclose(nn.backend.to_numpy(c_test), codes[2], rtol=1e-6)
    assert clf.autoencoder is ae and clf.head is f["model"].layers[1] and clf.scaler is f["model"].layers[0]
    assert history["best_epoch"] == 3
    assert f["callbacks"][2].desc == "my frozen" and f["callbacks"][3].path == tmp_path / "c.npz"
    assert f["callbacks"][3].meta["autoencoder"]["widths"] == [784, 5, 3]
    assert f["callbacks"][4].model is clf.head and f["callbacks"][5] is extra

    train_frozen_classifier(ae, splits, settings)  # the defaults: no watch, the head's own name
    assert [type(c).__name__ for c in fits[1]["callbacks"]] == ["LearningRateSchedule", "KeepBest", "Progress"]
    assert fits[1]["callbacks"][2].desc == "head on codes"
    codes_only, labels = head_training_set(ae, splits, codes[0], _odd_settings(head_mirror=False))
    assert codes_only is codes[0] and labels is y


def test_run_demo_hands_each_stage_this_runs_splits_settings_and_folder(monkeypatch, tmp_path):
    import types  # noqa: PLC0415

    from nanoae.fashion import pipeline, plots, report  # noqa: PLC0415
    from nanoae.fashion.data import CLASS_NAMES  # noqa: PLC0415

    _stub_demo(monkeypatch)
    splits = pipeline.load_splits(None)
    seen = {}

    def recorder(name, result=None):
        def record(*args, **kw):
            seen.setdefault(name, []).append((args, kw))
            return result(*args, **kw) if callable(result) else result
        return record

    ae, ref = _AE([784, 16, 8], "linear"), _AE([784, 128, 64, 32], "relu")
    c_test = numpy.full((30, 8), 0.5)
    monkeypatch.setattr(pipeline, "train_autoencoder", recorder("train_autoencoder", lambda x, s, **kw: (
        ref if kw.get("reference") else ae, {"seconds": [4.0, 1.0, 2.0], "watch": {"w": kw.get("reference")}})))
    monkeypatch.setattr(pipeline, "autoencoder_metrics", recorder(
        "autoencoder_metrics", lambda model, x, prefix="ae": {f"{prefix}_test_bce": 0.25}))
    monkeypatch.setattr(pipeline, "write_diagnostics", recorder("write_diagnostics"))
    monkeypatch.setattr(pipeline, "_plot_reconstructions", recorder("_plot_reconstructions"))
    monkeypatch.setattr(pipeline, "train_frozen_classifier", recorder(
        "train_frozen_classifier", ("frozen", {"best_epoch": 7}, c_test)))
    monkeypatch.setattr(pipeline, "score_classifier", recorder(
        "score_classifier", lambda model, s, prefix, test_mirror: {f"{prefix}_mirror": True}))
    monkeypatch.setattr(pipeline, "_tsne_stage", recorder("_tsne_stage"))
    monkeypatch.setattr(pipeline, "baseline_stage", recorder(
        "baseline_stage", lambda *a, **kw: a[3].update(baseline_seconds=1.0)))
    monkeypatch.setattr(pipeline, "fine_tune", recorder("fine_tune", ("tuned", {"best_epoch": 2})))
    monkeypatch.setattr(plots, "plot_codes_activity", recorder("plot_codes_activity"))
    monkeypatch.setattr(plots, "plot_confusion", recorder("plot_confusion"))
    monkeypatch.setattr(report, "write_report", recorder("write_report"))
    clock = iter([100.0, 107.25])
    monkeypatch.setattr(pipeline, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))

    out = tmp_path / "not" / "yet"  # its parents are made too
    settings = Settings(ae_widths=(784, 16, 8), test_mirror=False, progress=False)
    metrics = pipeline.run_demo(out, settings, log=lambda message: None)
    (args, kw), (args2, kw2) = seen["train_autoencoder"]
    assert args == (splits.x_train, settings) and kw["validation"] is splits.x_val
    assert args2 == (splits.x_train, settings) and kw2["validation"] is splits.x_val
    assert [(a[0], a[1], kw) for a, kw in seen["autoencoder_metrics"]] == [
        (ref, splits.x_test, {"prefix": "ref_ae"}), (ae, splits.x_test, {})]
    assert seen["write_diagnostics"] == [(({"w": True}, out, metrics), {})]
    assert seen["_plot_reconstructions"] == [((ae, splits, metrics, out), {})]
    assert seen["train_frozen_classifier"] == [((ae, splits, settings), {"checkpoint": out / "classifier.npz"})]
    codes = seen["plot_codes_activity"][0][0][0]
    assert codes["autoencoder 784-16-8 (linear code)"] is c_test
    assert seen["score_classifier"] == [(("frozen", splits, "clf_frozen"), {"test_mirror": False}),
                                        (("tuned", splits, "clf_finetune"), {"test_mirror": False})]
    (args, kw), = seen["_tsne_stage"]
    assert args[:6] == (ae, c_test, splits, settings, metrics, out) and callable(args[6])
    assert seen["baseline_stage"] == [((ae, splits, settings, metrics, out), {"root": True})]
    assert seen["fine_tune"] == [(("frozen", splits, settings), {"checkpoint": out / "finetuned.npz"})]
    (cm, names, path), kw = seen["plot_confusion"][0]
    assert names == CLASS_NAMES and path == out / "confusion.png"
    assert seen["write_report"] == [((out, metrics, cm), {})]
    assert cm.tolist() == pipeline.confusion_matrix(splits.y_test, numpy.arange(30) % 10).tolist()
    assert metrics["total_seconds"] == 7.25 and metrics["ae_seconds_per_epoch"] == 2.0
    text = (out / "metrics.json").read_text()
    assert text == json.dumps(metrics, indent=2) + "\n" and '\n  "backend": "numpy",\n' in text

    clock = iter([0.0, 1.0])  # a second run into the same folder: it exists already
    pipeline.run_demo(out, settings, log=lambda message: None)
    assert json.loads((out / "metrics.json").read_text())["total_seconds"] == 1.0


def test_load_splits_asks_for_both_splits_as_the_settings_say(monkeypatch):
    from nanoae.fashion import pipeline  # noqa: PLC0415

    asked = []
    images = {"train": numpy.arange(20 * 4, dtype=numpy.uint8).reshape(20, 2, 2), "test": numpy.ones((3, 2, 2), numpy.uint8)}
    labels = {"train": numpy.arange(20, dtype=numpy.uint8) % 10, "test": numpy.array([1, 2, 3], numpy.uint8)}

    def load(split, **kw):
        asked.append((split, kw))
        return images[split], labels[split]

    monkeypatch.setattr(pipeline, "load_fashion_mnist", load)
    settings = Settings(data_dir="/some/dir", verify=False, progress=True, val_fraction=0.25, seed=4)
    s = pipeline.load_splits(settings)
    assert asked == [(split, {"data_dir": "/some/dir", "verify": False, "progress": True})
                     for split in ("train", "test")]
    train, val = nanoae.train.loop.split_validation(20, 0.25, 4)
    assert s.x_train.tolist() == images["train"].reshape(20, 4)[train].tolist() and len(s.x_val) == 5
    assert s.x_val.tolist() == images["train"].reshape(20, 4)[val].tolist()
    assert s.y_train.tolist() == labels["train"][train].tolist() and s.y_val.tolist() == labels["train"][val].tolist()
    assert s.y_train.dtype == s.y_val.dtype == s.y_test.dtype == numpy.int64
    assert s.x_test.shape == (3, 4) and s.y_test.tolist() == [1, 2, 3] and s.x_all.shape == (20, 4)


def test_a_quick_run_is_small_and_takes_overrides():
    q = Settings.quick()
    assert (q.ae_epochs, q.reference, q.head_epochs, q.finetune_epochs, q.tsne_points, q.quick_run) == (
        3, False, 8, 2, 2000, True)
    assert q.as_dict() == {**Settings().as_dict(), "ae_epochs": 3, "reference": False, "head_epochs": 8,
                           "finetune_epochs": 2, "tsne_points": 2000, "quick_run": True}
    assert Settings.quick(ae_epochs=5, seed=2).ae_epochs == 5 and Settings.quick(seed=2).seed == 2
    d = Settings(head_hidden=(7, 3)).as_dict()
    assert d["head_hidden"] == [7, 3] and type(d["head_hidden"]) is list  # JSON-friendly in metrics
    assert json.loads(json.dumps(d)) == d


def test_the_demos_lines_go_to_standard_error(capsys):
    from nanoae.fashion import pipeline  # noqa: PLC0415

    pipeline._log("1/6 a stage")
    assert capsys.readouterr() == ("", "1/6 a stage\n")


def test_tsne_map_passes_its_settings_to_scikit_learn_and_scores_the_map(monkeypatch):
    import types  # noqa: PLC0415

    import sklearn.manifold  # noqa: PLC0415

    from nanoae.fashion import pipeline  # noqa: PLC0415

    made = []

    class FakeTSNE:
        def __init__(self, **kw):
            self.kw = kw
            made.append(self)

        def fit_transform(self, x):
            self.x = x
            return x[:, :2] * 2

    monkeypatch.setattr(sklearn.manifold, "TSNE", FakeTSNE)
    clock = iter([10.0, 12.5])
    monkeypatch.setattr(pipeline, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    scored = []
    monkeypatch.setattr(pipeline, "trustworthiness", lambda a, b, n_neighbors: (
        scored.append(("trust", a, b, n_neighbors)), 0.75)[1])
    monkeypatch.setattr(pipeline, "knn_accuracy", lambda a, labels, folds: (
        scored.append(("knn", a, labels, folds)), 0.5 if a.shape[1] == 2 else 0.25)[1])
    monkeypatch.setattr(pipeline, "knn_folds", lambda labels: ("folds", len(labels)))
    codes = numpy.arange(12 * 3, dtype=numpy.float64).reshape(12, 3)
    labels = numpy.arange(12) % 3
    embedding, m = tsne_map(codes, labels, seed=4, points=12, perplexity=50)  # every code: allowed
    (tsne,) = made
    assert tsne.kw == {"n_components": 2, "perplexity": 11 / 3, "random_state": 4}
    assert tsne.x.dtype == numpy.float32 and tsne.x.tolist() == codes.tolist()
    assert m == {"tsne_points": 12, "tsne_perplexity": 11 / 3, "tsne_trustworthiness": 0.75,
                 "tsne_knn_accuracy": 0.5, "codes_knn_accuracy": 0.25, "tsne_seconds": 2.5}
    assert [(s[0], s[-1]) for s in scored] == [("trust", 5), ("knn", ("folds", 12)), ("knn", ("folds", 12))]
    assert scored[1][1] is embedding and scored[2][1] is tsne.x and scored[1][2].tolist() == labels.tolist()
    clock = iter([0.0, 1.0])
    made.clear()
    _, m = tsne_map(codes, labels, points=11)  # 11 points: the fewest allowed
    assert made[0].kw == {"n_components": 2, "perplexity": 10 / 3, "random_state": 0}
    many = numpy.zeros((10001, 3))
    for n, points in ((10001, 10000), (10000, None)):
        clock = iter([0.0, 1.0])
        made.clear()
        kw = {} if points is None else {"points": points}
        _, m = tsne_map(many[:n], numpy.arange(n) % 10, **kw)  # the defaults: 10,000 points, perplexity 10
        assert m["tsne_points"] == 10000 and made[0].kw["perplexity"] == 10.0 and made[0].kw["random_state"] == 0
        assert len(made[0].x) == 10000
    with pytest.raises(ValueError) as err:
        tsne_map(codes, numpy.r_[numpy.zeros(11, int), 1], points=12)
    assert str(err.value) == ("class 1 has a single point among the first 12; the cross-validated 5-NN "
                              "accuracy needs two of each class: map more points")


def test_pca_is_seeded_and_clips_what_is_not_a_probability(monkeypatch):
    from sklearn.decomposition import PCA  # noqa: PLC0415

    from nanoae.fashion import pca as pca_module  # noqa: PLC0415
    from nanoae.fashion.pca import PCAAutoencoder, fit_pca, pca_reconstruction_metrics, reconstruct_clipped  # noqa: PLC0415

    images = numpy.random.default_rng(11).integers(0, 256, (600, 784), dtype=numpy.uint8)
    reference = PCA(8, random_state=0).fit(images.astype(numpy.float32) / 255)  # scikit-learn's randomized solver
    pca = fit_pca(images, 8)  # seed 0 by default
    numpy.testing.assert_allclose(nn.backend.to_numpy(pca.decoder[0].W.data), reference.components_, atol=1e-4)
    other = nn.backend.to_numpy(fit_pca(images, 8, seed=1).decoder[0].W.data)
    assert abs(other - reference.components_).max() > 0.01  # the seed matters to that solver
    assert pca.config == {"kind": "pca", "widths": [784, 8], "code_activation": "linear"}

    # one direction (0.6, 0.8) about (0.5, 0.5): black reconstructs to (0.08, -0.06), white to (0.92, 1.06)
    line = PCAAutoencoder([[0.6, 0.8]], [0.5, 0.5])
    two = numpy.array([[0, 0], [255, 255]], numpy.uint8)
    numpy.testing.assert_allclose(reconstruct_clipped(line, two), [[0.08, 0], [0.92, 1]], atol=1e-6)
    recon = numpy.array([[0.08, -0.06], [0.92, 1.06]])
    p = numpy.clip(recon, 1 / 255, 1 - 1 / 255)
    pixels = two / 255
    metrics = pca_reconstruction_metrics(line, two)
    assert metrics["pca_test_bce"] == pytest.approx(
        float(-(pixels * numpy.log(p) + (1 - pixels) * numpy.log(1 - p)).mean()), rel=1e-5)
    assert metrics["pca_test_mse"] == pytest.approx(float(((recon - pixels) ** 2).mean()), rel=1e-5)

    asked = []
    monkeypatch.setattr(pca_module, "knn_folds", lambda labels: ("folds of", labels.tolist()))
    monkeypatch.setattr(pca_module, "knn_accuracy", lambda x, labels, folds: (
        asked.append((x.shape, labels.tolist(), folds)), len(asked) / 4)[1])
    result = pca_module.knn_baselines(line, two, numpy.array([3, 4]), 1)
    assert result == {"pca_knn_accuracy": 0.25, "pixels_knn_accuracy": 0.5}
    assert asked == [((1, 1), [3], ("folds of", [3])), ((1, 2), [3], ("folds of", [3]))]


def test_the_baseline_stage_fits_pca_trains_the_heads_recipe_and_scores_it(monkeypatch, tmp_path):
    import types  # noqa: PLC0415

    from nanoae.fashion import pipeline  # noqa: PLC0415

    calls = {}

    def record(name, result):
        def recorder(*args, **kw):
            calls[name] = (args, kw)
            return result
        return recorder

    pca = types.SimpleNamespace(code_size=6)
    monkeypatch.setattr(pipeline, "fit_pca", record("fit_pca", pca))
    monkeypatch.setattr(pipeline, "train_frozen_classifier", record("train", ("clf", {"best_epoch": 4}, None)))
    monkeypatch.setattr(pipeline, "pca_reconstruction_metrics", record("recon", {"pca_test_mse": 0.5}))
    monkeypatch.setattr(pipeline, "knn_baselines", record("knn", {"pca_knn_accuracy": 0.7}))
    monkeypatch.setattr(pipeline, "score_classifier", record("score", {"clf_pca_test_accuracy": 0.8}))
    monkeypatch.setattr(pipeline, "_plot_pca_reconstructions", record("plot", None))
    clock = iter([5.0, 8.5])
    monkeypatch.setattr(pipeline, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    splits = types.SimpleNamespace(x_train="train", x_test=numpy.zeros((40, 4)), y_test="y_test")
    settings = Settings(seed=9, tsne_points=30, test_mirror=False)
    metrics = {}
    ae = types.SimpleNamespace(code_size=6)
    pipeline.baseline_stage(ae, splits, settings, metrics, tmp_path)
    assert calls["fit_pca"] == (("train", 6), {"seed": 9})
    assert calls["train"] == ((pca, splits, settings), {"desc": "head on PCA"})
    assert calls["recon"] == ((pca, splits.x_test), {})
    assert calls["knn"] == ((pca, splits.x_test, "y_test", 30), {})
    assert calls["score"] == (("clf", splits, "clf_pca"), {"test_mirror": False})
    assert calls["plot"] == ((ae, pca, splits, metrics, tmp_path), {})
    assert metrics == {"pca_components": 6, "pca_test_mse": 0.5, "pca_knn_accuracy": 0.7,
                       "clf_pca_test_accuracy": 0.8, "clf_pca_best_epoch": 4, "baseline_seconds": 3.5}
    calls.clear()
    clock = iter([0.0])
    pipeline.baseline_stage(ae, splits, settings, metrics := {}, tmp_path, root=False)
    assert set(calls) == {"fit_pca", "train"} and metrics == {}  # other ranks only train


def test_the_pca_figure_puts_both_reconstructions_under_the_test_images(monkeypatch, tmp_path):
    import types  # noqa: PLC0415

    from nanoae.fashion import pipeline, plots  # noqa: PLC0415
    from nanoae.fashion.data import CLASS_NAMES  # noqa: PLC0415
    from nanoae.fashion.pca import PCAAutoencoder, reconstruct_clipped  # noqa: PLC0415

    drawn = []
    monkeypatch.setattr(plots, "plot_reconstruction_rows", lambda *a, **kw: drawn.append((a, kw)))
    x_test = numpy.random.default_rng(12).integers(0, 256, (20, 4), dtype=numpy.uint8)
    splits = types.SimpleNamespace(x_test=x_test, y_test=numpy.r_[numpy.arange(10)[::-1], numpy.arange(10)])
    ae = Autoencoder((4, 3, 2), code_activation="linear", seed=0)
    pca = PCAAutoencoder(numpy.eye(4)[:2] * 1.0, numpy.full(4, 0.5))
    pipeline._plot_pca_reconstructions(ae, pca, splits, {"ae_test_mse": 0.012345, "pca_test_mse": 0.054321},
                                       tmp_path)
    (images, rows, labels, names, path), kw = drawn[0]
    assert images.tolist() == x_test[9::-1].tolist() and labels.tolist() == list(range(10))  # one of each class
    assert list(rows) == ["autoencoder", "PCA (2)"] and names == CLASS_NAMES
    numpy.testing.assert_allclose(rows["autoencoder"], nn.backend.to_numpy(ae.reconstruct((images / 255).astype(numpy.float32))), rtol=1e-5)
    numpy.testing.assert_array_equal(rows["PCA (2)"], reconstruct_clipped(pca, images))
    assert path == tmp_path / "pca_reconstructions.png" and kw == {
        "title": "Test images, then 2 numbers each: the autoencoder (MSE 0.0123) against PCA (MSE 0.0543)"}


def test_the_autoencoder_stages_score_by_default(monkeypatch, tmp_path):
    import types  # noqa: PLC0415

    from nanoae.fashion import pipeline  # noqa: PLC0415

    monkeypatch.setattr(pipeline, "train_autoencoder", lambda x, s, **kw: (_AE([784, 16, 8], "linear"),
                                                                           {"seconds": [2.0]}))
    monkeypatch.setattr(pipeline, "autoencoder_metrics", lambda ae, x, prefix="ae": {f"{prefix}_test_bce": 0.5})
    metrics, lines = {}, []
    splits = types.SimpleNamespace(x_train=None, x_val=None, x_test=None)
    pipeline._autoencoder_stages(tmp_path, Settings(reference=False), splits, pipeline._Stages(1, lines.append),
                                 metrics, {})
    assert metrics == {"ae_test_bce": 0.5, "ae_seconds_per_epoch": 2.0}  # root by default: it scores


def test_pca_is_scored_in_batches_of_2048_by_default():
    from nanoae.fashion.pca import PCAAutoencoder, pca_reconstruction_metrics  # noqa: PLC0415

    line = PCAAutoencoder([[0.6, 0.8]], [0.5, 0.5])
    images = numpy.random.default_rng(1).integers(0, 256, (2049, 2), dtype=numpy.uint8)
    default = pca_reconstruction_metrics(line, images)
    assert default == pca_reconstruction_metrics(line, images, batch_size=2048)
    # float32 sums per batch: one batch of 2049 rounds differently, so the figures show the batching
    assert default != pca_reconstruction_metrics(line, images, batch_size=2049)

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
        "2/6 autoencoder (linear code, 0.1 of the pixels masked)",
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
    stages = ["reference autoencoder (ReLU code)", "autoencoder (linear code)", "classifier on frozen codes",
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
        "autoencoder (linear code)": "train loss (on inputs with 25% of pixels masked)"}
    assert pipeline._train_loss_labels(Settings(ae_mask=0.0, finetune_flip=False, finetune_mask=0.0,
                                                code_activation="relu")) == {
        "encoder + head fine-tuned": "train loss"}
    assert pipeline._train_loss_labels(Settings(ae_mask=0.0, finetune_flip=True, finetune_mask=0.0))[
        "encoder + head fine-tuned"] == "train loss (flipped and masked inputs)"
    assert pipeline._train_loss_labels(Settings(ae_mask=0.0, finetune_flip=False, finetune_mask=0.1))[
        "encoder + head fine-tuned"] == "train loss (flipped and masked inputs)"
    assert pipeline._one_per_class(numpy.array([3, 1, 0, 1, 2, 4, 5, 6, 7, 8, 9, 0])).tolist() == [
        2, 1, 4, 0, 5, 6, 7, 8, 9, 10]
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
    assert kw == {"title": "t-SNE of 12 test codes (2-d)",
                  "subtitle": "trustworthiness (k=5) 0.9877, 5-NN accuracy on the map 81.2 %"}
    pipeline._tsne_stage(ae, "codes", splits, Settings(tsne_points=100), metrics, tmp_path, logged.append)
    assert mapped[-1][2]["points"] == 20  # no more than the test images
    pipeline._plot_reconstructions(ae, splits, metrics, tmp_path)
    name, (originals, recon, labels, names, path), kw = drawn[-1]
    assert name == "plot_reconstructions" and labels.tolist() == list(range(10))
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

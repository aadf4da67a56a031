"""report.md and the README's results table, from a run's metrics."""

import json

import numpy

from nanoae.fashion.pipeline import Settings
from nanoae.fashion.report import readme_table, results_table

# The figures of the README's table before this change (a default run, 2026-11-25).
README_RUN = {
    "settings": Settings().as_dict(),
    "ref_ae_test_bce": 0.28281, "ref_ae_test_mse": 0.013012, "ref_ae_dead_code_units": 5,
    "ae_test_bce": 0.27118, "ae_test_mse": 0.0092, "ae_dead_code_units": 0,
    "clf_frozen_test_accuracy": 0.8891, "clf_finetune_test_accuracy": 0.9014,
    "tsne_points": 10000, "tsne_perplexity": 20.0, "tsne_trustworthiness": 0.99821,
    "tsne_knn_accuracy": 0.8073, "codes_knn_accuracy": 0.8263,
}


def test_readme_table_is_generated_from_the_metrics():
    lines = readme_table(README_RUN).splitlines()
    assert lines[0] == "| result | nanoae | target (PyTorch reference, same work) |"
    assert lines[2] == ("| reference autoencoder 784-128-64-32 (ReLU code, Glorot-uniform init), 20 epochs at lr 1e-3, "
                        "test BCE | 0.2828 | <= 0.2880 (PyTorch 0.2878 / 0.2884) |")
    assert "| ... test MSE per pixel / dead code units of 32 | 0.0130 / 5 |" in lines[3]
    assert lines[4].startswith("| default autoencoder 784-512-128-32 (unit code, denoising), "
                               "test BCE | 0.2712 |")
    assert "| encoder + head fine-tuned end to end, test accuracy | 90.14 % |" in lines[7]
    assert lines[8].startswith("| t-SNE of the 10,000 test codes (perplexity 20): trustworthiness "
                               "(k=5) | 0.9982 |")
    assert len(lines) == 11
    without_reference = {k: v for k, v in README_RUN.items() if not k.startswith("ref_")}
    assert len(readme_table(without_reference).splitlines()) == 9  # rows not computed are left out


def test_a_quick_runs_table_says_its_targets_are_the_full_runs():
    quick = {**README_RUN, "settings": Settings.quick().as_dict()}
    assert results_table(quick).splitlines()[0] == "| result | value | target of the full run |"
    assert results_table(README_RUN).splitlines()[0] == "| result | value | target |"


def test_the_report_shows_the_diagnostics_with_their_computed_sentences(tmp_path):
    from nanoae.fashion.report import write_report  # noqa: PLC0415

    metrics = json.loads(json.dumps(README_RUN))
    metrics.update(backend="numpy", seed=0, total_seconds=1.0, versions={"numpy": "2"},
                   settings=Settings().as_dict(), tsne_points=100,
                   ref_ae_diagnostics=["After 20 epochs, dead units: code 4 (the first in epoch 2)."])
    text = write_report(tmp_path, metrics, numpy.eye(10, dtype=int)).read_text()
    assert "![diagnostics](diagnostics.png)" in text
    assert "code 4 (the first in epoch 2)" in text
    del metrics["ref_ae_diagnostics"]
    assert "diagnostics" not in write_report(tmp_path, metrics, numpy.eye(10, dtype=int)).read_text()


# The baselines of a run: the autoencoder's figures are README_RUN's, PCA's beside them.
BASELINES = {"pca_components": 32, "pca_test_bce": 0.2955, "pca_test_mse": 0.0151,
             "pca_knn_accuracy": 0.8170, "pixels_knn_accuracy": 0.8110, "clf_pca_test_accuracy": 0.8650}


def test_the_baseline_sentence_names_every_win_and_its_margin():
    from nanoae.fashion.report import baseline_sentence  # noqa: PLC0415

    sentence = baseline_sentence({**README_RUN, **BASELINES})
    assert sentence == (
        "The autoencoder's 32 numbers beat PCA's on every figure: test BCE (0.2712 against 0.2955, "
        "8.2 % lower), test MSE per pixel (0.0092 against 0.0151, 39.1 % lower), 5-NN accuracy "
        "(82.63 % against 81.70 %, 0.93 points higher) and the head's test accuracy (88.91 % against "
        "86.50 %, 2.41 points higher).")


def test_the_baseline_sentence_says_where_the_autoencoder_does_not_win():
    from nanoae.fashion.report import baseline_sentence  # noqa: PLC0415

    # a quick run's autoencoder, three epochs: PCA reconstructs and separates better
    mixed = {**README_RUN, **BASELINES, "ae_test_bce": 0.2972, "ae_test_mse": 0.0178,
             "codes_knn_accuracy": 0.7745, "pca_knn_accuracy": 0.7915, "clf_pca_test_accuracy": 0.8791}
    assert baseline_sentence(mixed) == (
        "The autoencoder's 32 numbers beat PCA's on the head's test accuracy (88.91 % against "
        "87.91 %, 1.00 point higher), but not on test BCE (0.2972 against 0.2955, 0.6 % higher), "
        "test MSE per pixel (0.0178 against 0.0151, 17.9 % higher) or 5-NN accuracy (77.45 % "
        "against 79.15 %, 1.70 points lower).")
    tie = {**mixed, "clf_frozen_test_accuracy": 0.8791}  # a tie is not a win
    assert baseline_sentence(tie).startswith("The autoencoder's 32 numbers beat PCA's on no figure: "
                                             "test BCE (0.2972 against 0.2955")


def test_the_report_and_the_readme_show_the_baselines_beside_the_codes(tmp_path):
    from nanoae.fashion.report import baseline_table, write_report  # noqa: PLC0415

    metrics = {**README_RUN, **BASELINES}
    table = baseline_table(metrics).splitlines()
    assert table[0] == "| | autoencoder codes (32) | PCA (32 components) | raw pixels (784) |"
    assert table[4] == "| 5-NN accuracy (5-fold, on the t-SNE's test images) | 82.63 % | 81.70 % | 81.10 % |"
    assert table[5] == "| the same head on the frozen features, test accuracy | 88.91 % | 86.50 % | - |"
    readme = readme_table(metrics)
    assert ("| baseline: PCA with 32 components (fit on the training split), test BCE / MSE per pixel "
            "| 0.2955 / 0.0151 |") in readme
    assert "| ... 5-NN accuracy on its components / on the raw pixels (784), the map's test images " \
           "| 81.70 % / 81.10 % |" in readme
    assert "baseline" not in readme_table(README_RUN)  # a run without them: no rows
    metrics.update(backend="numpy", seed=0, total_seconds=200.0, baseline_seconds=20.0,
                   versions={"numpy": "2"})
    text = write_report(tmp_path, metrics, numpy.eye(10, dtype=int)).read_text()
    assert "## Against PCA and the raw pixels" in text and "beat PCA's on every figure" in text
    assert "![PCA against the autoencoder](pca_reconstructions.png)" in text
    assert "Computing them took 20 s of this run's 200 s (10 %)." in text


def test_the_reports_header_names_the_label_smoothing_and_dropout_of_each_classifier(tmp_path):
    from nanoae.fashion.report import write_report  # noqa: PLC0415

    metrics = json.loads(json.dumps(README_RUN))
    metrics.update(backend="numpy", seed=0, total_seconds=1.0, versions={"numpy": "2"})
    metrics["settings"].update(head_epochs=15, head_label_smoothing=0.1, head_dropout=0.2,
                               finetune_epochs=20, finetune_lr=1e-3, finetune_label_smoothing=0.05)
    text = write_report(tmp_path, metrics, numpy.eye(10, dtype=int)).read_text()
    assert "for 15 epochs (label smoothing 0.1, dropout 0.2); fine-tuning\n20 epochs at lr 0.001 " \
           "(label smoothing 0.05);" in text
    metrics["settings"].update(head_label_smoothing=0.0, head_dropout=0.0, finetune_label_smoothing=0.0)
    text = write_report(tmp_path, metrics, numpy.eye(10, dtype=int)).read_text()
    assert "for 15 epochs; fine-tuning\n20 epochs at lr 0.001;" in text


def _full_run():
    settings = Settings().as_dict()
    settings.update(test_mirror=True, select_on="val_accuracy")
    return {**README_RUN, **BASELINES, "settings": settings, "backend": "numpy", "seed": 3,
            "total_seconds": 245.4, "versions": {"numpy": "2.4", "python": "3.11"},
            "clf_frozen_test_accuracy_single_view": 0.8812, "clf_frozen_test_loss": 0.31234,
            "clf_finetune_test_accuracy_single_view": 0.9, "clf_finetune_test_loss": 0.28,
            "ae_seconds_per_epoch": 123.4,
            "clf_frozen_val_accuracy_single_view": 0.875, "clf_frozen_val_accuracy_mirrored": 0.8875,
            "clf_frozen_mirror": True,
            "clf_finetune_val_accuracy_single_view": 0.91, "clf_finetune_val_accuracy_mirrored": 0.905,
            "clf_finetune_mirror": False}


def test_the_reports_computed_lines(tmp_path):
    from nanoae.fashion.report import write_report  # noqa: PLC0415

    metrics = _full_run()
    cm = numpy.diag([90, 80, 70, 60, 50, 95, 40, 99, 98, 97])
    cm[6, 0] = 60  # shirt: 40 of 100 right
    cm[4, 2] = 50  # coat: 50 of 100
    cm[3, 0] = 40  # dress: 60 of 100
    text = write_report(tmp_path, metrics, cm).read_text()
    lines = text.splitlines()
    assert lines[:2] == ["# nanoae demo report", ""]
    assert lines[2] == f"Backend **numpy**, seed 3, batch {metrics['settings']['batch_size']};"
    s = metrics["settings"]
    assert lines[3] == "autoencoder 784-512-128-32-128-512-784 (unit code),"
    assert lines[4] == f"{s['ae_epochs']} epochs, lr {s['ae_lr']:g} cosine, {s['ae_mask']:g} of the input pixels masked;"
    assert lines[5] == (f"head {'-'.join(map(str, s['head_hidden']))} for {s['head_epochs']} epochs "
                        f"(label smoothing {s['head_label_smoothing']:g}); fine-tuning")
    assert lines[6] == (f"{s['finetune_epochs']} epochs at lr {s['finetune_lr']:g} "
                        f"(label smoothing {s['finetune_label_smoothing']:g}); total 245 s.")
    assert lines[7] == "Versions: numpy 2.4, python 3.11."
    assert "| head on frozen codes, test cross-entropy | 0.3123 |  |" in lines
    assert "| ... the same, single view (no mirror image) | 88.12 % |  |" in lines
    assert "| reference AE, dead code units (of 32) | 5 | (PyTorch: 6-7) |" in lines
    assert "| autoencoder seconds per epoch (median) | 123 |  |" in lines  # >= 100: no decimals
    assert "| t-SNE trustworthiness (k=5) | 0.9982 | >= 0.998 |" in lines
    assert "Each classifier keeps the epoch with the best val accuracy" in lines
    assert ("- head on frozen codes: validation accuracy 87.50 % on the image alone, 88.75 % averaged "
            "with its mirror image; so its answer is the mean over the two.") in lines
    assert ("- fine-tuned classifier: validation accuracy 91.00 % on the image alone, 90.50 % averaged "
            "with its mirror image; so it answers from the image alone.") in lines
    assert "Each classifier may answer with the mean of its class probabilities on the image" in lines
    assert "The hardest classes: Shirt (40.0 %), Coat (50.0 %), Dress (60.0 %)." in lines
    assert "Each point is one of the first 10,000 test images, placed so that" in lines
    assert "quick" not in text and "The t-SNE rows are on" not in text
    assert "Computing them took" not in text  # no baseline_seconds in this run
    assert ("The autoencoder's 32 numbers beat PCA's on every figure: test BCE (0.2712 against 0.2955, "
            "8.2 % lower), test MSE per pixel (0.0092 against 0.0151, 39.1 % lower), 5-NN accuracy "
            "(82.63 % against 81.70 %, 0.93 points higher) and the head's test accuracy (88.91 % against "
            "86.50 %, 2.41 points higher).") in lines
    assert "PCA with 32 components, as many as the code, fit on the same training split; its BCE is on" in lines
    assert "The same test images (top), reconstructed from 32 numbers each by the autoencoder and by PCA." in lines


def test_a_quick_run_and_a_smaller_map_are_said_and_the_mirror_note_left_out(tmp_path):
    from nanoae.fashion.report import write_report  # noqa: PLC0415

    metrics = _full_run()
    metrics["settings"] = {**Settings.quick().as_dict(), "test_mirror": False}
    metrics["tsne_points"] = 2000
    del metrics["settings"]["select_on"]
    text = write_report(tmp_path, metrics, numpy.eye(10, dtype=int)).read_text()
    lines = text.splitlines()
    assert ("This is a `--quick` run: the targets are those of the full run (`nanoae demo`), which a "
            "quick run is not expected to meet.") in lines
    assert "The t-SNE rows are on 2000 test codes (the full run maps 10,000)." in lines
    assert "Each classifier keeps the epoch with the best val loss" in lines
    assert "mirror image" not in text.split("## Reconstructions")[0].split("Each classifier keeps")[1]
    assert "Each point is one of the first 2,000 test images, placed so that" in lines
    metrics["settings"]["test_mirror"] = True
    for key in ("clf_frozen_val_accuracy_mirrored", "clf_finetune_val_accuracy_mirrored"):
        del metrics[key]
    text = write_report(tmp_path, metrics, numpy.eye(10, dtype=int)).read_text()
    assert "validation accuracy" not in text


def test_the_figures_format_and_the_margins():
    from nanoae.fashion.report import _fmt, _listed, _margin, _mirrored_widths  # noqa: PLC0415

    assert _fmt("x_accuracy", 0.12345) == "12.35 %" and _fmt("x", None) == "-"
    assert _fmt("loss", 0.123456) == "0.1235" and _fmt("secs", 99.99) == "99.9900"
    assert _fmt("secs", 100.0) == "100" and _fmt("secs", 1234.6) == "1235" and _fmt("units", 7) == "7"
    assert _margin("x_accuracy", 0.90, 0.89) == "1.00 point higher"
    assert _margin("x_accuracy", 0.88, 0.90) == "2.00 points lower"
    assert _margin("x_accuracy", 0.895, 0.9) == "0.50 points lower"
    assert _margin("bce", 0.25, 0.5) == "50.0 % lower" and _margin("bce", 0.6, 0.5) == "20.0 % higher"
    assert _listed(["a"]) == "a" and _listed(["a", "b"]) == "a and b"
    assert _listed(["a", "b", "c"], "or") == "a, b or c"
    assert _mirrored_widths({"ae_widths": [784, 64, 8]}) == [784, 64, 8, 64, 784]


def test_the_baseline_sentence_when_it_wins_nothing_and_when_the_components_are_unknown():
    from nanoae.fashion.report import baseline_sentence, baseline_table  # noqa: PLC0415

    metrics = {"ae_test_bce": 0.3, "pca_test_bce": 0.3, "codes_knn_accuracy": 0.8, "pca_knn_accuracy": 0.81}
    assert baseline_sentence(metrics) == (
        "The autoencoder's numbers beat PCA's on no figure: test BCE (0.3000 against 0.3000, 0.0 % "
        "higher) and 5-NN accuracy (80.00 % against 81.00 %, 1.00 point lower).")
    assert baseline_table(metrics).splitlines() == [
        "| | autoencoder codes (k) | PCA (k components) | raw pixels (784) |",
        "| --- | ---: | ---: | ---: |",
        "| test BCE | 0.3000 | 0.3000 | - |",
        "| 5-NN accuracy (5-fold, on the t-SNE's test images) | 80.00 % | 81.00 % | - |"]
    assert baseline_table({"ae_test_bce": 0.3}).count("\n") == 1  # no PCA figure: no row


def test_the_readme_table_without_the_maps_or_pcas_size():
    metrics = {"settings": Settings().as_dict(), "tsne_trustworthiness": 0.9, "pca_test_bce": 0.3,
               "pca_test_mse": 0.02}
    assert readme_table(metrics).splitlines() == [
        "| result | nanoae | target (PyTorch reference, same work) |", "| --- | ---: | --- |",
        "| t-SNE of the 0 test codes (perplexity 0): trustworthiness (k=5) | 0.9000 | >= 0.998 (PyTorch codes "
        "0.9989) |",
        "| baseline: PCA with 0 components (fit on the training split), test BCE / MSE per pixel | 0.3000 / "
        "0.0200 | above the default autoencoder's |"]

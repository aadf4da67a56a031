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
    assert lines[4].startswith("| default autoencoder 784-256-128-32 (linear code, denoising), "
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

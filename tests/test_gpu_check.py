"""benchmarks/gpu_check.sh and its helper: the parts that can be checked without a GPU.

The script itself needs a GPU; here it must refuse, in one line with exit 2, and
the helper's verdicts are checked on fabricated metrics and benchmark files.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nanoae import backend

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPT, HELPER = BENCH / "gpu_check.sh", BENCH / "gpu_check.py"
needs_bash = pytest.mark.skipif(shutil.which("bash") is None or os.name != "posix",
                                reason="gpu_check.sh is a bash script")


def run_script(*args, **env):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable, **env})


@needs_bash
def test_without_a_gpu_the_script_fails_in_one_line_with_exit_2(tmp_path):
    if backend.cupy_available():
        pytest.skip("CuPy and a GPU work here: the script would run for 8 minutes")
    out = tmp_path / "out"
    r = run_script(str(out), NANOAE_DATA_DIR=str(tmp_path))
    assert r.returncode == 2
    lines = (r.stdout + r.stderr).splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no usable GPU: "), lines
    assert backend.cupy_unavailable_reason() in lines[0]  # the reason CuPy gave, not a guess
    assert not out.exists()  # nothing written


@needs_bash
def test_the_usage_says_how_to_prepare_the_data():
    r = run_script()
    assert r.returncode == 2 and r.stdout == ""
    for words in ("NANOAE_DATA_DIR", "mkdir -p .data/fashion-mnist", "OUT_DIR", "8 minutes"):
        assert words in r.stderr
    assert "/.data/" in (BENCH.parent / ".gitignore").read_text().split()


def helper(*args):
    return subprocess.run([sys.executable, str(HELPER), *args], capture_output=True, text=True,
                          timeout=60)


METRICS = {"ae_test_bce": 0.2800, "clf_frozen_test_accuracy": 0.8400,
           "clf_finetune_test_accuracy": 0.8800, "tsne_trustworthiness": 0.99}


def write_metrics(tmp_path, numpy_changes=(), cupy_changes=()):
    paths = []
    for name, changes in (("numpy", numpy_changes), ("cupy", cupy_changes)):
        metrics = {**METRICS, "backend": name, **dict(changes)}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({k: v for k, v in metrics.items() if v is not None}))
        paths.append(str(path))
    return paths


def test_compare_accepts_runs_within_the_tolerances(tmp_path):
    r = helper("compare", *write_metrics(tmp_path, cupy_changes={
        "ae_test_bce": 0.2800 * 1.009, "clf_frozen_test_accuracy": 0.8490,
        "clf_finetune_test_accuracy": 0.8710, "tsne_trustworthiness": 0.5}.items()))
    assert r.returncode == 0, r.stdout
    assert r.stdout.splitlines()[-1] == "the CuPy run agrees with the NumPy run"
    assert "ae_test_bce: numpy 0.28000, cupy 0.28252: 0.90 % apart (limit 1 %)" in r.stdout


@pytest.mark.parametrize("cupy_changes, culprit", [
    ({"ae_test_bce": 0.2800 * 1.011}, "ae_test_bce"),  # 1.1 % relative
    ({"ae_test_bce": 0.2800 * 0.989}, "ae_test_bce"),
    ({"clf_frozen_test_accuracy": 0.8289}, "clf_frozen_test_accuracy"),  # 1.11 points
    ({"clf_finetune_test_accuracy": 0.8920}, "clf_finetune_test_accuracy"),
    ({"clf_finetune_test_accuracy": None}, "clf_finetune_test_accuracy"),  # missing
    ({"backend": "numpy"}, "backend"),  # a "cupy" run that fell back to NumPy
])
def test_compare_fails_naming_what_disagrees(tmp_path, cupy_changes, culprit):
    r = helper("compare", *write_metrics(tmp_path, cupy_changes=cupy_changes.items()))
    assert r.returncode == 1, r.stdout
    failed = [line for line in r.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and failed[0].startswith(f"FAILED  {culprit}:")
    assert r.stdout.splitlines()[-1] == f"the CuPy run disagrees with the NumPy run: {culprit}"


def test_compare_says_which_file_it_cannot_read(tmp_path):
    numpy_path, _ = write_metrics(tmp_path)
    r = helper("compare", numpy_path, str(tmp_path / "missing.json"))
    assert r.returncode == 2 and r.stdout.startswith(f"cannot read {tmp_path / 'missing.json'}")


def bench_json(tmp_path, nanoae):
    row = {"median_s": 0.5, "gpu_mib": 300.0}
    doc = {"settings": {"batch": 256}, "results": {w: {"nanoae": nanoae, "torch-plain": row,
                                                       "torch-tuned": {"skipped": "no fused Adam"}}
                                                   for w in ("ae", "head")}}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_bench_check_reports_ratios_and_memory(tmp_path):
    r = helper("bench", bench_json(tmp_path, {"median_s": 0.4, "gpu_mib": 120.0}))
    assert r.returncode == 0, r.stdout
    assert r.stdout.splitlines()[0] == (
        "ok      ae, batch 256: nanoae 0.4000 s/epoch; nanoae/torch-plain 0.80; "
        "torch-tuned skipped (no fused Adam); GPU MiB: nanoae 120, torch-plain 300")


def test_bench_check_fails_when_nanoae_did_not_run(tmp_path):
    r = helper("bench", bench_json(tmp_path, {"skipped": "failed (exit 1): CUDARuntimeError"}))
    assert r.returncode == 1
    assert "FAILED  ae, batch 256: nanoae did not run: failed (exit 1): CUDARuntimeError" in r.stdout


def test_every_cupy_variant_is_marked_gpu():
    """gpu_check.sh runs `pytest -m gpu`: no CuPy parametrisation may lack the mark."""
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not gpu",
                        "-p", "no:cacheprovider", str(Path(__file__).parent)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]
    ids = [line.partition("[")[2].rstrip("]") for line in r.stdout.splitlines() if "::" in line]
    assert not [i for i in ids if "cupy" in i.split("-")]  # e.g. test_x[cupy], test_x[cupy-numpy]

"""The tutorial scripts in examples/ run end to end, tiny, on fake data, and write their figures.

Each script runs in a subprocess, as a reader would run it, from a temporary
working directory (so it cannot rely on being started from the repository root),
with its figures sent into tmp_path (NANOAE_EXAMPLE_OUT) and the user cache
redirected there too, so nothing is written into the repository or ~/.cache.
"""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers.idx_helpers import make_fake_fashion

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fake-fashion")
    make_fake_fashion(directory, n_train=300, n_test=100)
    return directory


def run_example(name, data_dir, tmp_path, python_args=(), **env):
    out = tmp_path / "out"
    # A reader's own NANOAE_EXAMPLE_* settings must not leak into the test.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("NANOAE_EXAMPLE_")}
    full_env = {
        **inherited,
        "MPLBACKEND": "Agg",
        "NANOAE_BACKEND": "numpy",
        "NANOAE_DATA_DIR": str(data_dir),
        "NANOAE_EXAMPLE_NO_VERIFY": "1",  # fake files cannot match the official checksums
        "NANOAE_EXAMPLE_EPOCHS": "1",
        "NANOAE_EXAMPLE_OUT": str(out),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PYTHONWARNINGS": "error::RuntimeWarning",  # as in the test suite: overflow is a bug
        **env,
    }
    proc = subprocess.run([sys.executable, *python_args, str(EXAMPLES / name)], cwd=tmp_path,
                          env=full_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (f"{name} exited with {proc.returncode}:\n"
                                  f"{proc.stdout}\n{proc.stderr}")
    return proc.stdout, out


def assert_pngs(out, *names):
    for name in names:
        path = out / name
        found = sorted(p.name for p in out.iterdir()) if out.is_dir() else "no output folder"
        assert path.is_file(), f"{path} was not written; found {found}"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"


def test_01_autoencoder_trains_by_hand_and_plots(fake_data, tmp_path, backend_name):
    stdout, out = run_example("01_autoencoder.py", fake_data, tmp_path, NANOAE_EXAMPLE_LIMIT="200",
                              NANOAE_EXAMPLE_EPOCHS="2", NANOAE_BACKEND=backend_name)
    assert "data: 200 training images, 100 test images" in stdout  # the LIMIT knob is honoured
    assert "epoch 2/2" in stdout  # and the EPOCHS knob
    assert_pngs(out, "reconstructions.png")


# Runs an example with every value BinaryCrossEntropy returns counting its float() calls:
# each is a host read, which on a GPU waits for the device (a sync).
COUNT_LOSS_READS = textwrap.dedent("""
    import os, runpy, sys
    import numpy
    import nanoae as nn

    class Counted(numpy.ndarray):
        reads = 0

        def __float__(self):
            Counted.reads += 1
            return float(self.view(numpy.ndarray))

    call = nn.BinaryCrossEntropy.__call__
    # NumPy's mean gives a scalar: make it a 0-d array of the counting kind
    nn.BinaryCrossEntropy.__call__ = lambda *a, **k: numpy.asarray(call(*a, **k)).view(Counted)
    path = sys.argv[1]
    sys.path.insert(0, os.path.dirname(path))  # as when the script runs itself: _knobs imports
    sys.argv = [path]
    runpy.run_path(path, run_name="__main__")
    print("host reads of the loss:", Counted.reads)
""")


def test_01_reads_the_loss_once_per_epoch_not_once_per_step(fake_data, tmp_path):
    # 300 images at batch 256 are 2 steps per epoch; per epoch the script may read the
    # training sum once and the test loss once, never each step's loss
    stdout, _ = run_example("01_autoencoder.py", fake_data, tmp_path, ("-c", COUNT_LOSS_READS),
                            NANOAE_EXAMPLE_EPOCHS="3")
    assert "epoch 3/3" in stdout
    assert stdout.strip().splitlines()[-1] == "host reads of the loss: 6"


def test_03_classify_codes(fake_data, tmp_path, backend_name):
    stdout, out = run_example("03_classify_codes.py", fake_data, tmp_path,
                              NANOAE_BACKEND=backend_name)
    assert "test accuracy" in stdout and "on 100 test images" in stdout
    assert "the one with the lowest validation loss" in stdout  # says how it chose the epoch
    assert_pngs(out, "confusion.png", "curves.png")


def test_04_tsne_map(fake_data, tmp_path, backend_name):
    stdout, out = run_example("04_tsne_map.py", fake_data, tmp_path,
                              NANOAE_BACKEND=backend_name)
    assert "trustworthiness (k=5)" in stdout and "t-SNE of 100 test codes" in stdout
    assert_pngs(out, "tsne.png")


def test_02_gradcheck_by_hand(fake_data, tmp_path, backend_name):
    stdout, out = run_example("02_gradcheck_by_hand.py", fake_data, tmp_path,
                              NANOAE_BACKEND=backend_name)
    assert "gradcheck passed" in stdout
    assert "caught the forgotten 1/N: gradcheck FAILED" in stdout
    assert_pngs(out, "gradcheck_step_size.png")


def test_06_your_own_layer(fake_data, tmp_path, backend_name):
    stdout, out = run_example("06_your_own_layer.py", fake_data, tmp_path,
                              NANOAE_EXAMPLE_LIMIT="200", NANOAE_EXAMPLE_EPOCHS="2",
                              NANOAE_BACKEND=backend_name)
    assert "gradcheck passed" in stdout
    # the planted mistake is caught, and the element, both numbers and the array are named
    assert ("caught the forgotten slope: gradcheck FAILED: 20 elements, h=1e-05, rtol=1e-06, "
            "atol=1e-08; worst: input[2, 2] analytic -0 numerical -0.2325030") in stdout
    assert "data: 200 training images, 100 test images" in stdout
    for name in ("ReLU", "LeakyReLU(0.1)"):  # two epochs each: two counts per model
        assert re.search(rf"^{re.escape(name)}: code units <= 0 on every training image, per "
                         rf"epoch: \[\d+, \d+\]; on every test image after training: \d+ of 32$",
                         stdout, re.MULTILINE), stdout
    assert_pngs(out, "dead_code_units.png")


def test_headers_say_how_to_run_them_with_the_readmes_venv():
    for script in sorted(EXAMPLES.glob("0*.py")):
        assert f"Run:  .venv/bin/python examples/{script.name}" in script.read_text(), script.name


def test_outputs_are_git_ignored():
    # examples/out/ must never be committed; the pattern lives beside the scripts.
    assert "/out/" in (EXAMPLES / ".gitignore").read_text().split()


def test_05_data_parallel_runs_alone_as_one_rank(fake_data, tmp_path):
    # Without mpiexec the same loop runs on one process (size 1, no MPI needed);
    # tests/test_communicator.py runs it under mpiexec -n 2.
    stdout, _ = run_example("05_data_parallel.py", fake_data, tmp_path, NANOAE_EXAMPLE_LIMIT="200")
    assert "1 rank(s), 200 training images, global batch 256 = 1 x 256 per rank" in stdout
    assert "epoch 1/1: train BCE" in stdout


def test_07_workbook(fake_data, tmp_path):
    stdout, out = run_example("07_workbook.py", fake_data, tmp_path)
    relu = next(line for line in stdout.splitlines() if line.startswith("ReLU.backward"))
    assert relu.split()[-2] == "passes" and "1 of 10 exercises pass, 0 fail, 9 to do" in stdout
    assert "all 10 exercises pass" in stdout and "they agree" in stdout
    assert "one epoch on 300 training images" in stdout
    assert (out / "my-core" / "layers.py").is_file()


def test_08_sklearn_pipeline_compares_the_autoencoder_with_pca(fake_data, tmp_path, backend_name):
    stdout, _ = run_example("08_sklearn_pipeline.py", fake_data, tmp_path, NANOAE_BACKEND=backend_name)
    assert "data: 300 training images, 784 pixels each" in stdout
    assert "| pipeline | accuracy (3-fold) | +/- | seconds |" in stdout
    assert re.search(r"^\| autoencoder \(32\) \+ logistic regression \| \d+\.\d\d % \|", stdout, re.MULTILINE)
    assert re.search(r"^\| PCA \(32\) \+ logistic regression \| \d+\.\d\d % \|", stdout, re.MULTILINE)

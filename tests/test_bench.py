"""benchmarks/bench.py: a real (tiny) run, to keep the script and its options working.

Timings are never asserted: they belong to the benchmark's own output.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"
REAL_DATA = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.mark.slow
@pytest.mark.skipif(not REAL_DATA.exists(), reason="needs the installed Fashion-MNIST "
                    "(apt-get install dataset-fashion-mnist)")
def test_threads_option_runs_each_contender_with_each_thread_count(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, str(BENCH), "--quick", "--only", "ae,floor", "--threads", "1,2",
                        "--epochs-per-run", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "s/epoch by thread count" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["settings"]["threads"] == [1, 2]
    for threads in (1, 2):
        runs = doc["results"][f"{threads}_threads"]["ae"]["floor"]["runs"]
        assert [run["blas_threads"] for run in runs] == [threads]  # the child really ran with it


def test_threads_option_rejects_bad_counts_and_workers():
    for bad in (["--threads", "0"], ["--threads", "two"], ["--threads", "1", "--workers", "2"]):
        r = subprocess.run([sys.executable, str(BENCH), *bad], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "--threads" in r.stderr, (bad, r.stderr)

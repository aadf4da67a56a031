"""benchmarks/bench.py: a real (tiny) run, to keep the script and its options working.

Timings are never asserted: they belong to the benchmark's own output.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"
STEP_TERMS = BENCH.parent / "step_terms.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
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


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(not REAL_DATA.exists(), reason="needs the installed Fashion-MNIST "
                    "(apt-get install dataset-fashion-mnist)")
@pytest.mark.skipif(not MPIEXEC.exists(), reason="needs mpiexec beside this Python (pip install -e '.[mpi]')")
def test_workers_run_reports_the_sharded_ranks_the_state_they_hold_and_pytorch(tmp_path):
    out = tmp_path / "dp.json"
    r = subprocess.run([sys.executable, str(BENCH), "--workers", "2", "--quick", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    single, multi = doc["single"], doc["multi"]
    assert [run["ranks"] for run in multi["runs"]] == [2]
    # the bytes read from the live arrays: one process holds m and v whole, a rank half
    assert single["adam_state_bytes_per_rank"] == single["adam_state_bytes_computed"] == 2 * 4 * 222384
    assert multi["adam_state_bytes_per_rank"] == multi["adam_state_bytes_computed"] == 4 * 222384
    assert "torch-tuned x" in r.stdout
    assert "median_s" in doc["torch_tuned"] or "skipped" in doc["torch_tuned"]
    assert doc["cpu"] in r.stdout


@pytest.mark.slow
@pytest.mark.skipif(not REAL_DATA.exists(), reason="needs the installed Fashion-MNIST "
                    "(apt-get install dataset-fashion-mnist)")
def test_step_terms_measures_every_term_for_each_number_of_ranks(tmp_path):
    out = tmp_path / "terms.json"
    r = subprocess.run([sys.executable, str(STEP_TERMS), "--quick", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    for model in doc["models"].values():
        rows = model["by_ranks"]
        assert sorted(rows, key=int) == ["1", "2", "4", "8"]
        assert [rows[n]["b"] for n in ("1", "2", "4", "8")] == [256, 128, 64, 32]
        for row in rows.values():
            assert all(row[k] > 0 for k in ("gather", "draw", "mask", "gemm", "fwd+bwd", "adam"))
        assert rows["1"]["pack"] == 0 and rows["2"]["pack"] > 0
        assert model["adam_per_value_s"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not REAL_DATA.exists(), reason="needs the installed Fashion-MNIST "
                    "(apt-get install dataset-fashion-mnist)")
def test_liveplot_cost_times_a_frame_per_epoch_and_both_encoders(tmp_path):
    out = tmp_path / "live.json"
    r = subprocess.run([sys.executable, str(BENCH.parent / "liveplot_cost.py"), "--quick", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["frames"] == doc["epochs"] == 4 and doc["images"] == 6000
    assert "family" in doc["cpu"] and "% " not in r.stdout.splitlines()[0]
    assert 0 < doc["later_frame_median_s"] <= doc["later_frame_max_s"]
    assert doc["draw_median_s"] > 0 and doc["encode_median_s"] > 0
    assert set(doc["encoders"]) == {"png_bytes", "pillow_level_1"}
    assert all(e["bytes"] > 1000 for e in doc["encoders"].values())
    assert 0 < doc["later_frames_share"] and 0 < doc["whole_run_share"]

"""Data parallel over MPI: N ranks equal one process; faults end the job; misuse is refused.

The MPI tests launch ``mpiexec -n 2`` on tests/helpers/mpi_worker.py with small
synthetic data and are skipped, with the reason, where mpi4py or mpiexec is
missing (``pip install -e ".[mpi]"`` brings both). The size-1 tests need neither.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from helpers.mpi_jobs import WORKER, job_env, mpiexec, needs_mpi, ok, run_worker
from helpers.thread_ranks import fake_mpi4py, run_ranks

import nanoae as nn
from nanoae.parallel import communicator
from nanoae.parallel.communicator import Communicator, abort_on_error
from nanoae.parallel.threads import THREAD_VARIABLES
from nanoae.train.augment import Augmentation

HERE = Path(__file__).resolve().parent


def _params(path):
    with np.load(path) as saved:
        return [saved[k] for k in sorted(saved.files, key=lambda k: int(k.split("_")[1]))]


@needs_mpi
def test_two_ranks_equal_one_process_after_20_steps(tmp_path):
    # 71 examples, global batch 8: every 9th step is a batch of 7, split 3 + 4 (weights 3/7, 4/7).
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    ok(run_worker(tmp_path / "one", "loop", ranks=None))
    ok(run_worker(tmp_path / "two", "loop"))  # the worker also checks both ranks agree bitwise
    single, parallel = _params(tmp_path / "one/params.npz"), _params(tmp_path / "two/params.npz")
    start = [p.data for p in __import__("helpers.mpi_worker", fromlist=["_"]).model_and_optimizer()[0].parameters()]
    for a, b, w0 in zip(parallel, single, start):
        assert not np.allclose(b, w0), "the parameters did not move: the test would prove nothing"
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@needs_mpi
def test_uneven_shards_need_the_weights(tmp_path):
    # Batch 3 on 2 ranks: shards of 1 and 2. The plain mean (weight 1/2 each) is not the
    # gradient of the batch's mean loss; the weights 1/3 and 2/3 are.
    ok(run_worker(tmp_path, "loop", "--batch-size", "3", "--steps", "5"))
    (tmp_path / "one").mkdir()
    ok(run_worker(tmp_path / "one", "loop", "--batch-size", "3", "--steps", "5", ranks=None))
    for a, b in zip(_params(tmp_path / "params.npz"), _params(tmp_path / "one/params.npz")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@needs_mpi
@pytest.mark.parametrize("how", ["abort_on_error", "install_excepthook"])
def test_a_failing_rank_ends_the_job_and_keeps_the_checkpoint(tmp_path, how):
    # Rank 1 raises at step 12 (epoch 2) while rank 0 waits in the all-reduce of that step.
    ckpt = tmp_path / "ckpt.npz"
    args = ["loop", "--fail-rank", "1", "--fail-step", "12", "--checkpoint", str(ckpt)]
    t0 = time.monotonic()
    proc = run_worker(tmp_path, *args, *(["--hook"] if how == "install_excepthook" else []),
                      timeout=30)  # a hang would raise TimeoutExpired here
    assert proc.returncode != 0
    assert "rank 1 of 2: RuntimeError: injected fault at step 12" in proc.stderr
    assert time.monotonic() - t0 < 30
    from nanoae.train.checkpoint import load_checkpoint  # noqa: PLC0415

    model, optimizer = __import__("helpers.mpi_worker", fromlist=["_"]).model_and_optimizer()
    saved = load_checkpoint(ckpt, model, optimizer)  # the end-of-epoch-1 checkpoint, whole
    assert saved["user"]["epoch"] == 1


def _fit_pair(tmp_path, *args, ranks=2):
    """fit_run on one process and on ``ranks`` ranks; their (parameters, history) pairs."""
    results = []
    for name, ranks in (("one", None), ("two", ranks)):
        (tmp_path / name).mkdir()
        ok(run_worker(tmp_path / name, "fit_run", *args, ranks=ranks))
        results.append((_params(tmp_path / name / "params.npz"),
                        json.loads((tmp_path / name / "history.json").read_text())))
    return results


@needs_mpi
@pytest.mark.parametrize("kind", ["classifier with validation", "autoencoder, flip+shift+mask",
                                  "batch 2: the last batch of 1 leaves rank 0 nothing"])
def test_fit_on_two_ranks_equals_one_process(tmp_path, kind):
    # 3 epochs of 9 steps (the 9th a batch of 7, split 3 + 4). The masks are drawn per
    # position in the epoch's order, so the ranks' inputs are exactly one process's. With batch 2, each
    # epoch ends with a batch of 1: rank 0's shard is empty and it only joins the sum.
    args = {"classifier with validation": [], "autoencoder, flip+shift+mask": ["--autoencoder"]}.get(
        kind, ["--batch-size", "2", "--epochs", "2"])
    (single, h1), (parallel, h2) = _fit_pair(tmp_path, *args)
    for a, b in zip(parallel, single):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        np.testing.assert_allclose(h2.get(key, []), h1.get(key, []), rtol=1e-6, err_msg=key)
    assert h1["train_loss"][-1] < h1["train_loss"][0]  # it trained


@needs_mpi
def test_ranks_that_start_from_different_weights_train_rank_0s(tmp_path):
    # fit broadcasts rank 0's weights first; the worker checks that both ranks end bitwise alike
    (single, _), (parallel, _) = _fit_pair(tmp_path, "--own-weights")
    for a, b in zip(parallel, single):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@needs_mpi
@pytest.mark.parametrize("kind", ["classifier", "autoencoder, flip+shift+mask"])
def test_fit_on_three_ranks_with_uneven_ranges_equals_one_process(tmp_path, kind):
    # The sharded optimizer cuts 293 (classifier) or 214 (autoencoder) values into 3 ranges
    # of 98 or 72: the last range is padded. Batch 6: 71 = 11 x 6 + 5, the last split 1 + 2 + 2.
    args = ["--batch-size", "6", "--epochs", "2"] + (["--autoencoder"] if "auto" in kind else [])
    (single, h1), (parallel, h2) = _fit_pair(tmp_path, *args, ranks=3)
    for a, b in zip(parallel, single):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h2["train_loss"], h1["train_loss"], rtol=1e-6)
    assert h1["train_loss"][-1] < h1["train_loss"][0]


@needs_mpi
def test_fit_fault_keeps_the_checkpoint_and_resume_on_every_rank_ends_the_same(tmp_path):
    # The Bomb layer raises on rank 1 at its 14th small forward pass: fit's check of the
    # data, 9 steps of epoch 1, then step 4 of epoch 2 (rank 0 then waits in the all-reduce).
    for name in ("straight", "broken"):
        (tmp_path / name).mkdir()
    straight = ["fit_run", "--checkpoint", str(tmp_path / "straight.npz"), "--fail-rank", "1",
                "--fail-step", "100000"]
    ok(run_worker(tmp_path / "straight", *straight))
    broken = ["fit_run", "--checkpoint", str(tmp_path / "broken.npz"), "--fail-rank", "1"]
    t0 = time.monotonic()
    proc = run_worker(tmp_path / "broken", *broken, "--fail-step", "14", timeout=30)
    assert proc.returncode != 0 and time.monotonic() - t0 < 30
    assert "rank 1 of 2: RuntimeError: injected fault at training step 14" in proc.stderr
    ok(run_worker(tmp_path / "broken", *broken, "--fail-step", "100000", "--resume"))
    for a, b in zip(_params(tmp_path / "broken/params.npz"), _params(tmp_path / "straight/params.npz")):
        np.testing.assert_array_equal(a, b)  # the same ranks, the same sums: bit for bit
    history = json.loads((tmp_path / "broken/history.json").read_text())
    assert history["epoch"] == [1, 2, 3]


@needs_mpi
def test_a_save_that_fails_on_rank_0_ends_every_rank_with_its_message(tmp_path):
    # Rank 0's disk is full: its first checkpoint (end of epoch 1) fails while rank 1 goes on
    # to the next all-reduce. The job must end, saying why, rather than hang.
    ckpt = tmp_path / "run.npz"
    t0 = time.monotonic()
    proc = run_worker(tmp_path, "fit_run", "--checkpoint", str(ckpt), "--disk-full", timeout=30)
    assert proc.returncode == 1 and time.monotonic() - t0 < 30
    assert (f"nanoae: rank 0 of 2: CheckpointError: could not save the checkpoint {ckpt}: "
            "[Errno 28] No space left on device; it needs ") in proc.stderr
    assert "Traceback" not in proc.stderr  # the one line says it all
    assert not ckpt.exists() and [p.name for p in tmp_path.iterdir()] == []


@needs_mpi
@pytest.mark.sigint
@pytest.mark.parametrize("before, after", [(2, 1), (1, 2), (2, 3)])
def test_ctrl_c_saves_mid_epoch_and_the_run_resumes_on_any_number_of_ranks(tmp_path, before, after):
    # 71 examples, batch 6: 12 steps per epoch. Ctrl-C reaches the last rank only, after global
    # step 15 (epoch 2); every rank stops after that step and rank 0 saves the gathered state.
    common = ["fit_run", "--autoencoder", "--batch-size", "6"]
    (tmp_path / "straight").mkdir()
    ok(run_worker(tmp_path / "straight", *common, ranks=None))
    ckpt = str(tmp_path / "run.npz")
    (tmp_path / "first").mkdir()
    proc = run_worker(tmp_path / "first", *common, "--checkpoint", ckpt, "--interrupt-at", "15",
                      "--interrupt-rank", str(before - 1), ranks=None if before == 1 else before)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.count("stopped at epoch 2, step 4") == before  # every rank, the same step
    from nanoae.train.checkpoint import read_checkpoint_meta  # noqa: PLC0415

    meta = read_checkpoint_meta(ckpt)
    assert (meta["user"]["epoch"], meta["user"]["step"], meta["optimizer_state"]["t"]) == (1, 4, 16)
    (tmp_path / "second").mkdir()
    ok(run_worker(tmp_path / "second", *common, "--checkpoint", ckpt, "--resume",
                   ranks=None if after == 1 else after))
    for a, b in zip(_params(tmp_path / "second/params.npz"), _params(tmp_path / "straight/params.npz")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    resumed = json.loads((tmp_path / "second/history.json").read_text())
    straight = json.loads((tmp_path / "straight/history.json").read_text())
    assert resumed["epoch"] == [1, 2, 3]
    np.testing.assert_allclose(resumed["train_loss"], straight["train_loss"], rtol=1e-5)


@needs_mpi
def test_fit_refuses_a_global_batch_that_does_not_divide_by_the_ranks(tmp_path):
    proc = run_worker(tmp_path, "fit_run", "--batch-size", "7", timeout=30)
    assert proc.returncode != 0
    assert ("fit: the global batch_size 7 does not divide by the 2 ranks; use a multiple of 2 "
            "(e.g. 8)") in proc.stderr


@needs_mpi
def test_evaluation_over_shards_equals_one_process(tmp_path):
    from helpers.mpi_worker import data, model_and_optimizer  # noqa: PLC0415

    from nanoae.train.loop import evaluate  # noqa: PLC0415

    ok(run_worker(tmp_path, "evaluate"))
    reduced = json.loads((tmp_path / "evaluate.json").read_text())
    x, y = data(seed=2)
    single = evaluate(model_and_optimizer()[0], nn.CrossEntropy(), x, y)
    assert reduced["accuracy"] == single["accuracy"]
    assert reduced["loss"] == pytest.approx(single["loss"], rel=1e-6)


def _threads_of_two_ranks(tmp_path, **user):
    env = {k: v for k, v in job_env().items() if k not in THREAD_VARIABLES}
    env.update(user)
    command = [mpiexec(), "-n", "2", sys.executable, str(WORKER), "threads", "--out", str(tmp_path)]
    proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    ok(proc)
    return json.loads((tmp_path / "threads.json").read_text()), proc.stderr


@needs_mpi
def test_two_ranks_share_the_cores_between_their_blas_threads(tmp_path):
    # Unset, OpenBLAS starts one thread per core in each rank: 2 ranks x 2 threads on 2 cores.
    counts, stderr = _threads_of_two_ranks(tmp_path)
    share = max(1, (os.cpu_count() or 1) // 2)
    assert [c["blas"] for c in counts] == [share, share], counts
    assert "OversubscriptionWarning" not in stderr


@needs_mpi
def test_a_users_thread_count_wins_and_rank_0_warns_once(tmp_path):
    # One thread per core in each rank (OpenBLAS caps its pool at the cores): not nanoae's share.
    cores = os.cpu_count() or 1
    if cores < 2:
        pytest.skip("on one core the user's count and nanoae's share are both 1")
    counts, stderr = _threads_of_two_ranks(tmp_path, OPENBLAS_NUM_THREADS=str(cores))
    assert [c["blas"] for c in counts] == [cores, cores], counts
    assert stderr.count(f"OPENBLAS_NUM_THREADS={cores} with 2 ranks on this machine runs "
                        f"{2 * cores} threads on {cores} cores") == 1


def test_threads_per_rank_shares_the_machine_or_keeps_a_pinned_ranks_cores(monkeypatch):
    from nanoae.parallel import threads  # noqa: PLC0415

    assert threads.threads_per_rank(2, cores=2, machine=2) == 1
    assert threads.threads_per_rank(4, cores=16, machine=16) == 4
    assert threads.threads_per_rank(3, cores=2, machine=2) == 1  # never 0
    assert threads.threads_per_rank(2, cores=4, machine=16) == 4  # pinned by the launcher
    assert threads.user_thread_setting({"MKL_NUM_THREADS": "2"}) == ("MKL_NUM_THREADS", 2)
    assert threads.user_thread_setting({"OMP_NUM_THREADS": ""}) is None
    with pytest.warns(threads.OversubscriptionWarning, match="OMP_NUM_THREADS=2 with 2 ranks"):
        assert threads.share_cores(2, is_root=True, environ={"OMP_NUM_THREADS": "2"},
                                   cores=2, machine=2) is None


class _FakeCupy:
    """What use_gpu needs of cupy: a device count and Device(n).use(), recorded."""

    def __init__(self, count):
        import types  # noqa: PLC0415

        self.used = []
        self.cuda = types.SimpleNamespace(
            runtime=types.SimpleNamespace(getDeviceCount=lambda: count),
            Device=lambda n: types.SimpleNamespace(use=lambda: self.used.append(n)))


@pytest.mark.parametrize("local_rank, local_size, devices, expected", [
    (1, 2, 1, 0),  # one GPU visible per rank (--gpus-per-task=1, CUDA_VISIBLE_DEVICES): GPU 0
    (1, 2, 2, 1),  # as many as the ranks: the local rank's
    (2, 3, 8, 2),  # more than the ranks: the local rank's
    (0, 1, 4, 0),
])
def test_each_rank_binds_its_own_gpu(monkeypatch, local_rank, local_size, devices, expected):
    fake = _FakeCupy(devices)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    comm = Communicator()
    comm.local_rank, comm.local_size = local_rank, local_size
    assert comm.use_gpu() == expected
    assert comm.use_gpu() == expected and fake.used == [expected]  # bound once


def test_more_ranks_than_gpus_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _FakeCupy(2))
    comm = Communicator()
    comm.local_rank, comm.local_size = 0, 3
    with pytest.raises(RuntimeError, match=r"this machine runs 3 ranks but each sees 2 GPU\(s\)"
                                           r".*mpiexec -n 2"):
        comm.use_gpu()


def test_two_ranks_on_one_gpu_are_named():
    devices = [("node1", "0000:01:00.0"), ("node1", "0000:01:00.0"), ("node2", "0000:01:00.0")]
    with pytest.raises(RuntimeError, match=r"NCCL: ranks \[0, 1\] all use GPU 0000:01:00.0 on node1"):
        communicator.check_own_devices(devices, 1)
    communicator.check_own_devices(devices, 2)  # the same bus id on another machine is another GPU


def test_missing_nccl_says_how_to_install_nccl_itself():
    assert "install NCCL itself" in communicator.NCCL_MISSING
    assert "cupyx.tools.install_library --library nccl" in communicator.NCCL_MISSING


@needs_mpi
def test_ranks_that_disagree_on_the_data_are_refused(tmp_path):
    proc = run_worker(tmp_path, "disagree", timeout=30)
    assert proc.returncode != 0
    assert "the ranks disagree on the training data: ranks [1] differ from rank 0" in proc.stderr


@needs_mpi
def test_example_05_runs_under_mpiexec(tmp_path):
    from helpers.idx_helpers import make_fake_fashion  # noqa: PLC0415

    make_fake_fashion(tmp_path / "data", n_train=300, n_test=20)
    env = {**job_env(), "NANOAE_DATA_DIR": str(tmp_path / "data"), "NANOAE_EXAMPLE_NO_VERIFY": "1",
           "NANOAE_EXAMPLE_EPOCHS": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    command = [mpiexec(), "-n", "2", sys.executable, str(HERE.parent / "examples/05_data_parallel.py")]
    proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    ok(proc)
    assert proc.stdout.count("epoch 1/1: train BCE") == 1  # rank 0 alone prints
    assert "2 rank(s), 300 training images, global batch 256 = 2 x 128 per rank" in proc.stdout


# --- a single process: no MPI needed, none imported ---------------------------------------


@pytest.mark.subprocess



def test_single_process_does_not_import_mpi4py(tmp_path):
    proc = run_worker(tmp_path, "sizeone", ranks=None)
    ok(proc)
    assert json.loads((tmp_path / "sizeone.json").read_text()) == {"size": 1, "mpi4py_imported": False}


def test_size_one_communicator_changes_nothing():
    comm = Communicator()
    model = nn.Sequential(nn.Dense(3, 2, rng=np.random.default_rng(0)))
    model(np.ones((4, 3), np.float32))
    model.backward(np.ones((4, 2), np.float32))
    before = [(p.data.copy(), p.grad.copy()) for p in model.parameters()]
    comm.broadcast_parameters(model.parameters())
    comm.average_gradients(model.parameters(), weight=1.0)
    for p, (data, grad) in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.data, data)
        np.testing.assert_array_equal(p.grad, grad)
    assert (comm.rank, comm.size, comm.is_root) == (0, 1, True)
    assert comm.allreduce_sum(2.5) == 2.5
    np.testing.assert_array_equal(comm.allreduce_sum([1, 2]), [1.0, 2.0])
    assert comm.shard(7) == slice(0, 7)
    comm.check_agree("anything", 1)


def test_size_one_rejects_a_partial_weight():
    with pytest.raises(ValueError, match="a single process holds the whole batch"):
        Communicator().average_gradients([], weight=0.5)


def test_launched_under_mpi_without_mpi4py_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.delenv("NANOAE_MPI", raising=False)
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # what a missing package looks like
    with pytest.raises(RuntimeError, match=r"one of 2 MPI ranks, but mpi4py cannot be imported"):
        communicator._mpi_world()


def test_shards_cover_a_batch_exactly_once():
    for size in (1, 2, 3, 5):
        for n in (0, 1, 4, 7, 8):
            parts = []
            for rank in range(size):
                comm = Communicator()
                comm.rank, comm.size = rank, size
                s = comm.shard(n)
                parts.extend(range(n)[s])
            assert parts == list(range(n)), (size, n)


@needs_mpi
def test_cli_train_ae_under_mpiexec_equals_one_process(tmp_path):
    # The default recipe: masking noise 0.1, cosine schedule; 300 fake images, batch 32.
    from helpers.idx_helpers import make_fake_fashion  # noqa: PLC0415

    from nanoae.cli.commands import load_model  # noqa: PLC0415

    make_fake_fashion(tmp_path / "data", n_train=300, n_test=20)
    env = {**job_env(), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    outputs = {}
    for name, launcher in (("one", []), ("two", [mpiexec(), "-n", "2"])):
        command = [*launcher, sys.executable, "-m", "nanoae.cli", "train-ae", "--data-dir",
                   str(tmp_path / "data"), "--no-verify", "--epochs", "2", "--batch-size", "32",
                   "--out", str(tmp_path / f"{name}.npz")]
        proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)
        ok(proc)
        outputs[name] = proc
    assert outputs["two"].stdout.count('"checkpoint"') == 1  # rank 0 alone prints the result
    assert outputs["two"].stderr.count("autoencoder epoch 2/2") == 1
    one, two = load_model(tmp_path / "one.npz"), load_model(tmp_path / "two.npz")
    for a, b in zip(two.parameters(), one.parameters()):
        # Relative to each weight matrix as a whole: Adam divides by sqrt(v), so a weight whose
        # gradient is nearly 0 can turn a rounding difference in it into a visible step.
        assert np.linalg.norm(a.data - b.data) <= 1e-5 * np.linalg.norm(b.data), a.name


@needs_mpi
def test_demo_under_mpiexec_trains_on_every_rank_and_equals_one_process(tmp_path):
    # Training data parallel; scores, t-SNE, figures and report on rank 0 alone, written once.
    from helpers.idx_helpers import make_fake_fashion  # noqa: PLC0415

    make_fake_fashion(tmp_path / "data", n_train=300, n_test=60)
    env = {**job_env(), "XDG_CACHE_HOME": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    metrics, outputs = {}, {}
    for name, launcher in (("one", []), ("two", [mpiexec(), "-n", "2"])):
        command = [*launcher, sys.executable, "-m", "nanoae.cli", "demo", "--quick", "--data-dir",
                   str(tmp_path / "data"), "--no-verify", "--epochs", "1", "--batch-size", "64",
                   "--out", str(tmp_path / name)]
        proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)
        ok(proc)
        outputs[name] = proc
        metrics[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert outputs["two"].stderr.count("t-SNE done in") == 1  # rank 0 alone
    assert outputs["two"].stdout.count('"ae_test_bce"') == 1
    assert (tmp_path / "two" / "report.md").exists() and (tmp_path / "two" / "tsne.png").exists()
    one, two = metrics["one"], metrics["two"]
    compared = [k for k, v in one.items() if isinstance(v, float) and "seconds" not in k]
    assert {"ae_test_bce", "clf_frozen_test_accuracy", "clf_finetune_test_accuracy",
            "tsne_trustworthiness"} <= set(compared)
    for key in compared:
        # The autoencoder agrees to rounding. Later stages train on fake data with random
        # labels: the head overfits for 8 epochs and amplifies the codes' rounding (1e-7) to
        # ~1e-3 of the losses (the plain all-reduce path gives the same numbers as the sharded
        # one); t-SNE's descent turns it into another layout of the same neighbourhoods.
        if key.startswith("ae_"):
            tolerance = dict(rel=1e-5, abs=1e-6)
        elif key.startswith("tsne_") or "accuracy" in key:
            tolerance = dict(abs=0.05)
        else:
            tolerance = dict(rel=2e-2)
        assert two[key] == pytest.approx(one[key], **tolerance), key
    ae_stage = "autoencoder (unit code)"
    np.testing.assert_allclose(two["histories"][ae_stage]["train_loss"],
                               one["histories"][ae_stage]["train_loss"], rtol=1e-5)


@needs_mpi
def test_cli_refuses_a_command_that_does_not_train_under_mpiexec(tmp_path):
    (tmp_path / "ae.npz").write_bytes(b"")  # never read: the refusal comes first
    command = [mpiexec(), "-n", "2", sys.executable, "-m", "nanoae.cli", "tsne", "--ae",
               str(tmp_path / "ae.npz"), "--out", str(tmp_path / "t.png")]
    proc = subprocess.run(command, env=job_env(), cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2  # every rank ends as one process would, none through MPI_Abort
    assert proc.stderr.strip() == ("nanoae tsne: error: this command runs on one process, but "
                                   "mpiexec started 2; run it without mpiexec (data parallel: "
                                   "train-ae, train-classifier, demo)")  # once, from rank 0
    assert not (tmp_path / "t.png").exists()


def test_train_step_of_one_process_still_refuses_an_empty_batch():
    from nanoae.train.loop import train_step  # noqa: PLC0415

    model = nn.Sequential(nn.Dense(3, 2, rng=np.random.default_rng(0)), nn.Softmax())
    optimizer = nn.Adam(model.parameters())
    with pytest.raises(ValueError, match="empty batch"):
        train_step(model, nn.CrossEntropy(), optimizer, np.zeros((0, 3), np.float32),
                   np.zeros(0, np.int64))


# --- two ranks as two threads of this process (tests/helpers/thread_ranks.py): no MPI needed ------------


def _classifier_run(comm, *, own_weights=False, batch_size=8, data_seed=0, augment=False, dropout=False):
    """fit of mpi_worker's classifier (or its augmented autoencoder, or the classifier with a
    Dropout layer) on ``comm``'s ranks."""
    from helpers.mpi_worker import data, model_and_optimizer  # noqa: PLC0415

    from nanoae.train.augment import Augmentation  # noqa: PLC0415
    from nanoae.train.callbacks import Progress  # noqa: PLC0415
    from nanoae.train.loop import fit  # noqa: PLC0415

    x, y = data(seed=data_seed)
    model, optimizer = model_and_optimizer(seed=1 + 100 * comm.rank if own_weights else 1)
    kwargs = dict(validation=data(seed=3))
    loss = nn.CrossEntropy()
    if augment:  # an autoencoder of 4x4 images, flipped, shifted and masked
        x, y = np.random.default_rng(4).random((len(x), 16), dtype=np.float32), None
        rng = np.random.default_rng(1 + 100 * comm.rank if own_weights else 1)
        model = nn.Sequential(nn.Dense(16, 6, rng=rng), nn.ReLU(), nn.Dense(6, 16, rng=rng), nn.Sigmoid())
        optimizer, loss = nn.Adam(model.parameters(), lr=1e-2), nn.BinaryCrossEntropy()
        kwargs = dict(augment=Augmentation(flip=True, shift=1, mask=0.25), validation=(x[:9], None))
    if dropout:  # each rank draws the masks of its own rows: those one process draws for them
        model = nn.Sequential(*model.layers[:2], nn.Dropout(0.4), *model.layers[2:])
    history = fit(model, loss, optimizer, x, y, epochs=2, batch_size=batch_size, seed=5,
                  callbacks=[Progress(bar=False, verbose=False)], comm=comm, **kwargs)
    return [p.data.copy() for p in model.parameters()], history


@pytest.mark.parametrize("augment, dropout", [(False, False), (True, False), (False, True)],
                         ids=["classifier", "autoencoder flip+shift+mask", "classifier with dropout"])
def test_thread_ranks_from_different_weights_train_as_one_process_from_rank_0s(monkeypatch, augment,
                                                                              dropout):
    # 71 examples in global batches of 8: the last one, of 7, splits 3 + 4 (weights 3/7 and 4/7)
    (one,) = run_ranks(1, lambda comm: _classifier_run(comm, augment=augment, dropout=dropout),
                       monkeypatch)
    ranks = run_ranks(2, lambda comm: _classifier_run(comm, own_weights=True, augment=augment,
                                                      dropout=dropout), monkeypatch)
    for a, b in zip(ranks[0][0], ranks[1][0]):
        np.testing.assert_array_equal(a, b)  # every rank holds the same weights
    for a, b in zip(ranks[0][0], one[0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # those of one process
    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        np.testing.assert_allclose(ranks[0][1].get(key, []), one[1].get(key, []), rtol=1e-5,
                                   err_msg=key)  # figures of the whole data, on every rank
        assert ranks[1][1].get(key) == ranks[0][1].get(key)
    if not dropout:  # (with dropout, 2 epochs on these random labels need not lower the loss)
        assert one[1]["train_loss"][-1] < one[1]["train_loss"][0]  # it trained


def test_thread_ranks_refuse_what_would_silently_train_wrong(monkeypatch):
    with pytest.raises(ValueError, match=r"global batch_size 7 does not divide by the 2 ranks; "
                                         r"use a multiple of 2 \(e\.g\. 8\)"):
        run_ranks(2, lambda comm: _classifier_run(comm, batch_size=7), monkeypatch)
    with pytest.raises(ValueError, match=r"the ranks disagree on the training and validation data: "
                                         r"ranks \[1\] differ from rank 0"):
        run_ranks(2, lambda comm: _classifier_run(comm, data_seed=comm.rank), monkeypatch)


def test_thread_ranks_average_gradients_by_shard_weight_and_sum_figures(monkeypatch):
    def work(comm):
        p = nn.Parameter(np.zeros((2, 3), np.float32), name="w")
        q = nn.Parameter(np.zeros(4, np.float32), name="b")
        p.grad = np.full((2, 3), 1.0 + comm.rank, np.float32)  # rank 0: ones, rank 1: twos
        q.grad = np.arange(4, dtype=np.float32) * (comm.rank + 1)
        weight = [0.25, 0.75][comm.rank]
        comm.average_gradients([p, q], weight=weight)
        sums = (comm.allreduce_sum(1.5 + comm.rank), comm.allreduce_sum([comm.rank, 2]))
        return p.grad.copy(), q.grad.copy(), sums, comm.shard(7), comm.is_root

    for rank, (pg, qg, sums, shard, root) in enumerate(run_ranks(2, work, monkeypatch)):
        np.testing.assert_allclose(pg, np.full((2, 3), 0.25 * 1 + 0.75 * 2))
        np.testing.assert_allclose(qg, np.arange(4) * (0.25 * 1 + 0.75 * 2))
        assert sums[0] == 4.0 and sums[1].tolist() == [1.0, 4.0]
        assert shard == [slice(0, 3), slice(3, 7)][rank] and root == (rank == 0)

    def unweighted(comm):
        p = nn.Parameter(np.zeros(3, np.float32), name="w")
        p.grad = np.full(3, 2.0 * comm.rank, np.float32)
        comm.average_gradients([p])  # equal shards: the plain mean
        return p.grad

    for grad in run_ranks(2, unweighted, monkeypatch):
        np.testing.assert_array_equal(grad, [1.0, 1.0, 1.0])

    def wrong_weights(comm):
        p = nn.Parameter(np.zeros(3, np.float32), name="w")
        p.grad = np.ones(3, np.float32)
        comm.average_gradients([p], weight=0.5 if comm.rank else 0.25)

    with pytest.raises(ValueError, match=r"the ranks' weights add up to 0\.75, not 1"):
        run_ranks(2, wrong_weights, monkeypatch)


class _Exit(Exception):
    """What os._exit does in these tests: end the test's code, not the test process."""


@pytest.fixture
def one_of_two_ranks(monkeypatch):
    """Rank 1 of a two-rank job whose abort is recorded instead of ending this process."""
    from helpers.thread_ranks import ThreadComm, _Hub  # noqa: PLC0415

    def exit_(code):
        raise _Exit(code)

    monkeypatch.setattr(communicator.os, "_exit", exit_)
    monkeypatch.setattr(communicator.time, "sleep", lambda seconds: None)
    fake_mpi4py(monkeypatch)
    return Communicator(ThreadComm(_Hub(2), 1))


@pytest.mark.parametrize("error, code, line, traceback_shown", [
    (ValueError("bad value"), 1, "ValueError: bad value", False),
    (nn.TrainingError("the loss became nan"), 1, "TrainingError: the loss became nan", False),
    (TypeError("a bug"), 1, "TypeError: a bug", True),
    (KeyboardInterrupt(), 130, "interrupted (Ctrl-C)", False),
])
def test_a_failing_rank_says_why_in_one_line_and_ends_the_job(one_of_two_ranks, capsys, error, code,
                                                              line, traceback_shown):
    with pytest.raises(_Exit, match=f"^{code}$"):
        with abort_on_error(one_of_two_ranks):
            raise error
    assert one_of_two_ranks.mpi_comm.aborted == code  # MPI_Abort: every rank ends
    err = capsys.readouterr().err
    assert f"nanoae: rank 1 of 2: {line}; ending every rank of the job" in err
    assert ("Traceback" in err) == traceback_shown  # a bug shows where; a refusal says it all


def test_the_excepthook_of_a_hand_written_loop_ends_the_job_alike(one_of_two_ranks, capsys, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    one_of_two_ranks.install_excepthook()
    for error, code in ((RuntimeError("lost"), 1), (KeyboardInterrupt(), 130)):
        with pytest.raises(_Exit, match=f"^{code}$"):
            sys.excepthook(type(error), error, None)
        assert one_of_two_ranks.mpi_comm.aborted == code
    assert "nanoae: rank 1 of 2: RuntimeError: lost; ending every rank of the job" in capsys.readouterr().err


def test_one_process_raises_as_usual():
    before = sys.excepthook
    Communicator().install_excepthook()
    assert sys.excepthook is before
    with pytest.raises(ValueError, match="as usual"):
        with abort_on_error(Communicator()):
            raise ValueError("as usual")


def test_disagreeing_ranks_are_named_with_a_short_view_of_the_value(monkeypatch):
    def work(comm):
        comm.check_agree("the settings", {"seed": 0, "lr": [comm.rank] * 100})

    with pytest.raises(ValueError) as caught:
        run_ranks(2, work, monkeypatch)
    message = str(caught.value)
    assert message.startswith("the ranks disagree on the settings: ranks [1] differ from rank 0 (rank ")
    value = message.split(" has ", 1)[1].split("); every rank")[0]
    assert len(value) == 123 and value.endswith("...")  # 120 characters of the repr, then "..."
    assert message.endswith("every rank must run the same model, data and settings")


def test_fingerprint_tells_apart_what_ranks_could_disagree_on():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    same = communicator.fingerprint(x, None)
    assert len(same) == 16 and same == communicator.fingerprint(x.copy(), None)
    others = [communicator.fingerprint(x), communicator.fingerprint(x + 1, None),
              communicator.fingerprint(x.reshape(4, 3), None), communicator.fingerprint(x.astype(np.float64), None),
              communicator.fingerprint(x, x)]
    assert same not in others and len(set(others)) == len(others)


@pytest.mark.parametrize("value, size", [("4", 4), ("", None), ("two", None), ("-1", None)])
def test_launched_size_reads_a_launchers_count_and_ignores_anything_else(monkeypatch, value, size):
    for name in communicator._SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", value)
    assert communicator.launched_size() == size


def _fit_where_ranks_may_differ(comm, tmp_path, **differ):
    """fit of a tiny classifier on ``comm``; ``differ[name](rank)`` gives that rank its own value."""
    from nanoae.train.augment import Augmentation  # noqa: PLC0415
    from nanoae.train.callbacks import Checkpoint, Progress  # noqa: PLC0415
    from nanoae.train.loop import fit  # noqa: PLC0415

    def mine(name, default):
        return differ[name](comm.rank) if name in differ else default

    rng = np.random.default_rng(0)
    x = rng.random((8, 4), dtype=np.float32)
    y = np.arange(8) % 3
    model = nn.Sequential(nn.Dense(4, mine("hidden", 5), rng=0), nn.ReLU(),
                          nn.Dense(mine("hidden", 5), 3, rng=1), nn.Softmax())
    callbacks = [Progress(bar=False, verbose=False)]
    if mine("resume", False):
        callbacks.append(Checkpoint(tmp_path / "never-read.npz", resume=True))
    fit(model, nn.CrossEntropy(), nn.SGD(model.parameters(), lr=0.1), mine("x", x), mine("y", y),
        validation=mine("validation", (x[:4], y[:4])), epochs=mine("epochs", 1),
        batch_size=mine("batch_size", 4), seed=mine("seed", 0),
        augment=mine("augment", Augmentation()), callbacks=callbacks, comm=comm)


@pytest.mark.parametrize("differ, what", [
    (dict(hidden=lambda r: 5 + r), "the model"),
    (dict(x=lambda r: np.full((8, 4), 0.1 * r, np.float32)), "the training and validation data"),
    (dict(y=lambda r: (np.arange(8) + r) % 3), "the training and validation data"),
    (dict(validation=lambda r: (np.full((4, 4), 0.1 * r, np.float32), np.zeros(4, int))),
     "the training and validation data"),
    (dict(epochs=lambda r: 1 + r), "the settings of fit"),
    (dict(batch_size=lambda r: 4 + 2 * r), "the settings of fit"),
    (dict(seed=lambda r: r), "the settings of fit"),
    (dict(augment=lambda r: Augmentation(mask=0.1 * r)),
     "the settings of fit"),
    (dict(resume=lambda r: bool(r)), "the settings of fit"),
], ids=["model", "x", "y", "validation", "epochs", "batch_size", "seed", "augment", "resume"])
def test_thread_ranks_name_what_they_disagree_on(monkeypatch, tmp_path, differ, what):
    with pytest.raises(ValueError, match=rf"^the ranks disagree on {what}: ranks \[1\] differ from rank 0 "):
        run_ranks(2, lambda comm: _fit_where_ranks_may_differ(comm, tmp_path, **differ), monkeypatch)


def test_thread_ranks_suggest_a_global_batch_that_divides(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match=r"^fit: the global batch_size 1 does not divide by the 2 "
                                         r"ranks; use a multiple of 2 \(e\.g\. 2\): each rank takes "
                                         r"batch_size / ranks examples of every batch$"):
        run_ranks(2, lambda comm: _fit_where_ranks_may_differ(comm, tmp_path, batch_size=lambda r: 1),
                  monkeypatch)
    run_ranks(2, lambda comm: _fit_where_ranks_may_differ(comm, tmp_path), monkeypatch)  # agreeing ranks train


def test_any_is_true_on_every_rank_when_one_rank_says_so(monkeypatch):
    for flags, expected in (((False, True), True), ((False, False), False), ((True, True), True)):
        got = run_ranks(2, lambda comm: comm.any(flags[comm.rank]), monkeypatch)
        assert got == [expected, expected], flags


def test_figures_are_summed_in_float64_and_a_number_stays_a_number(monkeypatch):
    def work(comm):
        return comm.allreduce_sum(comm.rank + 1), comm.allreduce_sum([comm.rank, 2])

    for number, array in run_ranks(2, work, monkeypatch):
        assert type(number) is float and number == 3.0
        assert array.dtype == np.float64 and array.tolist() == [1.0, 4.0]


def test_barrier_waits_for_every_rank(monkeypatch):
    from helpers.thread_ranks import ThreadComm  # noqa: PLC0415

    reached = []
    monkeypatch.setattr(ThreadComm, "Barrier", lambda self: reached.append(self.rank) or
                        self.hub.exchange(self.rank, None))
    run_ranks(2, lambda comm: comm.barrier(), monkeypatch)
    assert sorted(reached) == [0, 1]


def test_broadcast_copies_rank_0s_values_exactly(monkeypatch):
    def work(comm):
        p = nn.Parameter(np.array([2**53 + 1 + comm.rank, 3], np.int64), name="count")
        comm.broadcast_parameters([p])
        return p.data

    for data in run_ranks(2, work, monkeypatch):
        assert data.tolist() == [2**53 + 1, 3]  # through a buffer of the parameters' own dtype


def test_a_rank_with_an_empty_shard_gets_the_average_and_the_buffer_is_kept(monkeypatch):
    def work(comm):
        p = nn.Parameter(np.zeros((2, 2), np.float32), name="w")
        if comm.rank == 1:  # the whole batch
            p.grad = np.full((2, 2), 3.0, np.float32)
        comm.average_gradients([p], weight=float(comm.rank))  # rank 0: an empty shard, no grad yet
        first, buffer = p.grad, comm._buffer
        own = p.grad = np.full((2, 2), 1.0 + comm.rank, np.float32)
        comm.average_gradients([p], weight=0.5)
        assert p.grad is own  # written into the rank's own gradient array
        assert comm._buffer is buffer and buffer.dtype == np.float32  # one float32 buffer, kept
        kept = p.grad
        q = nn.Parameter(np.zeros(3, np.float32), name="b")  # another set of parameters: a new size
        q.grad = np.full(3, 2.0, np.float32)
        if comm.rank == 0:  # an empty shard again, with a stale gradient of another shape
            p.grad = np.zeros(5, np.float32)
        comm.average_gradients([p, q], weight=float(comm.rank))
        return first, kept, p.grad, q.grad

    (first0, kept0, p0, q0), (first1, kept1, p1, q1) = run_ranks(2, work, monkeypatch)
    for first in (first0, first1):
        assert first.dtype == np.float32 and first.tolist() == [[3.0, 3.0]] * 2
    for kept in (kept0, kept1):
        assert kept.tolist() == [[1.5, 1.5]] * 2
    for p, q in ((p0, q0), (p1, q1)):
        assert p.shape == (2, 2) and p.dtype == np.float32 and p.tolist() == [[1.5, 1.5]] * 2  # rank 1's
        assert q.tolist() == [2.0, 2.0, 2.0]


def test_a_weight_outside_0_to_1_is_refused(monkeypatch):
    with pytest.raises(ValueError) as caught:
        run_ranks(2, lambda comm: comm.average_gradients([], weight=1.5), monkeypatch)
    assert str(caught.value) == ("average_gradients: weight must be this rank's share of the global "
                                 "batch, in [0, 1], got 1.5")


def test_weights_that_do_not_add_up_say_what_each_rank_must_pass(monkeypatch):
    def work(comm):
        p = nn.Parameter(np.zeros(1, np.float32), name="w")
        p.grad = np.ones(1, np.float32)
        comm.average_gradients([p], weight=0.25)

    with pytest.raises(ValueError) as caught:
        run_ranks(2, work, monkeypatch)
    assert str(caught.value) == ("average_gradients: the ranks' weights add up to 0.5, not 1; each rank "
                                 "must pass (its shard's size) / (the global batch size)")


@pytest.mark.parametrize("env, size, joins", [
    ({"NANOAE_MPI": "1"}, None, True),  # asked for, whatever the launcher
    ({"NANOAE_MPI": "0", "PMI_SIZE": "2"}, None, False),  # refused, even under a launcher
    ({"PMI_SIZE": "2"}, 2, True),
    ({"PMI_SIZE": "1"}, 1, False),  # one rank: nothing to join
    ({}, None, False),
])
def test_the_mpi_world_is_joined_under_a_launcher_or_when_asked(monkeypatch, env, size, joins):
    for name in ("NANOAE_MPI", *communicator._SIZE_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    fake_mpi4py(monkeypatch)
    world = sys.modules["mpi4py"].MPI.COMM_WORLD = object()
    assert communicator._mpi_world() is (world if joins else None)


def test_asked_for_mpi_without_mpi4py_says_how_to_install_it(monkeypatch):
    for name in communicator._SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NANOAE_MPI", "1")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(RuntimeError) as caught:
        communicator._mpi_world()
    message = str(caught.value)
    assert message.startswith("this process is one of several MPI ranks, but mpi4py cannot be imported (")
    assert message.endswith('; without it every rank would train alone on all the data. Install it: pip install '
                            '-e ".[mpi]" in your nanoae checkout (or set NANOAE_MPI=0 to run each process on its own)')


@pytest.mark.parametrize("backend", ["numpy", "cupy"], ids=["backend numpy", "fake backend cupy"])
def test_world_is_made_once_and_sets_up_a_rank_of_several(monkeypatch, backend):
    from helpers.thread_ranks import ThreadComm, _Hub  # noqa: PLC0415

    from nanoae import backend as backend_module  # noqa: PLC0415
    from nanoae.parallel import threads  # noqa: PLC0415

    shared, gpus = [], []
    monkeypatch.setattr(threads, "share_cores", lambda n, is_root: shared.append((n, is_root)))
    monkeypatch.setattr(Communicator, "use_gpu", lambda self: gpus.append(self.rank))
    monkeypatch.setattr(backend_module, "get_backend", lambda: backend)
    monkeypatch.setattr(communicator, "_mpi_world", lambda: ThreadComm(_Hub(2), 1))
    fake_mpi4py(monkeypatch)
    monkeypatch.setattr(communicator, "_world", None)
    comm = communicator.world()
    assert (comm.rank, comm.size) == (1, 2) and communicator.world() is comm  # made once
    assert shared == [(2, False)]  # its share of the machine's cores, as a rank that is not root
    assert gpus == ([1] if backend == "cupy" else [])

    monkeypatch.setattr(communicator, "_mpi_world", lambda: None)
    monkeypatch.setattr(communicator, "_world", None)
    assert communicator.world().size == 1 and shared == [(2, False)]  # one process: nothing set up


def test_each_rank_checks_that_the_model_lives_on_its_own_gpu(monkeypatch):
    from helpers.thread_ranks import ThreadComm, _Hub  # noqa: PLC0415

    fake = _FakeCupy(2)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    fake_mpi4py(monkeypatch)
    comm = Communicator(ThreadComm(_Hub(2), 1))  # local rank 1 of 2: GPU 1

    def on(*gpus):
        return [types.SimpleNamespace(data=types.SimpleNamespace(device=types.SimpleNamespace(id=g)))
                for g in gpus]

    comm.check_device(on(1, 1))
    assert fake.used == [1]
    with pytest.raises(RuntimeError) as caught:
        comm.check_device(on(0, 1))
    assert str(caught.value) == (
        "rank 1: the model's parameters live on GPU(s) [0, 1], but this rank's GPU is 1; call "
        "nanoae.parallel.communicator.world() on the cupy backend (or comm.use_gpu()) before building the model, "
        "so that each rank builds it on its own GPU")
    monkeypatch.setitem(sys.modules, "cupy", None)
    Communicator().check_device(on(3))  # one process: nothing to check, CuPy not asked


def test_more_ranks_than_gpus_says_how_many_to_start(monkeypatch):
    with pytest.raises(RuntimeError) as caught:
        communicator.gpu_for_rank(0, 3, 0)
    assert str(caught.value) == (
        "--backend cupy: this machine runs 3 ranks but each sees 0 GPU(s); start at most one rank per "
        "GPU (mpiexec -n 1 ...), give each rank its own GPU (CUDA_VISIBLE_DEVICES, --gpus-per-task=1), "
        "or use --backend numpy")


def test_one_process_is_rank_0_of_1_on_its_machine():
    comm = Communicator()
    assert (comm.local_rank, comm.local_size) == (0, 1)


def test_abort_waits_a_moment_then_ends_every_rank(one_of_two_ranks, monkeypatch):
    slept = []
    monkeypatch.setattr(communicator.time, "sleep", slept.append)
    with pytest.raises(_Exit, match="^1$"):
        one_of_two_ranks.abort()
    assert one_of_two_ranks.mpi_comm.aborted == 1 and slept == [communicator.ABORT_GRACE_SECONDS]
    with pytest.raises(_Exit, match="^1$"):
        Communicator().abort()  # one process: no MPI to abort, no wait
    assert slept == [communicator.ABORT_GRACE_SECONDS]


def test_the_excepthook_prints_the_traceback_of_a_bug(one_of_two_ranks, capsys, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)

    def where_it_broke():
        raise TypeError("a bug")

    one_of_two_ranks.install_excepthook()
    try:
        where_it_broke()
    except TypeError as exc:
        with pytest.raises(_Exit):
            sys.excepthook(type(exc), exc, exc.__traceback__)
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "where_it_broke" in err
    assert "\nTypeError: a bug\n" in err


@pytest.mark.parametrize("length", [5, 120, 121])
def test_a_disagreeing_value_is_shown_whole_up_to_120_characters(monkeypatch, length):
    def work(comm):
        comm.check_agree("the value", "x" * (length - 2) if comm.rank else "y" * (length - 2))

    with pytest.raises(ValueError) as caught:
        run_ranks(2, work, monkeypatch)
    shown = str(caught.value).split(" has ", 1)[1].split("); every rank")[0]
    text = repr(shown[1] * (length - 2))  # the raising rank's, of ``length`` characters
    assert shown == (text if length <= 120 else text[:120] + "...")


def test_fingerprint_reads_every_array_after_a_missing_one():
    x = np.arange(4, dtype=np.float32)
    assert communicator.fingerprint(None, x) != communicator.fingerprint(None, x + 1)


def test_a_rank_with_an_empty_shard_needs_no_gradient_attribute(monkeypatch):
    def work(comm):
        if comm.rank == 0:  # any object with ``data`` will do; it gets a ``grad``
            p = types.SimpleNamespace(data=np.zeros(2, np.float32))
        else:
            p = nn.Parameter(np.zeros(2, np.float32), name="w")
            p.grad = np.array([1.0, 2.0], np.float32)
        comm.average_gradients([p], weight=float(comm.rank))
        return p.grad

    for grad in run_ranks(2, work, monkeypatch):
        assert grad.tolist() == [1.0, 2.0]


# --- every hyper-parameter in force on every rank, and a learner's layer, under data parallel -----


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_thread_ranks_honour_every_hyperparameter_a_callback_changes(monkeypatch, kind):
    """betas and eps (Adam, AdamW), weight_decay (AdamW), momentum (SGD) changed from epoch 2
    on: two ranks end within 1e-5 of one process, and the change does change the run."""
    from helpers.learner_run import settings_run  # noqa: PLC0415

    (one,) = run_ranks(1, lambda comm: settings_run(comm, kind), monkeypatch)
    two = run_ranks(2, lambda comm: settings_run(comm, kind), monkeypatch)
    for a, b in zip(two[0][0], one[0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    (unchanged,) = run_ranks(1, lambda comm: settings_run(comm, kind, change=False), monkeypatch)
    assert max(float(np.abs(a - b).max()) for a, b in zip(one[0], unchanged[0])) > 1e-3


@needs_mpi
@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_mpiexec_honours_every_hyperparameter_and_trains_and_watches_a_learners_tanh(tmp_path, kind):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    ok(run_worker(tmp_path / "one", "settings", "--optimizer", kind, ranks=None))
    ok(run_worker(tmp_path / "two", "settings", "--optimizer", kind))
    for a, b in zip(_params(tmp_path / "two/params.npz"), _params(tmp_path / "one/params.npz")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    watched = json.loads((tmp_path / "two/watch.json").read_text())["layers"]["layer 1 Tanh()"]
    assert len(watched["mean"]) == len(watched["std"]) > 0  # rank 0 watched the learner's layer

"""What each rank runs in tests/test_distributed.py (``mpiexec -n 2 python mpi_worker.py ...``).

Also run as a plain process (size 1) for the single-process reference figures.
Every scenario writes its results as JSON/NPZ into the folder given by --out
(rank 0 only), so the test compares them after the job ends.

    loop      20 steps of the hand-written data-parallel loop; saves the parameters
    evaluate  a model's loss/accuracy over shards, reduced
    gpus      --backend cupy with more ranks than GPUs (device count given)
    disagree  ranks that load different data
    sizeone   which modules a single process imported
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import nanoae as nn
from nanoae.distributed import abort_on_error, fingerprint, world

N, FEATURES, CLASSES = 71, 12, 5  # 71 = 8 full batches of 8 and a last one of 7 (3 + 4 on 2 ranks)


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=N).astype(np.int64)
    return x, y


def model_and_optimizer():
    rng = np.random.default_rng(1)
    model = nn.Sequential(nn.Dense(FEATURES, 16, rng=rng), nn.ReLU(), nn.Dense(16, CLASSES, rng=rng),
                          nn.Softmax())
    return model, nn.Adam(model.parameters(), lr=1e-2)


def loop(comm, args):
    """The hand-written loop: 20 steps of a global batch of 8, across epochs."""
    from nanoae.checkpoint import save_checkpoint  # noqa: PLC0415

    x, y = data()
    model, optimizer = model_and_optimizer()
    loss_fn = nn.CrossEntropy()
    comm.broadcast_parameters(model.parameters())
    step, epoch, batch_size = 0, 0, args.batch_size
    while step < args.steps:
        order = np.random.default_rng([0, epoch]).permutation(N)
        for start in range(0, N, batch_size):
            if step == args.fail_step and comm.rank == args.fail_rank:
                raise RuntimeError(f"injected fault at step {step}")
            batch = order[start:start + batch_size]
            mine = batch[comm.shard(len(batch))]
            if len(mine):
                loss_fn(model(x[mine]), y[mine])
                model.backward_from_loss(loss_fn, input_grad=False)
            comm.average_gradients(model.parameters(), weight=len(mine) / len(batch))
            optimizer.step()
            step += 1
            if step == args.steps:
                break
        epoch += 1
        if comm.is_root and args.checkpoint:
            save_checkpoint(args.checkpoint, model, optimizer, meta={"epoch": epoch})
    params = [p.data for p in model.parameters()]
    comm.check_agree("the parameters after training", fingerprint(*params))  # bitwise equal
    if comm.is_root:
        np.savez(Path(args.out) / "params.npz", *params)


def evaluate(comm, args):
    from nanoae.training import evaluate as evaluate_model  # noqa: PLC0415

    x, y = data(seed=2)
    model, _ = model_and_optimizer()
    part = comm.shard(len(x))
    local = evaluate_model(model, nn.CrossEntropy(), x[part], y[part], batch_size=16)
    n = part.stop - part.start
    loss_sum, correct, count = comm.allreduce_sum([local["loss"] * n, local["accuracy"] * n, n])
    result = {"loss": loss_sum / count, "accuracy": round(correct) / count}
    if comm.is_root:
        (Path(args.out) / "evaluate.json").write_text(json.dumps(result))


def gpus(comm, args):
    comm.use_gpu(device_count=1)


def disagree(comm, args):
    x, y = data(seed=comm.rank)  # a mistake: each rank made its own data
    comm.check_agree("the training data", fingerprint(x, y))


def sizeone(comm, args):
    result = {"size": comm.size, "mpi4py_imported": "mpi4py" in sys.modules}
    (Path(args.out) / "sizeone.json").write_text(json.dumps(result))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=("loop", "evaluate", "gpus", "disagree", "sizeone"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fail-rank", type=int, default=-1)
    parser.add_argument("--fail-step", type=int, default=-1)
    parser.add_argument("--checkpoint")
    parser.add_argument("--hook", action="store_true", help="install_excepthook, not abort_on_error")
    args = parser.parse_args()
    comm = world()
    run = globals()[args.scenario]
    if args.hook:
        comm.install_excepthook()
        run(comm, args)
    else:
        with abort_on_error(comm):
            run(comm, args)


if __name__ == "__main__":
    main()

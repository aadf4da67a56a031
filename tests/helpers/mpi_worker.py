"""What each rank runs in tests/test_communicator.py (``mpiexec -n 2 python mpi_worker.py ...``).

Also run as a plain process (size 1) for the single-process reference figures.
Every scenario writes its results as JSON/NPZ into the folder given by --out
(rank 0 only), so the test compares them after the job ends.

    loop      20 steps of the hand-written data-parallel loop; saves the parameters
    fit_run   fit on the ranks (a classifier, or an augmented autoencoder); saves
              parameters and history; --own-weights: each rank starts from weights of
              its own (rank 0 from those of one process)
    evaluate  a model's loss/accuracy over shards, reduced
    threads   the BLAS/OpenMP thread counts of every rank
    disagree  ranks that load different data
    sizeone   which modules a single process imported
    engines   the engines' interface tests (tests/helpers/engine_checks.py) on MpiEngine
    settings  a learner's Tanh in a classifier, its optimizer's settings changed mid-run
              (tests/helpers/learner_run.py); --optimizer adam|adamw|sgd; saves the weights
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

import nanoae as nn
import nanoae.train.callbacks
from nanoae.errors import Interrupted
from nanoae.parallel.communicator import abort_on_error, fingerprint, world

N, FEATURES, CLASSES = 71, 12, 5  # 71 = 8 full batches of 8 and a last one of 7 (3 + 4 on 2 ranks)


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=N).astype(np.int64)
    return x, y


def model_and_optimizer(seed=1):
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Dense(FEATURES, 16, rng=rng), nn.ReLU(), nn.Dense(16, CLASSES, rng=rng),
                          nn.Softmax())
    return model, nn.Adam(model.parameters(), lr=1e-2)


def loop(comm, args):
    """The hand-written loop: 20 steps of a global batch of 8, across epochs."""
    from nanoae.train.checkpoint import save_checkpoint  # noqa: PLC0415

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


class Bomb(nn.Layer):
    """An identity layer that raises on one rank at its n-th forward pass on a small batch
    (fit's one-row check of the data, then the training shards; not the validation sets)."""

    def __init__(self, rank, at, max_rows):
        super().__init__()
        self.rank, self.at, self.max_rows, self.calls = rank, at, max_rows, 0

    def forward(self, x):
        if len(x) <= self.max_rows:
            self.calls += 1
            if self.calls == self.at and world().rank == self.rank:
                raise RuntimeError(f"injected fault at training step {self.at}")
        return x

    def backward(self, grad_out, *, input_grad=True):
        return grad_out


class CtrlC(nn.Callback):
    """Sends this process SIGINT after global step ``at`` on rank ``rank`` only: the other
    ranks learn of it from the all-reduced stop flag."""

    def __init__(self, rank, at):
        self.rank, self.at = rank, at

    def on_step_end(self, run):
        if run.global_step == self.at and run.comm.rank == self.rank:
            os.kill(os.getpid(), signal.SIGINT)


def fit_run(comm, args):
    """fit, data parallel: a classifier (with validation figures) or a masked, flipped,
    shifted autoencoder on 4x4 images; saves parameters and history."""
    from nanoae.train.augment import Augmentation  # noqa: PLC0415
    from nanoae.train.callbacks import Checkpoint, Progress  # noqa: PLC0415
    from nanoae.train.loop import fit  # noqa: PLC0415

    x, y = data()
    if args.autoencoder:
        x = np.random.default_rng(4).random((N, 16), dtype=np.float32)  # 4x4 "images" in [0, 1]
        rng = np.random.default_rng(1)
        model = nn.Sequential(nn.Dense(16, 6, rng=rng), nn.ReLU(), nn.Dense(6, 16, rng=rng), nn.Sigmoid())
        optimizer, loss = nn.Adam(model.parameters(), lr=1e-2), nn.BinaryCrossEntropy()
        kwargs = dict(augment=Augmentation(flip=True, shift=1, mask=0.25))
        y = None
    else:
        model, optimizer = model_and_optimizer(seed=1 + 100 * comm.rank if args.own_weights else 1)
        loss = nn.CrossEntropy()
        xv, yv = data(seed=3)
        kwargs = dict(validation=(xv, yv))
    callbacks = [Progress(bar=False, verbose=comm.is_root)]
    if args.checkpoint:
        callbacks.append(Checkpoint(args.checkpoint, resume=args.resume))
    if args.interrupt_at >= 0:
        callbacks.append(CtrlC(args.interrupt_rank, args.interrupt_at))
    if args.fail_step >= 0:
        model = nn.Sequential(Bomb(args.fail_rank, args.fail_step, args.batch_size), *model.layers)
    history = fit(model, loss, optimizer, x, y, epochs=args.epochs, batch_size=args.batch_size,
                  seed=5, callbacks=callbacks, **kwargs)
    params = [p.data for p in model.parameters()]
    comm.check_agree("the parameters after training", fingerprint(*params))
    if comm.is_root:
        np.savez(Path(args.out) / "params.npz", *params)
        (Path(args.out) / "history.json").write_text(json.dumps(history))


def evaluate(comm, args):
    from nanoae.train.loop import evaluate as evaluate_model  # noqa: PLC0415

    x, y = data(seed=2)
    model, _ = model_and_optimizer()
    result = evaluate_model(model, nn.CrossEntropy(), x, y, batch_size=16, comm=comm)
    if comm.is_root:
        (Path(args.out) / "evaluate.json").write_text(json.dumps(result))


def threads(comm, args):
    """Every rank's thread pools after world() set them up (rank 0 writes them)."""
    from nanoae.parallel.threads import thread_counts  # noqa: PLC0415

    everyone = comm.mpi_comm.gather(thread_counts(), root=0)
    if comm.is_root:
        (Path(args.out) / "threads.json").write_text(json.dumps(everyone))


def disagree(comm, args):
    x, y = data(seed=comm.rank)  # a mistake: each rank made its own data
    comm.check_agree("the training data", fingerprint(x, y))


def sizeone(comm, args):
    result = {"size": comm.size, "mpi4py_imported": "mpi4py" in sys.modules}
    (Path(args.out) / "sizeone.json").write_text(json.dumps(result))


def engines(comm, args):
    from helpers.engine_checks import check_engine  # noqa: PLC0415
    from nanoae.parallel.engines import MpiEngine  # noqa: PLC0415

    check_engine(MpiEngine(comm.mpi_comm), np.asarray)
    check_engine(MpiEngine(comm.mpi_comm), np.asarray, dtype=np.float64)
    comm.engine(np.zeros(1)).barrier()  # every rank passed before rank 0 says so
    if comm.is_root:
        (Path(args.out) / "engines.ok").write_text(f"MpiEngine {comm.size}")


def settings(comm, args):
    from helpers.learner_run import settings_run  # noqa: PLC0415

    params, records = settings_run(comm, args.optimizer)
    if comm.is_root:
        np.savez(Path(args.out) / "params.npz", *params)
        (Path(args.out) / "watch.json").write_text(json.dumps(records))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=("loop", "fit_run", "evaluate", "threads", "disagree",
                                             "sizeone", "engines", "settings"))
    parser.add_argument("--optimizer", default="adam", choices=("adam", "adamw", "sgd"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--autoencoder", action="store_true")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--own-weights", action="store_true")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fail-rank", type=int, default=-1)
    parser.add_argument("--fail-step", type=int, default=-1)
    parser.add_argument("--checkpoint")
    parser.add_argument("--interrupt-rank", type=int, default=0)
    parser.add_argument("--interrupt-at", type=int, default=-1, help="Ctrl-C after this global step")
    parser.add_argument("--disk-full", action="store_true", help="every checkpoint write fails "
                        "with ENOSPC after 1000 bytes")
    parser.add_argument("--hook", action="store_true", help="install_excepthook, not abort_on_error")
    args = parser.parse_args()
    if args.interrupt_at >= 0:  # a simulated Ctrl-C must arrive, even in a job started with it
        signal.signal(signal.SIGINT, signal.default_int_handler)  # ignored (``... &``, nohup)
    if args.disk_full:  # rank 0 alone writes checkpoints: its disk fills up part way
        from helpers.full_disk import fill_up  # noqa: PLC0415

        os.fdopen = fill_up(1000)
    comm = world()
    run = globals()[args.scenario]
    if args.hook:
        comm.install_excepthook()
        run(comm, args)
    else:
        try:
            with abort_on_error(comm):
                run(comm, args)
        except Interrupted as exc:  # every rank stopped at the same step, after the save
            print(f"rank {comm.rank}: {exc}", file=sys.stderr)
            sys.exit(130)


if __name__ == "__main__":
    main()

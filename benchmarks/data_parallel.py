"""Data-parallel scaling: N ranks x (cores/N) BLAS threads against 1 rank x all cores.

    python benchmarks/bench.py --workers N [--recipe reference|default] [--quick] [--repeats R]
                               [--epochs-per-run E] [--batch B] [--json PATH]
    python benchmarks/data_parallel.py --workers N ...        (the same)

Needs ``pip install -e '.[mpi]'`` (mpi4py and mpiexec) and the real Fashion-MNIST.

What it measures, on one of two recipes (``--recipe``), trained by ``fit`` as a user runs it
on the 60,000 training images, global batch 256 (``--batch``):

* ``reference`` (default): the reference autoencoder 784-128-64-32-64-128-784, ReLU
  code, BCE, Adam at a constant lr 1e-3, clean inputs;
* ``default``: ``nanoae train-ae``'s recipe until 2026-12-06 (its autoencoder is now
  784-512-128-32 with a unit-length code; this keeps the one the figures below were
  measured on): 784-256-128-32-128-256-784, linear code, masking noise 0.1 (drawn per sample, each rank its own rows), Adam on a
  cosine schedule from 2e-3 (no validation split: every image trains).

The configurations:

* ``1 rank``: one plain process (no MPI) with every core's BLAS thread;
* ``N ranks``: ``mpiexec -n N``, each rank with cores/N BLAS threads
  (OMP/OPENBLAS/MKL_NUM_THREADS), each computing on batch/N examples; fit's
  sharded optimizer (ZeRO-1, nanoae/parallel/zero.py) reduce-scatters the gradients,
  runs Adam over this rank's 1/N of the weights and all-gathers them;
* ``torch-tuned``: PyTorch on the same workload with every core's thread
  (bench.py's ``torch-tuned`` contender: logits + BCEWithLogitsLoss, fused Adam),
  the peer nanoae's N ranks are to beat; skipped when PyTorch is not installed.

Per configuration: the median seconds per epoch (fit's own ``history["seconds"]``,
after one warm-up epoch), and for N ranks the time spent inside the all-reduce
per step and per epoch (rank 0's clock around the reduce-scatter and the
all-gather; the ranks wait for each other there, so it includes load imbalance),
the bytes of the gradient buffer (every gradient in float32, padded to N equal
ranges), and the bytes of Adam's state a rank holds while it trains (its m and v:
read from the live arrays at each epoch's end, the largest kept). Runs are
interleaved (for repeat: 1 rank, N ranks, PyTorch), each in its own processes.

Then ``alpha``/``beta`` of the scaling model

    time per step = compute(batch / N) + alpha + bytes / beta

from a separate microbenchmark: ``MPI_Allreduce`` of float32 buffers of 4 B to
4 MiB on N ranks, median of many calls per size, and a least-squares line
t = alpha + bytes / beta through them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MARK = "DP-RESULT "
BATCH, LR = 256, 1e-3  # the default global batch
SIZES = [1, 16, 256, 4096, 65536, 262144, 1048576]  # float32 elements: 4 B .. 4 MiB


# ------------------------------------------------------------------------- on every rank
def child_train(args) -> dict:
    """Train the recipe's autoencoder with fit on this job's ranks; rank 0 reports."""
    sys.path.insert(0, str(HERE))
    from contenders import load_data  # noqa: PLC0415

    import nanoae  # noqa: PLC0415
    from nanoae.fashion.models import Autoencoder  # noqa: PLC0415
    from nanoae.parallel.communicator import Communicator, world  # noqa: PLC0415
    from nanoae.train.augment import Augmentation  # noqa: PLC0415
    from nanoae.train.callbacks import Callback, LearningRateSchedule, Progress  # noqa: PLC0415
    from nanoae.train.loop import cosine_schedule, fit  # noqa: PLC0415

    class TimedCommunicator(Communicator):
        """The world communicator, with a stopwatch around each collective of the step."""
        seconds, steps, nbytes = 0.0, 0, 0

        def engine(self, array):
            return TimedEngine(super().engine(array), self)

    class TimedEngine:
        """An engine whose step collectives (float32 reduce-scatter and all-gather of the
        sharded optimizer) add their time to ``owner``; a reduce-scatter counts one step."""

        def __init__(self, engine, owner):
            self.engine, self.owner = engine, owner

        def __getattr__(self, name):
            return getattr(self.engine, name)

        def _timed(self, name, buf, *rest):
            t0 = time.perf_counter()
            getattr(self.engine, name)(buf, *rest)
            self.owner.seconds += time.perf_counter() - t0

        def reduce_scatter_sum(self, send, recv):
            self._timed("reduce_scatter_sum", send, recv)
            self.owner.steps += 1
            self.owner.nbytes = int(send.nbytes)

        def allgather(self, buf):
            self._timed("allgather", buf)

    class StateBytes(Callback):
        """The bytes of optimizer state this rank holds, at each epoch's end (the largest)."""
        held = 0

        def on_epoch_end(self, run):
            held = run.sharded.state_bytes() if run.sharded else sum(
                int(a.nbytes) for name in run.optimizer.state_names for a in getattr(run.optimizer, name))
            self.held = max(self.held, held)

    comm = TimedCommunicator(world().mpi_comm)
    x, _ = load_data("ae", args.n)
    epochs = 1 + args.epochs_per_run
    state_bytes = StateBytes()
    callbacks = [Progress(bar=False, verbose=False), state_bytes]
    if args.recipe == "reference":
        model = Autoencoder((784, 128, 64, 32), code_activation="relu", seed=0)
        optimizer, augment = nanoae.Adam(model.parameters(), lr=LR), Augmentation()
    else:  # train-ae's until 2026-12-06 (pipeline.Settings' defaults of then)
        model = Autoencoder((784, 256, 128, 32), code_activation="linear", seed=0)
        optimizer, augment = nanoae.Adam(model.parameters(), lr=2e-3), Augmentation(mask=0.1)
        steps = -(-len(x) // args.batch)
        callbacks.append(LearningRateSchedule(cosine_schedule(2e-3, 40 * steps, warmup_steps=steps)))
    history = fit(model, nanoae.BinaryCrossEntropy(), optimizer, x, epochs=epochs, batch_size=args.batch,
                  seed=0, augment=augment, comm=comm, callbacks=callbacks)
    steps = -(-len(x) // args.batch)
    values = sum(int(p.data.size) for p in model.parameters())
    return {"ranks": comm.size, "seconds": history["seconds"][1:], "warmup": history["seconds"][0],
            "allreduce_ms_per_step": 1e3 * comm.seconds / max(1, comm.steps),
            "allreduce_s_per_epoch": comm.seconds / max(1, comm.steps) * steps,
            "buffer_bytes": comm.nbytes, "steps_per_epoch": steps, "parameters": values,
            # Adam's m and v that this rank holds while training (parallel/zero.py), and the
            # arithmetic: 2 x 4 B x ceil(P / N)
            "adam_state_bytes_per_rank": state_bytes.held,
            "adam_state_bytes_computed": 2 * 4 * -(-values // comm.size),
            "final_train_loss": history["train_loss"][-1]}


def child_alpha_beta(args) -> dict:
    """Median time of MPI_Allreduce (float32, sum, in place) per buffer size, and the fitted line."""
    from mpi4py import MPI  # noqa: PLC0415

    comm = MPI.COMM_WORLD
    sizes = SIZES[:4] if args.quick else SIZES
    medians = []
    for n in sizes:
        buf = numpy.ones(n, dtype=numpy.float32)
        calls = 20 if args.quick else max(20, min(2000, 2_000_000 // max(n, 1)))
        for _ in range(5):  # warm-up: connection set-up, first-touch
            comm.Allreduce(MPI.IN_PLACE, buf)
        times = []
        for _ in range(calls):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf)
            times.append(time.perf_counter() - t0)
        # the slowest rank's time is the collective's time
        medians.append(comm.allreduce(statistics.median(times), op=MPI.MAX))
    nbytes = [4 * n for n in sizes]
    slope, intercept = numpy.polyfit(nbytes, medians, 1)  # t = alpha + bytes / beta
    return {"ranks": comm.Get_size(), "bytes": nbytes, "median_s": medians,
            "alpha_s": float(intercept), "beta_bytes_per_s": float(1 / slope) if slope > 0 else None}


def child(args) -> int:
    from nanoae.parallel.communicator import world  # noqa: PLC0415

    comm = world()
    result = child_train(args) if args.child == "train" else child_alpha_beta(args)
    if comm.is_root:
        print(MARK + json.dumps(result), flush=True)
    return 0


# ------------------------------------------------------------------------- the parent
def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    from shutil import which  # noqa: PLC0415

    return which("mpiexec")


def spawn(what: str, ranks: int, threads: int, args) -> dict:
    """One run: a plain process (ranks == 1) or an mpiexec job; its rank 0's result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", what, "--n", str(args.n),
               "--epochs-per-run", str(args.epochs_per_run), "--batch", str(args.batch)]
    command += (["--quick"] if args.quick else []) + ["--recipe", args.recipe]
    if ranks > 1:
        command = [_mpiexec(), "-n", str(ranks)] + command
    return _marked_result(command, threads, MARK)


def spawn_torch(threads: int, args) -> dict:
    """One run of bench.py's ``torch-tuned`` contender on the same workload and threads."""
    command = [sys.executable, str(HERE / "bench.py"), "--child", "ae:torch-tuned", "--n", str(args.n),
               "--epochs-per-run", str(args.epochs_per_run), "--device", "cpu", "--batch", str(args.batch)]
    return _marked_result(command, threads, "BENCH-RESULT ")


def _marked_result(command: list, threads: int, mark: str) -> dict:
    """Run ``command`` with ``threads`` BLAS/OpenMP threads; the JSON of its line starting with ``mark``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(mark):
            return json.loads(line[len(mark):])
    tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
    raise RuntimeError(f"{' '.join(command)} failed (exit {proc.returncode}):\n{tail}")


def _epochs(runs: list[dict]) -> dict:
    """The median, min and max of every timed epoch of ``runs``."""
    epochs = [s for r in runs for s in r["seconds"]]
    return {"median_s": statistics.median(epochs), "min_s": min(epochs), "max_s": max(epochs), "runs": runs}


def summarise(runs: list[dict]) -> dict:
    out = {**_epochs(runs), "final_train_loss": runs[-1]["final_train_loss"]}
    out["adam_state_bytes_per_rank"] = runs[0]["adam_state_bytes_per_rank"]
    out["adam_state_bytes_computed"] = runs[0]["adam_state_bytes_computed"]
    if runs[0]["ranks"] > 1:
        out.update(allreduce_ms_per_step=statistics.median(r["allreduce_ms_per_step"] for r in runs),
                   allreduce_s_per_epoch=statistics.median(r["allreduce_s_per_epoch"] for r in runs),
                   buffer_bytes=runs[0]["buffer_bytes"])
    return out


def report(single: dict, multi: dict, torch: dict | None, ab: dict, args, cores: int, cpu: str) -> None:
    n_ranks = args.workers
    what = {"reference": "reference autoencoder 784-128-64-32, clean inputs",
            "default": "train-ae's autoencoder until 2026-12-06, 784-256-128-32, masks 0.1, cosine lr"}[args.recipe]
    print(f"\n== data parallel: {what}, {args.n} images, global batch {args.batch}, "
          f"{args.repeats} repeat(s) x {args.epochs_per_run} epoch(s) after 1 warm-up; {cores} cores ==")
    print(f"CPU: {cpu}")
    print(f"{'configuration':<26} {'s/epoch':>8} {'min-max':>13} {'collectives s/epoch':>18} "
          f"{'ms/step':>8} {'ratio':>6}")
    print(f"{f'1 rank x {cores} threads':<26} {single['median_s']:8.3f} "
          f"{single['min_s']:6.3f}-{single['max_s']:<6.3f} {'-':>18} {'-':>8} {1:6.2f}")
    label = f"{n_ranks} ranks x {max(1, cores // n_ranks)} thread(s)"
    print(f"{label:<26} {multi['median_s']:8.3f} {multi['min_s']:6.3f}-{multi['max_s']:<6.3f} "
          f"{multi['allreduce_s_per_epoch']:18.3f} {multi['allreduce_ms_per_step']:8.3f} "
          f"{multi['median_s'] / single['median_s']:6.2f}")
    if torch is None:
        why = "PyTorch is not installed" if args.recipe == "reference" else "the reference recipe only"
        print(f"{f'torch-tuned x {cores} threads':<26} skipped: {why}")
    else:
        print(f"{f'torch-tuned x {cores} threads':<26} {torch['median_s']:8.3f} "
              f"{torch['min_s']:6.3f}-{torch['max_s']:<6.3f} {'-':>18} {'-':>8} "
              f"{torch['median_s'] / single['median_s']:6.2f}")
        print(f"{n_ranks} ranks / torch-tuned on {cores} threads = "
              f"{multi['median_s'] / torch['median_s']:.2f}; 1 rank / torch-tuned = "
              f"{single['median_s'] / torch['median_s']:.2f}")
    sent = 2 * (n_ranks - 1) / n_ranks * multi["buffer_bytes"]
    print(f"bytes per step: buffer {multi['buffer_bytes']:,} B (every gradient in float32, padded); "
          f"a ring reduce-scatter + all-gather sends 2(N-1)/N of it per rank: {sent:,.0f} B")
    print(f"Adam state a rank holds while training (m and v, read from the live arrays): 1 rank "
          f"{single['adam_state_bytes_per_rank']:,} B, {n_ranks} ranks "
          f"{multi['adam_state_bytes_per_rank']:,} B each (2 x 4 B x ceil(P/N) = "
          f"{multi['adam_state_bytes_computed']:,} B)")
    print(f"final train loss (same data, same seed): 1 rank {single['final_train_loss']:.6f}, "
          f"{n_ranks} ranks {multi['final_train_loss']:.6f}")
    print(f"\nMPI_Allreduce on {ab['ranks']} ranks (median per call):")
    for b, t in zip(ab["bytes"], ab["median_s"]):
        print(f"  {b:>9,} B  {1e6 * t:9.1f} us")
    beta = ab["beta_bytes_per_s"]
    print(f"fit t = alpha + bytes/beta: alpha = {1e6 * ab['alpha_s']:.1f} us, "
          f"beta = {'n/a' if beta is None else f'{beta / 1e9:.3g} GB/s'}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2, help="ranks of the data-parallel run (default 2)")
    p.add_argument("--repeats", type=int, default=None, help="runs per configuration (default 3; 1 with --quick)")
    p.add_argument("--epochs-per-run", type=int, default=3, help="timed epochs per run, after 1 warm-up")
    p.add_argument("--quick", action="store_true", help="1,024 images, 1 repeat, 1 epoch: a smoke test")
    p.add_argument("--batch", type=int, default=BATCH, help=f"the global batch (default {BATCH}); "
                   "it must divide by --workers")
    p.add_argument("--json", type=Path, help="also write the settings, raw times and results here")
    p.add_argument("--recipe", choices=("reference", "default"), default="reference",
                   help="the reference autoencoder (default), or train-ae's default recipe (masks, "
                   "wider); PyTorch runs with the reference one only")
    p.add_argument("--child", choices=("train", "alpha-beta"), help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=60000, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    if args.workers < 2:
        p.error("--workers must be at least 2 (1 rank is the baseline every run includes)")
    if args.batch < 1 or args.batch % args.workers:
        p.error(f"--batch {args.batch} must be a positive multiple of --workers {args.workers}")
    if _mpiexec() is None:
        print("no mpiexec (in the virtual environment or on PATH): pip install -e '.[mpi]'", file=sys.stderr)
        return 2
    if args.quick:
        args.n, args.epochs_per_run = 1024, 1
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    cores = os.cpu_count() or 1
    runs = {"single": [], "multi": [], "torch": []}
    torch_skipped = None
    for r in range(args.repeats):  # interleaved, so drift of the machine hits every one alike
        for key, ranks, threads in (("single", 1, cores), ("multi", args.workers, max(1, cores // args.workers)),
                                    ("torch", 1, cores)):
            t0 = time.perf_counter()
            if key == "torch":
                if torch_skipped or args.recipe != "reference":
                    continue
                result = spawn_torch(threads, args)
                if "skipped" in result:
                    torch_skipped = result["skipped"]
                    continue
                runs[key].append(result)
            else:
                runs[key].append(spawn("train", ranks, threads, args))
            what = "torch-tuned" if key == "torch" else f"{ranks} rank(s)"
            print(f"[{r + 1}/{args.repeats}] {what} x {threads} thread(s): "
                  f"{statistics.median(runs[key][-1]['seconds']):.3f} s/epoch "
                  f"({time.perf_counter() - t0:.0f} s wall)", file=sys.stderr, flush=True)
    ab = spawn("alpha-beta", args.workers, 1, args)
    single, multi = summarise(runs["single"]), summarise(runs["multi"])
    torch = None if not runs["torch"] else _epochs(runs["torch"])
    sys.path.insert(0, str(HERE))
    from bench import cpu_model  # noqa: PLC0415

    cpu = cpu_model()
    report(single, multi, torch, ab, args, cores, cpu)
    if args.json:
        doc = {"settings": {"workers": args.workers, "repeats": args.repeats, "n": args.n, "recipe": args.recipe,
                            "epochs_per_run": args.epochs_per_run, "cores": cores, "batch": args.batch, "lr": LR},
               "cpu": cpu, "single": single, "multi": multi, "torch_tuned": torch or {"skipped": torch_skipped},
               "alpha_beta": ab}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Epoch time and peak memory of nanoae against PyTorch, scikit-learn and the GEMM floor.

    python benchmarks/bench.py [--repeats N] [--epochs-per-run E] [--only NAMES] [--batch B]
                               [--json PATH] [--quick] [--device cpu|cuda] [--unset-openblas-env]
                               [--threads N[,M...]]
    python benchmarks/bench.py --workers N [--recipe reference|default] [--repeats N] [--epochs-per-run E]
                               [--batch B] [--json PATH] [--quick]
                               (data-parallel scaling over MPI instead: see data_parallel.py)

Two workloads, both float32, Adam (lr 1e-3), batch 256 (``--batch``), a fresh shuffle
every epoch:

* ``ae``: the reference autoencoder 784-128-64-32-64-128-784 (ReLU inside, the code
  too; sigmoid out; BCE) on the real Fashion-MNIST training images (60,000; 6,000
  with --quick).
* ``head``: a 32-64-10 softmax head (cross-entropy) on 60,000 frozen 32-d codes with
  integer labels. The codes and labels are random (standard normal, uniform 0..9):
  the time of an epoch does not depend on their values.

Method:

* One subprocess per run and contender, so imports, allocator state and the peak
  resident memory (``ru_maxrss``, read by the child at its end) belong to that
  contender alone. Every child loads the data the same way, so the loading
  transient is in every contender's peak alike.
* Interleaving: ``for repeat: for workload: for contender: run``. Slow drift of the
  machine (other load, heat, frequency) then hits every contender alike instead of
  whichever happened to run last.
* Warm-up: each run trains 1 + E epochs and drops the first (first-touch page
  faults, BLAS thread start-up, lazy allocations, CUDA kernel compilation).
* Statistic: the median of all kept epochs (repeats x E) and their min-max; medians
  shrug off the odd epoch disturbed by another process.
* The GEMM floor: only the matrix products an epoch needs, in NumPy (CuPy with
  --device cuda) with preallocated outputs (``matmul(..., out=)``), over the same
  number of batches: per layer the forward ``x @ W`` and the weight gradient
  ``x^T @ g``, and the input gradient ``g @ W^T`` for every layer except the first,
  since nobody needs the gradient with respect to the data (nanoae and PyTorch skip
  it too). No bias, activation, loss, optimizer or batch gathering: a lower bound
  that no implementation on this BLAS can beat. ``nanoae / floor - 1`` is the time
  nanoae spends outside the matrix products, relative to them.
* Threads (``--threads 1,2``): every contender runs with each BLAS / PyTorch thread
  count in turn (interleaved like the repeats), one table per count, then a table of
  how each contender's epoch time scales from the first count to the last. NumPy's
  elementwise functions (activations, loss, Adam) run on one core whatever the
  count; PyTorch's use every thread it is given. This table shows how much of a
  gap between them is that.
* GPU memory (``--device cuda``): what each child's allocator held at its peak,
  CuPy's memory pool or PyTorch's caching allocator (``contenders.gpu_memory``).

The ratio column is ``nanoae / this contender``: below 1, nanoae is faster.
What each contender runs is in ``contenders.py`` beside this file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from contenders import (
    BATCH,
    LR,
    RUNNERS,
    Skip,
    blas_info,
    child_info,
    gemm_flops,
    gpu_memory,
    load_data,
)

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = {
    "ae": "reference autoencoder epoch: 784-128-64-32-64-128-784, BCE, Adam",
    "head": "head epoch: 32-64-10 softmax head, CE, Adam, random frozen codes",
}
CONTENDERS = tuple(RUNNERS)
FULL_N, QUICK_N = 60000, 6000
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
MARK = "BENCH-RESULT "


def child(args) -> int:
    """Run one contender (or the info probe) and print its result as one marked JSON line."""
    try:
        if args.child == "info":
            result = child_info(args.device)
        else:
            workload, contender = args.child.split(":")
            x, y = load_data(workload, args.n)
            seconds, note = RUNNERS[contender](workload, x, y, 1 + args.epochs_per_run, args.device,
                                               args.batch)
            result = {"warmup": seconds[0], "seconds": seconds[1:], "note": note, **gpu_memory(),
                      "blas_threads": blas_info().get("blas_threads")}
    except Skip as e:
        result = {"skipped": str(e)}
    result["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(MARK + json.dumps(result), flush=True)
    return 0


# ----------------------------------------------------------------------------- parent side
def cpu_model() -> str:
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "unknown"
    return f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"


def spawn(spec: str, args, env) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", spec, "--n", str(args.n),
           "--epochs-per-run", str(args.epochs_per_run), "--device", args.device, "--batch", str(args.batch)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
    return {"failed": f"exit {proc.returncode}", "stderr": tail}


def summarise(runs: list[dict], flops: float, steps: int) -> dict:
    ok = [r for r in runs if "seconds" in r]
    if not ok:
        bad = runs[0]  # a failure's full stderr went to the progress log and stays in "runs"
        last = (bad.get("stderr") or "").strip().splitlines()[-1:] or [""]
        return {"skipped": bad.get("skipped") or f"failed ({bad['failed']}): {last[0]}", "runs": runs}
    epochs = [s for r in ok for s in r["seconds"]]
    med = statistics.median(epochs)
    gpu = {k: max(r[k] for r in ok) for k in ("gpu_mib", "gpu_allocated_mib") if k in ok[0]}
    return {"median_s": med, "min_s": min(epochs), "max_s": max(epochs), "ms_per_step": 1e3 * med / steps,
            "gflops": flops / med / 1e9, "rss_mib": max(r["rss_mib"] for r in ok), **gpu,
            "note": ok[0]["note"], "runs": runs}


def print_table(workload: str, rows: dict, args, threads_used: int | None = None) -> None:
    threads = f", {threads_used} thread(s)" if threads_used else ""
    print(f"\n== {workload}: {WORKLOADS[workload]}, batch {args.batch}; {args.n} examples, "
          f"{args.repeats} repeat(s) x {args.epochs_per_run} epoch(s) after 1 warm-up{threads} ==")
    gpu = args.device == "cuda"  # then a column of GPU memory: the allocator's peak (see gpu_memory)
    print(f"{'contender':<12} {'s/epoch':>8} {'min-max':>13} {'ms/step':>8} {'GEMM GF/s':>9} "
          f"{'RSS MiB':>8} " + (f"{'GPU MiB':>8} " if gpu else "") + f"{'nanoae/this':>11}  note")
    base = rows.get("nanoae", {}).get("median_s")
    for name, r in rows.items():
        if "median_s" not in r:
            print(f"{name:<12} skipped: {r['skipped']}")
            continue
        ratio = f"{base / r['median_s']:.2f}" if base else "-"
        gpu_mib = (f"{r['gpu_mib']:8.0f} " if "gpu_mib" in r else f"{'-':>8} ") if gpu else ""
        note = r["note"] + (f"; {r['gpu_allocated_mib']:.0f} MiB in tensors at peak"
                            if "gpu_allocated_mib" in r else "")
        print(f"{name:<12} {r['median_s']:8.3f} {r['min_s']:6.3f}-{r['max_s']:<6.3f} "
              f"{r['ms_per_step']:8.2f} {r['gflops']:9.1f} {r['rss_mib']:8.0f} {gpu_mib}{ratio:>11}  {note}")
    peers = {k: v for k, v in rows.items() if k != "nanoae" and "median_s" in v}
    if base and peers:
        print("ratios: " + ", ".join(f"nanoae/{k} = {base / v['median_s']:.2f}" for k, v in peers.items()))
    if "median_s" in rows.get("floor", {}) and "median_s" in rows.get("torch-tuned", {}):
        print(f"floor/torch-tuned = {rows['floor']['median_s'] / rows['torch-tuned']['median_s']:.2f}")


def with_threads(env: dict, threads: int) -> dict:
    """``env`` with every BLAS / OpenMP thread-count variable set to ``threads``.

    The children read it before NumPy loads its BLAS, and the PyTorch contenders
    set their own thread count to the BLAS one (``contenders.py``).
    """
    counts = {v: str(threads) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return {**env, **counts}


def print_scaling(results: dict, thread_counts: list, workloads: list, contenders: list) -> None:
    """One row per contender: s/epoch at each thread count and the speed-up first -> last."""
    first, last = thread_counts[0], thread_counts[-1]
    for w in workloads:
        print(f"\n== {w}: s/epoch by thread count ==")
        print(f"{'contender':<12} " + " ".join(f"{str(t) + ' thr':>8}" for t in thread_counts)
              + f" {'speed-up ' + str(first) + '->' + str(last):>15}")
        for c in contenders:
            times = [results[t][w][c].get("median_s") for t in thread_counts]
            if None in times:
                continue
            print(f"{c:<12} " + " ".join(f"{x:8.3f}" for x in times) + f" {times[0] / times[-1]:15.2f}")


def print_header(meta: dict, args) -> None:
    print(f"nanoae benchmark  {meta['date']}  device={args.device}")
    print(f"CPU: {meta['cpu']}, {meta['cores']} cores; Python {meta['python']}")
    print(f"NumPy {meta['numpy']} with {meta['numpy_blas']}; threadpoolctl: {meta.get('blas_lib')}, "
          f"kernel {meta.get('blas_kernel')}, {meta.get('blas_threads')} threads")
    env = ", ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in meta["openblas_env_inherited"].items())
    print(f"OpenBLAS env here: {env}; " + ("UNSET in the children (--unset-openblas-env)"
                                           if args.unset_openblas_env else "the children inherit it"))
    if meta.get("torch"):
        print(f"PyTorch {meta['torch']} (default {meta['torch_default_threads']} threads; "
              f"set to the BLAS thread count, {meta.get('blas_threads')})")
    else:
        print("PyTorch: not installed")
    if args.device == "cuda":
        print(f"GPU: CuPy: {meta.get('cupy')}; PyTorch CUDA: {meta.get('torch_cuda')}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=None, help="runs per contender (default 3; 1 with --quick)")
    p.add_argument("--epochs-per-run", type=int, default=3, help="timed epochs per run, after 1 warm-up")
    p.add_argument("--only", default="", help=f"comma list of workloads {tuple(WORKLOADS)} "
                   f"and/or contenders {CONTENDERS}")
    p.add_argument("--json", type=Path, help="also write all settings, raw times and results here")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_N} examples and 1 repeat (a smoke test)")
    p.add_argument("--batch", type=int, default=BATCH, help=f"mini-batch size (default {BATCH})")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--unset-openblas-env", action="store_true",
                   help=f"unset {' and '.join(OPENBLAS_VARS)} in the child processes")
    p.add_argument("--threads", default="", help="comma list of BLAS/PyTorch thread counts to run "
                   "each contender with, e.g. 1,2 (default: as inherited, normally all cores)")
    p.add_argument("--workers", type=int, help="instead: the data-parallel benchmark, N MPI ranks x "
                   "(cores/N) BLAS threads against 1 rank x all cores (data_parallel.py)")
    p.add_argument("--recipe", choices=("reference", "default"), default="reference",
                   help="with --workers: the autoencoder recipe (data_parallel.py)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=FULL_N, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    if args.workers is not None:
        if args.threads:
            p.error("--threads does not apply to --workers (each rank gets cores/N BLAS threads)")
        import data_parallel  # noqa: PLC0415  (beside this file)

        forward = ["--workers", str(args.workers), "--epochs-per-run", str(args.epochs_per_run),
                   "--batch", str(args.batch), "--recipe", args.recipe]
        forward += (["--repeats", str(args.repeats)] if args.repeats else []) + (["--quick"] if args.quick else [])
        return data_parallel.main(forward + (["--json", str(args.json)] if args.json else []))
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    args.n = QUICK_N if args.quick else FULL_N
    if args.repeats < 1 or args.epochs_per_run < 1 or args.batch < 1:
        p.error("--repeats, --epochs-per-run and --batch must be >= 1")
    only = {s for s in args.only.split(",") if s}
    unknown = only - set(WORKLOADS) - set(CONTENDERS)
    if unknown:
        p.error(f"--only: unknown names {sorted(unknown)}")
    workloads = [w for w in WORKLOADS if w in only] or list(WORKLOADS)
    contenders = [c for c in CONTENDERS if c in only] or list(CONTENDERS)
    try:
        thread_counts = [int(t) for t in args.threads.split(",") if t] or [None]
    except ValueError:
        p.error(f"--threads: expected a comma list of integers, got {args.threads!r}")
    if any(t is not None and t < 1 for t in thread_counts):
        p.error("--threads: thread counts must be >= 1")

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    inherited = {v: os.environ.get(v) for v in OPENBLAS_VARS}
    if args.unset_openblas_env:
        for v in OPENBLAS_VARS:
            env.pop(v, None)
    info = spawn("info", args, env)
    if "failed" in info:
        print(f"the info probe failed:\n{info['stderr']}", file=sys.stderr)
        return 1
    if args.device == "cuda" and not info.get("cupy_ok") and not info.get("torch_cuda"):
        print(f"--device cuda: no usable CUDA device. CuPy: {info.get('cupy')}; PyTorch: "
              f"{'not installed' if not info.get('torch') else 'torch.cuda.is_available() is False'}",
              file=sys.stderr)
        return 2

    meta = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "openblas_env_inherited": inherited, "openblas_env_unset_in_children": args.unset_openblas_env,
            **info}
    print_header(meta, args)

    envs = {t: env if t is None else with_threads(env, t) for t in thread_counts}
    raw = {t: {w: {c: [] for c in contenders} for w in workloads} for t in thread_counts}
    skipped = set()
    for r in range(args.repeats):
        for t in thread_counts:
            for w in workloads:
                for c in contenders:
                    if (w, c) in skipped:
                        continue
                    t0 = time.perf_counter()
                    res = spawn(f"{w}:{c}", args, envs[t])
                    raw[t][w][c].append(res)
                    if "seconds" in res:
                        msg = f"{statistics.median(res['seconds']):.3f} s/epoch, {res['rss_mib']:.0f} MiB"
                    else:
                        skipped.add((w, c))
                        msg = f"skipped: {res.get('skipped') or res.get('failed')}"
                        if "stderr" in res:
                            msg += "\n" + res["stderr"]
                    where = f" ({t} thread(s))" if t else ""
                    print(f"[{r + 1}/{args.repeats}] {w} {c}{where}: {msg} "
                          f"({time.perf_counter() - t0:.0f} s wall)", file=sys.stderr, flush=True)

    steps = math.ceil(args.n / args.batch)
    results = {t: {w: {c: summarise(raw[t][w][c], gemm_flops(w, args.n), steps) for c in contenders}
                   for w in workloads} for t in thread_counts}
    for t in thread_counts:
        for w in workloads:
            print_table(w, results[t][w], args, t)
    if len(thread_counts) > 1:
        print_scaling(results, thread_counts, workloads, contenders)
    print("\nGEMM GF/s: the floor's matrix-product FLOPs per epoch / s per epoch (the same count for "
          "every row).")
    if len(thread_counts) == 1:
        results = results[thread_counts[0]]  # the JSON layout of a run without --threads
    else:
        results = {f"{t}_threads": r for t, r in results.items()}
    if args.json:
        settings = {k: getattr(args, k) for k in ("repeats", "epochs_per_run", "quick", "device", "n")}
        settings["threads"] = thread_counts
        doc = {"meta": meta, "settings": {**settings, "batch": args.batch, "lr": LR, "workloads": WORKLOADS,
                                          "contenders": contenders}, "results": results}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Epoch time and peak memory of nanoae against PyTorch, scikit-learn and the GEMM floor.

    python benchmarks/bench.py [--repeats N] [--epochs-per-run E] [--only NAMES]
                               [--json PATH] [--quick] [--device cpu|cuda] [--unset-openblas-env]

Two workloads, both float32, Adam (lr 1e-3), batch 256, a fresh shuffle every epoch:

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
  that no implementation on this BLAS can beat, so ``nanoae / floor`` is the
  share of the time spent outside the matrix products.

The ratio column is ``nanoae / this contender``: below 1, nanoae is faster.
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
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = {
    "ae": "reference autoencoder epoch: 784-128-64-32-64-128-784, BCE, Adam, batch 256",
    "head": "head epoch: 32-64-10 softmax head, CE, Adam, batch 256, random frozen codes",
}
WIDTHS = {"ae": (784, 128, 64, 32, 64, 128, 784), "head": (32, 64, 10)}
CONTENDERS = ("nanoae", "nanoae-raw", "torch-plain", "torch-tuned", "sklearn", "floor")
BATCH, LR, FULL_N, QUICK_N = 256, 1e-3, 60000, 6000
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
MARK = "BENCH-RESULT "


class Skip(Exception):
    """A contender that cannot run here; the message says why."""


# ----------------------------------------------------------------------------- child side
def gemm_flops(workload: str, n: int) -> float:
    """Floating-point operations of the floor's products for one epoch of n examples."""
    w = WIDTHS[workload]
    sizes = [a * b for a, b in zip(w[:-1], w[1:])]
    return 2.0 * n * (2 * sum(sizes) + sum(sizes[1:]))  # forward + dW, dX except layer 1


def blas_info() -> dict:
    """NumPy's BLAS as threadpoolctl sees it (library, version, kernel, threads)."""
    import numpy
    info = {"numpy": numpy.__version__}
    try:
        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # show_config's layout differs across NumPy versions
        info["numpy_blas"] = "unknown"
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {**info, "blas_threads": os.cpu_count(), "blas_kernel": "unknown (no threadpoolctl)"}
    pools = [p for p in threadpool_info() if p["user_api"] == "blas"]
    if pools:
        p = pools[0]
        info.update(blas_threads=p["num_threads"], blas_kernel=p.get("architecture", "n/a"),
                    blas_lib=f"{p['internal_api']} {p.get('version')} ({Path(p['filepath']).name})")
    return info


def child_info(device: str) -> dict:
    """What the header prints; run in a child so it sees the children's environment."""
    info = blas_info()
    try:
        import torch
        info.update(torch=torch.__version__, torch_default_threads=torch.get_num_threads())
        if device == "cuda":
            info["torch_cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    if device == "cuda":
        from nanoae import backend
        info["cupy"] = None if backend.cupy_available() else backend.cupy_unavailable_reason()
        if info["cupy"] is None:
            import cupy
            props = cupy.cuda.runtime.getDeviceProperties(0)
            info["cupy"] = f"CuPy {cupy.__version__} on {props['name'].decode()}"
            info["cupy_ok"] = True
    return info


def load_data(workload: str, n: int):
    """(x, y): uint8 images (n, 28, 28) and None, or float32 codes (n, 32) and int64 labels."""
    import numpy
    if workload == "head":
        rng = numpy.random.default_rng(0)
        return rng.standard_normal((n, 32), dtype=numpy.float32), rng.integers(0, 10, n)
    from nanoae.data import load_fashion_mnist
    from nanoae.errors import DatasetError
    try:
        images, _ = load_fashion_mnist("train", download=False, progress=False)
    except DatasetError as e:
        raise Skip(f"Fashion-MNIST not found: {e}") from e
    return (images[:n].copy() if n < len(images) else images), None


def as_float(x):
    """uint8 images -> float32 (n, 784) in [0, 1], for the peers that want float data."""
    import numpy
    return numpy.multiply(x.reshape(len(x), -1), numpy.float32(1 / 255), dtype=numpy.float32)


def run_nanoae(workload, x, y, epochs, device, raw=False):
    import numpy

    import nanoae
    from nanoae import backend
    from nanoae.models import Autoencoder, Classifier
    from nanoae.training import as_batch, fit
    try:
        backend.set_backend("cupy" if device == "cuda" else "numpy")
    except RuntimeError as e:
        raise Skip(str(e)) from e
    if workload == "ae":
        model = Autoencoder((784, 128, 64, 32), code_activation="relu", seed=0)
        loss = nanoae.BinaryCrossEntropy(check=False)
    else:
        model = Classifier(32, (64,), 10, seed=0)
        loss = nanoae.CrossEntropy(check=False)
    opt = nanoae.Adam(model.parameters(), lr=LR)
    if not raw:  # fit's own per-epoch seconds; it syncs once per epoch to read the losses
        hist = fit(model, loss, opt, x, y, epochs=epochs, batch_size=BATCH, seed=0,
                   progress=False, verbose=False)
        return hist["seconds"], f"fit, {backend.get_backend()}"
    # The same steps without fit's bookkeeping (loss history, accuracy, progress bar).
    xp, n, seconds = backend.xp(), len(x), []
    x, y = backend.to_device(x), None if y is None else backend.to_device(y)
    last = model.last_layer()
    fused = loss.fuses_with(last)
    for epoch in range(epochs):
        t0 = time.perf_counter()
        perm = xp.asarray(numpy.random.default_rng([0, epoch]).permutation(n))
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            xb = as_batch(x[idx])
            pred = model(xb)
            loss(pred, xb if y is None else y[idx], logits=last.logits if fused else None)
            model.backward_from_loss(loss, input_grad=False)
            opt.step()
        backend.synchronize()
        seconds.append(time.perf_counter() - t0)
    return seconds, f"raw loop, {backend.get_backend()}"


def run_torch(workload, x, y, epochs, device, tuned=False):
    threads = blas_info().get("blas_threads") or os.cpu_count()  # before torch loads its own
    try:
        import torch
    except ImportError as e:
        raise Skip(f"PyTorch is not installed ({e})") from e
    if device == "cuda" and not torch.cuda.is_available():
        raise Skip("torch.cuda.is_available() is False")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    nn, dev, w = torch.nn, torch.device(device), WIDTHS[workload]
    layers = []
    for i, (a, b) in enumerate(zip(w[:-1], w[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(w) - 2 else [])
    if workload == "ae":
        X, Y = torch.from_numpy(as_float(x)).to(dev), None
        if tuned:
            crit = nn.BCEWithLogitsLoss()
        else:
            layers.append(nn.Sigmoid())
            crit = nn.BCELoss()
    else:
        X, Y = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
        crit = nn.CrossEntropyLoss()  # on logits, the idiomatic form in both variants
    model = nn.Sequential(*layers).to(dev)
    note = f"eager, {threads} threads"
    if not tuned:
        opt = torch.optim.Adam(model.parameters(), lr=LR)
    else:
        try:
            opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
            note += ", Adam(fused=True)"
        except (RuntimeError, ValueError) as e:
            opt = torch.optim.Adam(model.parameters(), lr=LR, foreach=True)
            note += f", Adam(foreach=True): fused refused ({e})"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    n, seconds = len(X), []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=dev)
        total = torch.zeros((), device=dev)
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            xb = X[idx]
            if tuned:
                opt.zero_grad(set_to_none=True)
            else:
                opt.zero_grad()
            loss = crit(model(xb), xb if Y is None else Y[idx])
            loss.backward()
            opt.step()
            with torch.no_grad():
                total += loss.detach()  # no .item() per step: one host sync per epoch, as nanoae
        total.item()
        sync()
        seconds.append(time.perf_counter() - t0)
    return seconds, note


def run_sklearn(workload, x, y, epochs, device):
    if device == "cuda":
        raise Skip("scikit-learn runs on the CPU only")
    try:
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    except ImportError as e:
        raise Skip(f"scikit-learn is not installed ({e})") from e
    import numpy
    common = dict(hidden_layer_sizes=WIDTHS[workload][1:-1], activation="relu", solver="adam",
                  batch_size=BATCH, learning_rate_init=LR, shuffle=True, random_state=0)
    if workload == "ae":
        X = as_float(x)
        est, fit_args, note = MLPRegressor(**common), (X, X), "MLPRegressor: squared error, identity out"
    else:
        est, fit_args = MLPClassifier(**common), (x, y)
        note = "MLPClassifier: softmax + log-loss"
    kwargs = {} if workload == "ae" else {"classes": numpy.arange(10)}
    seconds = []
    for _ in range(epochs):  # one partial_fit = one pass over all the data
        t0 = time.perf_counter()
        est.partial_fit(*fit_args, **kwargs)
        seconds.append(time.perf_counter() - t0)
    return seconds, note


def run_floor(workload, x, y, epochs, device):
    import numpy
    xp = numpy
    if device == "cuda":
        try:
            import cupy as xp
        except ImportError as e:
            raise Skip(f"CuPy is not importable ({e})") from e
    sync = (lambda: xp.cuda.get_current_stream().synchronize()) if device == "cuda" else (lambda: None)
    rng, w, n = numpy.random.default_rng(0), WIDTHS[workload], len(x)
    W = [xp.asarray(rng.standard_normal((a, b), dtype=numpy.float32) / math.sqrt(a))
         for a, b in zip(w[:-1], w[1:])]
    acts = [xp.asarray(rng.random((BATCH, k), dtype=numpy.float32)) for k in w]  # acts[0]: input
    grads = [xp.asarray(rng.standard_normal((BATCH, k), dtype=numpy.float32)) for k in w[1:]]
    dW = [xp.empty_like(m) for m in W]
    dX = [xp.empty((BATCH, k), dtype=numpy.float32) for k in w[:-1]]
    seconds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for i in range(0, n, BATCH):
            b = min(BATCH, n - i)
            for k, m in enumerate(W):  # forward: (b, in) @ (in, out) -> (b, out)
                xp.matmul(acts[k][:b], m, out=acts[k + 1][:b])
            for k in range(len(W) - 1, -1, -1):
                xp.matmul(acts[k][:b].T, grads[k][:b], out=dW[k])  # (in, b) @ (b, out)
                if k > 0:  # the data needs no gradient
                    xp.matmul(grads[k][:b], W[k].T, out=dX[k][:b])  # (b, out) @ (out, in)
        sync()
        seconds.append(time.perf_counter() - t0)
    return seconds, f"{xp.__name__} matmul(out=), {gemm_flops(workload, n) / 1e9:.1f} GFLOP/epoch"


RUNNERS = {
    "nanoae": run_nanoae,
    "nanoae-raw": lambda *a: run_nanoae(*a, raw=True),
    "torch-plain": run_torch,
    "torch-tuned": lambda *a: run_torch(*a, tuned=True),
    "sklearn": run_sklearn,
    "floor": run_floor,
}


def child(args) -> int:
    """Run one contender (or the info probe) and print its result as one marked JSON line."""
    try:
        if args.child == "info":
            result = child_info(args.device)
        else:
            workload, contender = args.child.split(":")
            x, y = load_data(workload, args.n)
            seconds, note = RUNNERS[contender](workload, x, y, 1 + args.epochs_per_run, args.device)
            result = {"warmup": seconds[0], "seconds": seconds[1:], "note": note}
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
           "--epochs-per-run", str(args.epochs_per_run), "--device", args.device]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
    return {"failed": f"exit {proc.returncode}", "stderr": tail}


def summarise(runs: list[dict], flops: float, steps: int) -> dict:
    ok = [r for r in runs if "seconds" in r]
    if not ok:
        bad = runs[0]
        return {"skipped": bad.get("skipped") or f"failed ({bad.get('failed')}): {bad.get('stderr', '')}"}
    epochs = [s for r in ok for s in r["seconds"]]
    med = statistics.median(epochs)
    return {"median_s": med, "min_s": min(epochs), "max_s": max(epochs), "ms_per_step": 1e3 * med / steps,
            "gflops": flops / med / 1e9, "rss_mib": max(r["rss_mib"] for r in ok),
            "note": ok[0]["note"], "runs": runs}


def print_table(workload: str, rows: dict, args) -> None:
    print(f"\n== {workload}: {WORKLOADS[workload]}; {args.n} examples, "
          f"{args.repeats} repeat(s) x {args.epochs_per_run} epoch(s) after 1 warm-up ==")
    print(f"{'contender':<12} {'s/epoch':>8} {'min-max':>13} {'ms/step':>8} {'GEMM GF/s':>9} "
          f"{'RSS MiB':>8} {'nanoae/this':>11}  note")
    base = rows.get("nanoae", {}).get("median_s")
    for name, r in rows.items():
        if "median_s" not in r:
            print(f"{name:<12} skipped: {r['skipped']}")
            continue
        ratio = f"{base / r['median_s']:.2f}" if base else "-"
        print(f"{name:<12} {r['median_s']:8.3f} {r['min_s']:6.3f}-{r['max_s']:<6.3f} "
              f"{r['ms_per_step']:8.2f} {r['gflops']:9.1f} {r['rss_mib']:8.0f} {ratio:>11}  {r['note']}")
    peers = {k: v for k, v in rows.items() if k != "nanoae" and "median_s" in v}
    if base and peers:
        print("ratios: " + ", ".join(f"nanoae/{k} = {base / v['median_s']:.2f}" for k, v in peers.items()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=None, help="runs per contender (default 3; 1 with --quick)")
    p.add_argument("--epochs-per-run", type=int, default=3, help="timed epochs per run, after 1 warm-up")
    p.add_argument("--only", default="", help=f"comma list of workloads {tuple(WORKLOADS)} "
                   f"and/or contenders {CONTENDERS}")
    p.add_argument("--json", type=Path, help="also write all settings, raw times and results here")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_N} examples and 1 repeat (a smoke test)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--unset-openblas-env", action="store_true",
                   help=f"unset {' and '.join(OPENBLAS_VARS)} in the child processes")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=FULL_N, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    args.n = QUICK_N if args.quick else FULL_N
    only = {s for s in args.only.split(",") if s}
    unknown = only - set(WORKLOADS) - set(CONTENDERS)
    if unknown:
        p.error(f"--only: unknown names {sorted(unknown)}")
    workloads = [w for w in WORKLOADS if w in only] or list(WORKLOADS)
    contenders = [c for c in CONTENDERS if c in only] or list(CONTENDERS)

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.setdefault("PYTHONHASHSEED", "0")
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
    print(f"nanoae benchmark  {meta['date']}  device={args.device}")
    print(f"CPU: {meta['cpu']}, {meta['cores']} cores; Python {meta['python']}")
    print(f"NumPy {info['numpy']} with {info['numpy_blas']}; threadpoolctl: {info.get('blas_lib')}, "
          f"kernel {info.get('blas_kernel')}, {info.get('blas_threads')} threads")
    print("OpenBLAS env here: " + ", ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in inherited.items())
          + ("; UNSET in the children (--unset-openblas-env)" if args.unset_openblas_env
             else "; children inherit it (--unset-openblas-env to drop it)"))
    torch_line = (f"PyTorch {info['torch']} (default {info['torch_default_threads']} threads; "
                  f"set to the BLAS thread count, {info.get('blas_threads')})" if info.get("torch")
                  else "PyTorch: not installed")
    print(torch_line)
    if args.device == "cuda":
        print(f"GPU: CuPy: {info.get('cupy')}; PyTorch CUDA: {info.get('torch_cuda')}")

    raw = {w: {c: [] for c in contenders} for w in workloads}
    skipped = set()
    for r in range(args.repeats):
        for w in workloads:
            for c in contenders:
                if (w, c) in skipped:
                    continue
                t0 = time.perf_counter()
                res = spawn(f"{w}:{c}", args, env)
                raw[w][c].append(res)
                if "seconds" in res:
                    msg = f"{statistics.median(res['seconds']):.3f} s/epoch, {res['rss_mib']:.0f} MiB"
                else:
                    skipped.add((w, c))
                    msg = f"skipped: {res.get('skipped') or res.get('failed')}"
                    if "stderr" in res:
                        msg += "\n" + res["stderr"]
                print(f"[{r + 1}/{args.repeats}] {w} {c}: {msg} ({time.perf_counter() - t0:.0f} s wall)",
                      file=sys.stderr, flush=True)

    results = {}
    for w in workloads:
        steps = math.ceil(args.n / BATCH)
        results[w] = {c: summarise(raw[w][c], gemm_flops(w, args.n), steps) for c in contenders}
        print_table(w, results[w], args)
    print("\nGEMM GF/s: the floor's matrix-product FLOPs per epoch / s per epoch (the same count for "
          "every row).")
    if args.json:
        settings = {k: getattr(args, k) for k in ("repeats", "epochs_per_run", "quick", "device", "n")}
        doc = {"meta": meta, "settings": {**settings, "batch": BATCH, "lr": LR, "workloads": WORKLOADS,
                                          "contenders": contenders}, "results": results}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The terms of one data-parallel training step, measured apart, for N = 1, 2, 4, 8 ranks.

    python benchmarks/step_terms.py [--threads T] [--batch B] [--quick] [--json PATH]

docs/distributed.md models the step of a global batch B on N ranks, P parameters, as

    t_step(N) = t_compute(B/N) + t_draw(B/N) + t_opt(P/N) + t_pack(P) + t_comm(N)

This script measures every term but t_comm on ONE process (the terms a rank computes
alone; ``bench.py --workers N`` measures t_comm and the whole step under mpiexec), with
T BLAS threads (default 1: one rank per core), for the reference autoencoder
784-128-64-32-64-128-784 and the default one until 2026-12-06, 784-256-128-32-128-256-784:

* ``gather``   x[idx] for b = B/N random rows of the uint8 images, scaled to float32;
* ``draw``     the masking noise's keep-bits of b rows (Philox, ``augment.mask_bits``),
               the default recipe's p = 0.1; ``mask`` applies them (unpack, multiply);
* ``gemm``     the matrix products of forward and backward alone, with preallocated
               outputs (bench.py's floor) on b rows;
* ``fwd+bwd``  ``model(x)``, the loss and ``backward_from_loss`` on b rows: ``gemm`` plus
               the elementwise work and the Python calls (``ew`` = fwd+bwd - gemm);
* ``pack``     the sharded optimizer's copy of every gradient into its flat buffer,
               weighted (P values whatever N; nothing on 1 rank, where ``Adam`` reads
               ``p.grad`` itself);
* ``adam``     the plain ``Adam`` step over ceil(P/N) values (one flat range, as
               ``ShardedOptimizer`` hands it), subnormal flushes included.

Each figure is the fastest of 9 rounds of the mean time of many calls (enough
calls for about 0.1 s per round): on a shared machine other work only ever adds
time, and ``ew`` is a difference of two such figures. Then, per model, the least-squares lines

    t_gemm(b) = g0 + c_mm * b        t_ew(b) = e0 + c_ew * b        t_adam(p) = c_adam * p

(g0, e0: the per-step costs that do not shrink with b: BLAS and Python call overhead),
and the projection t_step(N) without t_comm, to set beside the measured steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODELS = {"reference": (784, 128, 64, 32), "default": (784, 256, 128, 32)}
RANKS = (1, 2, 4, 8)
MASK = 0.1  # the default train-ae recipe's masking probability


def timed(fn, rounds: int = 9, budget: float = 0.1) -> float:
    """The fastest of ``rounds`` rounds' mean seconds per call of ``fn`` (after a warm-up)."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    calls = max(3, min(2000, int(budget / once)))
    means = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter() - t0) / calls)
    return min(means)


class _AloneComm:
    """Rank 0 of ``size`` ranks whose collectives move nothing: the sharded optimizer's own
    work (pack, Adam over its range) without the communication."""

    rank = 0

    def __init__(self, size):
        self.size = size
        self.share = 1.0 / size  # equal shards: what ShardedOptimizer.step weighs the gradients by

    def engine(self, array):
        return self

    def reduce_scatter_sum(self, send, recv):
        recv[...] = send[:recv.size]  # the rank's part arrives (one copy of P/N values)

    def allgather(self, buf):
        pass


def measure_model(widths, batch: int, x, timed=timed) -> dict:
    import numpy  # noqa: PLC0415

    import nanoae  # noqa: PLC0415
    from nanoae.fashion.models import Autoencoder  # noqa: PLC0415
    from nanoae.parallel.zero import ShardedOptimizer  # noqa: PLC0415
    from nanoae.train.augment import mask_bits, mask_inputs  # noqa: PLC0415
    from nanoae.train.loop import as_batch  # noqa: PLC0415

    rng = numpy.random.default_rng(0)
    full = tuple(widths) + tuple(reversed(widths[:-1]))
    loss = nanoae.BinaryCrossEntropy()
    loss.check = False  # as inside fit (the data is validated once)
    out = {"widths": full, "parameters": None, "by_ranks": {}}
    for n in RANKS:
        b = batch // n
        model = Autoencoder(widths, code_activation="relu", seed=0)
        params = model.parameters()
        total = sum(int(p.data.size) for p in params)
        out["parameters"] = total
        idx = rng.permutation(len(x))[:b]
        xb = as_batch(x[idx])
        weights = [p.data for p in params if p.data.ndim == 2]
        acts = [numpy.empty((b, w.shape[1]), numpy.float32) for w in weights]
        grads_w = [numpy.empty_like(w) for w in weights]
        grads_x = [numpy.empty((b, w.shape[0]), numpy.float32) for w in weights]

        def gemm():
            h = xb
            for w, a in zip(weights, acts):
                numpy.matmul(h, w, out=a)
                h = a
            g = acts[-1]
            for i in range(len(weights) - 1, -1, -1):
                inp = xb if i == 0 else acts[i - 1]
                numpy.matmul(inp.T, g, out=grads_w[i])
                if i:
                    numpy.matmul(g, weights[i].T, out=grads_x[i])
                    g = acts[i - 1]

        def fwd_bwd():
            pred = model(xb)
            model.loss_value(loss, pred, xb)
            model.backward_from_loss(loss, input_grad=False)

        bits = mask_bits(0, 0, 0, b, 784, MASK)
        row = {"b": b, "gather": timed(lambda: as_batch(x[idx])),
               "draw": timed(lambda: mask_bits(0, 0, 0, b, 784, MASK)),
               "mask": timed(lambda: mask_inputs(xb, MASK, numpy.unpackbits(bits.reshape(-1))
                                                 .reshape(b, -1)[:, :784])),
               "gemm": timed(gemm), "fwd+bwd": timed(fwd_bwd)}
        fwd_bwd()  # every p.grad set
        row["ew"] = row["fwd+bwd"] - row["gemm"]
        optimizer = nanoae.Adam(params, lr=1e-3)
        if n == 1:
            row["pack"], row["adam"] = 0.0, timed(optimizer.step)
        else:
            sharded = ShardedOptimizer(optimizer, _AloneComm(n))
            row["adam"] = timed(sharded.inner.step)
            # the rest of the sharded step, timed on its own: with Adam's update made a no-op
            # (a difference of two timings can come out negative on a busy machine)
            sharded.inner.step = lambda: None
            row["pack"] = timed(sharded.step)
        row["p"] = -(-total // n)
        out["by_ranks"][n] = row
    rows = list(out["by_ranks"].values())
    bs = numpy.array([r["b"] for r in rows], float)
    for term in ("gemm", "ew"):
        slope, intercept = numpy.polyfit(bs, [r[term] for r in rows], 1)
        out[f"{term}_fixed_s"], out[f"{term}_per_row_s"] = float(intercept), float(slope)
    ps = numpy.array([r["p"] for r in rows], float)
    out["adam_per_value_s"] = float(numpy.dot(ps, [r["adam"] for r in rows]) / numpy.dot(ps, ps))
    for r in rows:
        r["step_without_comm"] = sum(r[k] for k in ("gather", "fwd+bwd", "pack", "adam"))
        r["step_without_comm_masked"] = r["step_without_comm"] + r["draw"] + r["mask"]
    return out


def report(results: dict, args) -> None:
    print(f"\n== step terms, global batch {args.batch}, {args.threads} BLAS thread(s), one process "
          f"(no communication); ms per step ==")
    for name, res in results["models"].items():
        print(f"\n{name} autoencoder {'-'.join(map(str, res['widths']))}, P = {res['parameters']:,}")
        cols = ("b", "gather", "draw", "mask", "gemm", "ew", "fwd+bwd", "pack", "adam", "step_without_comm",
                "step_without_comm_masked")
        heads = ("N", "b=B/N", "gather", "draw", "mask", "gemm", "ew", "fwd+bwd", "pack", "adam(P/N)",
                 "sum", "sum+masks")
        print(" ".join(f"{h:>9}" for h in heads))
        for n, r in res["by_ranks"].items():
            print(f"{n:>9} {r['b']:>9} " + " ".join(f"{1e3 * r[c]:9.3f}" for c in cols[1:]))
        print(f"fits: t_gemm(b) = {1e3 * res['gemm_fixed_s']:.3f} ms + b x {1e6 * res['gemm_per_row_s']:.2f} us; "
              f"t_ew(b) = {1e3 * res['ew_fixed_s']:.3f} ms + b x {1e6 * res['ew_per_row_s']:.2f} us; "
              f"t_adam(p) = p x {1e9 * res['adam_per_value_s']:.2f} ns")
    print("\nsum = gather + fwd+bwd + pack + adam: a rank's step without its communication "
          "(bench.py --workers N measures that); sum+masks adds draw and mask (the default train-ae "
          "recipe).")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1: one rank per core)")
    p.add_argument("--batch", type=int, default=256, help="the global batch B (default 256)")
    p.add_argument("--quick", action="store_true", help="a smoke test: 2,048 images, short rounds")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    if args.batch < max(RANKS) or args.batch % max(RANKS):
        p.error(f"--batch must be a positive multiple of {max(RANKS)}")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy loads its BLAS
    sys.path[:0] = [str(REPO), str(HERE)]
    from bench import cpu_model  # noqa: PLC0415
    from contenders import load_data  # noqa: PLC0415

    timer = (lambda fn: timed(fn, rounds=3, budget=0.01)) if args.quick else timed
    x, _ = load_data("ae", 2048 if args.quick else 60000)
    results = {"cpu": cpu_model(), "threads": args.threads, "batch": args.batch,
               "models": {name: measure_model(w, args.batch, x, timer) for name, w in MODELS.items()}}
    print(f"CPU: {results['cpu']}")
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

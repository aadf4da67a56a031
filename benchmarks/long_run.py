"""Epoch times of a long training run, to catch a late slowdown (float32 subnormals).

    python benchmarks/long_run.py [--epochs 12] [--recipe default|reference] [--quick] [--json PATH]

Intel cores compute with subnormal float32 numbers (|x| < 1.2e-38) in microcode, many times
slower than with normal ones; AMD cores do not. Adam's moments of units whose gradient is 0
for good (dead ReLU units) decay into subnormals after a few epochs and, rounded, never reach
0, so an unguarded run slows down from about its fourth epoch on an Intel CPU. nanoae's
optimizers flush such values to 0 every ``flush_every`` steps (``optim.py``).

Each run is one subprocess training with ``fit`` on the real Fashion-MNIST training images:

* ``flush``: nanoae as shipped (``flush_every=100``);
* ``no-flush``: the same with ``flush_every=None``, to show what the flush prevents.

Recipes: ``default`` is the demo's autoencoder (``pipeline.Settings``: 784-512-128-32 with a
unit-length code since 2026-12-06, 784-256-128-32 with a linear code in the runs before; masking
noise 0.1, cosine schedule from 2e-3); ``reference`` the reference one (784-128-64-32, ReLU code,
Glorot-uniform, constant lr 1e-3, clean inputs). Reported per run: every epoch's seconds,
late/early = median of the last third of the epochs / median of epochs 2-4 (target <= 1.15),
and the subnormal numbers left at the end in the optimizer state, the weights, and the last
step's gradients and activations.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARK = "LONG-RUN-RESULT "
VARIANTS = {"flush": 100, "no-flush": None}


def subnormals(arrays) -> int:
    import numpy

    from nanoae.backend import to_numpy

    count = 0
    for a in arrays:
        a = numpy.abs(to_numpy(a))
        count += int(((a > 0) & (a < numpy.finfo(a.dtype).tiny)).sum())
    return count


def child(recipe: str, flush_every, epochs: int, n: int) -> dict:
    sys.path.insert(0, str(REPO))
    import nanoae as nn
    from nanoae.fashion.data import load_fashion_mnist
    from nanoae.fashion.models import Autoencoder
    from nanoae.fashion.pipeline import REFERENCE_AE, Settings
    from nanoae.train.augment import Augmentation
    from nanoae.train.callbacks import LearningRateSchedule, Progress
    from nanoae.train.loop import cosine_schedule, fit

    x, _ = load_fashion_mnist("train", download=False, progress=False)
    x = x[:n].reshape(min(n, len(x)), -1)
    s = Settings()
    if recipe == "default":
        model = Autoencoder(s.ae_widths, code_activation=s.code_activation, seed=0)
        lr, mask = s.ae_lr, s.ae_mask
        schedule = cosine_schedule(lr, -(-len(x) // s.batch_size) * epochs)
    else:
        r = REFERENCE_AE
        model = Autoencoder(r["widths"], code_activation=r["code_activation"], init=r["init"], seed=0)
        lr, mask, schedule = r["lr"], r["mask"], None
    opt = nn.Adam(model.parameters(), lr=lr, flush_every=flush_every)
    quiet = [Progress(bar=False, verbose=False)]
    callbacks = quiet if schedule is None else quiet + [LearningRateSchedule(schedule)]
    hist = fit(model, nn.BinaryCrossEntropy(), opt, x, epochs=epochs, batch_size=s.batch_size,
               augment=Augmentation(mask=mask), callbacks=callbacks)
    return {"seconds": hist["seconds"], "train_loss": hist["train_loss"],
            "state_subnormals": subnormals(opt.m + opt.v),
            "grad_subnormals": subnormals(p.grad for p in model.parameters()),
            "weight_subnormals": subnormals(p.data for p in model.parameters()),
            # what the layers kept of the last step's forward pass: inputs of Dense, outputs of activations
            "activation_subnormals": subnormals(a for layer in model.leaves()
                                                for a in (getattr(layer, "_x", None), getattr(layer, "_y", None))
                                                if a is not None)}


def late_over_early(seconds) -> float:
    early = statistics.median(seconds[1:4])
    late = statistics.median(seconds[-max(1, len(seconds) // 3):])
    return late / early


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--recipe", choices=("default", "reference"), default="default")
    p.add_argument("--quick", action="store_true", help="6,000 images, 5 epochs (a smoke test)")
    p.add_argument("--only", choices=tuple(VARIANTS), help="run one variant only")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    n, epochs = (6000, 5) if args.quick else (60000, args.epochs)
    if args.child:
        result = child(args.recipe, VARIANTS[args.child], epochs, n)
        print(MARK + json.dumps(result))
        return 0
    if epochs < 5:
        p.error("--epochs must be >= 5: the early epochs are 2-4")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench import cpu_model

    print(f"long run: {args.recipe} recipe, {epochs} epochs on {n} images; CPU: {cpu_model()}")
    results = {}
    for name in ([args.only] if args.only else VARIANTS):
        cmd = [sys.executable, __file__, "--child", name, "--recipe", args.recipe, "--epochs", str(epochs)]
        cmd += ["--quick"] if args.quick else []
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
        if proc.returncode or not lines:
            print(f"{name}: failed (exit {proc.returncode})\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        r = json.loads(lines[-1][len(MARK):])
        r["late_over_early"] = late_over_early(r["seconds"])
        results[name] = r
        print(f"{name:>9}: epochs " + " ".join(f"{s:.2f}" for s in r["seconds"]) +
              f" s; late/early {r['late_over_early']:.2f}; subnormals left: optimizer state "
              f"{r['state_subnormals']}, gradients {r['grad_subnormals']}, weights {r['weight_subnormals']}, "
              f"activations {r['activation_subnormals']}",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "recipe": args.recipe, "n": n,
                                         "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

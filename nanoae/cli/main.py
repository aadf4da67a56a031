"""The ``nanoae`` command: parses arguments, then calls the library (pipeline.py).

    nanoae demo [--quick] [--out DIR]       the whole story, with figures and a report
    nanoae train-ae --out CKPT               train an autoencoder (Ctrl-C saves; --resume goes on)
    nanoae train-classifier --ae CKPT        a head on its frozen codes (--finetune: end to end)
    nanoae evaluate --ae CKPT [--classifier CKPT]   test-set metrics as JSON
    nanoae tsne --ae CKPT --out PNG|DIR      the t-SNE map of the test codes
    nanoae gradcheck [FILE.py:CLASS]         backward() against finite differences: every
                                             built-in piece, or your own layer
    nanoae workbook DIR [--check]            write the core's backward passes yourself; check them

Exit status: 0 success, 1 a data/checkpoint/training problem (one line saying
what and what to do), a failed gradient check or a workbook exercise not passing, 2 bad arguments (including a
file that is not a checkpoint or a checkpoint of the wrong kind, a classifier
given another autoencoder, an output that would overwrite a trained model,
options that do not go together, a --data-dir without the data, a layer
gradcheck cannot check), 130 interrupted (train-ae: with how to resume).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

EPILOG = """examples:
  nanoae demo --quick                  # every step, with fewer epochs: about half a minute
  nanoae demo --out runs/demo          # the full run reported in the README
  nanoae train-ae --out runs/ae.npz     # the default autoencoder (--reference: the reference one)
  nanoae train-classifier --ae runs/ae.npz --out runs/clf.npz
  nanoae evaluate --ae runs/ae.npz --classifier runs/clf.npz
  nanoae gradcheck                     # every built-in layer, loss and model, checked
  nanoae gradcheck my_layers.py:LeakyReLU --args 'slope=0.1'   # your own layer
  nanoae workbook my-core              # the core with its backward passes to write
  nanoae workbook --check my-core      # your answers, checked

data: Fashion-MNIST is read from --data-dir (else $NANOAE_DATA_DIR) alone when one
is given; otherwise it is looked up in the user cache (~/.cache/nanoae),
/usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist), and
otherwise downloaded (checksum-verified) into the cache."""


def _whole_number(minimum):
    """An argparse type: an int >= minimum, with a message that says what was wrong."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


_positive_int = _whole_number(1)
_non_negative_int = _whole_number(0)


def _number(text) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _positive_float(text):
    value = _number(text)
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _probability(text):
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _existing_file(text):
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def _common(p, *, training=True, seed="seed for weights and data order"):  # pragma: no mutate block (help texts)
    """The options every command shares; ``seed``: what --seed seeds (None: no --seed)."""
    p.add_argument("--backend", choices=("numpy", "cupy", "auto"),
                   default=os.environ.get("NANOAE_BACKEND", "numpy"),
                   help="array backend: numpy (CPU), cupy (NVIDIA GPU) or auto (default: %(default)s)")
    if seed is not None:
        p.add_argument("--seed", type=int, default=0, help=f"{seed} (default: 0)")
    p.add_argument("--data-dir", help="directory holding the four Fashion-MNIST IDX files (.gz or raw); "
                   "used alone: no other place is searched")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="accept local data files that differ from the official checksums "
                        "(e.g. a subset you made yourself)")
    if training:
        p.add_argument("--batch-size", type=_positive_int, default=256, help="mini-batch size (default: 256)")
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="show progress bars (default: only on a terminal)")


def _widths(p):  # pragma: no mutate block (help texts)
    p.add_argument("--widths", type=_positive_int, nargs="+", metavar="W",
                   help="the encoder's layer widths after the 784 pixels, the last being the code "
                   "(default: 512 128 32; the reference is 128 64 32); the decoder mirrors them")


def _add_demo(sub) -> None:  # pragma: no mutate block (help texts)
    """nanoae demo"""
    p = sub.add_parser("demo", help="the whole pipeline: autoencoder, classifiers, t-SNE, report",
                       description="Train the autoencoder, a classifier on its codes and a "
                       "fine-tuned one, draw the t-SNE map, and write figures, metrics.json and "
                       "report.md into --out.")
    _common(p)
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="a short run (32 s on a 2-core Intel Xeon, "
                   "the full run about 4 min): fewer epochs, 2000 points in the map, no reference "
                   "autoencoder")
    _recipe(p, epochs="40; 3 with --quick")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the reference autoencoder (784-128-64-32, ReLU code), trained to be "
                   "reported beside the default one")


def _recipe(p, epochs: str) -> None:  # pragma: no mutate block (help texts)
    """The autoencoder recipe's options (demo, train-ae); None when not given, so a command can
    tell given from default (the defaults are ``pipeline.Settings``')."""
    p.add_argument("--epochs", type=_positive_int, help=f"autoencoder epochs (default: {epochs})")
    p.add_argument("--lr", type=_positive_float, help="Adam peak learning rate, cosine schedule "
                   "(default: 2e-3)")
    p.add_argument("--mask", type=_probability, help="fraction of input pixels zeroed while the "
                   "autoencoder learns to reconstruct them (default: 0.1)")
    p.add_argument("--code", choices=("unit", "linear", "relu"), help="what follows the code's Dense layer: "
                   "unit (scaled to length 1), linear (nothing) or relu (default: unit)")
    _widths(p)


def _add_train_ae(sub) -> None:  # pragma: no mutate block (help texts)
    """nanoae train-ae"""
    p = sub.add_parser("train-ae", help="train an autoencoder and save a checkpoint",
                       description="Train an autoencoder on the Fashion-MNIST training set. The "
                       "checkpoint is written after every epoch and on Ctrl-C; --resume continues.")
    _common(p)
    p.add_argument("--out", type=Path, default=Path("runs/autoencoder.npz"), help="checkpoint (default: %(default)s)")
    _recipe(p, epochs="40")  # defaults None: --reference refuses them when given
    p.add_argument("--reference", action="store_true", help="the reference recipe instead: "
                   "784-128-64-32, ReLU code, 20 epochs at a constant lr 1e-3, no masking "
                   "(fixed: --epochs/--lr/--mask/--code/--widths are refused with it)")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out (to train "
                   "a finished run further, give a larger --epochs)")
    p.add_argument("--force", action="store_true", help="replace the checkpoint at --out if there is one")
    _watch(p)


def _watch(p) -> None:  # pragma: no mutate block (help texts)
    p.add_argument("--watch", action="store_true", help="record per-layer diagnostics (update-to-data "
                   "ratios, gradients, saturated and dead units) and write them beside --out: "
                   "NAME.diagnostics.png and NAME.watch.json")


def _add_train_classifier(sub) -> None:  # pragma: no mutate block (help texts)
    """nanoae train-classifier"""
    p = sub.add_parser("train-classifier", help="train a classifier on an autoencoder's codes",
                       description="Train a dense softmax head on the frozen codes of --ae, or, "
                       "with --finetune, encoder and head together.")
    _common(p)
    p.add_argument("--ae", type=_existing_file, required=True, metavar="CKPT",
                   help="autoencoder checkpoint (from train-ae or demo)")
    p.add_argument("--out", type=Path, default=Path("runs/classifier.npz"), help="checkpoint (default: %(default)s)")
    p.add_argument("--epochs", type=_positive_int, default=12, help="epochs (default: %(default)s)")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="peak learning rate, cosine schedule (default: %(default)s)")
    p.add_argument("--hidden", type=_positive_int, nargs="+", default=[512, 512], help="hidden widths (default: 512 512)")
    p.add_argument("--finetune", type=_non_negative_int, default=0, metavar="EPOCHS",
                   help="then fine-tune encoder + head for EPOCHS epochs, saved beside --out with "
                   ".finetuned.npz in place of .npz (runs/classifier.finetuned.npz; default: 0)")
    p.add_argument("--force", action="store_true", help="replace the checkpoint(s) at --out if there are any")
    _watch(p)


def _add_evaluate(sub) -> None:  # pragma: no mutate block (help texts)
    """nanoae evaluate"""
    p = sub.add_parser("evaluate", help="test-set metrics of saved checkpoints, as JSON",
                       description="Score an autoencoder (test BCE, MSE, dead code units) and/or a "
                       "classifier (test accuracy and loss) on the Fashion-MNIST test set; prints JSON. "
                       "A classifier on codes needs the autoencoder it was trained on (--ae).")
    _common(p, training=False, seed=None)  # evaluation draws nothing at random
    p.add_argument("--ae", type=_existing_file, help="autoencoder checkpoint")
    p.add_argument("--classifier", type=_existing_file, help="classifier checkpoint (needs --ae "
                   "unless it was fine-tuned)")


def _add_tsne(sub) -> None:  # pragma: no mutate block (help texts)
    """nanoae tsne"""
    p = sub.add_parser("tsne", help="the t-SNE map of an autoencoder's test codes",
                       description="Map the codes of the first --points test images to 2-D with "
                       "t-SNE (scikit-learn), draw them coloured by class into --out, and print the "
                       "map's trustworthiness and 5-NN accuracy as JSON.")
    _common(p, training=False, seed="seed of the t-SNE layout")
    p.add_argument("--ae", type=_existing_file, required=True, metavar="CKPT",
                   help="autoencoder checkpoint (from train-ae or demo)")
    p.add_argument("--out", type=Path, default=Path("runs/tsne.png"),
                   help="PNG to write, or an existing folder to write tsne.png into "
                   "(default: %(default)s)")
    p.add_argument("--points", type=_positive_int, default=10000,
                   help="test images to map, 11 to 10000 (default: %(default)s)")
    p.add_argument("--perplexity", type=_positive_float, default=10.0,
                   help="t-SNE perplexity, about the number of neighbours that count (default: %(default)s)")


def _shape(text):
    """An argparse type: ``4,5`` (or ``4x5``) -> (4, 5), every size a positive whole number."""
    try:
        shape = tuple(int(n) for n in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 4,5 (batch, features), got {text!r}"
                                         ) from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive whole numbers, got {text!r}")
    return shape


def _add_gradcheck(sub) -> None:  # pragma: no mutate block (help texts)
    """nanoae gradcheck"""
    p = sub.add_parser("gradcheck", help="check backward() against finite differences",
                       description="With no LAYER: check every built-in layer, loss and fused "
                       "pair, and both models in miniature. With LAYER: check your own layer's "
                       "input gradient and every parameter's. In float64, with a random upstream "
                       "gradient; prints a table. Exit 0 when all pass, 1 when any fails, 2 when "
                       "the layer cannot be checked (one line says why).")
    p.add_argument("layer", nargs="?", metavar="LAYER",
                   help="FILE.py:CLASS (my_layers.py:LeakyReLU) or MODULE:CLASS "
                        "(mypkg.layers:LeakyReLU)")
    p.add_argument("--args", default="", metavar="ARGS",
                   help="the layer's constructor arguments, written as in Python: --args 0.1 or "
                        "--args 'slope=0.1' (a constructor that takes dtype gets float64, one that "
                        "takes rng gets --seed, unless given here)")
    p.add_argument("--shape", type=_shape, metavar="N,F",
                   help="the input's shape (default: 4,in_features for a layer with in_features, "
                        "else 4,5)")
    p.add_argument("--seed", type=int, default=0, help="seed for inputs and upstream gradients "
                   "(default: 0)")
    p.add_argument("--backend", choices=("numpy", "cupy", "auto"),
                   default=os.environ.get("NANOAE_BACKEND", "numpy"),
                   help="array backend (default: %(default)s)")


def _add_workbook(sub) -> None:  # pragma: no mutate block (help texts)
    """nanoae workbook"""
    p = sub.add_parser("workbook", help="write the core's backward passes yourself, and check them",
                       description="Write into DIR a copy of nanoae's layers, losses and Adam, "
                       "generated from its source, with each backward pass (and Adam's update) "
                       "left for you to write. --check DIR checks them exercise by exercise "
                       "(exit 0 only when all pass) and then trains the reference autoencoder "
                       "for one epoch with your classes and with nanoae's.")
    p.add_argument("dir", type=Path, metavar="DIR", help="the workbook's folder")
    p.add_argument("--check", action="store_true", help="check the workbook in DIR")
    p.add_argument("--solved", action="store_true", help="write the answers (for teachers)")
    p.add_argument("--force", action="store_true", help="replace a workbook already in DIR")
    p.add_argument("--images", type=_positive_int, default=10000,
                   help="--check: training images of the epoch (default: %(default)s)")
    _common(p, training=False, seed="--check: seed of the inputs and the training run")


def build_parser() -> argparse.ArgumentParser:  # pragma: no mutate block (help texts)
    parser = argparse.ArgumentParser(
        prog="nanoae", description="A dense autoencoder and classifier on Fashion-MNIST, "
        "written from scratch on NumPy/CuPy.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from nanoae import __version__  # noqa: PLC0415

    parser.add_argument("--version", action="version", version=f"nanoae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_demo, _add_train_ae, _add_train_classifier, _add_evaluate, _add_tsne,
                _add_gradcheck, _add_workbook):
        add(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from nanoae.cli import commands  # noqa: PLC0415  (import the heavy parts only after parsing)
    from nanoae.errors import DataDirError, NanoaeError, UsageError  # noqa: PLC0415
    from nanoae.parallel.communicator import abort_on_error, world  # noqa: PLC0415  (imports no MPI by itself)

    try:
        comm = world()  # size 1 unless mpiexec started several of us
    except (RuntimeError, ValueError) as exc:  # (mpi4py missing: every rank says so alike)
        print(f"nanoae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    refusal = _refusal(comm, args)
    if refusal is not None:  # every rank knows it (see _refusal): all end here, one says why
        if comm.is_root:
            print(f"nanoae {args.command}: error: {refusal}", file=sys.stderr)
        return 2
    try:
        with abort_on_error(comm):  # under MPI: an error on any rank ends every rank
            result = commands.COMMANDS[args.command](args)
    except KeyboardInterrupt as exc:
        hint = " Resume with the same command and --resume." if args.command == "train-ae" else ""
        if comm.is_root:  # (every rank stopped at the same step; one says so)
            print(f"\nnanoae: interrupted{': ' + str(exc) if str(exc) else ''}.{hint}", file=sys.stderr)
        return 130
    except (UsageError, DataDirError) as exc:  # the arguments, not the data: as argparse
        print(f"nanoae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except NanoaeError as exc:
        print(f"nanoae: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise  # not the disk: a bug, shown with its traceback
        # A figure or --watch file that could not be written (checkpoints say so themselves)
        print(f"nanoae: error: could not write {exc.filename or 'an output file'}: "
              f"[Errno {exc.errno}] {exc.strerror}", file=sys.stderr)
        return 1
    if isinstance(result, dict) and comm.is_root:  # under MPI every rank has it; one prints it
        print(json.dumps(result, indent=2))
    return 0


# Commands that train data-parallel when started by mpiexec with several ranks (fit uses every
# rank of the job; the demo runs its other stages on rank 0); the others would only repeat the
# same work and write the same files N times.
DATA_PARALLEL = ("train-ae", "train-classifier", "demo")


# Writing failed for want of room or of permission: the user's to fix, one line is enough.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG,
               errno.EIO)


def _refusal(comm, args) -> str | None:
    """Why this job cannot run the command (the backend, the number of ranks), or None.

    Under MPI every rank checks, then the ranks share their answers (one small
    allgather, which every rank reaches because no check raises), so that all
    of them end with exit 2, as one process would, instead of one rank refusing
    while the others wait for it in the first collective.
    """
    from nanoae import backend  # noqa: PLC0415

    try:
        backend.set_backend(args.backend)
        _check_data_parallel(comm, args.command)
        mine = None
    except (RuntimeError, ValueError) as exc:
        mine = str(exc)
    everyone = [mine] if comm.size == 1 else comm.mpi_comm.allgather(mine)
    return next((reason for reason in everyone if reason is not None), None)


def _check_data_parallel(comm, command: str) -> None:
    """Under MPI with several ranks: a command that trains, and one GPU per rank on CuPy."""
    from nanoae import backend  # noqa: PLC0415

    if comm.size == 1:
        return
    if command not in DATA_PARALLEL:
        raise ValueError(f"this command runs on one process, but mpiexec started {comm.size}; "
                         f"run it without mpiexec (data parallel: {', '.join(DATA_PARALLEL)})")
    if backend.get_backend() == "cupy":
        comm.use_gpu()  # one GPU per rank, or a clear error


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

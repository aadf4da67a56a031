"""What each ``nanoae`` subcommand does, given its parsed arguments (see cli.py)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy

from .checkpoint import load_checkpoint, read_checkpoint_meta
from .data import CLASS_NAMES, IMAGE_SHAPE
from .errors import CheckpointError
from .model import Sequential
from .models import FineTuned, Standardize, build_model
from .pipeline import (Settings, autoencoder_metrics, encode_splits, fine_tune, head_training_set,
                       load_splits, run_demo, score_classifier, train_autoencoder, train_head,
                       tsne_map)


def _usage_error(message: str):
    """Exit like argparse does for a bad combination of arguments: one line, status 2."""
    print(f"nanoae evaluate: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_model(path):
    """The model saved at ``path``, rebuilt from the config in its metadata, weights loaded."""
    user = read_checkpoint_meta(path).get("user", {})
    config = user.get("model")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: the checkpoint does not say which model it holds "
                              "(no 'model' config in its metadata); was it written by nanoae?")
    try:
        model = build_model(config)
        if config.get("kind") == "classifier":  # a head saved with the scaler in front of it
            scaler = user["scaler"]
            model = Sequential(Standardize(numpy.asarray(scaler["mean"], dtype=numpy.float32),
                                           scaler["std"]), model)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its model config cannot be rebuilt: {exc}") from exc
    load_checkpoint(path, model)
    return model


def _settings(args, **extra) -> Settings:
    return Settings(seed=args.seed, data_dir=args.data_dir, verify=args.verify, backend=args.backend,
                    batch_size=getattr(args, "batch_size", 256),
                    progress=getattr(args, "progress", None), **extra)


def _ae_widths(args) -> dict:
    """``--widths W...`` as Settings.ae_widths (the pixels first), or nothing if not given."""
    return {} if args.widths is None else {"ae_widths": (math.prod(IMAGE_SHAPE), *args.widths)}


def demo(args):
    overrides = {k: v for k, v in dict(ae_epochs=args.epochs, ae_lr=args.lr, ae_mask=args.mask,
                                       code_activation=args.code).items() if v is not None}
    overrides.update(_ae_widths(args))
    if args.no_reference:
        overrides["reference"] = False
    base = dict(seed=args.seed, data_dir=args.data_dir, verify=args.verify, backend=args.backend,
                batch_size=args.batch_size, progress=args.progress, **overrides)
    settings = Settings.quick(**base) if args.quick else Settings(**base)
    metrics = run_demo(args.out, settings)
    return {k: v for k, v in metrics.items() if k not in ("histories", "settings", "versions")}


def train_ae(args):
    settings = _settings(args, ae_epochs=args.epochs, ae_lr=args.lr, ae_mask=args.mask,
                         code_activation=args.code, **_ae_widths(args))
    splits = load_splits(settings)
    model, _ = train_autoencoder(splits.x_all, settings, reference=args.reference,
                                 checkpoint=args.out, resume=args.resume)
    result = autoencoder_metrics(model, splits.x_test)
    return {"checkpoint": str(args.out), "test_bce": result["bce"], "test_mse": result["mse"],
            "dead_code_units": result["dead_units"]}


def train_classifier(args):
    settings = _settings(args, head_epochs=args.epochs, head_lr=args.lr,
                         head_hidden=tuple(args.hidden), finetune_epochs=args.finetune)
    ae = load_model(args.ae)
    splits = load_splits(settings)
    c_train, c_val, _ = encode_splits(ae, splits)
    codes, labels = head_training_set(ae, splits, c_train, settings)
    scaler, head, _ = train_head(codes, labels, c_val, splits.y_val, settings, checkpoint=args.out)
    frozen = Sequential(ae.encoder, scaler, head)
    result = {"checkpoint": str(args.out), **score_classifier(frozen, splits, settings, "frozen")}
    if args.finetune:
        tuned, _ = fine_tune(ae, scaler, head, splits, settings,
                             checkpoint=Path(args.out).with_suffix(".finetuned.npz"))
        result["finetune_checkpoint"] = str(Path(args.out).with_suffix(".finetuned.npz"))
        result.update(score_classifier(tuned, splits, settings, "finetune"))
    return result


def evaluate_checkpoints(args):
    if args.ae is None and args.classifier is None:
        _usage_error("give --ae, --classifier, or both")
    settings = _settings(args)
    splits = load_splits(settings)
    result = {}
    ae = load_model(args.ae) if args.ae else None
    if ae is not None:
        result.update({f"ae_test_{k}": v for k, v in autoencoder_metrics(ae, splits.x_test).items()
                       if k in ("bce", "mse", "dead_units")})
    if args.classifier:
        clf = load_model(args.classifier)
        if not isinstance(clf, FineTuned):
            if ae is None:
                _usage_error("this classifier works on codes; give the autoencoder it was "
                             "trained on with --ae")
            clf = Sequential(ae.encoder, clf)  # scored on images, like the fine-tuned model
        result.update(score_classifier(clf, splits, settings, "clf"))
    return result


def tsne(args):
    from . import plots  # noqa: PLC0415

    ae = load_model(args.ae)
    splits = load_splits(_settings(args))
    codes = encode_splits(ae, splits)[2]
    embedding, metrics = tsne_map(codes, splits.y_test, seed=args.seed, points=args.points,
                                  perplexity=args.perplexity)
    n = metrics["tsne_points"]
    plots.plot_tsne(embedding, splits.y_test[:n], CLASS_NAMES, args.out,
                    title=f"t-SNE of {n} test codes",
                    subtitle=f"trustworthiness (k=5) {metrics['tsne_trustworthiness']:.4f}, "
                             f"5-NN accuracy {100 * metrics['tsne_knn_accuracy']:.1f} %")
    return {"figure": str(args.out), **metrics}


COMMANDS = {"demo": demo, "train-ae": train_ae, "train-classifier": train_classifier,
            "evaluate": evaluate_checkpoints, "tsne": tsne}


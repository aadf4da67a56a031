"""What each ``nanoae`` subcommand does, given its parsed arguments (see cli/main.py).

A mistake at the command line (a file that is not a checkpoint or a checkpoint
of the wrong kind, a classifier given the wrong autoencoder, an output that would
overwrite a trained model, options that do not go together) raises
:class:`~nanoae.errors.UsageError`: the CLI prints its one line and exits with status 2.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from nanoae.errors import (  # UsageError: importable from here too
    CheckpointError,
    UsageError,
)
from nanoae.fashion.data import CLASS_NAMES, IMAGE_SHAPE
from nanoae.fashion.metrics import autoencoder_metrics, score_classifier
from nanoae.fashion.models import (
    Autoencoder,
    Classifier,
    FineTuned,
    ImageClassifier,
    Standardize,
    build_model,
    encoder_fingerprint,
)
from nanoae.fashion.pipeline import (
    REFERENCE_AE,
    TSNE_DURATION,
    Settings,
    encode_splits,
    fine_tune,
    load_splits,
    run_demo,
    train_autoencoder,
    train_frozen_classifier,
    tsne_map,
)
from nanoae.cli.outputs import check_free_space, check_output_dir
from nanoae.fashion.plots import plot_diagnostics
from nanoae.sequential import Sequential
from nanoae.train.checkpoint import load_checkpoint, read_checkpoint_meta
from nanoae.train.liveplot import LivePlot
from nanoae.train.watch import summarize

# what each kind of checkpoint is, in the words of the commands that write them
KINDS = {"autoencoder": "an autoencoder (from train-ae, or autoencoder.npz of demo)",
         "classifier": "a classifier on codes (from train-classifier, or classifier.npz of demo)",
         "finetuned": "a fine-tuned classifier (from train-classifier --finetune, or finetuned.npz "
                      "of demo)"}


def load_model(path, kinds=tuple(KINDS), option="--ae"):
    """The model saved at ``path``, rebuilt from the config in its metadata, weights loaded.

    kinds: the kinds of model the option takes; another kind is a UsageError
    saying what the file holds and what was expected.
    """
    user = _read_meta(path, option).get("user", {})
    config = user.get("model")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: the checkpoint does not say which model it holds "
                              "(no 'model' config in its metadata); was it written by nanoae?")
    kind = config.get("kind")
    if kind not in kinds:
        raise UsageError(f"{option} {path} holds {KINDS.get(kind, repr(kind))}; {option} takes "
                         + " or ".join(KINDS[k] for k in kinds))
    try:
        model = build_model(config)
        if kind == "classifier":  # a head saved with the scaler in front of it, in the head's dtype
            model = Sequential(Standardize.from_config(user["scaler"], config.get("dtype", "float32")), model)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its model config cannot be rebuilt: {exc}") from exc
    load_checkpoint(path, model)
    return model


def _read_meta(path, option: str) -> dict:
    """The metadata of the checkpoint an option names; a file that is none is a UsageError."""
    try:
        return read_checkpoint_meta(path)
    except CheckpointError as exc:
        text = str(exc)
        raise UsageError(f"{option} {text}" if text.startswith(str(path)) else
                         f"{option} {path}: {text}") from exc


def _describe(fingerprint: dict) -> str:
    return (f"{'-'.join(map(str, fingerprint['widths']))} ({fingerprint['code_activation']} code, "
            f"encoder sha256 {fingerprint['sha256'][:12]})")


def check_same_autoencoder(classifier_path, ae, ae_path) -> None:
    """UsageError unless the classifier at ``classifier_path`` was trained on ``ae``'s codes."""
    made_by = _read_meta(classifier_path, "--classifier")["user"].get("autoencoder")
    if made_by is None:
        raise UsageError(f"--classifier {classifier_path} does not record which autoencoder made "
                         "its codes (an older nanoae wrote it); train it again with "
                         f"nanoae train-classifier --ae {ae_path}")
    given = encoder_fingerprint(ae)
    if made_by != given:
        raise UsageError(f"--classifier {classifier_path} was trained on the codes of the "
                         f"autoencoder {_describe(made_by)}, but --ae {ae_path} is "
                         f"{_describe(given)}; give the autoencoder it was trained on")


def _refuse_overwrite(path: Path, force: bool, resumable: bool = False) -> None:
    """UsageError if writing ``path`` would replace a file (a trained model) without --force."""
    if Path(path).is_dir():
        raise UsageError(f"--out {path} is a directory; give a checkpoint file name (e.g. {path}/model.npz)")
    if Path(path).exists() and not force:
        how = "continue its training with --resume, " if resumable else ""
        raise UsageError(f"--out {path} already holds a checkpoint; {how}replace it with --force, "
                         "or choose another --out")


def _settings(args, **extra) -> Settings:
    return Settings(seed=getattr(args, "seed", 0), data_dir=args.data_dir, verify=args.verify,
                    backend=args.backend,
                    batch_size=getattr(args, "batch_size", 256),
                    progress=getattr(args, "progress", None), **extra)


def _ae_widths(args) -> dict:
    """``--widths W...`` as Settings.ae_widths (the pixels first), or nothing if not given."""
    return {} if args.widths is None else {"ae_widths": (math.prod(IMAGE_SHAPE), *args.widths)}


def demo(args):
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file; the demo writes a directory of results: "
                         "give a directory (new or existing)")
    check_output_dir(args.out, f"--out {args.out}")
    overrides = {k: v for k, v in dict(ae_epochs=args.epochs, ae_lr=args.lr, ae_mask=args.mask,
                                       code_activation=args.code).items() if v is not None}
    overrides.update(_ae_widths(args))
    if args.no_reference:
        overrides["reference"] = False
    base = dict(seed=args.seed, data_dir=args.data_dir, verify=args.verify, backend=args.backend,
                batch_size=args.batch_size, progress=args.progress, **overrides)
    settings = Settings.quick(**base) if args.quick else Settings(**base)
    check_free_space(args.out, demo_checkpoint_bytes(settings), f"--out {args.out}",
                     "saving the demo's checkpoints")
    metrics = run_demo(args.out, settings)
    return {k: v for k, v in metrics.items() if k not in ("histories", "settings", "versions")}


def _check_resume(path: Path, epochs: int) -> None:
    """UsageError if the run saved at ``path`` has already trained its ``epochs``."""
    saved = _read_meta(path, "--resume: --out").get("user", {})
    done = saved.get("epoch", 0)
    if saved.get("step", 0) == 0 and done >= epochs:
        raise UsageError(f"--resume: the run in {path} is finished ({done} epochs done, --epochs "
                         f"{epochs}); to train it further, ask for more: --resume --epochs "
                         f"{done + 10} (the learning-rate schedule is then spread over the new total)")


# what --reference fixes (REFERENCE_AE); the others are the same for both recipes
RECIPE_OPTIONS = ("epochs", "lr", "mask", "code", "widths")


def train_ae(args):
    recipe = {name: getattr(args, name) for name in RECIPE_OPTIONS if getattr(args, name) is not None}
    if args.reference and recipe:
        given = " ".join(f"--{name}" for name in recipe)
        raise UsageError(f"--reference trains the fixed reference recipe (784-128-64-32, ReLU code, "
                         f"{REFERENCE_AE['epochs']} epochs at lr {REFERENCE_AE['lr']:g}, no masking) "
                         f"and takes no {given}; drop {given}, or drop --reference")
    defaults = Settings()
    epochs = REFERENCE_AE["epochs"] if args.reference else recipe.get("epochs", defaults.ae_epochs)
    if args.resume:
        if not args.out.is_file():
            raise UsageError(f"--resume: there is no checkpoint at {args.out} to continue")
        _check_resume(args.out, epochs)
    else:
        _refuse_overwrite(args.out, args.force, resumable=True)
    check_output_dir(args.out.parent, f"--out {args.out}")  # the checkpoint and --watch files
    settings = _settings(args, ae_epochs=epochs, ae_lr=recipe.get("lr", defaults.ae_lr),
                         ae_mask=recipe.get("mask", defaults.ae_mask),
                         code_activation=recipe.get("code", defaults.code_activation),
                         **_ae_widths(args))
    widths = REFERENCE_AE["widths"] if args.reference else settings.ae_widths
    check_free_space(args.out.parent, autoencoder_checkpoint_bytes(widths), f"--out {args.out}",
                     f"the checkpoint of a {'-'.join(map(str, widths))} autoencoder")
    splits = load_splits(settings)
    model, history = train_autoencoder(splits.x_train, settings, validation=splits.x_val,
                                       reference=args.reference, checkpoint=args.out,
                                       resume=args.resume, watch=args.watch,
                                       callbacks=[LivePlot(live_path(args.out))] if args.watch else [])
    result = {"checkpoint": str(args.out), **autoencoder_metrics(model, splits.x_test)}
    if args.watch:
        result["live_plot"] = str(live_path(args.out))
        result.update(write_diagnostics(history, args.out, f"autoencoder {model.config['widths']}"))
    return result


def checkpoint_bytes(model) -> int:
    """At least the bytes of the checkpoint of ``model`` trained by Adam: its weights and biases
    three times over (the values and Adam's two moments, m and v). The file adds its metadata on
    top, and a classifier's checkpoint the weights of its best epoch."""
    return 3 * sum(p.data.nbytes for p in model.parameters())


def autoencoder_checkpoint_bytes(widths) -> int:
    """At least the bytes of train-ae's checkpoint of an autoencoder of these widths."""
    return checkpoint_bytes(Autoencoder(widths))


def classifier_checkpoint_bytes(ae: Autoencoder, settings: Settings, finetune: bool) -> int:
    """At least the bytes of the head on ``ae``'s codes and, with ``finetune``, of the fine-tuned
    encoder + head: what train-classifier (and the demo after its autoencoders) writes."""
    head = Classifier(ae.code_size, settings.head_hidden, 10)
    return checkpoint_bytes(head) + (checkpoint_bytes(Sequential(ae.encoder, head)) if finetune else 0)


def demo_checkpoint_bytes(settings: Settings) -> int:
    """At least the bytes of the demo's checkpoints: its autoencoder (and the reference one), the
    head and the fine-tuned model. Its figures and metrics.json come on top."""
    ae = Autoencoder(settings.ae_widths, code_activation=settings.code_activation)
    reference = autoencoder_checkpoint_bytes(REFERENCE_AE["widths"]) if settings.reference else 0
    return checkpoint_bytes(ae) + reference + classifier_checkpoint_bytes(ae, settings, finetune=True)


def live_path(checkpoint) -> Path:
    """``--watch``: the figure redrawn after every epoch, to follow the run in an image viewer."""
    return Path(checkpoint).with_suffix(".live.png")


def write_diagnostics(history: dict, checkpoint, title: str) -> dict:
    """``--watch``: the records as ``<checkpoint>.watch.json`` and their figure as
    ``<checkpoint>.diagnostics.png``, beside the checkpoint; returns both paths."""
    checkpoint = Path(checkpoint)
    records = checkpoint.with_suffix(".watch.json")
    records.write_text(json.dumps(history["watch"]))
    figure = plot_diagnostics(history["watch"], checkpoint.with_suffix(".diagnostics.png"),
                              title=f"{title}: {records.name}")
    return {"watch_records": str(records), "diagnostics": str(figure),
            "diagnostics_summary": summarize(history["watch"])}


def finetuned_path(out) -> Path:
    """Where ``train-classifier --finetune`` writes the fine-tuned model: clf.npz -> clf.finetuned.npz."""
    return Path(out).with_suffix(".finetuned.npz")


def train_classifier(args):
    _refuse_overwrite(args.out, args.force)
    if args.finetune:
        _refuse_overwrite(finetuned_path(args.out), args.force)
    check_output_dir(args.out.parent, f"--out {args.out}")  # both checkpoints, --watch files
    settings = _settings(args, head_epochs=args.epochs, head_lr=args.lr,
                         head_hidden=tuple(args.hidden), finetune_epochs=args.finetune)
    ae = load_model(args.ae, ("autoencoder",))
    check_free_space(args.out.parent, classifier_checkpoint_bytes(ae, settings, bool(args.finetune)),
                     f"--out {args.out}",
                     "saving the checkpoints of the head and the fine-tuned model" if args.finetune
                     else "the checkpoint of the head")
    splits = load_splits(settings)
    live = [LivePlot(live_path(args.out))] if args.watch else []
    frozen, history, _ = train_frozen_classifier(ae, splits, settings, checkpoint=args.out,
                                                 watch=args.watch, callbacks=live)
    result = {"checkpoint": str(args.out),
              **score_classifier(frozen, splits, "clf_frozen", test_mirror=settings.test_mirror)}
    if args.watch:
        result.update(write_diagnostics(history, args.out, "classifier head on codes"),
                      live_plot=str(live_path(args.out)))
    if args.finetune:
        live = [LivePlot(live_path(finetuned_path(args.out)))] if args.watch else []
        tuned, history = fine_tune(frozen, splits, settings, checkpoint=finetuned_path(args.out),
                                   watch=args.watch, callbacks=live)
        result["finetune_checkpoint"] = str(finetuned_path(args.out))
        result.update(score_classifier(tuned, splits, "clf_finetune", test_mirror=settings.test_mirror))
        if args.watch:
            result.update({f"finetune_{k}": v for k, v in write_diagnostics(
                history, finetuned_path(args.out), "fine-tuned classifier").items()},
                finetune_live_plot=str(live_path(finetuned_path(args.out))))
    return result


def evaluate_checkpoints(args):
    if args.ae is None and args.classifier is None:
        raise UsageError("give --ae, --classifier, or both")
    ae = load_model(args.ae, ("autoencoder",)) if args.ae else None
    clf = load_model(args.classifier, ("classifier", "finetuned"), "--classifier") \
        if args.classifier else None
    prefix = "clf_finetune" if isinstance(clf, FineTuned) else "clf_frozen"
    if clf is not None and not isinstance(clf, FineTuned):
        if ae is None:
            raise UsageError("this classifier works on codes; give the autoencoder it was "
                             "trained on with --ae")
        check_same_autoencoder(args.classifier, ae, args.ae)
        clf = ImageClassifier(ae, *clf)  # clf is (scaler, head): scored on images, like a fine-tuned one
    settings = _settings(args)
    splits = load_splits(settings)
    result = autoencoder_metrics(ae, splits.x_test) if ae is not None else {}
    if clf is not None:
        result.update(score_classifier(clf, splits, prefix, test_mirror=settings.test_mirror))
    return result


def gradcheck(args):
    """Check the built-ins, or the layer named by ``args.layer``; print the table."""
    from nanoae.cli import checks as suite  # noqa: PLC0415
    from nanoae.gradcheck import GradcheckError  # noqa: PLC0415

    if args.layer is None:
        if args.args or args.shape:
            raise UsageError("--args and --shape describe your own layer: name it too, as in "
                             "nanoae gradcheck my_layers.py:LeakyReLU --args 'slope=0.1'")
        cases = suite.builtin_cases()
    else:
        try:
            cases = [suite.layer_case(suite.load_layer(args.layer), args.args, args.shape,
                                      args.seed)]
        except suite.NotCheckable as exc:
            raise UsageError(str(exc)) from exc
    rows = []
    for case in cases:
        rows.append(suite.run_case(case, args.seed))
    print(suite.format_table(rows), flush=True)
    failed = [row.label for row in rows if not row.result.ok]
    if failed:
        raise GradcheckError(f"gradients disagree in {', '.join(failed)} (see the table above)")
    return None


def tsne(args):
    from nanoae.fashion import plots  # noqa: PLC0415

    out = args.out / "tsne.png" if args.out.is_dir() else args.out  # a folder given: the PNG goes in it
    check_output_dir(out.parent, f"--out {args.out}")
    ae = load_model(args.ae, ("autoencoder",))
    splits = load_splits(_settings(args))
    codes = encode_splits(ae, splits)[2]
    if not 10 < args.points <= len(codes):
        raise UsageError(f"--points must be more than 10 and at most {len(codes)} (the test "
                         f"images there are); got {args.points}")
    print(f"t-SNE of {args.points} test codes (scikit-learn; {TSNE_DURATION})...", file=sys.stderr,
          flush=True)
    try:
        embedding, metrics = tsne_map(codes, splits.y_test, seed=args.seed, points=args.points,
                                      perplexity=args.perplexity)
    except ValueError as exc:
        raise UsageError(f"--points {args.points}: {exc}") from exc
    if metrics["tsne_perplexity"] != args.perplexity:
        print(f"nanoae tsne: --perplexity {args.perplexity:g} lowered to "
              f"{metrics['tsne_perplexity']:.2f}: t-SNE needs at least 3 x perplexity + 2 "
              f"points, and {args.points} were asked for", file=sys.stderr)
    print(f"t-SNE done in {metrics['tsne_seconds']:.0f} s", file=sys.stderr)
    n = metrics["tsne_points"]
    figure = plots.plot_tsne(embedding, splits.y_test[:n], CLASS_NAMES, out,
                    title=f"t-SNE of {n} test codes",
                    subtitle=f"trustworthiness (k=5) {metrics['tsne_trustworthiness']:.4f}, "
                             f"5-NN accuracy {100 * metrics['tsne_knn_accuracy']:.1f} %")
    return {"figure": str(figure), **metrics}


def workbook(args):
    """Write a learner's workbook into ``args.dir``, or check one (``--check``)."""
    from nanoae import workbook as wb  # noqa: PLC0415

    if args.check:
        return wb.check(args.dir, data_dir=args.data_dir, verify=args.verify, seed=args.seed,
                        images=args.images)
    return wb.write(args.dir, solved=args.solved, force=args.force)


COMMANDS = {"demo": demo, "train-ae": train_ae, "train-classifier": train_classifier,
            "evaluate": evaluate_checkpoints, "tsne": tsne, "gradcheck": gradcheck,
            "workbook": workbook}

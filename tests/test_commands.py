"""What each command hands to the library and what it refuses, with the library stubbed out:
the wiring of cli/commands.py, in-process and fast (the real runs are in test_cli.py)."""

import json
import types
from pathlib import Path

import pytest

from nanoae.cli import commands
from nanoae.cli.main import build_parser
from nanoae.errors import UsageError
from nanoae.fashion.pipeline import REFERENCE_AE, Settings


def parse(*argv):
    return build_parser().parse_args(list(argv))


def refusal(command, args):
    with pytest.raises(UsageError) as err:
        command(args)
    return str(err.value)


@pytest.fixture
def calls(monkeypatch):
    """The pipeline's stages recorded, returning small stand-ins."""
    seen = {}
    splits = types.SimpleNamespace(x_train="xtr", x_val="xval", x_test="xte", y_test=list(range(20)))

    def record(name, result):
        def stage(*args, **kw):
            seen.setdefault(name, []).append((args, kw))
            return dict(result) if isinstance(result, dict) else result  # a fresh one each call
        monkeypatch.setattr(commands, name, stage)

    record("run_demo", {"a": 1, "histories": {}, "settings": {}, "versions": {}})
    record("load_splits", splits)
    record("train_autoencoder", (types.SimpleNamespace(config={"widths": [784, 8]}), {"watch": {}}))
    record("autoencoder_metrics", {"ae_test_bce": 0.5})
    record("check_output_dir", None)
    record("check_free_space", None)
    record("classifier_checkpoint_bytes", 12345)
    return seen


def test_demo_hands_its_options_to_the_settings(calls, tmp_path):
    out = tmp_path / "demo"
    result = commands.demo(parse("demo", "--out", str(out), "--seed", "4", "--epochs", "2", "--lr", "0.5",
                                 "--mask", "0.25", "--code", "relu", "--widths", "16", "8", "--no-reference",
                                 "--batch-size", "32", "--no-verify", "--data-dir", "d", "--no-progress"))
    assert result == {"a": 1}  # histories, settings and versions stay in metrics.json
    (where, settings), _ = calls["run_demo"][0]
    assert where == out and calls["check_output_dir"][0][0] == (out, f"--out {out}")
    assert settings == Settings(seed=4, data_dir="d", verify=False, backend="numpy", batch_size=32,
                                progress=False, ae_epochs=2, ae_lr=0.5, ae_mask=0.25, code_activation="relu",
                                ae_widths=(784, 16, 8), reference=False)
    assert calls["check_free_space"][0][0] == (out, commands.demo_checkpoint_bytes(settings), f"--out {out}",
                                               "saving the demo's checkpoints")
    commands.demo(parse("demo", "--out", str(out), "--quick"))
    assert calls["run_demo"][1][0][1] == Settings.quick(seed=0, data_dir=None, verify=True, backend="numpy",
                                                        batch_size=256, progress=None)
    (tmp_path / "file").write_text("")
    assert refusal(commands.demo, parse("demo", "--out", str(tmp_path / "file"))) == (
        f"--out {tmp_path / 'file'} is a file; the demo writes a directory of results: give a directory "
        "(new or existing)")


def test_train_ae_refuses_what_does_not_go_together(calls, tmp_path):
    out = tmp_path / "ae.npz"
    assert refusal(commands.train_ae, parse("train-ae", "--out", str(out), "--reference", "--lr", "0.1",
                                            "--widths", "8")) == (
        f"--reference trains the fixed reference recipe (784-128-64-32, ReLU code, {REFERENCE_AE['epochs']} "
        f"epochs at lr {REFERENCE_AE['lr']:g}, no masking) and takes no --lr --widths; drop --lr --widths, "
        "or drop --reference")
    assert refusal(commands.train_ae, parse("train-ae", "--out", str(out), "--resume")) == (
        f"--resume: there is no checkpoint at {out} to continue")
    out.write_bytes(b"")
    assert refusal(commands.train_ae, parse("train-ae", "--out", str(out))) == (
        f"--out {out} already holds a checkpoint; continue its training with --resume, replace it with "
        "--force, or choose another --out")
    assert refusal(commands.train_ae, parse("train-ae", "--out", str(tmp_path))) == (
        f"--out {tmp_path} is a directory; give a checkpoint file name (e.g. {tmp_path}/model.npz)")
    assert "train_autoencoder" not in calls


def test_train_ae_hands_the_recipe_on_and_reports_the_checkpoint(calls, tmp_path, monkeypatch):
    out = tmp_path / "ae.npz"
    result = commands.train_ae(parse("train-ae", "--out", str(out), "--epochs", "3", "--mask", "0", "--seed", "2",
                                     "--batch-size", "16", "--widths", "32"))
    assert result == {"checkpoint": str(out), "ae_test_bce": 0.5}
    (x, settings), kw = calls["train_autoencoder"][0]
    assert x == "xtr" and kw == {"validation": "xval", "reference": False, "checkpoint": out, "resume": False,
                                 "watch": False, "callbacks": []}
    defaults = Settings()
    assert settings == Settings(seed=2, batch_size=16, ae_epochs=3, ae_lr=defaults.ae_lr, ae_mask=0.0,
                                code_activation=defaults.code_activation, ae_widths=(784, 32))
    assert calls["load_splits"][0][0] == (settings,)
    assert calls["check_output_dir"][0][0] == (tmp_path, f"--out {out}")
    assert calls["check_free_space"][0][0][:2] == (tmp_path, commands.autoencoder_checkpoint_bytes((784, 32)))
    commands.train_ae(parse("train-ae", "--out", str(out), "--reference", "--force"))
    (x, settings), kw = calls["train_autoencoder"][1]
    assert settings.ae_epochs == REFERENCE_AE["epochs"] and kw["reference"] is True
    commands.train_ae(parse("train-ae", "--out", str(out), "--force"))
    assert calls["train_autoencoder"][2][0][1].ae_epochs == defaults.ae_epochs
    monkeypatch.setattr(commands, "write_diagnostics", lambda history, checkpoint, title: {"title": title})
    result = commands.train_ae(parse("train-ae", "--out", str(out), "--force", "--watch"))
    assert result["live_plot"] == str(tmp_path / "ae.live.png") and result["title"] == "autoencoder [784, 8]"
    live = calls["train_autoencoder"][3][1]["callbacks"]
    assert [type(c).__name__ for c in live] == ["LivePlot"] and live[0].path == tmp_path / "ae.live.png"
    assert calls["train_autoencoder"][3][1]["watch"] is True


def test_a_finished_run_is_not_resumed_without_more_epochs(calls, tmp_path, monkeypatch):
    out = tmp_path / "ae.npz"
    out.write_bytes(b"")
    meta = {"user": {"epoch": 40, "step": 0}}
    monkeypatch.setattr(commands, "read_checkpoint_meta", lambda path: meta)
    assert refusal(commands.train_ae, parse("train-ae", "--out", str(out), "--resume")) == (
        f"--resume: the run in {out} is finished (40 epochs done, --epochs 40); to train it further, ask for "
        "more: --resume --epochs 50 (the learning-rate schedule is then spread over the new total)")
    commands.train_ae(parse("train-ae", "--out", str(out), "--resume", "--epochs", "41"))
    meta["user"] = {"epoch": 40, "step": 3}  # stopped mid-epoch: there is still work
    commands.train_ae(parse("train-ae", "--out", str(out), "--resume"))
    meta["user"] = {}
    commands.train_ae(parse("train-ae", "--out", str(out), "--resume", "--epochs", "1"))
    assert [kw["resume"] for _, kw in calls["train_autoencoder"]] == [True, True, True]
    with pytest.raises(UsageError, match=r"ask for more: --resume --epochs 45 \(the"):
        meta["user"] = {"epoch": 35}
        commands._check_resume(out, 30)


def test_paths_beside_a_checkpoint_and_the_diagnostics_written_there(tmp_path):
    assert commands.live_path("runs/ae.npz") == Path("runs/ae.live.png")
    assert commands.finetuned_path("runs/clf.npz") == Path("runs/clf.finetuned.npz")
    records = {"every": 1, "step": [0], "epoch": [1], "layers": {"d": {"kind": "Dense", "update_ratio": [1e-3],
                                                                      "grad_std": [1.0]}},
               "histograms": {}}
    out = commands.write_diagnostics({"watch": records}, tmp_path / "m.npz", "a model")
    assert out == {"watch_records": str(tmp_path / "m.watch.json"),
                   "diagnostics": str(tmp_path / "m.diagnostics.png"),
                   "diagnostics_summary": ["In the last epoch the median update-to-data ratio of the Dense "
                                           "layers ranged from 1.0e-03 (d) to 1.0e-03 (d), against the usual "
                                           "guide of 1e-3."]}
    assert json.loads((tmp_path / "m.watch.json").read_text()) == records
    assert (tmp_path / "m.diagnostics.png").stat().st_size > 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_classifier_checkpoint_comes_back_with_its_scaler_in_the_heads_dtype(tmp_path, dtype):
    """The scaler in front of a saved head is rebuilt in the head's dtype (it was always float32,
    so a float64 head refused its own codes)."""
    import numpy  # noqa: PLC0415

    from nanoae.fashion.models import Classifier, Standardize  # noqa: PLC0415
    from nanoae.sequential import Sequential  # noqa: PLC0415
    from nanoae.train.checkpoint import save_checkpoint  # noqa: PLC0415

    codes = numpy.random.default_rng(0).normal(size=(6, 4)).astype(dtype)
    scaler, head = Standardize.fit(codes), Classifier(4, (5,), 10, seed=0, dtype=dtype)
    save_checkpoint(tmp_path / "c.npz", Sequential(scaler, head),
                    meta={"model": head.config, "scaler": scaler.config})
    model = commands.load_model(tmp_path / "c.npz", ("classifier",), "--classifier")
    assert model.layers[0].mean.dtype == numpy.dtype(dtype)
    numpy.testing.assert_array_equal(model(codes), Sequential(scaler, head)(codes))
    if dtype == "float32":  # a config that names no dtype: float32, as build_model reads it
        older = {k: v for k, v in head.config.items() if k != "dtype"}
        save_checkpoint(tmp_path / "old.npz", Sequential(scaler, head), meta={"model": older, "scaler": scaler.config})
        model = commands.load_model(tmp_path / "old.npz", ("classifier",), "--classifier")
        assert model.layers[0].mean.dtype == numpy.float32


def test_evaluate_and_gradcheck_refuse_what_is_missing():
    assert refusal(commands.evaluate_checkpoints, parse("evaluate")) == "give --ae, --classifier, or both"
    assert refusal(commands.gradcheck, parse("gradcheck", "--args", "1")) == (
        "--args and --shape describe your own layer: name it too, as in nanoae gradcheck "
        "my_layers.py:LeakyReLU --args 'slope=0.1'")
    assert refusal(commands.gradcheck, parse("gradcheck", "--shape", "2,3")).startswith("--args and --shape")


def test_a_checkpoints_kind_and_its_autoencoder_are_checked(tmp_path, monkeypatch):
    metas = {}
    monkeypatch.setattr(commands, "read_checkpoint_meta", lambda path: metas[str(path)])
    metas["a"] = {"user": {"model": {"kind": "classifier"}}}
    assert refusal(lambda p: commands.load_model(p, ("autoencoder",)), "a") == (
        "--ae a holds a classifier on codes (from train-classifier, or classifier.npz of demo); --ae takes an "
        "autoencoder (from train-ae, or autoencoder.npz of demo)")
    metas["b"] = {"user": {"model": {"kind": "mystery"}}}
    assert refusal(lambda p: commands.load_model(p, ("classifier", "finetuned"), "--classifier"), "b") == (
        "--classifier b holds 'mystery'; --classifier takes a classifier on codes (from train-classifier, or "
        "classifier.npz of demo) or a fine-tuned classifier (from train-classifier --finetune, or "
        "finetuned.npz of demo)")
    from nanoae.errors import CheckpointError  # noqa: PLC0415

    metas["c"] = {"user": {}}
    with pytest.raises(CheckpointError) as err:
        commands.load_model("c")
    assert str(err.value) == ("c: the checkpoint does not say which model it holds (no 'model' config in its "
                              "metadata); was it written by nanoae?")
    metas["d"] = {"user": {"model": {"kind": "autoencoder", "widths": "nonsense"}}}
    with pytest.raises(CheckpointError, match=r"^d: its model config cannot be rebuilt: "):
        commands.load_model("d")

    def unreadable(path):
        raise CheckpointError(f"{path} is not a checkpoint" if path == "x" else "truncated")

    monkeypatch.setattr(commands, "read_checkpoint_meta", unreadable)
    assert refusal(lambda p: commands._read_meta(p, "--ae"), "x") == "--ae x is not a checkpoint"
    assert refusal(lambda p: commands._read_meta(p, "--ae"), "y") == "--ae y: truncated"
    fp = {"widths": [784, 16, 4], "code_activation": "relu", "sha256": "0123456789abcdef"}
    assert commands._describe(fp) == "784-16-4 (relu code, encoder sha256 0123456789ab)"
    monkeypatch.setattr(commands, "read_checkpoint_meta", lambda path: {"user": {}})
    assert refusal(lambda p: commands.check_same_autoencoder(p, None, "ae.npz"), "clf.npz") == (
        "--classifier clf.npz does not record which autoencoder made its codes (an older nanoae wrote it); "
        "train it again with nanoae train-classifier --ae ae.npz")
    other = {**fp, "sha256": "fedcba9876543210"}
    monkeypatch.setattr(commands, "read_checkpoint_meta", lambda path: {"user": {"autoencoder": other}})
    monkeypatch.setattr(commands, "encoder_fingerprint", lambda ae: fp)
    assert refusal(lambda p: commands.check_same_autoencoder(p, None, "ae.npz"), "clf.npz") == (
        "--classifier clf.npz was trained on the codes of the autoencoder 784-16-4 (relu code, encoder sha256 "
        "fedcba987654), but --ae ae.npz is 784-16-4 (relu code, encoder sha256 0123456789ab); give the "
        "autoencoder it was trained on")
    monkeypatch.setattr(commands, "read_checkpoint_meta", lambda path: {"user": {"autoencoder": fp}})
    commands.check_same_autoencoder("clf.npz", None, "ae.npz")  # the same one: no refusal


def test_tsne_refuses_a_count_of_points_it_cannot_map_and_says_what_it_changed(calls, tmp_path, monkeypatch,
                                                                            capsys):
    monkeypatch.setattr(commands, "load_model", lambda path, kinds: "ae")
    monkeypatch.setattr(commands, "encode_splits", lambda ae, splits: (None, None, list(range(20))))
    (tmp_path / "ae.npz").write_bytes(b"")
    base = ["tsne", "--ae", str(tmp_path / "ae.npz"), "--out", str(tmp_path)]
    for points in ("10", "21"):
        assert refusal(commands.tsne, parse(*base, "--points", points)) == (
            f"--points must be more than 10 and at most 20 (the test images there are); got {points}")
    metrics = {"tsne_points": 12, "tsne_perplexity": 3.3333, "tsne_seconds": 4.4, "tsne_trustworthiness": 0.9876,
               "tsne_knn_accuracy": 0.75}
    mapped, drawn = [], []
    monkeypatch.setattr(commands, "tsne_map", lambda codes, labels, **kw: (mapped.append(kw), ("emb", metrics))[1])
    from nanoae.fashion import plots  # noqa: PLC0415

    monkeypatch.setattr(plots, "plot_tsne", lambda *a, **kw: (drawn.append((a, kw)), a[3])[1])
    result = commands.tsne(parse(*base, "--points", "12", "--perplexity", "20", "--seed", "5"))
    assert mapped == [{"seed": 5, "points": 12, "perplexity": 20.0}]
    assert result == {"figure": str(tmp_path / "tsne.png"), **metrics}
    (embedding, labels, names, out), kw = drawn[0]
    assert labels == list(range(12)) and out == tmp_path / "tsne.png"
    assert kw == {"title": "t-SNE of 12 test codes", "subtitle": "trustworthiness (k=5) 0.9876, 5-NN accuracy 75.0 %"}
    assert capsys.readouterr().err.splitlines() == [
        "t-SNE of 12 test codes (scikit-learn; no progress shown; 10,000 codes took 38-50 s on 2-core CPUs)...",
        "nanoae tsne: --perplexity 20 lowered to 3.33: t-SNE needs at least 3 x perplexity + 2 points, and 12 "
        "were asked for",
        "t-SNE done in 4 s"]
    monkeypatch.setattr(commands, "tsne_map", lambda codes, labels, **kw: (_ for _ in ()).throw(ValueError("odd")))
    assert refusal(commands.tsne, parse(*base, "--points", "12", "--out", str(tmp_path / "m.png"))) == (
        "--points 12: odd")
    assert calls["check_output_dir"][-1][0] == (tmp_path, f"--out {tmp_path / 'm.png'}")


def test_evaluate_scores_what_it_is_given_with_the_right_prefix(calls, monkeypatch, tmp_path):
    from nanoae.fashion.models import FineTuned  # noqa: PLC0415

    for name in ("ae.npz", "clf.npz"):
        (tmp_path / name).write_bytes(b"")
    tuned = FineTuned.__new__(FineTuned)
    models = {"ae.npz": "the ae", "clf.npz": ("scaler", "head")}
    loaded, scored, checked = [], [], []

    def load_model(path, kinds, option="--ae"):
        loaded.append((Path(path).name, kinds, option))
        return models[Path(path).name]

    monkeypatch.setattr(commands, "load_model", load_model)
    monkeypatch.setattr(commands, "score_classifier", lambda clf, splits, prefix, test_mirror: (
        scored.append((clf, prefix, test_mirror)), {f"{prefix}_test_accuracy": 0.5})[1])
    monkeypatch.setattr(commands, "check_same_autoencoder", lambda *a: checked.append(a))
    monkeypatch.setattr(commands, "ImageClassifier", lambda ae, scaler, head: ("images", ae, scaler, head))
    ae, clf = str(tmp_path / "ae.npz"), str(tmp_path / "clf.npz")
    assert refusal(commands.evaluate_checkpoints, parse("evaluate", "--classifier", clf)) == (
        "this classifier works on codes; give the autoencoder it was trained on with --ae")
    assert loaded == [("clf.npz", ("classifier", "finetuned"), "--classifier")]
    result = commands.evaluate_checkpoints(parse("evaluate", "--ae", ae, "--classifier", clf))
    assert result == {"ae_test_bce": 0.5, "clf_frozen_test_accuracy": 0.5}
    assert loaded[1:] == [("ae.npz", ("autoencoder",), "--ae"), ("clf.npz", ("classifier", "finetuned"),
                                                                   "--classifier")]
    assert checked == [(Path(clf), "the ae", Path(ae))]
    assert scored == [(("images", "the ae", "scaler", "head"), "clf_frozen", True)]
    models["clf.npz"] = tuned
    assert commands.evaluate_checkpoints(parse("evaluate", "--classifier", clf)) == {
        "clf_finetune_test_accuracy": 0.5}
    assert scored[-1] == (tuned, "clf_finetune", True) and len(checked) == 1
    assert commands.evaluate_checkpoints(parse("evaluate", "--ae", ae)) == {"ae_test_bce": 0.5}
    assert len(scored) == 2


def test_a_run_saved_without_a_record_of_its_epochs_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(commands, "read_checkpoint_meta", lambda path: {})
    commands._check_resume(tmp_path / "x.npz", 1)  # nothing recorded: nothing done, no refusal
    monkeypatch.setattr(commands, "read_checkpoint_meta", lambda path: {"user": {"epoch": 2}})
    with pytest.raises(UsageError, match=r"\(2 epochs done, --epochs 2\)"):
        commands._check_resume(tmp_path / "x.npz", 2)
    commands._check_resume(tmp_path / "x.npz", 3)


def test_train_classifier_hands_its_options_on_and_scores_both_models(calls, tmp_path, monkeypatch):
    (tmp_path / "ae.npz").write_bytes(b"")
    out = tmp_path / "clf.npz"
    loaded, frozen_calls, tuned_calls, scored, diagnostics = [], [], [], [], []
    monkeypatch.setattr(commands, "load_model", lambda path, kinds: (loaded.append((path, kinds)), "the ae")[1])
    monkeypatch.setattr(commands, "train_frozen_classifier", lambda ae, splits, settings, **kw: (
        frozen_calls.append((ae, splits, settings, kw)), ("frozen", "frozen history", None))[1])
    monkeypatch.setattr(commands, "fine_tune", lambda frozen, splits, settings, **kw: (
        tuned_calls.append((frozen, splits, settings, kw)), ("tuned", "tuned history"))[1])
    monkeypatch.setattr(commands, "score_classifier", lambda clf, splits, prefix, test_mirror: (
        scored.append((clf, splits, prefix, test_mirror)), {f"{prefix}_test_accuracy": clf})[1])
    monkeypatch.setattr(commands, "write_diagnostics", lambda history, checkpoint, title: (
        diagnostics.append((history, checkpoint, title)), {"watch_records": f"{title} records"})[1])
    ae = str(tmp_path / "ae.npz")

    result = commands.train_classifier(parse("train-classifier", "--ae", ae, "--out", str(out), "--epochs", "3",
                                             "--lr", "0.5", "--hidden", "7", "5", "--seed", "4",
                                             "--batch-size", "32", "--no-verify", "--data-dir", "d"))
    assert result == {"checkpoint": str(out), "clf_frozen_test_accuracy": "frozen"}
    assert loaded == [(Path(ae), ("autoencoder",))]
    settings = calls["load_splits"][0][0][0]
    assert settings == Settings(seed=4, data_dir="d", verify=False, backend="numpy", batch_size=32, progress=None,
                                head_epochs=3, head_lr=0.5, head_hidden=(7, 5), finetune_epochs=0)
    assert calls["check_output_dir"][0][0] == (tmp_path, f"--out {out}")
    assert calls["classifier_checkpoint_bytes"][0][0] == ("the ae", settings, False)
    assert calls["check_free_space"][0][0] == (tmp_path, 12345, f"--out {out}", "the checkpoint of the head")
    splits = frozen_calls[0][1]
    assert splits.x_train == "xtr"  # what load_splits returned
    assert frozen_calls == [("the ae", splits, settings, {"checkpoint": out, "watch": False, "callbacks": []})]
    assert scored == [("frozen", splits, "clf_frozen", True)]
    assert tuned_calls == [] and diagnostics == []

    out.write_bytes(b"")  # what the real training leaves there
    assert refusal(commands.train_classifier, parse("train-classifier", "--ae", ae, "--out", str(out))) == (
        f"--out {out} already holds a checkpoint; replace it with --force, or choose another --out")
    tuned_out = tmp_path / "clf.finetuned.npz"
    tuned_out.write_bytes(b"")
    out.unlink()
    assert refusal(commands.train_classifier, parse("train-classifier", "--ae", ae, "--out", str(out),
                                                    "--finetune", "2")) == (
        f"--out {tuned_out} already holds a checkpoint; replace it with --force, or choose another --out")
    assert len(frozen_calls) == 1  # refused before anything was loaded or trained
    commands.train_classifier(parse("train-classifier", "--ae", ae, "--out", str(out)))  # no --finetune: not read
    assert len(frozen_calls) == 2

    out.write_bytes(b"")  # both checkpoints there: --force replaces them
    result = commands.train_classifier(parse("train-classifier", "--ae", ae, "--out", str(out), "--force",
                                             "--finetune", "2", "--watch"))
    assert result == {"checkpoint": str(out), "clf_frozen_test_accuracy": "frozen",
                      "watch_records": "classifier head on codes records",
                      "live_plot": str(tmp_path / "clf.live.png"),
                      "finetune_checkpoint": str(tuned_out), "clf_finetune_test_accuracy": "tuned",
                      "finetune_watch_records": "fine-tuned classifier records",
                      "finetune_live_plot": str(tmp_path / "clf.finetuned.live.png")}
    settings = frozen_calls[2][2]
    assert settings.finetune_epochs == 2 and settings.head_epochs == 12 and settings.head_hidden == (512, 512)
    kw = frozen_calls[2][3]
    assert kw["checkpoint"] == out and kw["watch"] is True
    assert [type(c).__name__ for c in kw["callbacks"]] == ["LivePlot"]
    assert kw["callbacks"][0].path == tmp_path / "clf.live.png"
    (frozen, tuned_splits, tuned_settings, kw), = tuned_calls
    assert (frozen, tuned_splits, tuned_settings) == ("frozen", frozen_calls[2][1], settings)
    assert kw["checkpoint"] == tuned_out and kw["watch"] is True
    assert [c.path for c in kw["callbacks"]] == [tmp_path / "clf.finetuned.live.png"]
    assert scored[-2:] == [("frozen", tuned_splits, "clf_frozen", True), ("tuned", tuned_splits, "clf_finetune", True)]
    assert diagnostics == [("frozen history", out, "classifier head on codes"),
                           ("tuned history", tuned_out, "fine-tuned classifier")]


def test_gradcheck_checks_the_built_ins_or_the_named_layer_and_names_what_failed(monkeypatch, capsys):
    from nanoae.cli import checks  # noqa: PLC0415
    from nanoae.gradcheck import GradcheckError  # noqa: PLC0415

    seen = []

    def row(label, ok):
        return types.SimpleNamespace(label=label, result=types.SimpleNamespace(ok=ok))

    monkeypatch.setattr(checks, "builtin_cases", lambda: ["dense", "relu", "mse"])
    monkeypatch.setattr(checks, "load_layer", lambda spec: (seen.append(("load", spec)), f"class {spec}")[1])
    monkeypatch.setattr(checks, "layer_case", lambda cls, args, shape, seed: (
        seen.append(("case", cls, args, shape, seed)), "mine")[1])
    monkeypatch.setattr(checks, "run_case", lambda case, seed: (
        seen.append(("run", case, seed)), row(case.upper(), case != "relu"))[1])
    monkeypatch.setattr(checks, "format_table", lambda rows: "table of " + " ".join(r.label for r in rows))
    with pytest.raises(GradcheckError) as err:
        commands.gradcheck(parse("gradcheck", "--seed", "3"))
    assert str(err.value) == "gradients disagree in RELU (see the table above)"
    assert seen == [("run", "dense", 3), ("run", "relu", 3), ("run", "mse", 3)]
    assert capsys.readouterr().out == "table of DENSE RELU MSE\n"

    seen.clear()
    monkeypatch.setattr(checks, "builtin_cases", lambda: ["relu", "dense", "relu"])
    with pytest.raises(GradcheckError) as err:
        commands.gradcheck(parse("gradcheck"))
    assert str(err.value) == "gradients disagree in RELU, RELU (see the table above)"
    capsys.readouterr()

    seen.clear()
    assert commands.gradcheck(parse("gradcheck", "m.py:Leaky", "--args", "slope=0.1", "--shape", "2x3",
                                    "--seed", "4")) is None
    assert seen == [("load", "m.py:Leaky"), ("case", "class m.py:Leaky", "slope=0.1", (2, 3), 4), ("run", "mine", 4)]
    assert capsys.readouterr().out == "table of MINE\n"

    def not_checkable(spec):
        raise checks.NotCheckable(f"{spec}: no such file")

    monkeypatch.setattr(checks, "load_layer", not_checkable)
    assert refusal(commands.gradcheck, parse("gradcheck", "nothing.py:L")) == "nothing.py:L: no such file"


def test_tsne_maps_the_test_codes_of_the_autoencoder_it_loads(calls, tmp_path, monkeypatch):
    from nanoae.fashion import plots  # noqa: PLC0415
    from nanoae.fashion.data import CLASS_NAMES  # noqa: PLC0415

    encoded, mapped, drawn = [], [], []
    monkeypatch.setattr(commands, "load_model", lambda path, kinds: "the ae")
    monkeypatch.setattr(commands, "encode_splits", lambda ae, splits: (
        encoded.append((ae, splits)), (None, None, [f"code {i}" for i in range(20)]))[1])
    metrics = {"tsne_points": 11, "tsne_perplexity": 3.0, "tsne_seconds": 1.0, "tsne_trustworthiness": 0.5,
               "tsne_knn_accuracy": 0.5}
    monkeypatch.setattr(commands, "tsne_map", lambda codes, labels, **kw: (
        mapped.append((codes, labels)), ("the map", metrics))[1])
    monkeypatch.setattr(plots, "plot_tsne", lambda *a, **kw: (drawn.append(a), a[3])[1])
    (tmp_path / "ae.npz").write_bytes(b"")
    base = ["tsne", "--ae", str(tmp_path / "ae.npz"), "--out", str(tmp_path), "--perplexity", "3", "--seed", "6"]
    for points in ("11", "20"):  # the smallest and the largest count allowed
        commands.tsne(parse(*base, "--points", points))
    settings = calls["load_splits"][0][0][0]
    assert settings == Settings(seed=6, data_dir=None, verify=True, backend="numpy", batch_size=256, progress=None)
    splits = encoded[0][1]
    assert encoded == [("the ae", splits)] * 2 and splits.y_test == list(range(20))
    assert mapped == [([f"code {i}" for i in range(20)], list(range(20)))] * 2
    assert drawn[0] == ("the map", list(range(11)), CLASS_NAMES, tmp_path / "tsne.png")


def test_a_classifier_that_is_no_checkpoint_is_named_by_its_option(monkeypatch):
    from nanoae.errors import CheckpointError  # noqa: PLC0415

    def unreadable(path):
        raise CheckpointError(f"{path} is not a checkpoint")

    monkeypatch.setattr(commands, "read_checkpoint_meta", unreadable)
    assert refusal(lambda p: commands.check_same_autoencoder(p, None, "ae.npz"), "clf.npz") == (
        "--classifier clf.npz is not a checkpoint")


def test_a_checkpoint_without_user_metadata_or_unreadable_on_resume_is_named(tmp_path, monkeypatch):
    from nanoae.errors import CheckpointError  # noqa: PLC0415

    monkeypatch.setattr(commands, "read_checkpoint_meta", lambda path: {})
    with pytest.raises(CheckpointError, match=r"^m\.npz: the checkpoint does not say which model it holds"):
        commands.load_model("m.npz")

    def unreadable(path):
        raise CheckpointError(f"{path} is not a checkpoint")

    monkeypatch.setattr(commands, "read_checkpoint_meta", unreadable)
    assert refusal(lambda p: commands._check_resume(p, 3), "ae.npz") == "--resume: --out ae.npz is not a checkpoint"


def test_train_classifier_fine_tunes_without_watching_when_not_asked(calls, tmp_path, monkeypatch):
    (tmp_path / "ae.npz").write_bytes(b"")
    tuned = []
    monkeypatch.setattr(commands, "load_model", lambda path, kinds: "the ae")
    monkeypatch.setattr(commands, "train_frozen_classifier", lambda ae, splits, settings, **kw: ("frozen", {}, None))
    monkeypatch.setattr(commands, "fine_tune", lambda frozen, splits, settings, **kw: (tuned.append(kw), ("t", {}))[1])
    monkeypatch.setattr(commands, "score_classifier", lambda clf, splits, prefix, test_mirror: {prefix: clf})
    out = tmp_path / "clf.npz"
    result = commands.train_classifier(parse("train-classifier", "--ae", str(tmp_path / "ae.npz"), "--out", str(out),
                                             "--finetune", "1"))
    assert result == {"checkpoint": str(out), "clf_frozen": "frozen",
                      "finetune_checkpoint": str(tmp_path / "clf.finetuned.npz"), "clf_finetune": "t"}
    assert tuned == [{"checkpoint": tmp_path / "clf.finetuned.npz", "watch": False, "callbacks": []}]
    assert calls["classifier_checkpoint_bytes"][0][0][2] is True  # room for the fine-tuned model too


def test_workbook_writes_or_checks_with_the_options_given(monkeypatch):
    from nanoae import workbook  # noqa: PLC0415

    seen = []
    monkeypatch.setattr(workbook, "check", lambda directory, **kw: seen.append(("check", directory, kw)))
    monkeypatch.setattr(workbook, "write", lambda directory, **kw: seen.append(("write", directory, kw)))
    commands.workbook(parse("workbook", "wb", "--check", "--images", "7", "--seed", "3", "--data-dir", "d",
                            "--no-verify"))
    commands.workbook(parse("workbook", "wb", "--solved", "--force"))
    commands.workbook(parse("workbook", "wb"))
    assert seen == [("check", Path("wb"), {"data_dir": "d", "verify": False, "seed": 3, "images": 7}),
                    ("write", Path("wb"), {"solved": True, "force": True}),
                    ("write", Path("wb"), {"solved": False, "force": False})]


def test_evaluate_loads_the_data_with_the_default_seed_and_batches(calls, monkeypatch, tmp_path):
    (tmp_path / "ae.npz").write_bytes(b"")
    monkeypatch.setattr(commands, "load_model", lambda path, kinds, option="--ae": "the ae")
    commands.evaluate_checkpoints(parse("evaluate", "--ae", str(tmp_path / "ae.npz"), "--data-dir", "d", "--no-verify"))
    assert calls["load_splits"] == [((Settings(seed=0, data_dir="d", verify=False, backend="numpy", batch_size=256,
                                               progress=None),), {})]
    assert calls["autoencoder_metrics"] == [(("the ae", "xte"), {})]


def test_the_diagnostics_figure_is_titled_with_the_model_and_its_records(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(commands, "plot_diagnostics", lambda records, path, title: (
        drawn.append((records, path, title)), path)[1])
    monkeypatch.setattr(commands, "summarize", lambda records: ["summary of", records])
    out = commands.write_diagnostics({"watch": {"every": 2}}, tmp_path / "clf.npz", "classifier head on codes")
    assert drawn == [({"every": 2}, tmp_path / "clf.diagnostics.png", "classifier head on codes: clf.watch.json")]
    assert out == {"watch_records": str(tmp_path / "clf.watch.json"),
                   "diagnostics": str(tmp_path / "clf.diagnostics.png"),
                   "diagnostics_summary": ["summary of", {"every": 2}]}


def test_train_ae_and_demo_hand_on_the_learning_rate_code_backend_and_progress_given(calls, tmp_path):
    out = tmp_path / "ae.npz"
    commands.train_ae(parse("train-ae", "--out", str(out), "--lr", "0.25", "--code", "relu", "--backend", "auto",
                            "--no-progress"))
    settings = calls["train_autoencoder"][0][0][1]
    assert (settings.ae_lr, settings.code_activation, settings.backend, settings.progress) == (0.25, "relu", "auto",
                                                                                              False)
    commands.train_ae(parse("train-ae", "--out", str(out), "--force", "--progress"))
    assert calls["train_autoencoder"][1][0][1].progress is True
    commands.demo(parse("demo", "--out", str(tmp_path / "demo"), "--backend", "auto"))
    assert calls["run_demo"][0][0][1].backend == "auto"

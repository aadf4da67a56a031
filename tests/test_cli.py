"""The nanoae command: help, clear exits on bad arguments, and whole runs on small data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.idx_helpers import make_fake_fashion

from nanoae.cli import main

REAL_DATA = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
DEMO_FILES = ["metrics.json", "report.md", "reconstructions.png", "curves.png", "confusion.png",
              "tsne.png", "codes.png", "pca_reconstructions.png", "autoencoder.npz", "classifier.npz", "finetuned.npz"]
AE_KEYS = {"ae_test_bce", "ae_test_mse", "ae_dead_code_units"}
METRIC_KEYS = ["ae_test_bce", "ae_dead_code_units", "ae_test_mse", "clf_frozen_test_accuracy", "clf_frozen_test_loss",
               "clf_finetune_test_accuracy", "tsne_trustworthiness", "tsne_knn_accuracy",
               "ae_seconds_per_epoch", "backend", "seed", "settings", "versions"]


def run_cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "nanoae.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_help_lists_commands_and_examples():
    r = run_cli("--help")
    assert r.returncode == 0
    for word in ("demo", "train-ae", "train-classifier", "evaluate", "tsne", "examples:",
                 "dataset-fashion-mnist"):
        assert word in r.stdout
    r = run_cli("demo", "--help")
    assert r.returncode == 0 and "--quick" in r.stdout and "--backend" in r.stdout


@pytest.mark.parametrize("command, words", [("evaluate", "Score an autoencoder"),
                                            ("tsne", "Map the codes of the first --points"),
                                            ("train-classifier", ".finetuned.npz in place of .npz")])
def test_every_command_describes_itself_in_help(capsys, command, words):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert " ".join(capsys.readouterr().out.split()).count(words) == 1


@pytest.mark.parametrize("args, message", [
    (["demo", "--epochs", "0"], "must be at least 1, got 0"),
    (["demo", "--batch-size", "-1"], "must be at least 1, got -1"),
    (["demo", "--lr", "nan"], "must be a positive number"),
    (["demo", "--backend", "tpu"], "invalid choice: 'tpu'"),
    (["evaluate", "--ae", "no/such/file.npz"], "no such file: no/such/file.npz"),
    (["fly"], "invalid choice: 'fly'"),
])
def test_bad_arguments_exit_2_with_one_clear_line(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("nanoae")


def test_unavailable_cupy_exits_2(capsys):
    from nanoae import backend

    if backend.cupy_available():
        pytest.skip("CuPy works here")
    err = refused(capsys, ["evaluate", "--backend", "cupy"], "evaluate")  # as docs/cli.md says
    assert "backend 'cupy' was requested but cannot run" in err


def test_missing_data_is_one_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("nanoae.fashion.data.SYSTEM_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("NANOAE_DATA_DIR", raising=False)
    monkeypatch.setattr("nanoae.fashion.data._urlopen", _no_network)
    code = main(["train-ae", "--out", str(tmp_path / "a.npz")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("nanoae: error:") and "Traceback" not in err
    assert "train-images-idx3-ubyte" in err


@pytest.mark.parametrize("how", ["--data-dir", "NANOAE_DATA_DIR"])
def test_a_data_dir_that_is_not_there_is_an_error_naming_it(tmp_path, capsys, monkeypatch, how):
    make_fake_fashion(tmp_path / "system")  # a copy the old search silently fell back to
    monkeypatch.setattr("nanoae.fashion.data.SYSTEM_DIR", str(tmp_path / "system"))
    monkeypatch.setattr("nanoae.fashion.data._urlopen", _no_network)
    typo = tmp_path / "typo"
    args = ["train-ae", "--out", str(tmp_path / "a.npz"), "--no-verify"]
    if how == "--data-dir":
        monkeypatch.delenv("NANOAE_DATA_DIR", raising=False)
        args += ["--data-dir", str(typo)]
    else:
        monkeypatch.setenv("NANOAE_DATA_DIR", str(typo))
    err = refused(capsys, args, "train-ae")
    assert f"{how} names {typo}, which is not a directory" in err
    assert not (tmp_path / "a.npz").exists()


def _any_file(tmp_path):
    path = tmp_path / "some.npz"
    path.write_bytes(b"")
    return path


def _no_network(*args, **kwargs):
    raise OSError("network disabled in tests")


@pytest.fixture
def fake_data(tmp_path):
    make_fake_fashion(tmp_path / "data", n_train=300, n_test=60)
    return str(tmp_path / "data")


def test_demo_quick_on_small_data_writes_everything(tmp_path, fake_data, capsys, backend_name):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--data-dir", fake_data, "--no-verify", "--epochs", "1",
                 "--out", str(out), "--batch-size", "64", "--backend", backend_name]) == 0
    for name in DEMO_FILES:
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in METRIC_KEYS:
        assert key in metrics, key
    assert metrics["settings"]["ae_epochs"] == 1 and metrics["settings"]["batch_size"] == 64
    assert metrics["backend"] == backend_name
    from nanoae.train.checkpoint import read_checkpoint_meta

    for name in ("autoencoder.npz", "classifier.npz", "finetuned.npz"):
        meta = read_checkpoint_meta(out / name)  # seed, settings and versions travel along
        assert meta["user"]["seed"] == 0 and meta["user"]["settings"]["ae_epochs"] == 1
        assert meta["nanoae_version"] and meta["numpy_version"]
    report = (out / "report.md").read_text()
    assert "![t-SNE](tsne.png)" in report and "| result | value | target of the full run |" in report
    assert "This is a `--quick` run: the targets are those of the full run" in report
    assert "The t-SNE rows are on 60 test codes (the full run maps 10,000)." in report
    stages = [line.split()[0] for line in capsys.readouterr().err.splitlines()
              if line[:1].isdigit() or line.strip().startswith("t-SNE done in")]
    assert stages == ["1/5", "2/5", "3/5", "t-SNE", "4/5", "5/5"]  # numbered from 1 without the reference
    autoencoder = metrics["histories"]["autoencoder (unit code)"]
    assert len(autoencoder["val_loss"]) == 1  # on the held-out validation split, each epoch
    assert "autoencoder" in read_checkpoint_meta(out / "classifier.npz")["user"]
    from nanoae.cli.commands import demo_checkpoint_bytes
    from nanoae.fashion.pipeline import Settings

    # the free space the demo asks for before it starts: a lower bound of its checkpoints, and
    # close to them (what they add: metadata, and each classifier's best epoch's weights)
    written = sum((out / name).stat().st_size for name in ("autoencoder.npz", "classifier.npz",
                                                           "finetuned.npz"))
    needs = demo_checkpoint_bytes(Settings.quick())
    assert needs <= written < 1.25 * needs


def test_train_evaluate_and_resume_commands(tmp_path, fake_data, capsys, backend_name):
    ae, clf = str(tmp_path / "ae.npz"), str(tmp_path / "clf.npz")
    common = ["--data-dir", fake_data, "--no-verify", "--backend", backend_name, "--batch-size", "50"]
    assert main(["train-ae", "--epochs", "1", "--out", ae, "--widths", "24", "16", *common]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["checkpoint"] == ae and first["ae_test_bce"] > 0
    assert set(first) == {"checkpoint", *AE_KEYS}  # the names of demo's metrics.json and evaluate
    assert main(["train-ae", "--epochs", "2", "--out", ae, "--widths", "24", "16", "--resume", *common]) == 0
    capsys.readouterr()
    from nanoae.train.checkpoint import read_checkpoint_meta

    assert read_checkpoint_meta(ae)["user"]["model"]["widths"] == [784, 24, 16]  # --widths, pixels first
    assert main(["train-classifier", "--ae", ae, "--out", clf, "--epochs", "2", "--hidden", "8",
                 "--finetune", "1", *common]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert 0 <= trained["clf_frozen_test_accuracy"] <= 1 and "clf_finetune_test_accuracy" in trained
    assert trained["finetune_checkpoint"] == str(tmp_path / "clf.finetuned.npz")  # as --help says
    assert main(["evaluate", "--ae", ae, "--classifier", clf, *common[:5]]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["clf_frozen_test_accuracy"] == pytest.approx(trained["clf_frozen_test_accuracy"])
    assert "clf_frozen_test_accuracy_single_view" in evaluated
    assert AE_KEYS <= set(evaluated)
    assert main(["evaluate", "--classifier", trained["finetune_checkpoint"], *common[:5]]) == 0
    tuned = json.loads(capsys.readouterr().out)
    assert tuned["clf_finetune_test_accuracy"] == pytest.approx(trained["clf_finetune_test_accuracy"])


def test_watch_writes_the_diagnostics_beside_the_checkpoint(tmp_path, fake_data, capsys):
    ae, clf = tmp_path / "ae.npz", tmp_path / "clf.npz"
    common = ["--data-dir", fake_data, "--no-verify", "--batch-size", "50"]
    assert main(["train-ae", "--epochs", "2", "--out", str(ae), "--code", "relu", "--widths", "24", "16",
                 "--watch", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["diagnostics"] == str(tmp_path / "ae.diagnostics.png")
    records = json.loads((tmp_path / "ae.watch.json").read_text())
    assert len(records["layers"]["encoder layer 3 ReLU()"]["dead_per_epoch"]) == 2  # the code
    assert (tmp_path / "ae.diagnostics.png").stat().st_size > 10_000
    # the live plot, redrawn after each epoch to follow the run in an image viewer
    assert out["live_plot"] == str(tmp_path / "ae.live.png")
    assert (tmp_path / "ae.live.png").read_bytes()[:4] == b"\x89PNG"
    assert any("dead units" in sentence for sentence in out["diagnostics_summary"])
    assert main(["train-classifier", "--ae", str(ae), "--out", str(clf), "--epochs", "1",
                 "--hidden", "8", "--finetune", "1", "--watch", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["diagnostics"] == str(tmp_path / "clf.diagnostics.png")
    assert out["finetune_diagnostics"] == str(tmp_path / "clf.finetuned.diagnostics.png")
    assert (tmp_path / "clf.finetuned.watch.json").is_file()
    for key, name in (("live_plot", "clf.live.png"), ("finetune_live_plot", "clf.finetuned.live.png")):
        assert out[key] == str(tmp_path / name)  # redrawn after every epoch, to follow the run
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
@pytest.mark.skipif(not REAL_DATA.exists(), reason="needs Debian's dataset-fashion-mnist "
                    "(apt-get install dataset-fashion-mnist); CI installs it")
def test_real_fashion_mnist_quick_demo(tmp_path):
    """The real pipeline end to end on the real data (about a minute on 2 quiet cores)."""
    out = tmp_path / "demo"
    r = run_cli("demo", "--quick", "--out", str(out), timeout=1200)  # 8.5 min on 2 busy cores
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    for name in DEMO_FILES:
        assert (out / name).stat().st_size > 0, name
    # loose floors that a working pipeline clears easily after 3 epochs; a broken one does not
    assert metrics["ae_test_bce"] < 0.32 and metrics["ae_dead_code_units"] == 0
    assert metrics["clf_frozen_test_accuracy"] > 0.78
    assert metrics["clf_finetune_test_accuracy"] > 0.80
    assert metrics["tsne_trustworthiness"] > 0.98


@pytest.mark.sigint
@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT, a POSIX signal")
def test_ctrl_c_during_train_ae_saves_and_says_how_to_resume(tmp_path, backend_name):
    import signal
    import time

    make_fake_fashion(tmp_path / "data", n_train=3000, n_test=20)
    ckpt = tmp_path / "ae.npz"
    args = [sys.executable, "-m", "nanoae.cli", "train-ae", "--data-dir", str(tmp_path / "data"),
            "--no-verify", "--out", str(ckpt), "--batch-size", "32", "--backend", backend_name]
    from helpers.signals import sigint_as_default

    proc = subprocess.Popen([*args, "--epochs", "500"], stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_default)  # Ctrl-C reaches it from any shell
    deadline = time.monotonic() + 60
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)  # the checkpoint appears after the first epoch
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    from nanoae.train.checkpoint import read_checkpoint_meta

    saved = read_checkpoint_meta(ckpt)["user"]
    assert saved["epoch"] >= 1 and 0 <= saved["step"] <= 94
    done = subprocess.run([*args, "--epochs", str(saved["epoch"] + 1), "--resume"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_checkpoint_meta(ckpt)["user"]["epoch"] == saved["epoch"] + 1


def test_evaluate_needs_a_checkpoint(capsys):
    assert main(["evaluate"]) == 2
    assert "nanoae evaluate: error: give --ae, --classifier, or both" in capsys.readouterr().err


@pytest.fixture
def trained(tmp_path, fake_data, capsys):
    """Two tiny autoencoders (seeds 0 and 1) and a classifier on the codes of the first."""
    common = ["--data-dir", fake_data, "--no-verify", "--batch-size", "50", "--widths", "24", "16"]
    paths = {name: tmp_path / f"{name}.npz" for name in ("ae", "other", "clf")}
    assert main(["train-ae", "--epochs", "1", "--out", str(paths["ae"]), *common]) == 0
    assert main(["train-ae", "--epochs", "1", "--out", str(paths["other"]), "--seed", "1", *common]) == 0
    assert main(["train-classifier", "--ae", str(paths["ae"]), "--out", str(paths["clf"]), "--epochs",
                 "1", "--hidden", "8", *common[:5]]) == 0
    capsys.readouterr()
    return paths, common[:3]


def refused(capsys, args, command):
    """Run ``args``; assert exit 2 with one line from ``command``, and return that line."""
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"nanoae {command}: error: "), err
    return err


def test_a_checkpoint_of_the_wrong_kind_is_refused_saying_both(trained, capsys):
    paths, data = trained
    for args in (["evaluate", "--ae", str(paths["clf"])], ["tsne", "--ae", str(paths["clf"])],
                 ["train-classifier", "--ae", str(paths["clf"]), "--out", str(paths["clf"]) + "2"]):
        err = refused(capsys, [*args, *data], args[0])
        assert f"--ae {paths['clf']} holds a classifier on codes" in err
        assert "--ae takes an autoencoder (from train-ae" in err
    err = refused(capsys, ["evaluate", "--classifier", str(paths["ae"]), *data], "evaluate")
    assert "holds an autoencoder" in err and "takes a classifier on codes" in err


def test_a_classifier_given_another_autoencoder_is_refused_naming_both(trained, capsys):
    paths, data = trained
    from nanoae.train.checkpoint import read_checkpoint_meta

    made_by = read_checkpoint_meta(paths["clf"])["user"]["autoencoder"]
    assert made_by["widths"] == [784, 24, 16] and len(made_by["sha256"]) == 64
    err = refused(capsys, ["evaluate", "--ae", str(paths["other"]), "--classifier", str(paths["clf"]),
                           *data], "evaluate")
    assert f"trained on the codes of the autoencoder 784-24-16 (unit code, encoder sha256 " \
           f"{made_by['sha256'][:12]})" in err
    assert f"--ae {paths['other']} is 784-24-16 (unit code, encoder sha256 " in err
    assert main(["evaluate", "--ae", str(paths["ae"]), "--classifier", str(paths["clf"]), *data]) == 0


def test_train_ae_keeps_a_trained_checkpoint_unless_told(trained, capsys):
    paths, data = trained
    before = paths["ae"].read_bytes()
    args = ["train-ae", "--epochs", "1", "--out", str(paths["ae"]), "--widths", "24", "16", *data]
    err = refused(capsys, args, "train-ae")
    assert "already holds a checkpoint" in err and "--resume" in err and "--force" in err
    assert paths["ae"].read_bytes() == before
    err = refused(capsys, [*args, "--resume"], "train-ae")  # it has done its 1 epoch
    assert "is finished (1 epochs done, --epochs 1)" in err and "--resume --epochs 11" in err
    assert main([*args, "--force", "--seed", "3"]) == 0 and paths["ae"].read_bytes() != before
    capsys.readouterr()
    err = refused(capsys, ["train-classifier", "--ae", str(paths["ae"]), "--out", str(paths["clf"]),
                           *data], "train-classifier")
    assert "already holds a checkpoint; replace it with --force" in err


def test_demo_out_naming_a_file_is_refused(tmp_path, capsys):
    err = refused(capsys, ["demo", "--out", str(_any_file(tmp_path))], "demo")
    assert "is a file" in err


def test_tsne_refuses_what_it_cannot_do_and_says_what_it_adjusted(trained, tmp_path, capsys):
    paths, data = trained
    args = ["tsne", "--ae", str(paths["ae"]), "--out", str(tmp_path / "t.png"), *data]
    err = refused(capsys, [*args, "--points", "61"], "tsne")  # the fake test set has 60 images
    assert "--points must be more than 10 and at most 60" in err and "got 61" in err
    assert main([*args, "--points", "60", "--perplexity", "20"]) == 0
    captured = capsys.readouterr()
    assert "--perplexity 20 lowered to 19.67" in captured.err and "t-SNE done in" in captured.err
    assert "Warning" not in captured.err


def test_a_file_that_is_not_a_checkpoint_is_a_usage_error_like_the_others(trained, tmp_path, capsys):
    paths, data = trained
    report = tmp_path / "report.md"
    report.write_text("# not a checkpoint\n")
    for args in (["evaluate", "--ae", str(report)], ["evaluate", "--ae", str(paths["ae"]),
                                                     "--classifier", str(report)],
                 ["train-classifier", "--ae", str(report), "--out", str(tmp_path / "c.npz")]):
        err = refused(capsys, [*args, *data], args[0])
        assert f"{report} is not a valid nanoae checkpoint" in err and "--" in err.split(str(report))[0]


def test_train_ae_reference_refuses_the_recipe_options_it_would_ignore(tmp_path, capsys):
    out = tmp_path / "ref.npz"
    err = refused(capsys, ["train-ae", "--reference", "--epochs", "3", "--lr", "0.01",
                           "--out", str(out)], "train-ae")
    assert "--reference trains the fixed reference recipe" in err and "20 epochs" in err
    assert "drop --epochs --lr, or drop --reference" in err and not out.exists()


def test_tsne_out_naming_a_folder_writes_into_it_and_prints_the_real_path(trained, tmp_path, capsys):
    paths, data = trained
    folder = tmp_path / "maps"
    folder.mkdir()
    assert main(["tsne", "--ae", str(paths["ae"]), "--out", str(folder), "--points", "60", *data]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["figure"] == str(folder / "tsne.png")
    assert (folder / "tsne.png").is_file() and not (tmp_path / "maps.png").exists()
    assert "t-SNE of 60 test codes (scikit-learn; no progress shown" in captured.err


def test_a_demo_that_fails_at_once_leaves_no_output_folder(tmp_path, capsys):
    out = tmp_path / "runs" / "demo"
    refused(capsys, ["demo", "--quick", "--out", str(out), "--data-dir", str(tmp_path / "typo")],
            "demo")
    assert not out.exists() and not out.parent.exists()


def test_evaluate_has_no_seed_and_the_quick_demo_promises_no_duration(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "--seed" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["tsne", "--help"])
    assert "--seed" in capsys.readouterr().out  # the t-SNE layout is seeded
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "minute" not in capsys.readouterr().out


def test_demo_figures_say_which_autoencoder_and_which_loss(tmp_path, fake_data, monkeypatch):
    """reconstructions.png names its autoencoder, codes.png shows the reference one (where its
    dead units are), curves.png names each stage's loss."""
    from nanoae.fashion import plots
    from nanoae.fashion.pipeline import Settings, run_demo

    calls = {}
    for name in ("plot_reconstructions", "plot_codes_activity", "plot_curves"):
        real = getattr(plots, name)
        monkeypatch.setattr(plots, name, lambda *a, _real=real, _name=name, **k: (
            calls.__setitem__(_name, (a, k)), _real(*a, **k))[1])
    settings = Settings.quick(reference=True, ae_epochs=1, head_epochs=1, finetune_epochs=1,
                              batch_size=100, data_dir=fake_data, verify=False, progress=False)
    run_demo(tmp_path / "demo", settings, log=lambda message: None)
    assert "by the autoencoder 784-512-128-32 (unit code)" in calls["plot_reconstructions"][1]["title"]
    codes = calls["plot_codes_activity"][0][0]
    assert list(codes) == ["autoencoder 784-512-128-32 (unit code)",
                           "reference autoencoder 784-128-64-32 (relu code)"]
    losses = calls["plot_curves"][1]["loss_names"]
    assert losses["reference autoencoder (ReLU code)"] == "BCE per pixel"
    assert losses["classifier on frozen codes"] == losses["encoder + head fine-tuned"] == "cross-entropy"


# -- outputs: refused before the work when they cannot be written; a save that fails ----------

def _no_data(*args, **kwargs):
    raise AssertionError("the data was loaded: the output should have been refused first")


@pytest.mark.parametrize("command", ["train-ae", "train-classifier", "tsne", "demo"])
def test_an_output_place_that_cannot_hold_a_directory_is_refused_before_the_work(
        tmp_path, capsys, monkeypatch, command):
    monkeypatch.setattr("nanoae.cli.commands.load_splits", _no_data)
    blocker = _any_file(tmp_path)  # a file where the output's directory would go
    out = str(blocker / ("run" if command == "demo" else "x.npz"))
    extra = [] if command in ("train-ae", "demo") else ["--ae", str(blocker)]
    err = refused(capsys, [command, "--out", out, *extra, "--watch"] if command == "train-ae"
                  else [command, "--out", out, *extra], command)
    assert f"--out {out}: cannot create the directory " in err and f"{blocker} is a file" in err


@pytest.mark.parametrize("error", ["EROFS", "EACCES"])
def test_a_directory_it_cannot_write_in_is_refused_in_the_first_second(tmp_path, capsys, monkeypatch,
                                                                        error):
    """A read-only file system or a directory of someone else's (a probe file fails to appear):
    refused before any data is read. (root may write anywhere: the probe is patched to fail.)"""
    import errno
    import time

    def probe_fails(*args, **kwargs):
        code = getattr(errno, error)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("nanoae.cli.commands.load_splits", _no_data)
    monkeypatch.setattr("nanoae.cli.outputs.tempfile.mkstemp", probe_fails)
    out = tmp_path / "new" / "ae.npz"
    t0 = time.monotonic()
    err = refused(capsys, ["train-ae", "--out", str(out)], "train-ae")
    assert time.monotonic() - t0 < 1
    assert err == (f"nanoae train-ae: error: --out {out}: cannot create {out.parent} in {tmp_path} "
                   f"({os.strerror(getattr(errno, error))}); choose a place you can write to")
    assert not out.parent.exists()


@pytest.mark.skipif(not os.path.isdir("/sys") or os.access("/sys", os.W_OK) and os.geteuid() != 0,
                    reason="needs a /sys nobody writes in")
def test_train_ae_out_in_sys_is_refused_as_a_newcomer_types_it():
    r = run_cli("train-ae", "--out", "/sys/ae.npz", timeout=30)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("nanoae train-ae: error: --out /sys/ae.npz: cannot write in /sys (")


def test_the_output_check_leaves_nothing_behind(tmp_path):
    from nanoae.cli.outputs import check_output_dir

    check_output_dir(tmp_path / "a" / "b")
    check_output_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_save_on_a_full_disk_exits_1_in_one_line_and_the_checkpoint_there_still_loads(
        tmp_path, fake_data, capsys, monkeypatch):
    from helpers.full_disk import fill_up

    from nanoae.train.checkpoint import read_checkpoint_meta

    ae = tmp_path / "ae.npz"
    common = ["--data-dir", fake_data, "--no-verify", "--batch-size", "50", "--widths", "24", "16",
              "--out", str(ae)]
    assert main(["train-ae", "--epochs", "1", *common]) == 0
    capsys.readouterr()
    before = ae.read_bytes()
    monkeypatch.setattr(os, "fdopen", fill_up(4096))  # the disk fills up during the next save
    assert main(["train-ae", "--epochs", "2", "--resume", *common]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    needed = int(err.split("it needs ")[1].split(" bytes")[0].replace(",", ""))
    assert abs(needed - len(before)) < 1000  # the same weights; the history grew by one epoch
    assert err.startswith(f"nanoae: error: could not save the checkpoint {ae}: [Errno 28] No space "
                          f"left on device; it needs {needed:,} bytes and {tmp_path} has ")
    assert err.endswith("the checkpoint saved there before is intact (nothing was written over it)")
    monkeypatch.undo()
    assert ae.read_bytes() == before and read_checkpoint_meta(ae)["user"]["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ae.npz", "data"]  # no temporary file


def test_a_watch_file_that_cannot_be_written_is_one_line_exit_1(tmp_path, fake_data, capsys,
                                                                 monkeypatch):
    import errno

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", full)
    ae = tmp_path / "ae.npz"
    assert main(["train-ae", "--epochs", "1", "--out", str(ae), "--data-dir", fake_data,
                 "--no-verify", "--batch-size", "50", "--widths", "24", "16", "--watch"]) == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (f"nanoae: error: could not write {tmp_path / 'ae.watch.json'}: [Errno 28] "
                   "No space left on device")


def test_every_commands_options_and_defaults(monkeypatch, tmp_path):
    """What each command parses to when given nothing optional: the option names, defaults and
    choices the README and the help promise (the parser's builders are left out of mutation
    testing for their help texts; this pins the rest)."""
    import argparse  # noqa: PLC0415

    from nanoae.cli.main import build_parser  # noqa: PLC0415

    monkeypatch.delenv("NANOAE_BACKEND", raising=False)
    ckpt = tmp_path / "ae.npz"
    ckpt.write_bytes(b"")
    parse = build_parser().parse_args
    common = {"backend": "numpy", "data_dir": None, "verify": True}
    training = {**common, "batch_size": 256, "progress": None, "seed": 0}
    recipe = {"epochs": None, "lr": None, "mask": None, "code": None, "widths": None}
    assert vars(parse(["demo"])) == {"command": "demo", **training, **recipe, "out": Path("runs/demo"),
                                     "quick": False, "no_reference": False}
    assert vars(parse(["train-ae"])) == {"command": "train-ae", **training, **recipe,
                                         "out": Path("runs/autoencoder.npz"), "reference": False,
                                         "resume": False, "force": False, "watch": False}
    assert vars(parse(["train-classifier", "--ae", str(ckpt)])) == {
        "command": "train-classifier", **training, "ae": ckpt, "out": Path("runs/classifier.npz"),
        "epochs": 12, "lr": 1e-3, "hidden": [512, 512], "finetune": 0, "force": False, "watch": False}
    assert vars(parse(["evaluate"])) == {"command": "evaluate", **common, "ae": None, "classifier": None}
    assert vars(parse(["tsne", "--ae", str(ckpt)])) == {
        "command": "tsne", **common, "seed": 0, "ae": ckpt, "out": Path("runs/tsne.png"), "points": 10000,
        "perplexity": 10.0}
    assert vars(parse(["gradcheck"])) == {"command": "gradcheck", "layer": None, "args": "", "shape": None,
                                          "seed": 0, "backend": "numpy"}
    assert vars(parse(["workbook", "wb"])) == {"command": "workbook", **common, "seed": 0, "dir": Path("wb"),
                                               "check": False, "solved": False, "force": False,
                                               "images": 10000}
    given = parse(["train-ae", "--backend", "auto", "--seed", "3", "--data-dir", "d", "--no-verify",
                   "--batch-size", "8", "--no-progress", "--epochs", "2", "--lr", "0.5", "--mask", "0",
                   "--code", "relu", "--widths", "16", "4", "--resume", "--force", "--watch", "--reference"])
    assert (given.backend, given.seed, given.data_dir, given.verify, given.batch_size, given.progress,
            given.epochs, given.lr, given.mask, given.code, given.widths, given.resume, given.force,
            given.watch, given.reference) == ("auto", 3, "d", False, 8, False, 2, 0.5, 0.0, "relu", [16, 4],
                                              True, True, True, True)
    assert parse(["gradcheck", "m.py:L", "--args", "slope=0.1", "--shape", "2x3", "--seed", "4",
                  "--backend", "cupy"]).shape == (2, 3)
    assert parse(["demo", "--quick", "--no-reference", "--progress"]).progress is True
    assert parse(["tsne", "--ae", str(ckpt), "--points", "20", "--perplexity", "5"]).points == 20
    assert parse(["workbook", "wb", "--check", "--solved", "--images", "7"]).images == 7
    assert parse(["train-classifier", "--ae", str(ckpt), "--finetune", "0", "--hidden", "4"]).hidden == [4]
    monkeypatch.setenv("NANOAE_BACKEND", "cupy")
    assert build_parser().parse_args(["evaluate"]).backend == "cupy"
    assert build_parser().parse_args(["gradcheck"]).backend == "cupy"
    for bad in (["demo", "--code", "tanh"], ["demo", "--backend", "torch"], ["evaluate", "--seed", "1"],
                ["evaluate", "--batch-size", "2"], ["gradcheck", "--data-dir", "d"],
                ["train-classifier", "--ae", str(tmp_path / "missing.npz")], ["train-classifier"],
                ["demo", "--mask", "1"], ["demo", "--batch-size", "0"], ["tsne"]):
        with pytest.raises(SystemExit):
            parse(bad)
    assert isinstance(build_parser(), argparse.ArgumentParser)


def test_the_output_check_says_where_and_why_in_one_line(tmp_path, monkeypatch):
    import errno  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from nanoae.cli.outputs import check_output_dir  # noqa: PLC0415
    from nanoae.errors import UsageError  # noqa: PLC0415

    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError) as err:
        check_output_dir(tmp_path / "f" / "sub" / "x", "--watch")
    assert str(err.value) == (f"--watch: cannot create the directory {tmp_path / 'f' / 'sub' / 'x'}: "
                              f"{tmp_path / 'f'} is a file; choose another place")
    probes = []

    def refused(dir, prefix):
        probes.append((dir, prefix))
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(UsageError) as err:
        check_output_dir(tmp_path)
    assert str(err.value) == (f"--out: cannot write in {tmp_path} (Read-only file system); choose a "
                              "place you can write to")
    with pytest.raises(UsageError) as err:
        check_output_dir(tmp_path / "new" / "deeper")
    assert str(err.value) == (f"--out: cannot create {tmp_path / 'new' / 'deeper'} in {tmp_path} "
                              "(Read-only file system); choose a place you can write to")
    assert probes == [(tmp_path, ".nanoae-probe-")] * 2
    monkeypatch.setattr(tempfile, "mkstemp", lambda dir, prefix: (_ for _ in ()).throw(OSError("odd")))
    with pytest.raises(UsageError, match=r"cannot write in .* \(odd\)"):
        check_output_dir(tmp_path)
    monkeypatch.undo()
    check_output_dir("relative-that-does-not-exist/x")  # its nearest existing part: the working folder
    assert not os.path.exists("relative-that-does-not-exist")


def test_a_full_disk_is_refused_before_the_work_and_the_probe_is_gone(tmp_path, monkeypatch):
    """An empty file fits on a full disk: the probe writes PROBE_BYTES, and a disk that refuses
    them (ENOSPC, or a short write) is named with what to do; the probe is removed either way."""
    import errno  # noqa: PLC0415

    import nanoae.cli.outputs as outputs  # noqa: PLC0415
    from nanoae.errors import UsageError  # noqa: PLC0415

    written, real_write = [], os.write

    def counted(fd, data):
        written.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(outputs.os, "write", counted)
    outputs.check_output_dir(tmp_path)
    assert written == [outputs.PROBE_BYTES] and outputs.PROBE_BYTES >= 4096
    full = f"--out: cannot write in {tmp_path} (No space left on device); free some space there or " \
           "choose another place"
    monkeypatch.setattr(outputs.os, "write", lambda fd, data: real_write(fd, data[:100]))  # a short write
    with pytest.raises(UsageError) as err:
        outputs.check_output_dir(tmp_path)
    assert str(err.value) == full

    def no_space(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs.os, "write", no_space)
    with pytest.raises(UsageError) as err:
        outputs.check_output_dir(tmp_path / "new", "--watch")
    assert str(err.value) == (f"--watch: cannot create {tmp_path / 'new'} in {tmp_path} (No space left "
                              "on device); free some space there or choose another place")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("reference", [False, True])
def test_train_ae_on_a_disk_too_small_for_its_checkpoint_is_refused_before_the_data(
        tmp_path, capsys, monkeypatch, reference):
    """The checkpoint's arrays alone need more than is free: refused in the first second."""
    import shutil  # noqa: PLC0415

    from nanoae.cli.commands import autoencoder_checkpoint_bytes  # noqa: PLC0415
    from nanoae.fashion.pipeline import Settings  # noqa: PLC0415

    widths = (784, 128, 64, 32) if reference else Settings().ae_widths
    needs = autoencoder_checkpoint_bytes(widths)
    seen = []

    def disk_usage(path):
        seen.append(path)
        return shutil._ntuple_diskusage(10 ** 9, 10 ** 9 - needs + 1, needs - 1)

    monkeypatch.setattr("nanoae.cli.commands.load_splits", _no_data)
    monkeypatch.setattr("nanoae.cli.outputs.shutil.disk_usage", disk_usage)
    out = tmp_path / "new" / "ae.npz"
    err = refused(capsys, ["train-ae", "--out", str(out)] + (["--reference"] if reference else []),
                  "train-ae")
    assert err == (f"nanoae train-ae: error: --out {out}: {tmp_path} has {needs - 1:,} bytes free, and the "
                   f"checkpoint of a {'-'.join(map(str, widths))} autoencoder needs at least {needs:,}; "
                   "free some space there or choose another place")
    assert seen == [tmp_path]  # the deepest part of --out that exists
    assert not out.parent.exists()
    from nanoae.cli.outputs import check_free_space  # noqa: PLC0415

    monkeypatch.setattr("nanoae.cli.outputs.shutil.disk_usage", lambda path: shutil._ntuple_diskusage(1, 0, needs))
    check_free_space(out.parent, needs, "--out", "it")  # exactly enough is enough


@pytest.mark.parametrize("finetune", [False, True])
def test_train_classifier_on_a_disk_too_small_for_its_checkpoints_is_refused_before_the_data(
        trained, capsys, monkeypatch, finetune):
    import shutil  # noqa: PLC0415

    from nanoae import Sequential  # noqa: PLC0415
    from nanoae.cli.commands import checkpoint_bytes, load_model  # noqa: PLC0415
    from nanoae.fashion.models import Classifier  # noqa: PLC0415

    paths, data = trained
    head = Classifier(16, (8,), 10)  # the classifier of the tiny autoencoder's codes, --hidden 8
    needs = checkpoint_bytes(head)
    if finetune:
        needs += checkpoint_bytes(Sequential(load_model(paths["ae"]).encoder, head))
    monkeypatch.setattr("nanoae.cli.commands.load_splits", _no_data)
    monkeypatch.setattr("nanoae.cli.outputs.shutil.disk_usage",
                        lambda path: shutil._ntuple_diskusage(10 ** 9, 10 ** 9 - needs + 1, needs - 1))
    out = paths["clf"].parent / "new.npz"
    err = refused(capsys, ["train-classifier", "--ae", str(paths["ae"]), "--out", str(out), "--hidden",
                           "8", *data] + (["--finetune", "1"] if finetune else []), "train-classifier")
    what = ("saving the checkpoints of the head and the fine-tuned model" if finetune
            else "the checkpoint of the head")
    assert err == (f"nanoae train-classifier: error: --out {out}: {out.parent} has {needs - 1:,} bytes "
                   f"free, and {what} needs at least {needs:,}; free some space there or choose "
                   "another place")


def test_a_demo_on_a_disk_too_small_for_its_checkpoints_is_refused_before_the_data(
        tmp_path, capsys, monkeypatch):
    """Its four checkpoints take about 30 MB; the probe of check_output_dir writes 64 KiB."""
    import shutil  # noqa: PLC0415

    from nanoae.cli.commands import demo_checkpoint_bytes  # noqa: PLC0415
    from nanoae.fashion.pipeline import Settings  # noqa: PLC0415

    needs = demo_checkpoint_bytes(Settings())
    assert needs > 25 * 10 ** 6
    monkeypatch.setattr("nanoae.cli.commands.run_demo", _no_data)
    monkeypatch.setattr("nanoae.cli.outputs.shutil.disk_usage",
                        lambda path: shutil._ntuple_diskusage(10 ** 9, 10 ** 9 - needs + 1, needs - 1))
    out = tmp_path / "new" / "demo"
    err = refused(capsys, ["demo", "--out", str(out)], "demo")
    assert err == (f"nanoae demo: error: --out {out}: {tmp_path} has {needs - 1:,} bytes free, and "
                   f"saving the demo's checkpoints needs at least {needs:,}; free some space there or choose "
                   "another place")
    assert not out.parent.exists()
    # without the reference autoencoder, less by exactly its checkpoint
    from nanoae.cli.commands import autoencoder_checkpoint_bytes  # noqa: PLC0415
    from nanoae.fashion.pipeline import REFERENCE_AE  # noqa: PLC0415

    assert demo_checkpoint_bytes(Settings(reference=False)) == needs - autoencoder_checkpoint_bytes(
        REFERENCE_AE["widths"])


def test_the_checkpoint_bound_is_the_arrays_of_the_weights_and_adams_moments(tmp_path):
    """A lower bound of the file train-ae writes (so that nothing is refused that would fit), and
    close to it: what the file adds is its metadata."""
    import nanoae as nn  # noqa: PLC0415
    from nanoae.cli.commands import autoencoder_checkpoint_bytes  # noqa: PLC0415
    from nanoae.fashion.models import Autoencoder  # noqa: PLC0415
    from nanoae.fashion.pipeline import Settings  # noqa: PLC0415
    from nanoae.train.checkpoint import save_checkpoint  # noqa: PLC0415

    widths = (300, 64, 16)
    model = Autoencoder(widths, seed=0)
    params = sum(p.data.size for p in model.parameters())
    assert params == 301 * 64 + 65 * 16 + 17 * 64 + 65 * 300
    assert autoencoder_checkpoint_bytes(widths) == 3 * 4 * params
    path = save_checkpoint(tmp_path / "ae.npz", model, nn.Adam(model.parameters()),
                           meta={"model": model.config, "settings": Settings().as_dict()})
    assert 0 < path.stat().st_size - autoencoder_checkpoint_bytes(widths) < 16 * 1024


def test_the_option_types_say_what_was_wrong():
    import argparse  # noqa: PLC0415

    cli = __import__("importlib").import_module("nanoae.cli.main")

    def message(parse, text):
        with pytest.raises(argparse.ArgumentTypeError) as err:
            parse(text)
        return str(err.value)

    positive, non_negative = cli._whole_number(1), cli._whole_number(0)
    assert positive("1") == 1 and non_negative("0") == 0 and positive(" 7 ") == 7
    assert message(positive, "0") == "must be at least 1, got 0"
    assert message(non_negative, "-1") == "must be at least 0, got -1"
    assert message(positive, "1.5") == "expected a whole number, got '1.5'"
    assert cli._positive_int("3") == 3 and cli._non_negative_int("0") == 0
    assert message(cli._positive_int, "0") == "must be at least 1, got 0"
    assert message(cli._non_negative_int, "-2") == "must be at least 0, got -2"
    assert cli._number("1e-3") == 1e-3
    assert message(cli._number, "x") == "expected a number, got 'x'"
    assert cli._positive_float("0.5") == 0.5
    for bad in ("0", "-1", "nan", "inf"):
        assert message(cli._positive_float, bad) == f"must be a positive number, got {bad}"
    assert message(cli._positive_float, "two") == "expected a number, got 'two'"
    assert cli._probability("0") == 0.0 and cli._probability("0.99") == 0.99
    for bad in ("1", "-0.1", "nan"):
        assert message(cli._probability, bad) == f"must be in [0, 1), got {bad}"
    assert message(cli._existing_file, "no/such.npz") == "no such file: no/such.npz"
    assert cli._existing_file(__file__) == Path(__file__)
    assert message(cli._existing_file, str(Path(__file__).parent)) == f"no such file: {Path(__file__).parent}"
    assert cli._shape("4,5") == (4, 5) and cli._shape("2x3x4") == (2, 3, 4) and cli._shape("7") == (7,)
    assert message(cli._shape, "4,a") == "expected sizes like 4,5 (batch, features), got '4,a'"
    assert message(cli._shape, "4,0") == "sizes must be positive whole numbers, got '4,0'"
    assert message(cli._shape, "") == "expected sizes like 4,5 (batch, features), got ''"


class _Comm:
    """What main reads of a communicator: its size, whether it is rank 0, and an allgather."""

    def __init__(self, size=1, is_root=True, others=()):
        import types  # noqa: PLC0415

        self.size, self.is_root, self.gpu = size, is_root, []
        self.mpi_comm = types.SimpleNamespace(allgather=lambda mine: [mine, *others])

    def use_gpu(self):
        self.gpu.append(True)


def test_main_ends_each_kind_of_error_with_its_exit_status_and_one_line(monkeypatch, capsys):
    import errno  # noqa: PLC0415

    from nanoae.cli import commands  # noqa: PLC0415
    cli = __import__("importlib").import_module("nanoae.cli.main")
    from nanoae.errors import DataDirError, NanoaeError, UsageError  # noqa: PLC0415
    from nanoae.parallel import communicator  # noqa: PLC0415

    import contextlib  # noqa: PLC0415

    monkeypatch.setattr(communicator, "world", lambda: _Comm())
    monkeypatch.setattr(communicator, "abort_on_error", lambda comm: contextlib.nullcontext())  # (tested apart)
    raised = {}
    monkeypatch.setitem(commands.COMMANDS, "evaluate", lambda args: (_ for _ in ()).throw(raised["exc"]))
    for exc, code, line in (
            (UsageError("bad use"), 2, "nanoae evaluate: error: bad use"),
            (DataDirError("no data"), 2, "nanoae evaluate: error: no data"),
            (NanoaeError("it broke"), 1, "nanoae: error: it broke"),
            (KeyboardInterrupt(), 130, "\nnanoae: interrupted."),
            (KeyboardInterrupt("at epoch 3"), 130, "\nnanoae: interrupted: at epoch 3."),
            (OSError(errno.ENOSPC, "No space left on device", "/x/fig.png"), 1,
             "nanoae: error: could not write /x/fig.png: [Errno 28] No space left on device"),
            (OSError(errno.EACCES, "Permission denied"), 1,
             "nanoae: error: could not write an output file: [Errno 13] Permission denied")):
        raised["exc"] = exc
        assert cli.main(["evaluate"]) == code
        captured = capsys.readouterr()
        assert captured.err == line + "\n" and captured.out == ""
    raised["exc"] = OSError(errno.ENOENT, "No such file or directory")
    with pytest.raises(FileNotFoundError):  # not the disk: a bug, with its traceback
        cli.main(["evaluate"])
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO):
        assert code in cli.DISK_ERRORS
    monkeypatch.setitem(commands.COMMANDS, "train-ae", lambda args: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert cli.main(["train-ae"]) == 130
    assert capsys.readouterr().err == ("\nnanoae: interrupted. Resume with the same command and --resume.\n")
    monkeypatch.setitem(commands.COMMANDS, "evaluate", lambda args: {"a": 1})
    assert cli.main(["evaluate"]) == 0
    assert capsys.readouterr().out == '{\n  "a": 1\n}\n'
    monkeypatch.setitem(commands.COMMANDS, "evaluate", lambda args: None)
    assert cli.main(["evaluate"]) == 0 and capsys.readouterr().out == ""
    monkeypatch.setattr(communicator, "world", lambda: _Comm(size=2, is_root=False, others=[None]))
    monkeypatch.setitem(commands.COMMANDS, "train-ae", lambda args: {"a": 1})
    assert cli.main(["train-ae"]) == 0 and capsys.readouterr().out == ""  # rank 1 prints nothing
    monkeypatch.setitem(commands.COMMANDS, "train-ae", lambda args: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert cli.main(["train-ae"]) == 130 and capsys.readouterr().err == ""  # rank 0 says it
    monkeypatch.setattr(communicator, "world", lambda: (_ for _ in ()).throw(RuntimeError("no mpi4py")))
    assert cli.main(["evaluate"]) == 2
    assert capsys.readouterr().err == "nanoae evaluate: error: no mpi4py\n"
    monkeypatch.setattr(communicator, "world", lambda: (_ for _ in ()).throw(ValueError("bad size")))
    assert cli.main(["evaluate"]) == 2 and capsys.readouterr().err == "nanoae evaluate: error: bad size\n"


def test_under_mpiexec_only_the_training_commands_run_and_every_rank_refuses_alike(monkeypatch, capsys):
    from nanoae import backend  # noqa: PLC0415
    from nanoae.cli import commands  # noqa: PLC0415
    cli = __import__("importlib").import_module("nanoae.cli.main")
    from nanoae.parallel import communicator  # noqa: PLC0415

    assert cli.DATA_PARALLEL == ("train-ae", "train-classifier", "demo")
    ran = []
    for command in ("train-ae", "train-classifier", "demo", "evaluate", "tsne", "gradcheck", "workbook"):
        monkeypatch.setitem(commands.COMMANDS, command, lambda args: ran.append(args.command))
    two = _Comm(size=2, others=[None])
    monkeypatch.setattr(communicator, "world", lambda: two)
    assert cli.main(["train-ae"]) == 0 and ran == ["train-ae"] and two.gpu == []
    assert cli.main(["evaluate"]) == 2 and ran == ["train-ae"]
    assert capsys.readouterr().err == (
        "nanoae evaluate: error: this command runs on one process, but mpiexec started 2; run it "
        "without mpiexec (data parallel: train-ae, train-classifier, demo)\n")
    quiet = _Comm(size=2, is_root=False, others=[None])
    monkeypatch.setattr(communicator, "world", lambda: quiet)
    assert cli.main(["gradcheck"]) == 2 and capsys.readouterr().err == ""  # said by rank 0 alone
    # another rank refused (its GPU, say): this one ends too, with that rank's reason
    other = _Comm(size=2, others=["rank 1 has no GPU"])
    monkeypatch.setattr(communicator, "world", lambda: other)
    assert cli.main(["train-ae"]) == 2 and ran == ["train-ae"]
    assert capsys.readouterr().err == "nanoae train-ae: error: rank 1 has no GPU\n"
    monkeypatch.setattr(communicator, "world", lambda: _Comm(size=1, others=["never asked"]))
    assert cli.main(["evaluate"]) == 0 and ran[-1] == "evaluate"  # one process: no allgather
    cli._check_data_parallel(_Comm(size=1), "evaluate")  # one process: anything runs
    gpu = _Comm(size=3)
    monkeypatch.setattr(backend, "get_backend", lambda: "cupy")
    cli._check_data_parallel(gpu, "demo")
    assert gpu.gpu == [True]  # one GPU per rank asked for


GRADCHECK_BROKEN = '''
import nanoae as nn
from nanoae.backend import get_array_module


class ForgotSlope(nn.Layer):
    def forward(self, x):
        self.pos = x > 0
        return get_array_module(x).where(self.pos, x, 0.01 * x)

    def backward(self, grad_out, *, input_grad=True):
        return grad_out * self.pos
'''


@pytest.mark.subprocess
def test_in_a_combined_log_the_gradcheck_table_comes_before_the_verdict(tmp_path):
    # stdout into a pipe is block-buffered (PYTHONUNBUFFERED unset, as in a user's `2>&1 | tee log`):
    # the table is flushed before the error goes to stderr
    (tmp_path / "mine.py").write_text(GRADCHECK_BROKEN)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    r = subprocess.run([sys.executable, "-m", "nanoae.cli", "gradcheck", f"{tmp_path / 'mine.py'}:ForgotSlope"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=120)
    lines = r.stdout.splitlines()
    assert r.returncode == 1 and lines[0].startswith("gradient check in float64: ") and lines[-2] == "the check FAILED"
    assert lines[-1] == "nanoae: error: gradients disagree in ForgotSlope() (see the table above)"



def test_the_code_choices_are_the_models():
    """--code lists its choices itself (parsing imports no model code); they must be the
    names ``Autoencoder`` accepts."""
    import argparse  # noqa: PLC0415

    from nanoae.cli.main import build_parser  # noqa: PLC0415
    from nanoae.fashion.models import CODE_ACTIVATIONS  # noqa: PLC0415

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("demo", "train-ae"):
        code = next(a for a in commands.choices[command]._actions if a.dest == "code")
        assert sorted(code.choices) == sorted(CODE_ACTIVATIONS), command

"""fit/evaluate: history, reproducibility, resume after Ctrl-C, NaN stops, early stopping."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
from helpers.device_double import HostReadError, NoHostReads, reads_only_at_epoch_ends
from helpers.learner_run import data, tanh_classifier

import nanoae as nn
from nanoae.backend import to_numpy
from nanoae.fashion.models import Autoencoder, Classifier
from nanoae.train import callbacks as nn_callbacks
from nanoae.train import checkpoint
from nanoae.train.augment import Augmentation
from nanoae.train.callbacks import Checkpoint, KeepBest, LearningRateSchedule, Progress
from nanoae.train.checkpoint import load_checkpoint
from nanoae.train.loop import (
    as_batch,
    cosine_schedule,
    evaluate,
    fit,
    predict,
    split_validation,
)
from nanoae.train.watch import Watch


def tiny_images(n=96, seed=0):
    return numpy.random.default_rng(seed).integers(0, 256, size=(n, 784), dtype=numpy.uint8)


def small_ae(seed=0):
    return Autoencoder((784, 16, 4), code_activation="linear", seed=seed)


def quiet(*callbacks):
    """The callbacks given, and a Progress that shows nothing (tests print nothing)."""
    return [Progress(bar=False, verbose=False), *callbacks]


def weights(model):
    return [to_numpy(p.data).copy() for p in model.parameters()]


def assert_reproducible(init_seed, **fit_kwargs):
    """Two identical seeded runs of fit must end with bitwise-identical weights."""
    def run():
        model = small_ae(seed=init_seed)
        fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), tiny_images(),
            callbacks=quiet(), **fit_kwargs)
        return weights(model)
    for a, b in zip(run(), run()):
        numpy.testing.assert_array_equal(a, b)


def test_as_batch_scales_uint8_once():
    x = numpy.array([[0, 255, 51]], dtype=numpy.uint8)
    b = as_batch(x)
    assert b.dtype == numpy.float32
    numpy.testing.assert_allclose(b, [[0, 1, 0.2]], rtol=1e-6)
    f = numpy.ones((2, 3), dtype=numpy.float32)
    assert as_batch(f) is f
    assert as_batch(numpy.zeros((2, 28, 28), dtype=numpy.uint8)).shape == (2, 784)


def test_fit_autoencoder_history_and_progress():
    model = small_ae()
    opt = nn.Adam(model.parameters(), lr=1e-2)
    x = tiny_images()
    hist = fit(model, nn.BinaryCrossEntropy(), opt, x, epochs=3, batch_size=32,
               validation=(x[:32], None), callbacks=quiet())
    assert hist["epoch"] == [1, 2, 3] and len(hist["seconds"]) == 3 and len(hist["val_loss"]) == 3
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert opt.t == 9  # 3 epochs x 3 steps


def test_same_seed_same_weights_bitwise():
    assert_reproducible(init_seed=3, epochs=2, batch_size=20, seed=5)


def test_classifier_fit_reports_accuracy():
    rng = numpy.random.default_rng(0)
    y = rng.integers(0, 3, size=120)
    x = (rng.standard_normal((120, 5)) + 4 * numpy.eye(5)[y]).astype(numpy.float32)
    head = Classifier(5, (16,), 3, seed=0)
    hist = fit(head, nn.CrossEntropy(), nn.Adam(head.parameters(), lr=1e-2), x, y, epochs=15,
               batch_size=30, validation=(x, y), callbacks=quiet())
    assert hist["val_accuracy"][-1] > 0.9
    r = evaluate(head, nn.CrossEntropy(), x, y)
    assert r["accuracy"] == pytest.approx(hist["val_accuracy"][-1]) and r["loss"] > 0


@pytest.mark.parametrize("bad, match", [
    (dict(epochs=0), "epochs must be >= 1"),
    (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(callbacks=[KeepBest(patience=2)]), "needs validation data"),
    (dict(augment=dict(mask=0.5)), "augment must be an augment.Augmentation"),
    (dict(callbacks=[lambda run: None]), "must be nanoae.train.callbacks.Callback objects"),
])
def test_fit_rejects_impossible_settings(bad, match):
    model = small_ae()
    kwargs = dict(epochs=1, callbacks=quiet()) | bad
    with pytest.raises((ValueError, TypeError), match=match):
        fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), tiny_images(8), **kwargs)


def test_fit_rejects_bad_data():
    head = Classifier(5, (4,), 3)
    opt = nn.Adam(head.parameters())
    x = numpy.zeros((6, 5), dtype=numpy.float32)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2 .*3 outputs.*0\.\.7"):
        fit(head, nn.CrossEntropy(), opt, x, numpy.array([0, 1, 2, 7, 0, 1]), epochs=1, callbacks=quiet())
    with pytest.raises(ValueError, match="6 examples but y has 5"):
        fit(head, nn.CrossEntropy(), opt, x, numpy.arange(5) % 3, epochs=1, callbacks=quiet())
    x[2, 1] = numpy.nan
    with pytest.raises(ValueError, match="NaN"):
        fit(head, nn.CrossEntropy(), opt, x, numpy.arange(6) % 3, epochs=1, callbacks=quiet())
    with pytest.raises(ValueError, match=r"Dense\(5, 4\).*\(N, 5\).*\(1, 784\)"):
        fit(head, nn.CrossEntropy(), opt, tiny_images(6), numpy.arange(6) % 3, epochs=1, callbacks=quiet())
    ae = small_ae()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit(ae, nn.BinaryCrossEntropy(), nn.Adam(ae.parameters()), tiny_images(6).astype(numpy.float32),
            epochs=1, callbacks=quiet())


class _AtCall:
    """A loss that does something to call number ``at`` (1-based), as a real run might."""

    def __init__(self, at, action):
        super().__init__()
        self.at, self.action, self.calls = at, action, 0

    def forward(self, pred, target, **kw):
        self.calls += 1
        value = super().forward(pred, target, **kw)
        return self.action(value) if self.calls == self.at else value


class AtCall(_AtCall, nn.BinaryCrossEntropy):
    pass


class AtCallCE(_AtCall, nn.CrossEntropy):
    pass


def nan_at(at):
    """The loss turns NaN at call ``at``, as a diverging run's would."""
    return AtCall(at, lambda value: value * numpy.nan)


def interrupt_at(at):
    """A real SIGINT (Ctrl-C) reaches this process during call ``at``."""
    def action(value):
        signal.raise_signal(signal.SIGINT)
        return value
    return AtCall(at, action)


def test_nan_loss_stops_with_epoch_and_step_and_keeps_last_checkpoint(tmp_path):
    model = small_ae()
    opt = nn.Adam(model.parameters())
    ckpt = tmp_path / "ae.npz"
    loss = nan_at(3 + 2)
    with pytest.raises(nn.TrainingError, match=r"epoch 2, step 2 of 3.*end of epoch 1.*ae\.npz"):
        fit(model, loss, opt, tiny_images(), epochs=3, batch_size=32,
            callbacks=quiet(Checkpoint(ckpt)))
    assert loss.check is None  # fit turned the per-step checks off, and back on
    meta = load_checkpoint(ckpt, small_ae(), nn.Adam(small_ae().parameters()))
    assert meta["user"]["epoch"] == 1  # the last good state, not the diverged one


@pytest.mark.parametrize("at", [2, 5])  # mid-epoch, and at the first step of an epoch
@pytest.mark.sigint
def test_ctrl_c_saves_and_resume_matches_uninterrupted_run(tmp_path, at):
    x = tiny_images()
    kwargs = dict(epochs=3, batch_size=32, seed=1)
    straight = small_ae()
    fit(straight, nn.BinaryCrossEntropy(), nn.Adam(straight.parameters()), x, callbacks=quiet(),
        **kwargs)

    ckpt = tmp_path / "run.npz"
    model = small_ae()
    found = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match=f"step {(at - 1) % 3 + 1}.*saved to .*run.npz"):
        fit(model, interrupt_at(at), nn.Adam(model.parameters()), x, callbacks=quiet(Checkpoint(ckpt)),
            **kwargs)
    assert signal.getsignal(signal.SIGINT) is found  # the handler found before the run, restored

    resumed = small_ae(seed=99)  # different initial weights: everything must come from the file
    hist = fit(resumed, nn.BinaryCrossEntropy(), nn.Adam(resumed.parameters()), x,
               callbacks=quiet(Checkpoint(ckpt, resume=True)), **kwargs)
    for a, b in zip(weights(straight), weights(resumed)):
        numpy.testing.assert_array_equal(a, b)
    assert hist["epoch"] == [1, 2, 3]


def test_restore_best_and_early_stopping():
    rng = numpy.random.default_rng(1)
    y = rng.integers(0, 2, size=60)
    x = rng.standard_normal((60, 4)).astype(numpy.float32)  # pure noise: validation loss rises
    head = Classifier(4, (64,), 2, seed=0)
    opt = nn.Adam(head.parameters(), lr=3e-2)
    hist = fit(head, nn.CrossEntropy(), opt, x, y, epochs=30, batch_size=10,
               validation=(x[:20] * -1, y[:20]), callbacks=quiet(KeepBest(patience=3)))
    assert len(hist["epoch"]) < 30
    best = hist["best_epoch"]
    assert hist["val_loss"][best - 1] == min(hist["val_loss"])
    now = evaluate(head, nn.CrossEntropy(), x[:20] * -1, y[:20])["loss"]
    assert now == pytest.approx(min(hist["val_loss"]), rel=1e-6)


def test_cosine_schedule_and_split():
    s = cosine_schedule(1.0, total_steps=100, warmup_steps=10)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(55) == pytest.approx(0.5) and s(100) == pytest.approx(0.0, abs=1e-12)
    tr, va = split_validation(100, 0.1, seed=0)
    assert len(va) == 10 and len(tr) == 90 and not set(tr) & set(va)
    numpy.testing.assert_array_equal(va, split_validation(100, 0.1, seed=0)[1])


def test_fit_flip_is_seeded():
    assert_reproducible(init_seed=2, epochs=1, batch_size=32, augment=Augmentation(flip=True))


def test_fit_shift_is_seeded_and_checked():
    x = tiny_images()
    before = x.copy()
    assert_reproducible(init_seed=2, epochs=1, batch_size=32,
                        augment=Augmentation(flip=True, shift=2))
    trained = []
    for shift in (0, 1):
        model = small_ae()
        fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), x, epochs=1, batch_size=32,
            augment=Augmentation(shift=shift), callbacks=quiet())
        trained.append(weights(model)[0])
    assert not numpy.array_equal(*trained)  # the shift reached the batches
    numpy.testing.assert_array_equal(x, before)  # but never the caller's images
    with pytest.raises(ValueError, match="shift must be >= 0"):
        Augmentation(shift=-1)


def test_monitor_val_accuracy_keeps_the_most_accurate_epoch():
    rng = numpy.random.default_rng(3)
    y = rng.integers(0, 3, size=90)
    x = (rng.standard_normal((90, 4)) + 1.5 * numpy.eye(4)[y]).astype(numpy.float32)
    head = Classifier(4, (32,), 3, seed=0)
    hist = fit(head, nn.CrossEntropy(), nn.Adam(head.parameters(), lr=2e-2), x[:60], y[:60],
               epochs=12, batch_size=15, validation=(x[60:], y[60:]),
               callbacks=quiet(KeepBest(monitor="val_accuracy")))
    accs = hist["val_accuracy"]
    best = hist["best_epoch"]
    assert accs[best - 1] == max(accs) and all(a < max(accs) for a in accs[best:])  # ties: later
    assert evaluate(head, nn.CrossEntropy(), x[60:], y[60:])["accuracy"] == pytest.approx(max(accs))
    with pytest.raises(ValueError, match="monitor"):
        KeepBest(monitor="accuracy")


def test_mirror_averages_the_probabilities_of_an_image_and_its_mirror_image():
    rng = numpy.random.default_rng(5)
    x = rng.random((10, 4), dtype=numpy.float32)  # ten 2x2 images
    y = rng.integers(0, 3, size=10)
    head = Classifier(4, (8,), 3, seed=0)
    expected = 0.5 * (head(x) + head(x[:, [1, 0, 3, 2]]))
    numpy.testing.assert_allclose(predict(head, x, mirror=True), expected, rtol=1e-6)
    r = evaluate(head, nn.CrossEntropy(), x, y, batch_size=4, mirror=True)
    assert r["loss"] == pytest.approx(float(nn.CrossEntropy()(expected, y)), rel=1e-6)
    assert r["accuracy"] == pytest.approx(float((expected.argmax(axis=1) == y).mean()))
    assert evaluate(head, nn.CrossEntropy(), x, y)["loss"] != pytest.approx(r["loss"])
    with pytest.raises(ValueError, match="needs labels"):
        evaluate(head, nn.CrossEntropy(), x, mirror=True)


def test_fit_mask_denoises_seeded_and_checked():
    x = tiny_images()
    assert_reproducible(init_seed=1, epochs=2, batch_size=32, augment=Augmentation(mask=0.3))
    trained = []
    for mask in (0.0, 0.3):
        model = small_ae()
        fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), x, epochs=1,
            batch_size=32, augment=Augmentation(mask=mask), callbacks=quiet())
        trained.append(weights(model)[0])
    assert not numpy.array_equal(*trained)
    with pytest.raises(ValueError, match="mask must be a probability"):
        Augmentation(mask=1.0)


def test_a_masked_autoencoder_is_scored_on_the_clean_images():
    """The loss of a denoising step compares the output with the clean batch, not the masked one."""
    x = numpy.full((8, 784), 128, dtype=numpy.uint8)
    model = small_ae()
    seen = {}

    class Spy(nn.BinaryCrossEntropy):
        def forward(self, pred, target, **kw):
            seen["target"] = to_numpy(target).copy()
            return super().forward(pred, target, **kw)

    fit(model, Spy(), nn.SGD(model.parameters(), lr=1e-3), x, epochs=1, batch_size=8,
        augment=Augmentation(mask=0.5), callbacks=quiet())
    numpy.testing.assert_array_equal(seen["target"], as_batch(x))  # no zeros, no 1/(1-p) scaling


@pytest.mark.parametrize("keep_best", [KeepBest(), KeepBest(patience=2)])
@pytest.mark.sigint
def test_resume_keeps_best_epoch_and_patience(tmp_path, keep_best):
    """Interrupted + resumed equals uninterrupted, bitwise, with restore_best / patience on:
    the best epoch, its weights and the patience count come back from the checkpoint."""
    rng = numpy.random.default_rng(1)
    y = rng.integers(0, 2, size=60)
    x = rng.standard_normal((60, 4)).astype(numpy.float32)  # noise: validation loss rises early
    kwargs = dict(epochs=12, batch_size=10, seed=2, validation=(x[:20] * -1, y[:20]))

    def run(loss, ckpt=None, resume=False):
        head = Classifier(4, (32,), 2, seed=0)
        saving = [] if ckpt is None else [Checkpoint(ckpt, resume=resume)]
        hist = fit(head, loss, nn.Adam(head.parameters(), lr=3e-2), x, y,
                   callbacks=quiet(keep_best, *saving), **kwargs)
        return hist, weights(head)

    straight, w_straight = run(nn.CrossEntropy())
    assert straight["best_epoch"] < len(straight["epoch"])  # the best epoch is not the last
    ckpt = tmp_path / "head.npz"
    stop_at = 6 * (straight["best_epoch"] + 1) + 2  # mid-epoch, after the best epoch
    with pytest.raises(KeyboardInterrupt):
        run(AtCallCE(stop_at, lambda v: (signal.raise_signal(signal.SIGINT), v)[1]), ckpt)
    resumed, w_resumed = run(nn.CrossEntropy(), ckpt, resume=True)
    for h in (resumed, straight):
        del h["seconds"]  # wall time: the one figure that may differ
    assert resumed == straight
    for a, b in zip(w_straight, w_resumed):
        numpy.testing.assert_array_equal(a, b)


def test_accuracy_only_for_a_classification_loss():
    """Labels with another loss (here BCE on one-hot-like targets) give no accuracy columns."""
    head = Classifier(4, (8,), 2, seed=0)
    x = numpy.random.default_rng(0).random((20, 4), dtype=numpy.float32)
    y = numpy.zeros((20, 2), dtype=numpy.float32)
    hist = fit(head, nn.BinaryCrossEntropy(), nn.Adam(head.parameters()), x, y, epochs=1,
               batch_size=10, callbacks=quiet())
    assert "train_accuracy" not in hist


def test_patience_message_names_what_is_monitored(capsys):
    rng = numpy.random.default_rng(1)
    y = rng.integers(0, 2, size=60)
    x = rng.standard_normal((60, 4)).astype(numpy.float32)
    head = Classifier(4, (32,), 2, seed=0)
    fit(head, nn.CrossEntropy(), nn.Adam(head.parameters(), lr=3e-2), x, y, epochs=30,
        batch_size=10, validation=(x[:20] * -1, y[:20]),
        callbacks=[KeepBest(monitor="val_accuracy", patience=2), Progress(bar=False)])
    assert "no better val_accuracy for 2 epochs" in capsys.readouterr().err


def test_the_step_loop_reads_nothing_back_to_the_host(monkeypatch):
    """Every default augmentation on, diagnostics recorded, with a classifier and an
    autoencoder: one epoch of steps runs without a single read of a device value; only the
    epoch's end reads (through backend.to_numpy, which is allowed)."""

    x = tiny_images(64).view(NoHostReads)
    y = (numpy.arange(64) % 3).view(NoHostReads)
    reads_only_at_epoch_ends(monkeypatch)
    for model, loss, labels in ((small_ae(), nn.BinaryCrossEntropy(), None),
                                (Classifier(784, (8,), 3, seed=0), nn.CrossEntropy(), y)):
        monkeypatch.setattr(NoHostReads, "armed", True)
        for p in model.parameters():  # so that every array computed in a step is watched
            p.data = p.data.view(NoHostReads)
        fit(model, loss, nn.Adam(model.parameters()), x, labels, epochs=2, batch_size=16,
            augment=Augmentation(flip=True, shift=1, mask=0.1),
            callbacks=quiet(LearningRateSchedule(cosine_schedule(1e-3, 8)), Watch(model, every=2)))


def test_the_host_read_detector_can_fail():
    with pytest.raises(HostReadError):
        float(numpy.ones(3).view(NoHostReads).sum())


def test_predict_and_evaluate_move_host_inputs_to_the_models_device(xp):
    head = Classifier(4, (8,), 3, seed=0)  # built on the active backend (the xp under test)
    x = numpy.random.default_rng(0).random((10, 4), dtype=numpy.float32)  # host arrays
    y = numpy.arange(10) % 3
    probs = predict(head, x)
    assert type(probs) is type(head[0].W.data)
    numpy.testing.assert_allclose(to_numpy(probs), to_numpy(head(xp.asarray(x))), rtol=1e-6)
    assert 0 <= evaluate(head, nn.CrossEntropy(), x, y)["accuracy"] <= 1


# --- what a run visits and records (issue 21: each of these could break unnoticed) -------------


class Recorder(nn.CrossEntropy):
    """Cross-entropy that notes the labels of every batch it scores, in order.

    Labelling example i with class i makes those labels the indices of the examples a
    step trained on.
    """

    def __init__(self):
        super().__init__()
        self.batches = []

    def forward(self, pred, target, **kw):
        self.batches.append(to_numpy(target).tolist())
        return super().forward(pred, target, **kw)


def batches_of_each_epoch(n=35, batch_size=10, epochs=3, **fit_kwargs):
    """The example indices of every step of a fit on n examples, grouped by epoch."""
    head = Classifier(4, (8,), n, seed=0)
    x = numpy.random.default_rng(0).random((n, 4), dtype=numpy.float32)
    loss, opt = Recorder(), nn.SGD(head.parameters(), lr=1e-3)
    fit(head, loss, opt, x, numpy.arange(n), epochs=epochs, batch_size=batch_size,
        callbacks=quiet(), **fit_kwargs)
    steps = -(-n // batch_size)
    assert len(loss.batches) == epochs * steps == opt.t
    return [loss.batches[e * steps:(e + 1) * steps] for e in range(epochs)]


def test_every_epoch_trains_on_every_example_once_including_the_last_partial_batch():
    # 35 examples in batches of 10: 4 steps per epoch, the last one of 5 examples.
    for epoch in batches_of_each_epoch(n=35, batch_size=10):
        assert [len(b) for b in epoch] == [10, 10, 10, 5]
        assert sorted(sum(epoch, [])) == list(range(35))


def test_every_epoch_draws_a_fresh_order_and_the_seed_chooses_it():
    orders = [sum(epoch, []) for epoch in batches_of_each_epoch(seed=4)]
    assert len({tuple(order) for order in orders}) == 3  # three epochs, three orders
    assert orders == [sum(e, []) for e in batches_of_each_epoch(seed=4)]  # reproducible
    assert orders != [sum(e, []) for e in batches_of_each_epoch(seed=5)]  # another seed, another run


def test_evaluate_is_the_mean_over_every_example_whatever_the_batch_size():
    rng = numpy.random.default_rng(6)
    x = rng.random((10, 4), dtype=numpy.float32)
    y = rng.integers(0, 3, size=10)
    head = Classifier(4, (8,), 3, seed=1)
    probs = head(x)
    per_example = -numpy.log(probs[numpy.arange(10), y])
    for batch_size in (3, 4, 10, 2048):  # 4 batches of 3,3,3,1; 3 of 4,4,2; one batch
        r = evaluate(head, nn.CrossEntropy(), x, y, batch_size=batch_size)
        assert r["loss"] == pytest.approx(per_example.mean(), rel=1e-5)
        assert r["accuracy"] == pytest.approx((probs.argmax(axis=1) == y).mean())
    assert 0 < r["accuracy"] < 1  # a mix of right and wrong answers: counting matters
    ae = small_ae()
    images = tiny_images(10)
    expected = nn.BinaryCrossEntropy()(ae(as_batch(images)), as_batch(images))
    assert evaluate(ae, nn.BinaryCrossEntropy(), images, batch_size=3)["loss"] == pytest.approx(
        float(expected), rel=1e-5)


class Frozen(nn.SGD):
    """An optimizer that counts its steps and never moves the weights."""

    def step(self):
        self.t += 1


def test_training_accuracy_and_loss_are_those_of_every_step_of_the_epoch():
    """With weights that never move, each step scores the same model, so an epoch's training
    figures are that model's figures on the whole training set."""
    rng = numpy.random.default_rng(7)
    x = rng.random((23, 4), dtype=numpy.float32)
    y = rng.integers(0, 3, size=23)
    head = Classifier(4, (8,), 3, seed=2)
    hist = fit(head, nn.CrossEntropy(), Frozen(head.parameters(), lr=1.0), x, y, epochs=2,
               batch_size=5, callbacks=quiet())  # 5 steps, the last one of 3
    whole = evaluate(head, nn.CrossEntropy(), x, y)
    assert 0 < whole["accuracy"] < 1
    assert hist["train_accuracy"] == [pytest.approx(whole["accuracy"])] * 2
    assert hist["train_loss"] == [pytest.approx(whole["loss"], rel=1e-5)] * 2


class ScriptedValidation(nn.BinaryCrossEntropy):
    """BCE, except that the validation set (the only batch of ``val_rows`` rows) scores the
    next value of ``script``: the validation losses of the epochs, chosen by the test."""

    def __init__(self, script, val_rows):
        super().__init__()
        self.script, self.val_rows = list(script), val_rows

    def forward(self, pred, target, **kw):
        value = super().forward(pred, target, **kw)
        return numpy.float32(self.script.pop(0)) if len(pred) == self.val_rows else value


@pytest.mark.parametrize("patience, epochs_run", [(1, 3), (2, 4), (3, 5)])
def test_early_stopping_stops_after_exactly_patience_epochs_without_improvement(patience, epochs_run):
    # Validation losses 1.0, 0.5, then worse and worse: epoch 2 is the best; the run stops
    # once `patience` epochs have gone by without a better one, and keeps epoch 2's weights.
    losses = [1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1]
    model = small_ae()
    x, x_val = tiny_images(20), tiny_images(7, seed=1)
    saved = {}

    class KeepsEpoch2(ScriptedValidation):
        def forward(self, pred, target, **kw):
            if len(pred) == 7 and len(self.script) == len(losses) - 1:  # epoch 2 is scoring
                saved["weights"] = weights(model)
            return super().forward(pred, target, **kw)

    hist = fit(model, KeepsEpoch2(losses, 7), nn.Adam(model.parameters(), lr=1e-2), x,
               epochs=len(losses), batch_size=10, validation=(x_val, None),
               callbacks=quiet(KeepBest(patience=patience)))
    assert hist["epoch"] == list(range(1, epochs_run + 1))
    assert hist["val_loss"] == pytest.approx(losses[:epochs_run])
    assert hist["best_epoch"] == 2
    for a, b in zip(weights(model), saved["weights"]):
        numpy.testing.assert_array_equal(a, b)


@pytest.mark.sigint
def test_ctrl_c_mid_epoch_with_every_augmentation_resumes_bit_identical(tmp_path):
    """Masks, flips and shifts after the resume are those an uninterrupted run draws."""
    x = tiny_images()
    kwargs = dict(epochs=2, batch_size=32, seed=3, augment=Augmentation(flip=True, shift=1, mask=0.3))
    straight = small_ae()
    fit(straight, nn.BinaryCrossEntropy(), nn.Adam(straight.parameters()), x, callbacks=quiet(),
        **kwargs)
    ckpt = tmp_path / "run.npz"
    model = small_ae()
    with pytest.raises(KeyboardInterrupt, match="epoch 2, step 2"):
        fit(model, interrupt_at(3 + 2), nn.Adam(model.parameters()), x,
            callbacks=quiet(Checkpoint(ckpt)), **kwargs)
    resumed = small_ae(seed=99)
    fit(resumed, nn.BinaryCrossEntropy(), nn.Adam(resumed.parameters()), x,
        callbacks=quiet(Checkpoint(ckpt, resume=True)), **kwargs)
    for a, b in zip(weights(straight), weights(resumed)):
        numpy.testing.assert_array_equal(a, b)


def test_callbacks_run_in_their_fixed_order_whatever_the_list_says(tmp_path):
    """A Checkpoint listed before KeepBest still saves the restored best weights at the end,
    and a callback of one's own sees the hooks in the documented order."""
    rng = numpy.random.default_rng(1)
    y = rng.integers(0, 2, size=60)
    x = rng.standard_normal((60, 4)).astype(numpy.float32)  # noise: the best epoch is early
    calls = []

    class Log(nn_callbacks.Callback):
        def on_train_begin(self, run): calls.append("train_begin")
        def on_epoch_begin(self, run): calls.append(f"epoch {run.epoch}")
        def on_step_begin(self, run): calls.append(f"step {run.global_step}")
        def on_epoch_end(self, run): calls.append("epoch_end")
        def on_train_end(self, run): calls.append("train_end")
        def close(self, run): calls.append("close")

    head = Classifier(4, (32,), 2, seed=0)
    ckpt = tmp_path / "head.npz"
    hist = fit(head, nn.CrossEntropy(), nn.Adam(head.parameters(), lr=3e-2), x, y, epochs=8,
               batch_size=30, validation=(x[:20] * -1, y[:20]),
               callbacks=quiet(Checkpoint(ckpt), Log(), KeepBest()))
    assert hist["best_epoch"] < 8
    saved = Classifier(4, (32,), 2, seed=5)
    load_checkpoint(ckpt, saved)
    for a, b in zip(weights(head), weights(saved)):
        numpy.testing.assert_array_equal(a, b)  # the checkpoint holds the restored best epoch
    assert calls[:5] == ["train_begin", "epoch 0", "step 0", "step 1", "epoch_end"]
    assert calls[-6:] == ["epoch 7", "step 14", "step 15", "epoch_end", "train_end", "close"]


def test_learning_rate_schedule_counts_steps_over_the_whole_run():
    seen = []
    model = small_ae()
    opt = nn.SGD(model.parameters(), lr=1.0)
    fit(model, nn.BinaryCrossEntropy(), opt, tiny_images(40), epochs=2, batch_size=16,
        callbacks=quiet(LearningRateSchedule(lambda step: seen.append(step) or 1e-3 * (step + 1))))
    assert seen == [0, 1, 2, 3, 4, 5]  # 3 steps per epoch (16 + 16 + 8), counted across epochs
    assert opt.lr == pytest.approx(6e-3)


def test_fit_shows_progress_unless_told_otherwise(capsys):
    model = small_ae()
    fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), tiny_images(32), epochs=1)
    assert "train epoch 1/1" in capsys.readouterr().err  # a default Progress was added
    fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), tiny_images(32), epochs=1,
        callbacks=quiet())
    assert capsys.readouterr().err == ""


def test_split_validation_refuses_fractions_outside_0_1_and_keeps_at_least_one_example():
    for fraction in (0, 1, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"validation fraction must be in \(0, 1\)"):
            split_validation(10, fraction, seed=0)
    train, val = split_validation(5, 0.01, seed=0)  # 0.05 examples round to 0: one is kept
    assert len(val) == 1 and len(train) == 4
    assert sorted([*train, *val]) == list(range(5))
    assert not numpy.array_equal(split_validation(100, 0.1, seed=1)[1], split_validation(100, 0.1, seed=0)[1])


def test_predict_works_in_batches_of_2048_by_default():
    sizes = []

    class Counting(nn.Layer):
        def forward(self, x):
            sizes.append(len(x))
            return x

    out = predict(Counting(), numpy.ones((4100, 2), dtype=numpy.float32))
    assert sizes == [2048, 2048, 4] and out.shape == (4100, 2)
    sizes.clear()
    evaluate(nn.Sequential(Counting(), nn.Softmax()), nn.CrossEntropy(),
             numpy.ones((4100, 2), dtype=numpy.float32), numpy.zeros(4100, dtype=numpy.int64))
    assert sizes == [2048, 2048, 4]


def test_evaluate_refuses_what_it_cannot_score():
    head = Classifier(4, (8,), 3, seed=0)
    with pytest.raises(ValueError, match="^evaluate: got no examples$"):
        evaluate(head, nn.CrossEntropy(), numpy.zeros((0, 4), numpy.float32), numpy.zeros(0, int))
    with pytest.raises(ValueError, match="^evaluate: mirror averages class probabilities and needs labels y$"):
        evaluate(head, nn.CrossEntropy(), numpy.zeros((2, 4), numpy.float32), mirror=True)
    one = evaluate(head, nn.CrossEntropy(), numpy.ones((1, 4), numpy.float32), numpy.array([1]))
    assert one["loss"] == pytest.approx(-numpy.log(head(numpy.ones((1, 4), numpy.float32))[0, 1]))


# -- callbacks and run state, one behaviour each (issue 21: mutation testing) ---------------

class _RecordingBar:
    """A stand-in for tqdm that records how the bar was set up and each update."""

    made = []

    def __init__(self, **kwargs):
        self.kwargs, self.updates = kwargs, []
        _RecordingBar.made.append(self)

    def update(self, n):
        self.updates.append(n)

    def close(self):
        pass

    @staticmethod
    def write(text, file=None):
        print(text, file=file)


def _fake_run(epoch=0, step=0, is_root=True):
    from types import SimpleNamespace
    return SimpleNamespace(comm=SimpleNamespace(is_root=is_root), steps_per_epoch=3, epochs=2,
                           state=SimpleNamespace(epoch=epoch, step=step))


def test_progress_bar_counts_every_step_of_the_run_from_where_a_resumed_run_stands(monkeypatch):
    import tqdm.auto
    monkeypatch.setattr(tqdm.auto, "tqdm", _RecordingBar)
    _RecordingBar.made = []
    model = small_ae()
    fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), tiny_images(40), epochs=2,
        batch_size=16, callbacks=[Progress("ae", bar=True, verbose=False)])
    (bar,) = _RecordingBar.made
    assert bar.kwargs["total"] == 6 and bar.kwargs["initial"] == 0  # 2 epochs of 3 steps
    assert bar.updates == [1] * 6  # one tick per step
    assert bar.kwargs["desc"] == "ae" and bar.kwargs["unit"] == "step"
    assert bar.kwargs["leave"] is False  # the bar is erased at the end; the epoch lines stay
    assert bar.kwargs["disable"] is False  # bar=True: shown
    Progress(bar=True).on_train_begin(_fake_run(epoch=1, step=2))
    assert _RecordingBar.made[-1].kwargs["initial"] == 5  # resumed at epoch 1, step 2: 3 + 2 done
    assert _RecordingBar.made[-1].kwargs["total"] == 6
    Progress(bar=False).on_train_begin(_fake_run())
    assert _RecordingBar.made[-1].kwargs["disable"] is True
    Progress(bar=None).on_train_begin(_fake_run())
    assert _RecordingBar.made[-1].kwargs["disable"] is None  # tqdm decides: shown on a terminal
    Progress(bar=True).on_train_begin(_fake_run(is_root=False))
    assert _RecordingBar.made[-1].kwargs["disable"] is True  # only rank 0 shows a bar


def test_epoch_line_shows_the_last_epochs_figures_in_percent_and_seconds():
    history = {"epoch": [1, 3], "train_loss": [0.5, 0.28714], "train_accuracy": [0.5, 0.891],
               "val_loss": [0.6, 0.3], "val_accuracy": [0.4, 0.5], "lr": [1, 1], "seconds": [2, 1.844]}
    assert (nn_callbacks.epoch_line("clf", history, 20)
            == "clf epoch 3/20  loss 0.2871  acc 89.10%  val_loss 0.3000  val_acc 50.00%  1.84s")
    ae = {"epoch": [2], "train_loss": [0.25], "val_loss": [], "lr": [1], "seconds": [3.0]}
    assert nn_callbacks.epoch_line("ae", ae, 5) == "ae epoch 2/5  loss 0.2500  3.00s"


def test_callbacks_name_themselves_and_refuse_what_they_cannot_use(tmp_path):
    class Mine(nn_callbacks.Callback):
        pass

    assert repr(nn_callbacks.Callback()) == "Callback()" and repr(Mine()) == "Mine()"
    assert repr(Checkpoint("run.npz", resume=True)) == "Checkpoint('run.npz', resume=True)"
    with pytest.raises(TypeError, match="^LearningRateSchedule: schedule must be a function "
                                        "step -> lr, got float$"):
        LearningRateSchedule(0.1)
    with pytest.raises(ValueError, match=r"^KeepBest: patience must be >= 1 \(or None\), got 0$"):
        KeepBest(patience=0)
    model = small_ae()
    with pytest.raises(TypeError, match="Callback objects, got function$"):
        fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), tiny_images(8), epochs=1,
            callbacks=[lambda run: None])
    with pytest.raises(ValueError, match=r"^fit: KeepBest \(best epoch, early stopping\) needs "
                                         "validation data$"):
        fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), tiny_images(8), epochs=1,
            callbacks=quiet(KeepBest()))
    with pytest.raises(ValueError, match=r"^fit: KeepBest\(monitor='val_accuracy'\) needs labels$"):
        fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), tiny_images(8), epochs=1,
            validation=(tiny_images(4), None), callbacks=quiet(KeepBest(monitor="val_accuracy")))


def test_a_checkpoint_records_the_seed_and_no_partial_epoch_at_an_epochs_end(tmp_path):
    model = small_ae()
    fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), tiny_images(8), epochs=1,
        seed=5, callbacks=quiet(Checkpoint(tmp_path / "c.npz", meta={"kind": "ae"})))
    user = checkpoint.read_checkpoint_meta(tmp_path / "c.npz")["user"]
    assert user["seed"] == 5 and user["kind"] == "ae"
    assert (user["epoch"], user["step"], user["partial_losses"], user["partial_correct"]) == (1, 0, [], 0)


def test_train_state_keeps_the_best_epoch_earlier_on_a_loss_tie_later_on_an_accuracy_tie():
    from nanoae.train.state import TrainState
    model = small_ae()
    fresh = TrainState()
    assert "train_accuracy" not in fresh.history and fresh.partial == ([], 0)
    assert fresh.keep_if_best(model) is False and fresh.best_epoch is None  # nothing validated
    fresh.record(epoch=3, train_loss=1.0, lr=1.0, seconds=0.0)
    assert fresh.epochs_since_best() == 3 and fresh.partial == ([], 0)  # no best: every epoch counts
    for monitor, best in (("val_loss", 1), ("val_accuracy", 2)):
        state = TrainState(monitor=monitor, classify=True)
        assert state.monitor == monitor and "train_accuracy" in state.history
        for epoch in (1, 2):
            state.record(epoch=epoch, train_loss=1.0, train_accuracy=0.5, val_loss=0.5,
                         val_accuracy=0.5, lr=1.0, seconds=0.0)
            state.keep_if_best(model)
        assert state.best_epoch == best
    with pytest.raises(ValueError, match="^fit: monitor must be 'val_loss' or 'val_accuracy', got 'acc'$"):
        TrainState(monitor="acc")


@pytest.mark.parametrize("step, partial", [(0, []), (2, [2.5])])
def test_resume_reads_a_checkpoint_that_kept_only_the_sum_of_the_partial_epochs_losses(tmp_path, step, partial):
    from nanoae.train.state import TrainState
    model = small_ae()
    history = TrainState().history
    old = {"epoch": 1, "step": step, "partial_loss_sum": 2.5, "partial_correct": 0, "history": history,
           "monitor": "val_loss", "best_score": None, "best_epoch": None}
    checkpoint.save_checkpoint(tmp_path / "old.npz", model, meta=old)
    state = TrainState()
    state.resume(tmp_path / "old.npz", model, None)
    assert state.partial == (partial, 0) and (state.epoch, state.step) == (1, step)
    del old["partial_loss_sum"]
    checkpoint.save_checkpoint(tmp_path / "older.npz", model, meta=old)
    state.resume(tmp_path / "older.npz", model, None)
    assert state.partial == ([0.0] if step else [], 0)


def test_fit_names_what_is_wrong_with_the_data_and_accepts_the_edge_cases():
    head = Classifier(5, (4,), 3, seed=0)
    opt = nn.Adam(head.parameters())
    x = numpy.zeros((6, 5), dtype=numpy.float32)
    run = dict(epochs=1, callbacks=quiet())
    with pytest.raises(ValueError, match="^fit: got no training examples$"):
        fit(head, nn.CrossEntropy(), opt, x[:0], numpy.zeros(0, int), **run)
    fit(head, nn.CrossEntropy(), opt, x[:1], numpy.array([2]), **run)  # one example is enough
    with pytest.raises(TypeError, match="^fit: labels must be integers, got float64$"):
        fit(head, nn.CrossEntropy(), opt, x, numpy.zeros(6), **run)
    with pytest.raises(ValueError, match=r"^fit: labels must lie in 0\.\.2 \(the model has 3 outputs\), "
                                         r"got values in 0\.\.3$"):
        fit(head, nn.CrossEntropy(), opt, x, numpy.array([0, 1, 2, 3, 0, 1]), **run)
    x[0, 0] = numpy.inf
    with pytest.raises(ValueError, match="^fit: the inputs contain NaN or infinite values$"):
        fit(head, nn.CrossEntropy(), opt, x, numpy.arange(6) % 3, **run)
    ae = Autoencoder((4, 2), seed=0)
    edges = numpy.array([[0, 1, 0.5, 1]] * 4, dtype=numpy.float32)  # exactly 0 and 1 are targets
    fit(ae, nn.BinaryCrossEntropy(), nn.Adam(ae.parameters()), edges, batch_size=1, **run)
    with pytest.raises(ValueError, match=r"^fit: autoencoder inputs are BCE targets and must lie in "
                                         r"\[0, 1\], got \[0, 1\.5\]; scale them \(uint8 pixels are "
                                         r"scaled automatically\)$"):
        fit(ae, nn.BinaryCrossEntropy(), nn.Adam(ae.parameters()), edges * 1.5, **run)
    with pytest.raises(TypeError, match="^fit: augment must be an augment.Augmentation, got dict$"):
        fit(ae, nn.BinaryCrossEntropy(), nn.Adam(ae.parameters()), edges, augment={}, **run)


def test_a_diverging_first_epoch_says_no_checkpoint_was_written(tmp_path):
    for callbacks in (quiet(Checkpoint(tmp_path / "c.npz")), quiet()):
        model = small_ae()
        with pytest.raises(nn.TrainingError, match=r"at epoch 1, step 2 of 3; no checkpoint was "
                                                   r"written\. Try a lower learning rate"):
            fit(model, nan_at(2), nn.Adam(model.parameters()), tiny_images(), epochs=2,
                batch_size=32, callbacks=callbacks)
    model = small_ae()
    with pytest.raises(nn.TrainingError, match=r"at epoch 2, step 1 of 3; no checkpoint was written\."):
        fit(model, nan_at(4), nn.Adam(model.parameters()), tiny_images(), epochs=2, batch_size=32,
            callbacks=quiet())


@pytest.mark.sigint
def test_ctrl_c_without_a_checkpoint_says_nothing_was_saved():
    model = small_ae()
    with pytest.raises(KeyboardInterrupt, match=r"^stopped at epoch 1, step 2; saved nowhere "
                                                r"\(no Checkpoint callback given\)$"):
        fit(model, interrupt_at(2), nn.Adam(model.parameters()), tiny_images(), epochs=2,
            batch_size=32, callbacks=quiet())


def test_callbacks_see_the_run_at_every_step_and_at_close_and_the_loss_check_comes_back():
    seen = []

    class Look(nn_callbacks.Callback):
        def on_step_end(self, run):
            seen.append(run.global_step)

        def close(self, run):
            seen.append(len(run.state.history["epoch"]))

    model = small_ae()
    loss = nn.BinaryCrossEntropy(check=True)
    import time
    t0 = time.perf_counter()
    hist = fit(model, loss, nn.Adam(model.parameters()), tiny_images(40), epochs=2, batch_size=16,
               callbacks=quiet(Look()))
    wall = time.perf_counter() - t0
    assert seen == [0, 1, 2, 3, 4, 5, 2]
    assert loss.check is True  # checked once before training, per step off, and back as it was
    assert all(0 <= s <= wall for s in hist["seconds"])  # each epoch's own duration, within the call


def test_fit_defaults_to_seed_0_and_batches_of_256():
    steps = []
    x = tiny_images(300)
    a, b = small_ae(), small_ae()
    fit(a, nn.BinaryCrossEntropy(), nn.Adam(a.parameters()), x, epochs=1,
        callbacks=quiet(LearningRateSchedule(lambda step: steps.append(step) or 1e-3)))
    fit(b, nn.BinaryCrossEntropy(), nn.Adam(b.parameters()), x, epochs=1, seed=0, batch_size=256,
        callbacks=quiet())
    assert steps == [0, 1]  # 256 + 44
    for wa, wb in zip(weights(a), weights(b)):
        numpy.testing.assert_array_equal(wa, wb)


def test_train_step_alone_returns_the_loss_and_prediction_and_takes_one_step():
    model = small_ae()
    x = as_batch(tiny_images(8))
    before = weights(model)
    expected = to_numpy(model(x)).copy()
    value, pred = nn.train_step(model, nn.BinaryCrossEntropy(), nn.SGD(model.parameters(), lr=0.1), x, x)
    numpy.testing.assert_allclose(to_numpy(pred), expected, rtol=1e-6)
    assert float(value) == pytest.approx(float(nn.BinaryCrossEntropy()(expected, x)), rel=1e-5)
    assert all((w0 != w1).any() for w0, w1 in zip(before, weights(model)))


def test_the_pytorch_style_tanh_trains_under_fit_and_in_a_loop_of_ones_own():
    x, y = data()
    model = tanh_classifier()
    history = nn.fit(model, nn.CrossEntropy(), nn.Adam(model.parameters(), lr=1e-2), x, y, epochs=5,
                     batch_size=8, callbacks=[nn.Progress(bar=False, verbose=False)])
    assert history["train_loss"][-1] < 0.9 * history["train_loss"][0]
    model, loss = tanh_classifier(), nn.CrossEntropy()
    optimizer = nn.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        value = loss(model(x), y)
        model.backward_from_loss(loss, input_grad=False)  # Dense first: it may skip dL/dx
        optimizer.step()
        first = float(value) if first is None else first
    assert float(value) < 0.9 * first


def test_keepbest_must_run_before_checkpoint_and_fit_says_so(tmp_path):
    from nanoae.train.callbacks import ORDER, in_run_order  # noqa: PLC0415

    keep, save = KeepBest(), Checkpoint(tmp_path / "c.npz")
    assert [type(cb) for cb in in_run_order([save, keep])][:2] == [KeepBest, Checkpoint]
    assert ORDER["KeepBest"] < ORDER["Checkpoint"]

    class LateKeepBest(KeepBest):
        order = ORDER["Checkpoint"] + 1

    with pytest.raises(ValueError, match="KeepBest must run before Checkpoint"):
        in_run_order([LateKeepBest(), save])


def test_fit_leaves_the_callers_loss_as_it_was():
    x = numpy.random.default_rng(0).random((16, 4), dtype=numpy.float32)
    model = nn.Sequential(nn.Dense(4, 4, rng=0), nn.Sigmoid())
    loss = nn.BinaryCrossEntropy()
    fit(model, loss, nn.Adam(model.parameters()), x, epochs=1, batch_size=8,
        callbacks=[Progress(bar=False, verbose=False)])
    assert loss.check is None  # fit turned the per-step checks off on a copy of its own

_IGNORED_SIGINT_CHILD = """
import json, signal, sys
import numpy
import nanoae as nn
from nanoae.fashion.models import Autoencoder
from nanoae.train.callbacks import Callback, Progress
from nanoae.train.loop import fit

found = signal.getsignal(signal.SIGINT)
during = []

class CtrlC(Callback):  # Ctrl-C at every step: ignored, it must change nothing
    def on_step_end(self, run):
        during.append(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
        signal.raise_signal(signal.SIGINT)

model = Autoencoder((784, 16, 4), code_activation="linear", seed=0)
x = numpy.random.default_rng(0).integers(0, 256, size=(96, 784), dtype=numpy.uint8)
history = fit(model, nn.BinaryCrossEntropy(), nn.Adam(model.parameters()), x, epochs=2,
              batch_size=32, callbacks=[Progress(bar=False, verbose=False), CtrlC()])
print(json.dumps({"found_ignored": found is signal.SIG_IGN, "ignored_during": during,
                  "ignored_after": signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
                  "epochs": history["epoch"]}))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="POSIX signals")
def test_fit_leaves_an_ignored_sigint_ignored():
    """A job started with SIGINT ignored (``... &``, nohup): fit installs no handler over it,
    Ctrl-C changes nothing, and the handler afterwards is the one found before: SIG_IGN."""
    from helpers.signals import sigint_ignored

    proc = subprocess.run([sys.executable, "-c", _IGNORED_SIGINT_CHILD], capture_output=True,
                          text=True, timeout=120, preexec_fn=sigint_ignored)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen == {"found_ignored": True, "ignored_during": [True] * 6, "ignored_after": True,
                    "epochs": [1, 2]}


@pytest.mark.subprocess
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_sigint_tests_pass_from_a_shell_that_ignores_ctrl_c():
    """The suite's Ctrl-C tests (marked ``sigint``), run once as a background job runs them,
    with SIGINT ignored: each must pass from any shell, so this cannot come back."""
    from helpers.signals import sigint_ignored

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "sigint", "-p",
                           "no:cacheprovider", str(root / "tests")], cwd=root, capture_output=True,
                          text=True, timeout=600, preexec_fn=sigint_ignored)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " passed" in proc.stdout and "deselected" in proc.stdout


# -- Dropout in fit: training mode for the steps only, masks placed by the rows -------------

def dropout_head(seed=0):
    return Classifier(20, (32, 32), 3, seed=seed, dropout=0.3)


def head_data(n=90):
    rng = numpy.random.default_rng(7)
    return rng.standard_normal((n, 20)).astype(numpy.float32), rng.integers(0, 3, size=n)


def test_fit_drops_during_the_steps_only_and_leaves_the_model_evaluating():
    x, y = head_data()
    head = dropout_head()
    seen = []

    class Spy(nn_callbacks.Callback):
        def on_step_end(self, run):
            drops = [layer for layer in run.model.leaves() if isinstance(layer, nn.Dropout)]
            seen.append((run.epoch, run.step, [(d.training, d.seed, d.epoch, d.position) for d in drops]))

    hist = fit(head, nn.CrossEntropy(), nn.Adam(head.parameters()), x, y, epochs=2, batch_size=32,
               validation=(x[:30], y[:30]), callbacks=quiet(Spy()))
    # two Dropout layers, training in every step, each batch's masks those of its rows
    assert seen == [(e, s, [(True, 0, e, 32 * s)] * 2) for e in range(2) for s in range(3)]
    assert not any(layer.training for layer in head.leaves())  # evaluating once fit returns
    nn.set_training(head, True)
    first = to_numpy(predict(head, x))
    assert not any(layer.training for layer in head.leaves())  # predict switched it off
    numpy.testing.assert_array_equal(to_numpy(predict(head, x)), first)  # no mask: deterministic
    plain = Classifier(20, (32, 32), 3, seed=0)  # the same weights without the Dropout layers
    for mine, theirs in zip(plain.parameters(), head.parameters()):
        mine.data[...] = theirs.data
    numpy.testing.assert_allclose(first, to_numpy(predict(plain, x)), rtol=1e-6)
    nn.set_training(head, True)
    assert evaluate(head, nn.CrossEntropy(), x[:30], y[:30]) == pytest.approx(
        {"loss": hist["val_loss"][-1], "accuracy": hist["val_accuracy"][-1]}, rel=1e-6)
    assert not any(layer.training for layer in head.leaves())  # evaluate switched it off


def test_fit_without_validation_also_leaves_the_model_evaluating():
    x, y = head_data()
    head = dropout_head()
    fit(head, nn.CrossEntropy(), nn.Adam(head.parameters()), x, y, epochs=1, callbacks=quiet())
    assert not any(layer.training for layer in head.leaves())


def test_the_two_dropout_layers_of_a_head_draw_different_masks_and_the_weights_are_unchanged():
    head, plain = dropout_head(), Classifier(20, (32, 32), 3, seed=0)
    drops = [layer for layer in head.leaves() if isinstance(layer, nn.Dropout)]
    assert [d.stream for d in drops] == [1, 2]
    assert [type(layer).__name__ for layer in head.leaves()] == [
        "Dense", "ReLU", "Dropout", "Dense", "ReLU", "Dropout", "Dense", "Softmax"]
    for a, b in zip(weights(head), weights(plain)):
        numpy.testing.assert_array_equal(a, b)
    assert head.config["dropout"] == 0.3 and "dropout" not in plain.config


@pytest.mark.sigint
def test_ctrl_c_mid_epoch_with_dropout_resumes_bit_identical(tmp_path):
    x, y = head_data()
    kwargs = dict(epochs=2, batch_size=32, seed=3)
    straight = dropout_head()
    fit(straight, nn.CrossEntropy(), nn.Adam(straight.parameters()), x, y, callbacks=quiet(), **kwargs)
    ckpt = tmp_path / "run.npz"
    model = dropout_head()
    with pytest.raises(KeyboardInterrupt, match="epoch 2, step 2"):
        fit(model, AtCallCE(3 + 2, interrupt_at(0).action), nn.Adam(model.parameters()), x, y,
            callbacks=quiet(Checkpoint(ckpt)), **kwargs)
    resumed = dropout_head(seed=99)
    fit(resumed, nn.CrossEntropy(), nn.Adam(resumed.parameters()), x, y,
        callbacks=quiet(Checkpoint(ckpt, resume=True)), **kwargs)
    for a, b in zip(weights(straight), weights(resumed)):
        numpy.testing.assert_array_equal(a, b)


def test_fit_with_label_smoothing_reaches_the_gradients():
    x, y = head_data()

    def run(eps):
        head = Classifier(20, (32,), 3, seed=0)
        hist = fit(head, nn.CrossEntropy(label_smoothing=eps), nn.Adam(head.parameters(), lr=1e-2),
                   x, y, epochs=3, batch_size=32, callbacks=quiet())
        return weights(head), hist

    (plain, _), (smooth, hist) = run(0.0), run(0.2)
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert not numpy.array_equal(plain[0], smooth[0])  # another target, another trajectory


def test_watch_sees_the_dropout_layers_output():
    x, y = head_data()
    head = dropout_head()
    hist = fit(head, nn.CrossEntropy(), nn.Adam(head.parameters()), x, y, epochs=2, batch_size=32,
               callbacks=quiet(Watch(head)))
    names = " ".join(map(str, hist["watch"].keys())) + " " + repr(hist["watch"])
    assert "Dropout(0.3)" in names

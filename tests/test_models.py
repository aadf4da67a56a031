"""The story's models: shapes, configs that rebuild them, and gradient checks."""

import numpy
import pytest

import nanoae as nn
from nanoae.backend import to_numpy
from nanoae.fashion.metrics import dead_units
from nanoae.fashion.models import (
    Autoencoder,
    Classifier,
    FineTuned,
    Standardize,
    build_model,
    encoder_fingerprint,
)
from nanoae.train.callbacks import Progress
from nanoae.train.loop import fit

F64 = numpy.float64


def test_reference_autoencoder_architecture(xp):
    ae = Autoencoder(code_activation="relu")
    dense = [layer for layer in ae.encoder.layers + ae.decoder.layers if isinstance(layer, nn.Dense)]
    assert [(d.in_features, d.out_features) for d in dense] == [
        (784, 128), (128, 64), (64, 32), (32, 64), (64, 128), (128, 784)]
    assert isinstance(ae.encoder[-1], nn.ReLU) and isinstance(ae.decoder[-1], nn.Sigmoid)
    assert sum(p.data.size for p in ae.parameters()) == 222_384
    linear = Autoencoder(code_activation="linear")
    assert isinstance(linear.encoder[-1], nn.Dense)
    x = xp.zeros((3, 784), dtype=numpy.float32)
    assert ae.encode(x).shape == (3, 32) and ae.reconstruct(x).shape == (3, 784)


def test_config_rebuilds_the_same_architecture():
    for model in (Autoencoder((784, 64, 16), code_activation="linear"), Classifier(32, (8, 8), 10)):
        assert repr(build_model(model.config)) == repr(model)
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model({"kind": "transformer"})


def test_seeded_models_are_identical_on_every_backend(xp, use_backend):
    """Weights are drawn on the host, then moved: a seed gives the same model everywhere."""
    a, b = Autoencoder(seed=4), Autoencoder(seed=4)
    assert all(nn.backend.get_array_module(p.data) is xp for p in a.parameters())
    use_backend("numpy")
    on_host = Autoencoder(seed=4)
    for p, q, h in zip(a.parameters(), b.parameters(), on_host.parameters()):
        numpy.testing.assert_array_equal(to_numpy(p.data), to_numpy(q.data))
        numpy.testing.assert_array_equal(to_numpy(p.data), h.data)


def test_a_seeded_first_step_matches_on_every_backend(xp, use_backend, rng):
    """One Adam step of fit from the same seed: the same weights on the device as on the host
    (float64, so that the devices' different summation orders stay far below the tolerance)."""
    x = rng.random((16, 12))

    def first_step():
        ae = Autoencoder((12, 6, 3), code_activation="linear", dtype=F64, seed=3)
        fit(ae, nn.BinaryCrossEntropy(), nn.Adam(ae.parameters(), lr=1e-2), x, epochs=1,
            batch_size=16, seed=0, callbacks=[Progress(bar=False, verbose=False)])
        return [to_numpy(p.data) for p in ae.parameters()]

    on_device = first_step()
    use_backend("numpy")
    start = Autoencoder((12, 6, 3), code_activation="linear", dtype=F64, seed=3)
    initial = [p.data for p in start.parameters()]
    for w, w0, h in zip(on_device, initial, first_step()):
        assert not numpy.array_equal(w, w0)  # the step moved every parameter array
        numpy.testing.assert_allclose(w, h, rtol=1e-9, atol=1e-12)


def test_standardize_forward_backward(xp, rng):
    x = rng.standard_normal((50, 4)) * [1, 2, 3, 0] + [5, -1, 0, 2]
    s = Standardize.fit(xp.asarray(x))
    y = to_numpy(s(xp.asarray(x)))
    numpy.testing.assert_allclose(y[:, :3].mean(axis=0), 0, atol=1e-12)
    numpy.testing.assert_allclose(y[:, :3].std(axis=0), 1, rtol=1e-12)
    assert not y[:, 3].any()  # a constant (dead) unit stays 0 instead of dividing by zero
    nn.gradcheck(s, xp.asarray(rng.standard_normal((3, 4))))


def test_finetuned_gradcheck(xp, rng):
    ae = Autoencoder((10, 6, 3), code_activation="linear", dtype=F64, seed=1)
    codes = ae.encode(xp.asarray(rng.random((20, 10))))
    head = Classifier(3, (5,), 4, dtype=F64, seed=2)
    for layer in head.layers[::2]:
        layer.b.data[...] = 0.1  # keep the hidden ReLU inputs off their kink
    model = FineTuned(ae, Standardize.fit(codes), head)
    nn.gradcheck((model, nn.CrossEntropy()), xp.asarray(rng.random((4, 10))), xp.asarray([0, 3, 2, 1]))
    assert repr(build_model(model.config)) == repr(model)


def test_dead_units():
    codes = numpy.array([[0.0, 1.0, 0.0], [0.0, 2.0, -1.0]])
    assert dead_units(codes) == 1


def test_encoder_fingerprint_names_the_architecture_and_changes_with_any_weight():
    a, b = Autoencoder((784, 16, 8), code_activation="linear", seed=0), \
        Autoencoder((784, 16, 8), code_activation="linear", seed=0)
    fa = encoder_fingerprint(a)
    assert fa == encoder_fingerprint(b)  # same seed, same weights
    assert fa["widths"] == [784, 16, 8] and fa["code_activation"] == "linear" and len(fa["sha256"]) == 64
    b.encoder[0].W.data[3, 2] += 1e-6  # one weight, slightly
    assert encoder_fingerprint(b)["sha256"] != fa["sha256"]
    a.decoder[0].W.data[...] = 0  # the decoder does not make the codes
    assert encoder_fingerprint(a) == fa


def test_finetuned_and_classifier_predict_alike(rng):
    ae = Autoencoder((10, 6, 3), code_activation="linear", seed=1)
    head = Classifier(3, (5,), 4, seed=2)
    x = rng.random((7, 10)).astype(numpy.float32)
    scaler = Standardize.fit(ae.encode(x))
    model = FineTuned(ae, scaler, head)
    assert (to_numpy(model.predict(x)) == to_numpy(head.predict(scaler(ae.encode(x))))).all()
    rebuilt = Standardize.from_config(scaler.config)
    numpy.testing.assert_allclose(to_numpy(rebuilt(ae.encode(x))), to_numpy(scaler(ae.encode(x))),
                                  rtol=1e-6)


def test_a_classifier_predicts_the_most_probable_class_of_each_row():
    clf = Classifier(3, (4,), 5, seed=1)
    x = numpy.random.default_rng(0).normal(size=(7, 3)).astype(numpy.float32)
    probs = to_numpy(clf(x))
    assert to_numpy(clf.predict(x)).tolist() == probs.argmax(axis=1).tolist()
    assert len(set(probs.argmax(axis=1).tolist())) > 1  # rows differ: not the argmax of a column


def test_a_float64_finetuned_model_is_rebuilt_with_a_float64_scaler(rng):
    """The fine-tuned config records the scaler's dtype; one saved before it did takes the encoder's."""
    ae = Autoencoder((10, 6, 3), code_activation="linear", dtype=F64, seed=1)
    x = rng.random((7, 10))
    model = FineTuned(ae, Standardize.fit(ae.encode(x)), Classifier(3, (5,), 4, dtype=F64, seed=2))
    assert model.config["dtype"] == "float64"
    older = {k: v for k, v in model.config.items() if k != "dtype"}
    for config in (model.config, older):
        rebuilt = build_model(config)
        assert rebuilt.scaler.mean.dtype == F64 and rebuilt(x).dtype == F64
        numpy.testing.assert_allclose(to_numpy(rebuilt.scaler.mean), to_numpy(model.scaler.mean), rtol=1e-15)
    f32 = FineTuned(Autoencoder((10, 6, 3), seed=1), Standardize.fit(x[:, :3].astype(numpy.float32)),
                    Classifier(3, (5,), 4, seed=2))
    assert f32.config["dtype"] == "float32" and build_model(f32.config).scaler.mean.dtype == numpy.float32
    older["dtype"] = "float32"  # the recorded dtype wins over the encoder's
    assert build_model(older).scaler.mean.dtype == numpy.float32


def test_build_model_keeps_the_dtype_init_and_dropout_of_a_config():
    ae = Autoencoder((12, 6, 3), code_activation="linear", dtype=F64, init="glorot_uniform")
    rebuilt = build_model(ae.config)
    assert rebuilt.config == ae.config and repr(rebuilt) == repr(ae)
    assert all(p.data.dtype == F64 for p in rebuilt.parameters())
    older = {k: v for k, v in ae.config.items() if k not in ("init", "dtype")}  # saved before they were
    assert build_model(older).config == {**ae.config, "init": "he", "dtype": "float32"}
    head = Classifier(3, (5, 4), 7, dtype=F64, dropout=0.25)
    rebuilt = build_model(head.config)
    assert rebuilt.config == head.config == {"kind": "classifier", "in_features": 3, "hidden": [5, 4],
                                             "classes": 7, "dtype": "float64", "dropout": 0.25}
    assert [layer.p for layer in rebuilt.leaves() if isinstance(layer, nn.Dropout)] == [0.25, 0.25]
    assert all(p.data.dtype == F64 for p in rebuilt.parameters())
    plain = build_model({k: v for k, v in head.config.items() if k not in ("dropout", "dtype")})
    assert "dropout" not in plain.config and plain.config["dtype"] == "float32"
    assert not any(isinstance(layer, nn.Dropout) for layer in plain.leaves())


def test_standardize_says_its_width_and_refuses_another_width_or_dtype():
    s = Standardize(numpy.zeros(3, numpy.float32), numpy.ones(3))
    assert repr(s) == "Standardize(3)"
    assert repr(Standardize.__new__(Standardize)) == "Standardize()"  # before its mean is set
    assert s.inv_std.dtype == numpy.float32  # the std in the mean's dtype
    with pytest.raises(ValueError, match=r"expected \(N, 3\) float32, got \(2, 4\) float32"):
        s(numpy.zeros((2, 4), numpy.float32))
    with pytest.raises(ValueError, match=r"expected \(N, 3\) float32, got \(2, 3\) float64"):
        s(numpy.zeros((2, 3)))


def test_an_autoencoders_layers_are_drawn_as_asked_and_named_encoder_and_decoder():
    ae = Autoencoder((12, 6, 3), code_activation="linear", dtype=F64, init="glorot_uniform", seed=5)
    rng = numpy.random.default_rng(5)  # encoder then decoder, one stream, each Dense as asked
    expected = [nn.Dense(a, b, dtype=F64, rng=rng, init="glorot_uniform") for a, b in
                ((12, 6), (6, 3), (3, 6), (6, 12))]
    dense = [layer for layer in ae.leaves() if isinstance(layer, nn.Dense)]
    for got, want in zip(dense, expected, strict=True):
        numpy.testing.assert_array_equal(got.W.data, want.W.data)
    assert ae.config == {"kind": "autoencoder", "widths": [12, 6, 3], "code_activation": "linear",
                         "dtype": "float64", "init": "glorot_uniform"}
    assert ae.encoder[0].name == "encoder layer 0 Dense(12, 6)"
    assert ae.decoder[-1].name == "decoder layer 3 Sigmoid()"
    for p, q in zip(Autoencoder((12, 6)).parameters(), Autoencoder((12, 6), seed=0).parameters()):
        numpy.testing.assert_array_equal(p.data, q.data)  # seed 0 by default; (input, code) is enough
    with pytest.raises(ValueError) as err:
        Autoencoder((12, 6), code_activation="tanh")
    assert str(err.value) == "code_activation must be one of 'relu', 'linear', 'unit', got 'tanh'"
    with pytest.raises(ValueError) as err:
        Autoencoder((12,))
    assert str(err.value) == "Autoencoder: need at least (input, code) widths, got (12,)"


def test_a_classifiers_defaults_and_its_dropout_streams():
    default = Classifier()
    assert default.config == {"kind": "classifier", "in_features": 32, "hidden": [64], "classes": 10,
                              "dtype": "float32"}
    for p, q in zip(default.parameters(), Classifier(seed=0).parameters()):
        numpy.testing.assert_array_equal(p.data, q.data)
    head = Classifier(3, (5, 4), 7, dropout=0.25)
    assert [d.stream for d in head.leaves() if isinstance(d, nn.Dropout)] == [1, 2]  # drawn apart


def test_standardize_keeps_the_means_dtype_and_leaves_constant_units_unscaled():
    s = Standardize(numpy.zeros(2, numpy.float32), [1 + 2 ** -24, 0.0])  # the std rounded to float32 first
    assert s.inv_std.dtype == numpy.float32 and to_numpy(s.inv_std).tolist() == [1.0, 1.0]
    assert to_numpy(s.backward(numpy.ones((1, 2), numpy.float32))).tolist() == [[1.0, 1.0]]
    x = numpy.array([[2.0 ** 24], [1.0], [1.0]], numpy.float32)  # float32 sums would lose the ones
    fitted = Standardize.fit(x)
    assert fitted.mean.dtype == numpy.float32 and to_numpy(fitted.mean).tolist() == [5592406.0]
    wide = Standardize(numpy.array([1.0, 2.0, 3.0], numpy.float32), numpy.ones(3))
    y = to_numpy(wide(numpy.ones((2, 5, 3), numpy.float32)))  # the features are the last axis
    assert y.shape == (2, 5, 3) and y[0, 0].tolist() == [0.0, -1.0, -2.0]


def test_an_older_float32_finetuned_config_gets_a_float32_scaler():
    ae = Autoencoder((10, 6, 3), code_activation="linear", seed=1)
    model = FineTuned(ae, Standardize.fit(numpy.ones((4, 3), numpy.float32)), Classifier(3, (5,), 4, seed=2))
    older = {k: v for k, v in model.config.items() if k != "dtype"}
    assert build_model(older).scaler.mean.dtype == numpy.float32  # the encoder's, not the lists' float64

"""Checkpoints: exact round trips, no pickle, clear errors, and atomic writes."""

import json
import os
import select
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy
import pytest

import nanoae as nn
from nanoae.backend import to_numpy
from nanoae.errors import CheckpointError
from nanoae.train import checkpoint as ckpt
from nanoae.train.checkpoint import (
    FORMAT_VERSION,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)


def make(seed=0, lr=1e-2, hidden=4, opt_cls=nn.Adam):
    model = nn.Sequential(nn.Dense(6, hidden, rng=seed), nn.ReLU(),
                          nn.Dense(hidden, 6, rng=seed + 1), nn.Sigmoid())
    return model, opt_cls(model.parameters(), lr=lr)


def train(model, opt, steps=3, seed=0):
    x = numpy.random.default_rng(seed).random((8, 6), dtype=numpy.float32)
    x = nn.backend.to_device(x)
    loss = nn.BinaryCrossEntropy()
    for _ in range(steps):
        loss(model(x), x.copy())
        model.backward_from_loss(loss)
        opt.step()


def host_state(model, opt=None):
    state = {k: v.copy() for k, v in model.state_dict().items()}
    if opt is not None:
        state.update({f"opt.{k}": v for k, v in opt.state_dict().items()})
    return state


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], numpy.ndarray):
            assert a[k].dtype == b[k].dtype and numpy.array_equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


@pytest.fixture
def saved(xp, tmp_path):
    """A trained model, its optimizer and the path of their checkpoint (on each backend)."""
    model, opt = make()
    train(model, opt)
    path = save_checkpoint(tmp_path / "ck.npz", model, opt, meta={"epoch": 3})
    return model, opt, path


def test_round_trip_is_bitwise_and_resume_is_exact(xp, tmp_path):
    model, opt = make(seed=0)
    train(model, opt)
    path = save_checkpoint(tmp_path / "ck.npz", model, opt)
    fresh, fresh_opt = make(seed=10, lr=0.5)
    assert fresh_opt.t == 0
    load_checkpoint(path, fresh, fresh_opt)
    assert_same(host_state(fresh, fresh_opt), host_state(model, opt))
    assert fresh_opt.t == 3 and fresh_opt.lr == 1e-2
    train(model, opt, steps=1, seed=7)
    train(fresh, fresh_opt, steps=1, seed=7)
    assert_same(host_state(fresh, fresh_opt), host_state(model, opt))


def test_sgd_momentum_round_trip(xp, tmp_path):
    model, opt = make(opt_cls=lambda p, lr: nn.SGD(p, lr=lr, momentum=0.9))
    train(model, opt)
    path = save_checkpoint(tmp_path / "ck.npz", model, opt)
    fresh, fresh_opt = make(seed=5, opt_cls=lambda p, lr: nn.SGD(p, lr=lr, momentum=0.9))
    load_checkpoint(path, fresh, fresh_opt)
    assert max(float(numpy.abs(to_numpy(v)).max()) for v in opt.velocity) > 0
    assert_same(host_state(fresh, fresh_opt), host_state(model, opt))


def test_metadata_and_user_meta_round_trip(saved, tmp_path):
    model, opt, path = saved
    user = {"epoch": 3, "loss": 0.125, "tags": ["a", "b"], "nested": {"x": None}}
    save_checkpoint(path, model, opt, meta=user)
    meta = load_checkpoint(path, *make(seed=9))
    assert meta["user"] == user
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["architecture"] == repr(model) == "Sequential(Dense(6, 4), ReLU(), Dense(4, 6), Sigmoid())"
    assert meta["optimizer"] == "Adam"
    assert meta["nanoae_version"] == nn.__version__ and meta["numpy_version"] == numpy.__version__
    assert meta["saved_at"].endswith("+00:00")
    assert read_checkpoint_meta(path) == meta
    # no optimizer: null, and loading the weights alone works
    save_checkpoint(path, model)
    assert read_checkpoint_meta(path)["optimizer"] is None
    assert read_checkpoint_meta(path)["user"] == {}
    other, _ = make(seed=9)
    load_checkpoint(path, other)
    assert_same(host_state(other), host_state(model))


@pytest.mark.parametrize("saved_on, loaded_on", [
    ("numpy", "numpy"),
    pytest.param("cupy", "numpy", marks=pytest.mark.gpu),
    pytest.param("numpy", "cupy", marks=pytest.mark.gpu),
])
def test_checkpoint_moves_between_devices(use_backend, tmp_path, saved_on, loaded_on):
    """Saved on the GPU, loaded on the CPU, and the other way round: files hold host arrays."""
    use_backend(saved_on)
    model, opt = make(seed=0)
    train(model, opt)
    path = save_checkpoint(tmp_path / "ck.npz", model, opt)
    expected = host_state(model, opt)
    xp = use_backend(loaded_on)
    fresh, fresh_opt = make(seed=10, lr=0.5)
    load_checkpoint(path, fresh, fresh_opt)
    assert_same(host_state(fresh, fresh_opt), expected)
    assert all(nn.backend.get_array_module(p.data) is xp for p in fresh.parameters())
    train(fresh, fresh_opt, steps=1)  # and training goes on, on the device it was loaded on
    assert fresh_opt.t == 4
    assert all(nn.backend.get_array_module(p.data) is xp for p in fresh.parameters())


@pytest.mark.parametrize("bad, key", [
    ({"ok": 1, "arr": numpy.zeros(2)}, "arr"),
    ({"f": numpy.float32(1.0)}, "f"),
    ({"obj": object()}, "obj"),
    ({1: "int key"}, "1"),
])
def test_non_json_user_meta_raises_type_error_naming_the_key(saved, bad, key):
    model, opt, path = saved
    before = path.read_bytes()
    with pytest.raises(TypeError, match=repr(key) if key != "1" else "key 1"):
        save_checkpoint(path, model, opt, meta=bad)
    assert path.read_bytes() == before  # nothing written
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_file_is_a_plain_npz_without_pickle(saved):
    model, opt, path = saved
    with numpy.load(path, allow_pickle=False) as npz:
        names = set(npz.files)
        assert names == {"meta", "param/0.W", "param/0.b", "param/2.W", "param/2.b", "optim/m", "optim/v"}
        for name in names:
            assert not npz[name].dtype.hasobject
        assert npz["meta"].dtype == numpy.uint8 and npz["meta"].ndim == 1
        meta = json.loads(npz["meta"].tobytes().decode("utf-8"))
        assert numpy.array_equal(npz["param/2.W"], model.state_dict()["2.W"])
    assert meta["optimizer_state"]["t"] == 3
    with zipfile.ZipFile(path) as zf:  # uncompressed, one .npy per entry
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
        assert all(info.filename.endswith(".npy") for info in zf.infolist())


def test_path_is_kept_as_given_and_parent_is_created(xp, tmp_path):
    model, opt = make()
    path = save_checkpoint(tmp_path / "a" / "b" / "weights", model, opt)
    assert path == tmp_path / "a" / "b" / "weights" and path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["weights"]  # no weights.npz
    load_checkpoint(str(path), *make(seed=3))


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes and umask")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_checkpoint_gets_the_mode_the_umask_gives_a_new_file(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = save_checkpoint(tmp_path / "m.npz", nn.Sequential(nn.Dense(2, 2, rng=0)))
        assert os.umask(umask) == umask  # saving left the process's umask as it was
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_architecture_mismatch_names_both_and_changes_nothing(saved):
    _, _, path = saved
    other = nn.Sequential(nn.Dense(6, 5, rng=0), nn.ReLU(), nn.Dense(5, 6, rng=1), nn.Sigmoid())
    before = host_state(other)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, other, nn.Adam(other.parameters()))
    msg = str(info.value)
    assert "Dense(6, 4), ReLU(), Dense(4, 6)" in msg and "Dense(6, 5), ReLU(), Dense(5, 6)" in msg
    assert str(path) in msg
    assert_same(host_state(other), before)


def test_dtype_mismatch_is_a_checkpoint_error(saved):
    _, _, path = saved
    other = nn.Sequential(nn.Dense(6, 4, dtype=numpy.float64), nn.ReLU(),
                          nn.Dense(4, 6, dtype=numpy.float64), nn.Sigmoid())
    before = host_state(other)
    with pytest.raises(CheckpointError, match="float64"):
        load_checkpoint(path, other)
    assert_same(host_state(other), before)


def test_optimizer_mismatch_is_a_checkpoint_error_and_changes_nothing(saved, tmp_path):
    _, _, path = saved
    model, _ = make(seed=4)
    before = host_state(model)
    sgd = nn.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(CheckpointError, match="Adam.*SGD"):
        load_checkpoint(path, model, sgd)
    # right class, wrong parameters (m and v of another size): the model is not touched either
    adam = nn.Adam(model[0].parameters())
    with pytest.raises(CheckpointError, match="optimizer m expected shape"):
        load_checkpoint(path, model, adam)
    assert adam.t == 0 and not any(to_numpy(m).any() for m in adam.m)
    # a checkpoint without optimizer state cannot fill an optimizer
    weights_only = save_checkpoint(tmp_path / "w.npz", make()[0])
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_checkpoint(weights_only, model, nn.Adam(model.parameters()))
    assert_same(host_state(model), before)


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(CheckpointError, match="no checkpoint at .*nope.npz"):
        load_checkpoint(missing, *make())
    with pytest.raises(CheckpointError, match="nope.npz"):
        read_checkpoint_meta(missing)
    with pytest.raises(CheckpointError, match="directory"):
        load_checkpoint(tmp_path, *make())


def _rewrite(path, out, drop=(), meta_update=None):
    """Copy the checkpoint at ``path`` to ``out`` without ``drop`` and with meta edited."""
    with numpy.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k not in drop}
    if meta_update is not None:
        meta = json.loads(arrays["meta"].tobytes())
        meta.update(meta_update)
        arrays["meta"] = numpy.frombuffer(json.dumps(meta).encode(), dtype=numpy.uint8)
    with open(out, "wb") as f:
        numpy.savez(f, **arrays)
    return out


def test_corrupt_files_raise_checkpoint_error(saved, tmp_path):
    model, opt, path = saved
    data = path.read_bytes()
    cases = {
        "random.npz": numpy.random.default_rng(0).bytes(5000),
        "empty.npz": b"",
        "not_npz.npz": b"PK\x03\x04 definitely not a zip",
        **{f"trunc{n}.npz": data[:n] for n in (1, 10, 100, len(data) // 2, len(data) - 1)},
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    numpy.save(tmp_path / "single.npy", numpy.zeros(3))
    files = [tmp_path / n for n in cases] + [tmp_path / "single.npy"]
    files.append(_rewrite(path, tmp_path / "nometa.npz", drop=("meta",)))
    files.append(_rewrite(path, tmp_path / "nometaver.npz", meta_update={"format_version": "one"}))
    target, target_opt = make(seed=8)
    before = host_state(target, target_opt)
    for f in files:
        for call in (lambda: load_checkpoint(f, target, target_opt), lambda: read_checkpoint_meta(f)):
            with pytest.raises(CheckpointError, match="ck.npz|" + f.name):
                call()
    newer = _rewrite(path, tmp_path / "v999.npz", meta_update={"format_version": 999})
    with pytest.raises(CheckpointError, match="format 999.*upgrade"):
        load_checkpoint(newer, target, target_opt)
    missing_param = _rewrite(path, tmp_path / "noparam.npz", drop=("param/2.b",))
    with pytest.raises(CheckpointError, match="2.b"):
        load_checkpoint(missing_param, target, target_opt)
    missing_m = _rewrite(path, tmp_path / "nom.npz", drop=("optim/m",))
    with pytest.raises(CheckpointError, match="'m'"):
        load_checkpoint(missing_m, target, target_opt)
    assert_same(host_state(target, target_opt), before)


def test_fuzzed_checkpoints_load_or_raise_checkpoint_error(saved, tmp_path):
    _, _, path = saved
    data = path.read_bytes()
    rng = numpy.random.default_rng(2024)
    target, target_opt = make(seed=8)
    bad = tmp_path / "fuzz.npz"
    outcomes = {"loaded": 0, "error": 0}
    for i in range(200):
        if i < 100:  # a truncated zip has lost its central directory: it must never load
            content = data[: int(rng.integers(0, len(data)))]
        else:
            buf = bytearray(data)
            buf[int(rng.integers(0, len(buf)))] ^= int(rng.integers(1, 256))
            content = bytes(buf)
        bad.write_bytes(content)
        before = host_state(target, target_opt)
        try:
            meta = load_checkpoint(bad, target, target_opt)
        except CheckpointError:
            outcomes["error"] += 1
            assert_same(host_state(target, target_opt), before)  # a failed load changes nothing
        else:
            assert i >= 100, f"truncation to {len(content)} bytes loaded"
            assert isinstance(meta, dict)
            outcomes["loaded"] += 1
    assert outcomes["error"] >= 100


@pytest.mark.parametrize("where", ["savez", "savez-interrupt", "replace"])
def test_failed_save_leaves_previous_checkpoint_and_no_temp_file(saved, monkeypatch, where):
    model, opt, path = saved
    expected = host_state(model, opt)
    train(model, opt)  # the next save would hold different weights

    def partial_savez(file, *args, **kwargs):
        file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt if where == "savez-interrupt" else OSError("disk full")

    def failing_replace(src, dst):
        raise OSError("rename failed")

    if where == "replace":
        monkeypatch.setattr(ckpt.os, "replace", failing_replace)
    else:
        monkeypatch.setattr(ckpt.numpy, "savez", partial_savez)
    with pytest.raises(KeyboardInterrupt if where == "savez-interrupt" else CheckpointError):
        save_checkpoint(path, model, opt, meta={"epoch": 6})
    monkeypatch.undo()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no .tmp left
    target, target_opt = make(seed=8)
    assert load_checkpoint(path, target, target_opt)["user"] == {"epoch": 3}
    assert_same(host_state(target, target_opt), expected)


WRITER = textwrap.dedent("""
    import sys
    import nanoae as nn
    from nanoae.train.checkpoint import save_checkpoint
    model = nn.Sequential(nn.Dense(1000, 2000, rng=0))  # 2M parameters: an 8 MB file
    i = int(sys.argv[2])
    while True:
        model[0].W.data[...] = i  # each version is recognisable: every weight equals i
        save_checkpoint(sys.argv[1], model, meta={"i": i})
        if i == int(sys.argv[2]):
            print("saved", flush=True)
        i += 1
""")


@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL and select on pipes")
def test_sigkill_during_save_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "big.npz"
    model = nn.Sequential(nn.Dense(1000, 2000, rng=1))
    rng = numpy.random.default_rng(0)
    deadline = time.monotonic() + 3
    kills = 0
    while kills < 3 or (kills < 8 and time.monotonic() < deadline):
        start = kills * 1_000_000
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(start)],
                                stdout=subprocess.PIPE, text=True)
        try:
            # wait for this writer's first complete save, then kill it at a random moment:
            # a save takes tens of ms, so most kills land inside one
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready and proc.stdout.readline() == "saved\n", "writer did not start"
            time.sleep(float(rng.uniform(0.03, 0.2)))
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
        kills += 1
        meta = load_checkpoint(path, model)  # must be the last complete version
        i = meta["user"]["i"]
        assert i >= start  # written by this writer, not left over from the previous one
        w = to_numpy(model[0].W.data)
        assert w.min() == w.max() == i


# -- each kind of damage named, exactly (issue 21: mutation testing) -------------------------

def _with_meta_array(path, out, meta_array):
    with numpy.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["meta"] = meta_array
    with open(out, "wb") as f:
        numpy.savez(f, **arrays)
    return out


def test_each_kind_of_damage_is_named_in_the_error(saved, tmp_path):
    import re
    model, opt, path = saved
    target, target_opt = make(seed=8)
    meta_bytes = path.read_bytes()
    text = json.dumps(read_checkpoint_meta(path)).encode()
    numpy.save(tmp_path / "a.npy", numpy.zeros(3))
    npy_then_zip = tmp_path / "npy_then_zip.npz"  # a zip's directory at the end, an .npy at the start
    npy_then_zip.write_bytes((tmp_path / "a.npy").read_bytes() + meta_bytes)
    (tmp_path / "text.npz").write_bytes(b"hello")
    state = read_checkpoint_meta(path)["optimizer_state"]
    cases = [
        (tmp_path / "text.npz", r"is not a valid nanoae checkpoint: not an \.npz \(zip\) archive; "
                                r"the file is corrupt, truncated, or another kind of file$"),
        (npy_then_zip, r"\(corrupt or truncated\): ValueError: it is a single \.npy array, not an "
                       r"\.npz archive$"),
        (_rewrite(path, tmp_path / "nometa.npz", drop=("meta",)),
         r"\(corrupt or truncated\): KeyError: \"no 'meta' entry\"$"),
        (_with_meta_array(path, tmp_path / "meta2d.npz",
                          numpy.frombuffer(text, dtype=numpy.uint8).reshape(1, -1)),
         rf"ValueError: 'meta' is uint8 of shape \(1, {len(text)}\), expected 1-D uint8$"),
        (_with_meta_array(path, tmp_path / "list.npz", numpy.frombuffer(b"[1]", dtype=numpy.uint8)),
         r"has an unknown checkpoint format_version None$"),
        (_rewrite(path, tmp_path / "v9.npz", meta_update={"format_version": 9}),
         r"was written in checkpoint format 9, newer than this nanoae \(.+\) reads \(up to 1\); "
         r"upgrade nanoae to load it$"),
        (_rewrite(path, tmp_path / "nostate.npz", meta_update={"optimizer_state": None}),
         r": optimizer_state is missing from the metadata$"),
        (_rewrite(path, tmp_path / "boolt.npz", meta_update={"optimizer_state": {**state, "t": True}}),
         r": optimizer t is True, expected a number$"),
        (_rewrite(path, tmp_path / "scalarm.npz", drop=("optim/m",),
                  meta_update={"optimizer_state": {**state, "m": 1.0}}),
         r": optimizer m expected shape \(\d+,\) dtype float32, got shape None dtype <class 'float'> "
         r"\(was it built on the same parameters\?\)$"),
    ]
    for file, message in cases:
        with pytest.raises(CheckpointError, match="^" + re.escape(str(file)) + " ?.*" + message):
            load_checkpoint(file, target, target_opt)
    sgd = nn.SGD(target.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(path))} holds Adam state, but the "
                                              "optimizer is a SGD$"):
        load_checkpoint(path, target, sgd)


def test_the_metadata_reads_even_when_the_weights_are_damaged(saved, tmp_path):
    model, opt, path = saved
    damaged = tmp_path / "damaged.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(damaged, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data[:-4] if name.startswith("param/") else data)  # truncated
    assert read_checkpoint_meta(damaged)["user"] == {"epoch": 3}  # reads no weights
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(damaged, *make(seed=8))


def test_a_model_saved_without_optimizer_records_no_optimizer_state(tmp_path):
    model, _ = make()
    meta = read_checkpoint_meta(save_checkpoint(tmp_path / "m.npz", model))
    assert meta["optimizer"] is None and meta["optimizer_state"] is None


def test_save_refuses_object_arrays_and_what_is_not_a_dict_naming_them(tmp_path):
    model, _ = make()
    with pytest.raises(TypeError, match=r"^save_checkpoint: \['extra/o'\] are object arrays; "
                                        "refusing to pickle$"):
        save_checkpoint(tmp_path / "o.npz", model, extra={"o": numpy.array([None, 1], dtype=object)})
    with pytest.raises(TypeError, match="^save_checkpoint: meta must be a dict, got list$"):
        save_checkpoint(tmp_path / "l.npz", model, meta=[1])
    with pytest.raises(TypeError, match=r"^save_checkpoint: meta\['s'\] is not JSON-serialisable \(set\): "):
        save_checkpoint(tmp_path / "s.npz", model, meta={"s": {1}})
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_temporary_file_is_a_hidden_sibling_of_the_target(tmp_path, monkeypatch):
    """Written beside the target (a rename within one directory is atomic) as .<name>.*.tmp."""
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: renamed.append(src) or real_replace(src, dst))
    model, _ = make()
    save_checkpoint(tmp_path / "sub" / "c.npz", model)
    (tmp,) = renamed
    tmp = os.path.abspath(tmp)
    assert os.path.dirname(tmp) == str(tmp_path / "sub")
    name = os.path.basename(tmp)
    assert name.startswith(".c.npz.") and name.endswith(".tmp") and len(name) > len(".c.npz..tmp")


def test_a_member_that_is_not_an_array_is_named(saved, tmp_path):
    """A zip member replaced by junk bytes: NumPy hands back bytes, not an array. The loader
    says which member, instead of failing later on ``'bytes' object has no attribute``."""
    import zipfile  # noqa: PLC0415

    _, _, path = saved
    target, target_opt = make(seed=8)
    for member in ("param/0.W.npy", "meta.npy"):
        junk = tmp_path / f"junk-{member.replace('/', '_')}.npz"
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(junk, "w") as dst:
            for item in src.namelist():
                dst.writestr(item, b"junk bytes" if item == member else src.read(item))
        with pytest.raises(CheckpointError, match=f"member '{member[:-4]}' is not a .npy array"):
            load_checkpoint(junk, target, target_opt)


# -- a save that fails: the disk full part way, a directory that cannot be written ---------

def test_a_save_on_a_full_disk_says_what_and_keeps_the_checkpoint_there(tmp_path, monkeypatch):
    """A checkpoint exists; the next save hits ENOSPC part way; it still loads, unchanged."""
    from helpers.full_disk import fill_up

    model, opt = make(hidden=64)
    path = save_checkpoint(tmp_path / "ck.npz", model, opt, meta={"epoch": 1})
    before, size = path.read_bytes(), path.stat().st_size
    train(model, opt)
    monkeypatch.setattr(os, "fdopen", fill_up(1000))  # room for 1000 bytes, then a full disk
    with pytest.raises(CheckpointError) as caught:
        save_checkpoint(path, model, opt, meta={"epoch": 2})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"could not save the checkpoint {path}: [Errno 28] No space left on device")
    assert f"it needs {size:,} bytes and {tmp_path} has " in message  # the same model: same size
    assert "the checkpoint saved there before is intact" in message
    assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == 28
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz"]
    fresh, fresh_opt = make(hidden=64)
    assert load_checkpoint(path, fresh, fresh_opt)["user"]["epoch"] == 1


def test_a_first_save_that_fails_leaves_nothing_and_says_so(tmp_path, monkeypatch):
    from helpers.full_disk import fill_up

    model, opt = make()
    monkeypatch.setattr(os, "fdopen", fill_up(0))
    with pytest.raises(CheckpointError, match=r"No space left on device; it needs [\d,]+ bytes .*"
                                              r"; no file was left there$"):
        save_checkpoint(tmp_path / "ck.npz", model, opt)
    assert list(tmp_path.iterdir()) == []


def test_a_save_into_a_place_that_cannot_hold_a_directory_is_a_checkpoint_error(tmp_path):
    (tmp_path / "file").write_text("")
    model, opt = make()
    with pytest.raises(CheckpointError, match=r"could not save the checkpoint .*file/ck\.npz: "
                                              r"\[Errno \d+\] ") as caught:
        save_checkpoint(tmp_path / "file" / "ck.npz", model, opt)
    assert isinstance(caught.value.__cause__, OSError)


def test_the_size_a_failed_save_reports_is_that_of_the_file(tmp_path):
    model, opt = make(hidden=32)
    path = save_checkpoint(tmp_path / "ck.npz", model, opt)
    with numpy.load(path) as saved:
        arrays = {name: saved[name] for name in saved.files}
    assert ckpt._encoded_size(arrays) == path.stat().st_size
